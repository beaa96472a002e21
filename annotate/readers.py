"""Pose file readers -> Trajectory in internal conventions (conventions.md section 1, formats.md 1.1).

| format | file                                                   | converted by                          |
|--------|--------------------------------------------------------|---------------------------------------|
| ue-csv | header `frame,time,x,y,z,pitch,yaw,roll` (+ extras)    | annotate.ue.ue_to_pose                |
| tum    | `t tx ty tz qx qy qz qw`, camera-to-world, OpenCV axes | quaternion -> matrix                  |
| kitti  | 12 numbers: 3x4 camera-to-world rows; no times         | times from `times` file or `fps`      |
| re10k  | URL line, then `t_us fx fy cx cy 0 0` + 3x4 w2c rows   | inverted; intrinsics kept as extras   |

Every problem raises TrajectoryError naming the file and line (1-based, as an editor shows it).
"""

from __future__ import annotations

import csv
import enum
import io
import pathlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

from annotate.geometry import invert_pose, make_pose
from annotate.trajectory import DEFAULT_ROTATION_TOLERANCE, Trajectory, TrajectoryError
from annotate.ue import ue_to_pose


class PoseFormat(str, enum.Enum):
    UE_CSV = "ue-csv"
    TUM = "tum"
    KITTI = "kitti"
    RE10K = "re10k"


UE_COLUMNS = ("frame", "time", "x", "y", "z", "pitch", "yaw", "roll")
TUM_COLUMNS = ("t", "tx", "ty", "tz", "qx", "qy", "qz", "qw")
KITTI_COLUMNS = tuple(f"r{i}{j}" if j < 3 else f"t{i}" for i in range(3) for j in range(4))
RE10K_COLUMNS = ("t_us", "fx", "fy", "cx", "cy", "k1", "k2", *KITTI_COLUMNS)
_BY_EXTENSION = {".csv": PoseFormat.UE_CSV, ".tum": PoseFormat.TUM, ".kitti": PoseFormat.KITTI}
_BY_FIELD_COUNT = {8: PoseFormat.TUM, 12: PoseFormat.KITTI, 19: PoseFormat.RE10K}


@dataclass(frozen=True)
class ReaderConfig:
    """How pose files are read."""

    rotation_tolerance: float = DEFAULT_ROTATION_TOLERANCE  # max |R^T R - I| (or |q|^2 - 1) accepted
    source_fps: float | None = None  # frame rate of formats without times (KITTI), if no times file
    duplicate_times: Literal["error", "keep_first"] = "error"  # a row repeating the previous time

    def __post_init__(self) -> None:
        if not self.rotation_tolerance > 0:
            raise ValueError(f"rotation_tolerance must be > 0, got {self.rotation_tolerance}")
        if self.source_fps is not None and not self.source_fps > 0:
            raise ValueError(f"source_fps must be > 0, got {self.source_fps}")


def read_trajectory(
    path: str | pathlib.Path,
    fmt: PoseFormat | str | None = None,
    config: ReaderConfig = ReaderConfig(),
    times: str | pathlib.Path | None = None,
) -> Trajectory:
    """Read any supported pose file; `fmt` None picks by extension, then by the first data line."""
    path = pathlib.Path(path)
    fmt = PoseFormat(fmt) if fmt is not None else detect_format(path)
    if fmt is PoseFormat.UE_CSV:
        return read_ue_csv(path, config)
    if fmt is PoseFormat.TUM:
        return read_tum(path, config)
    if fmt is PoseFormat.KITTI:
        return read_kitti(path, config, times=times)
    return read_re10k(path, config)


def detect_format(path: pathlib.Path) -> PoseFormat:
    """Format from the extension (.csv, .tum, .kitti), else from the first data line's shape."""
    if path.suffix.lower() in _BY_EXTENSION:
        return _BY_EXTENSION[path.suffix.lower()]
    rows = _data_lines(path)
    if not rows:
        raise TrajectoryError(str(path), "empty file: cannot tell its pose format; pass --format")
    first = rows[0][1]
    if first.startswith(("http://", "https://")):
        return PoseFormat.RE10K
    count = len(first.split())
    if count in _BY_FIELD_COUNT:
        return _BY_FIELD_COUNT[count]
    raise TrajectoryError(
        str(path),
        f"cannot tell the pose format from a first line of {count} fields; pass --format",
        rows[0][0],
    )


def ue_csv_row(frame: int, time: float, values) -> str:
    """One UE pose CSV line: frame, time (us precision), then values (x y z pitch yaw roll, extras)."""
    return f"{frame},{time:.6f}," + ",".join(f"{v:.4f}" for v in values) + "\n"


