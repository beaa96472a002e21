"""Pose readers: real files, conversions, and every bad input named by file and line."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from annotate.geometry import invert_pose
from annotate.readers import (
    PoseFormat,
    ReaderConfig,
    detect_format,
    read_kitti,
    read_re10k,
    read_trajectory,
    read_tum,
    read_ue_csv,
)
from annotate.trajectory import Trajectory, TrajectoryError
from annotate.ue import ue_to_pose
from tests.conftest import REAL_TRAJECTORIES, real_trajectory_files

HEADER = "frame,time,x,y,z,pitch,yaw,roll\n"
UE_ROWS = "0,0.0,120.5,-40.0,170.0,0.0,90.0,0.0\n1,0.1,130.5,-40.0,170.0,1.0,91.0,0.5\n2,0.2,140.5,-41.0,171.0,2.0,92.0,1.0\n"
TUM_ROWS = "# t tx ty tz qx qy qz qw\n0.0 0 0 0 0 0 0 1\n0.1 0.1 0 0 0 0 0 1\n0.2 0.2 0 0 0 0.0087265 0 0.9999619\n"
KITTI_ROW = "1 0 0 {x} 0 1 0 0 0 0 1 0\n"
EXPECTED = {  # file -> (format, poses)
    "euroc_v102.tum": (PoseFormat.TUM, 803),
    "kitti_00_first1200.kitti": (PoseFormat.KITTI, 1200),
    "re10k_0bf152ef84195293.txt": (PoseFormat.RE10K, 16),
    "re10k_2f25826f0d0ef09a.txt": (PoseFormat.RE10K, 16),
    "re10k_4a2d6753676df096.txt": (PoseFormat.RE10K, 16),
    "tum_fr2_desk_orb_keyframes.tum": (PoseFormat.TUM, 157),
    "tum_freiburg1_xyz_rgbdslam.tum": (PoseFormat.TUM, 788),
}


@pytest.mark.parametrize("path", real_trajectory_files(), ids=lambda p: p.name)
def test_reads_every_real_file(path):
    fmt, count = EXPECTED[path.name]
    assert detect_format(path) is fmt
    traj = read_trajectory(path, config=ReaderConfig(source_fps=10.0, duplicate_times="keep_first"))
    assert len(traj) == count
    assert traj.meta["format"] == fmt.value
    assert (np.diff(traj.timestamps) > 0).all()


def test_euroc_repeated_times_are_an_error_by_default():
    path = REAL_TRAJECTORIES / "euroc_v102.tum"
    with pytest.raises(TrajectoryError, match=rf"^{path}:433: time 1403715572.2121432 is not greater .*line 432") as err:
        read_tum(path)
    assert "duplicate_times=keep_first" in str(err.value)
    kept = read_tum(path, ReaderConfig(duplicate_times="keep_first"))
    assert [d["line"] for d in kept.meta["dropped"]] == [433, 684, 736, 788]


def test_tum_conversion_matches_the_file():
    path = REAL_TRAJECTORIES / "tum_freiburg1_xyz_rgbdslam.tum"
    traj = read_tum(path)
    t, x, y, z, qx, qy, qz, qw = map(float, path.read_text().splitlines()[1].split())  # line 1 is a comment
    assert traj.lines[0] == 2 and traj.timestamps[0] == t
    np.testing.assert_allclose(traj.poses[0, :3, 3], [x, y, z])
    np.testing.assert_allclose(traj.poses[0, :3, :3], Rotation.from_quat([qx, qy, qz, qw]).as_matrix(), atol=1e-6)


def test_re10k_is_inverted_to_camera_to_world():
    path = REAL_TRAJECTORIES / "re10k_0bf152ef84195293.txt"
    traj = read_re10k(path)
    values = np.array(path.read_text().splitlines()[1].split(), dtype=float)
    w2c = np.vstack([values[7:].reshape(3, 4), [0, 0, 0, 1]])
    np.testing.assert_allclose(traj.poses[0], invert_pose(w2c), atol=1e-6)
    assert traj.timestamps[0] == pytest.approx(158.692025)
    assert traj.meta["url"] == "https://www.youtube.com/watch?v=QShWPZxTDoE"
    assert traj.extras["fx"][0] == pytest.approx(0.474812461)


def test_kitti_times_from_fps_or_file(write):
    path = REAL_TRAJECTORIES / "kitti_00_first1200.kitti"
    with pytest.raises(TrajectoryError, match=r"carry no timestamps: give a times file"):
        read_kitti(path)
    traj = read_kitti(path, ReaderConfig(source_fps=10.0))
    np.testing.assert_allclose(traj.timestamps[:3], [0.0, 0.1, 0.2])
    times = write("times.txt", "".join(f"{0.1037 * i:.6f}\n" for i in range(1200)))
    assert read_kitti(path, times=times).timestamps[2] == pytest.approx(0.2074)
    short = write("short.txt", "0.0\n0.1\n")
    with pytest.raises(TrajectoryError, match=rf"^{short}: 2 times for 1200 poses"):
        read_kitti(path, times=short)


def test_ue_csv_conversion_and_extra_columns(write):
    path = write("log.csv", "frame,time,x,y,z,pitch,yaw,roll,speed,label\n"
                 "0,0.0,120.5,-40.0,170.0,10.0,90.0,5.0,1.5,walk\n1,0.1,130.5,-40.0,170.0,11.0,91.0,5.5,1.6,run\n")
    traj = read_ue_csv(path)
    np.testing.assert_allclose(traj.poses[0], ue_to_pose([120.5, -40.0, 170.0], [10.0, 90.0, 5.0]), atol=1e-12)
    np.testing.assert_array_equal(traj.extras["frame"], [0, 1])
    np.testing.assert_allclose(traj.extras["speed"], [1.5, 1.6])
    assert list(traj.extras["label"]) == ["walk", "run"]
    assert list(traj.lines) == [2, 3]


def test_ue_csv_columns_in_any_order_and_blank_lines(write):
    path = write("log.csv", "time,frame,roll,yaw,pitch,z,y,x\n0.0,0,0,90,0,170,-40,120.5\n\n0.1,1,0,90,0,170,-40,130.5\n")
    traj = read_ue_csv(path)
    np.testing.assert_allclose(traj.poses[1, :3, 3], [1.305, 0.40, 1.70])
    assert list(traj.lines) == [2, 4]


def test_format_detection(write):
    assert detect_format(write("a.csv", HEADER)) is PoseFormat.UE_CSV
    assert detect_format(write("a.txt", TUM_ROWS)) is PoseFormat.TUM
    assert detect_format(write("b.txt", KITTI_ROW.format(x=0))) is PoseFormat.KITTI
    with pytest.raises(TrajectoryError, match=r"c.txt:1: cannot tell the pose format from a first line of 3 fields"):
        detect_format(write("c.txt", "1 2 3\n"))
    assert isinstance(read_trajectory(write("d.txt", TUM_ROWS)), Trajectory)


def test_tiny_rotation_errors_are_snapped(write):
    # 7 significant digits, as KITTI ships: within tolerance, stored exactly orthonormal.
    path = write("p.kitti", "0.9999999 0 0 0 0 1 0 0 0 0 1 0\n1 0 0 1 0 1.0000001 0 0 0 0 1 0\n")
    traj = read_kitti(path, ReaderConfig(source_fps=10))
    np.testing.assert_allclose(traj.poses[:, :3, :3], np.tile(np.eye(3), (2, 1, 1)), atol=1e-15)


# Every bad input: (file name, content, reader kwargs, expected "name:line: message" regex).
BAD = [
    ("nan.csv", HEADER + "0,0.0,1,2,3,0,0,0\n1,0.1,nan,2,3,0,0,0\n", {}, r"nan.csv:3: column 'x': 'nan' is not finite"),
    ("inf.csv", HEADER + "0,0.0,1,2,3,0,0,0\n1,0.1,1,2,3,0,-inf,0\n", {}, r"inf.csv:3: column 'yaw': '-inf' is not finite"),
    ("inf.tum", "0 0 0 0 0 0 0 1\n0.1 inf 0 0 0 0 0 1\n", {}, r"inf.tum:2: column 'tx': 'inf' is not finite"),
    ("text.tum", "0 0 0 0 0 0 0 1\n0.1 abc 0 0 0 0 0 1\n", {}, r"text.tum:2: column 'tx': 'abc' is not a number"),
    ("missing.csv", "frame,time,x,y,z,pitch,yaw\n0,0,0,0,0,0,0\n", {}, r"missing.csv:1: missing column\(s\) roll"),
    ("dup.csv", "frame,time,x,y,z,pitch,yaw,roll,x\n", {}, r"dup.csv:1: duplicated column\(s\) x"),
    ("extra.csv", HEADER + UE_ROWS + "3,0.3,1,2,3,0,0,0,9\n", {}, r"extra.csv:5: 9 fields, but the header has 8"),
    ("short.csv", HEADER + "0,0.0,1,2,3,0,0\n", {}, r"short.csv:2: 7 fields, but the header has 8"),
    ("empty.csv", HEADER + "0,0.0,1,,3,0,0,0\n1,0.1,1,2,3,0,0,0\n", {}, r"empty.csv:2: column 'y': missing value"),
    ("extra.tum", "0 0 0 0 0 0 0 1\n0.1 0 0 0 0 0 0 1 5\n", {}, r"extra.tum:2: expected 8 values \(t tx ty tz qx qy qz qw\), found 9"),
    ("short.kitti", KITTI_ROW.format(x=0) + "1 0 0 0 0 1 0\n", {"config": ReaderConfig(source_fps=10)},
     r"short.kitti:2: expected 12 values .*found 7"),
    ("equal.csv", HEADER + UE_ROWS.replace("2,0.2", "2,0.1"), {}, r"equal.csv:4: time 0.1 is not greater than the previous time 0.1 \(line 3\)"),
    ("back.tum", "0 0 0 0 0 0 0 1\n# comment\n0.5 0 0 0 0 0 0 1\n0.2 0 0 0 0 0 0 1\n", {},
     r"back.tum:4: time 0.2 is not greater than the previous time 0.5 \(line 3\)"),
    ("frame.csv", HEADER + "0.5,0.0,1,2,3,0,0,0\n1,0.1,1,2,3,0,0,0\n", {}, r"frame.csv:2: frame '0.5' is not an integer"),
    ("quat.tum", "0 0 0 0 0 0 0 1\n0.1 0 0 0 0 0 0.1 1\n", {}, r"quat.tum:2: quaternion is not unit length \(\|q\|\^2 - 1 = 1.00e-02\)"),
    ("scaled.kitti", KITTI_ROW.format(x=0) + "1.01 0 0 0 0 1 0 0 0 0 1 0\n", {"config": ReaderConfig(source_fps=10)},
     r"scaled.kitti:2: rotation is not orthonormal \(\|R\^T R - I\| = 2.01e-02\); tolerance is 0.0001"),
    ("mirror.kitti", KITTI_ROW.format(x=0) + "-1 0 0 0 0 1 0 0 0 0 1 0\n", {"config": ReaderConfig(source_fps=10)},
     r"mirror.kitti:2: rotation is a reflection"),
    ("skew.txt", "https://example.com/v\n1 .5 .5 .5 .5 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n2 .5 .5 .5 .5 0 0 1 0.2 0 0 0 1 0 0 0 0 1 0\n",
     {}, r"skew.txt:3: rotation is not orthonormal"),
    ("blank.csv", "", {}, r"blank.csv: empty file: expected a header"),
    ("header.csv", HEADER, {}, r"header.csv: no poses: a trajectory needs at least 2"),
    ("nothing.tum", "# only a comment\n\n", {}, r"nothing.tum: no poses"),
    ("one.csv", HEADER + "0,0.0,1,2,3,0,0,0\n", {}, r"one.csv:2: only one pose: a trajectory needs at least 2"),
    ("one.tum", "\n\n0 0 0 0 0 0 0 1\n", {}, r"one.tum:3: only one pose"),
    ("binary.tum", None, {}, r"binary.tum:1: not UTF-8 text \(invalid start byte at byte 1\); a binary file\?"),
    ("binary.csv", None, {}, r"binary.csv:1: not UTF-8 text"),
    ("latin1.csv", (HEADER + "0,0.0,1,2,3,0,0,0\n1,0.1,1,2,3,0,0,\xe9\n").encode("latin-1"), {},
     r"latin1.csv:3: not UTF-8 text \(invalid continuation byte"),
    ("long.csv", HEADER + "0,0.0," + "1" * 200_000 + ",2,3,0,0,0\n", {},
     r"long.csv:2: not a readable CSV line: field larger than field limit"),
    ("nul.csv", HEADER + "0,0.0,1,2\x003,0,0,0\n", {}, r"nul.csv:2: NUL byte in the text"),
]


@pytest.mark.parametrize("name,content,kwargs,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_file_and_line(tmp_path, name, content, kwargs, message):
    path = tmp_path / name
    if content is None:
        path.write_bytes(b"\x00\xff\xfe\x89PNG")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(TrajectoryError, match="^" + str(tmp_path).replace("\\", "\\\\") + "/" + message):
        read_trajectory(path, **kwargs)


def test_a_utf8_bom_is_not_part_of_the_header(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + UE_ROWS).encode())
    assert len(read_ue_csv(path).poses) == 3


def test_missing_file_is_named(tmp_path):
    with pytest.raises(TrajectoryError, match=r"nope.csv: cannot open: No such file"):
        read_ue_csv(tmp_path / "nope.csv")


def test_trajectory_record_checks_constructed_poses():
    poses = np.tile(np.eye(4), (3, 1, 1))
    with pytest.raises(TrajectoryError, match=r"^made: pose 2: time 0.1 is not greater"):
        Trajectory(poses=poses, timestamps=np.array([0.0, 0.1, 0.1]), source="made")
    bad = poses.copy()
    bad[1, 3, 0] = 1.0
    with pytest.raises(TrajectoryError, match=r"^made: pose 1: bottom row"):
        Trajectory(poses=bad, timestamps=np.array([0.0, 0.1, 0.2]), source="made")
    nan = poses.copy()
    nan[0, 0, 3] = np.nan
    with pytest.raises(TrajectoryError, match=r"^made: pose 0: pose or time is not finite"):
        Trajectory(poses=nan, timestamps=np.array([0.0, 0.1, 0.2]), source="made")
    with pytest.raises(TrajectoryError, match=r"extra column 'a' has 2 values for 3 poses"):
        Trajectory(poses=poses, timestamps=np.array([0.0, 0.1, 0.2]), source="made", extras={"a": np.zeros(2)})