def write_ue_csv(path: str | pathlib.Path, times: np.ndarray, locations: np.ndarray, rotations: np.ndarray) -> None:
    """Write a UE pose CSV (formats.md 1.1): locations (N, 3) cm, rotations (N, 3) pitch yaw roll deg."""
    with open(path, "w", newline="") as handle:
        handle.write(",".join(UE_COLUMNS) + "\n")
        for i, (t, loc, rot) in enumerate(zip(times, locations, rotations)):
            handle.write(ue_csv_row(i, float(t), [*loc, *rot]))


def read_ue_csv(path: str | pathlib.Path, config: ReaderConfig = ReaderConfig()) -> Trajectory:
    """UE pose CSV (formats.md 1.1): cm and degrees in UE's left-handed world; extra columns kept."""
    path = pathlib.Path(path)
    source = str(path)
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    try:
        header, lines, rows = _csv_rows(source, reader)
    except csv.Error as exc:  # a field over csv's size limit, a broken quote
        raise TrajectoryError(source, f"not a readable CSV line: {exc}", reader.line_num) from None
    table = np.array(rows, dtype=str).reshape(len(rows), len(header))
    lines_arr = np.array(lines, dtype=np.int64)
    index = {name: i for i, name in enumerate(header)}
    values = _parse_numbers(source, lines_arr, table[:, [index[c] for c in UE_COLUMNS]], UE_COLUMNS)
    frames = values[:, 0]
    if len(frames) and not np.array_equal(frames, np.round(frames)):
        i = int(np.flatnonzero(frames != np.round(frames))[0])
        raise TrajectoryError(source, f"frame {str(table[i, index['frame']])!r} is not an integer", int(lines_arr[i]))
    extras = {"frame": frames.astype(np.int64)}
    for name in header:
        if name not in UE_COLUMNS:
            extras[name] = _extra_column(table[:, index[name]])
    poses = ue_to_pose(values[:, 2:5], values[:, 5:8]) if len(values) else np.zeros((0, 4, 4))
    return _trajectory(
        config,
        source,
        lines_arr,
        values[:, 1],
        poses[:, :3, :3],
        poses[:, :3, 3],
        extras=extras,
        meta={"format": PoseFormat.UE_CSV.value},
    )


def _csv_rows(source: str, reader) -> tuple[list[str], list[int], list[list[str]]]:
    """A UE pose CSV's header, and the line number and fields of every data row."""
    header = next(reader, None)
    if header is None:
        raise TrajectoryError(source, f"empty file: expected a header {','.join(UE_COLUMNS)}")
    header = [name.strip() for name in header]
    missing = [c for c in UE_COLUMNS if c not in header]
    if missing:
        raise TrajectoryError(source, f"missing column(s) {', '.join(missing)} in header {header}", 1)
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise TrajectoryError(source, f"duplicated column(s) {', '.join(duplicated)}", 1)
    lines, rows = [], []
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line is not a row
        if len(row) != len(header):
            raise TrajectoryError(
                source, f"{len(row)} fields, but the header has {len(header)} ({','.join(header)})", reader.line_num
            )
        lines.append(reader.line_num)
        rows.append(row)
    return header, lines, rows


def read_tum(path: str | pathlib.Path, config: ReaderConfig = ReaderConfig()) -> Trajectory:
    """TUM trajectory: `t tx ty tz qx qy qz qw` per line, camera-to-world, OpenCV camera axes."""
    path = pathlib.Path(path)
    source = str(path)
    lines, values = _read_table(path, TUM_COLUMNS)
    quats = values[:, 4:8]
    norm_error = np.abs(np.einsum("ni,ni->n", quats, quats) - 1.0)
    bad = np.flatnonzero(norm_error > config.rotation_tolerance)
    if len(bad):
        i = int(bad[0])
        raise TrajectoryError(
            source,
            f"quaternion is not unit length (|q|^2 - 1 = {norm_error[i]:.2e}); "
            f"tolerance is {config.rotation_tolerance:g}",
            int(lines[i]),
        )
    rotations = Rotation.from_quat(quats).as_matrix() if len(quats) else np.zeros((0, 3, 3))
    return _trajectory(
        config,
        source,
        lines,
        values[:, 0],
        rotations,
        values[:, 1:4],
        meta={"format": PoseFormat.TUM.value},
    )


def read_kitti(
    path: str | pathlib.Path,
    config: ReaderConfig = ReaderConfig(),
    times: str | pathlib.Path | None = None,
) -> Trajectory:
    """KITTI odometry poses: 3x4 camera-to-world per line. Times come from a `times.txt`-style file
    (one time in seconds per line) or from `config.source_fps`; with neither it is an error."""
    path = pathlib.Path(path)
    source = str(path)
    lines, values = _read_table(path, KITTI_COLUMNS)
    if times is not None:
        time_lines, time_values = _read_table(pathlib.Path(times), ("time",))
        if len(time_values) != len(values):
            raise TrajectoryError(
                str(times), f"{len(time_values)} times for {len(values)} poses in {source}"
            )
        timestamps = time_values[:, 0]
    elif config.source_fps is not None:
        timestamps = np.arange(len(values)) / config.source_fps
    else:
        raise TrajectoryError(
            source,
            "KITTI poses carry no timestamps: give a times file (--times) or the frame rate "
            "(--source-fps; KITTI odometry is 10 Hz)",
        )
    matrices = values.reshape(-1, 3, 4)
    return _trajectory(
        config,
        source,
        lines,
        timestamps,
        matrices[:, :, :3],
        matrices[:, :, 3],
        meta={"format": PoseFormat.KITTI.value},
    )


def read_re10k(path: str | pathlib.Path, config: ReaderConfig = ReaderConfig()) -> Trajectory:
    """RealEstate10K camera file: a URL line, then `t_us fx fy cx cy 0 0` + 3x4 world-to-camera.

    Intrinsics (normalised by image width/height, as RE10K stores them) are kept as extras
    `fx, fy, cx, cy`; the URL goes into `meta["url"]`.
    """
    path = pathlib.Path(path)
    source = str(path)
    rows = _data_lines(path)
    meta: dict[str, str] = {"format": PoseFormat.RE10K.value}
    if rows and rows[0][1].startswith(("http://", "https://")):
        meta["url"] = rows[0][1].strip()
        rows = rows[1:]
    lines, values = _parse_rows(source, rows, RE10K_COLUMNS)
    w2c = make_pose(values[:, 7:].reshape(-1, 3, 4)[:, :, :3], values[:, 7:].reshape(-1, 3, 4)[:, :, 3])
    c2w = invert_pose(w2c)
    extras = {name: values[:, i] for i, name in enumerate(RE10K_COLUMNS[1:5], start=1)}
    return _trajectory(
        config,
        source,
        lines,
        values[:, 0] / 1e6,
        c2w[:, :3, :3],
        c2w[:, :3, 3],
        extras=extras,
        meta=meta,
    )


def _trajectory(config: ReaderConfig, *args, **kwargs) -> Trajectory:
    """Trajectory.from_arrays with the reader settings applied (tolerance, duplicate-time policy)."""
    return Trajectory.from_arrays(
        *args,
        **kwargs,
        rotation_tolerance=config.rotation_tolerance,
        drop_duplicate_times=config.duplicate_times == "keep_first",
    )


def _read_text(path: pathlib.Path) -> str:
    """A pose file's text: UTF-8 (a BOM is dropped), no NUL bytes; else an error naming the line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TrajectoryError(str(path), f"cannot open: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        raise TrajectoryError(str(path), f"not UTF-8 text ({exc.reason} at byte {offset}); a binary file?",
                              data.count(b"\n", 0, offset) + 1) from None
    nul = text.find("\0")
    if nul >= 0:
        raise TrajectoryError(str(path), "NUL byte in the text; a binary file?", text.count("\n", 0, nul) + 1)
    return text


def _data_lines(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank, non-`#` line."""
    return [(number, text.strip()) for number, text in enumerate(_read_text(path).splitlines(), start=1)
            if text.strip() and not text.lstrip().startswith("#")]


def _read_table(path: pathlib.Path, columns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    return _parse_rows(str(path), _data_lines(path), columns)


def _parse_rows(
    source: str, rows: list[tuple[int, str]], columns: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Whitespace-separated rows -> (line numbers (N,), float64 values (N, len(columns)))."""
    fields = []
    for number, text in rows:
        parts = text.split()
        if len(parts) != len(columns):
            raise TrajectoryError(
                source, f"expected {len(columns)} values ({' '.join(columns)}), found {len(parts)}", number
            )
        fields.append(parts)
    lines = np.array([number for number, _ in rows], dtype=np.int64)
    table = np.array(fields, dtype=str).reshape(len(rows), len(columns))
    return lines, _parse_numbers(source, lines, table, columns)


def _parse_numbers(source: str, lines: np.ndarray, table: np.ndarray, columns: tuple[str, ...]) -> np.ndarray:
    """String table -> float64, naming line and column of the first unparseable or non-finite value."""
    try:
        values = table.astype(np.float64)
    except ValueError:
        values = None
    if values is not None and np.isfinite(values).all():
        return values
    values = np.empty(table.shape)
    for r in range(table.shape[0]):
        for c in range(table.shape[1]):
            text = str(table[r, c])
            if not text.strip():
                raise TrajectoryError(source, f"column {columns[c]!r}: missing value", int(lines[r]))
            try:
                values[r, c] = float(text)
            except ValueError:
                raise TrajectoryError(source, f"column {columns[c]!r}: {text!r} is not a number", int(lines[r])) from None
            if not np.isfinite(values[r, c]):
                raise TrajectoryError(source, f"column {columns[c]!r}: {text!r} is not finite", int(lines[r]))
    return values


def _extra_column(texts: np.ndarray) -> np.ndarray:
    """An optional UE CSV column: numbers when every value parses, else strings."""
    try:
        return texts.astype(np.float64)
    except ValueError:
        return texts.astype(object)
