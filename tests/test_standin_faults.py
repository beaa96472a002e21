"""Each fault knob of the stand-in shows its effect; all are off by default."""

from __future__ import annotations

import json
import socket
import time

import cv2
import numpy as np
import pytest

from capture.standin.engine import Engine, EngineConfig, FaultConfig
from capture.standin.protocol import pack, read_message
from capture.standin.server import StandinServer
from tests.standin_helpers import RawClient, standin_process

SMALL = dict(scene="courtyard-3", width=96, height=54, shadow_resolution=128)


def engine(**faults) -> Engine:
    return Engine(EngineConfig(**SMALL, faults=FaultConfig(**faults)))


def capture(eng: Engine, location, rotation=(0.0, 0.0, 0.0)):
    eng.handle(f"vset /camera/0/location {location[0]:.3f} {location[1]:.3f} {location[2]:.3f}")
    eng.handle(f"vset /camera/0/rotation {rotation[0]:.3f} {rotation[1]:.3f} {rotation[2]:.3f}")
    lit = cv2.imdecode(np.frombuffer(eng.handle("vget /camera/0/lit png"), np.uint8), cv2.IMREAD_COLOR)
    depth = eng.handle("vget /camera/0/depth npy")
    mask = eng.handle("vget /camera/0/object_mask png")
    return lit, depth, mask


def sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())



@pytest.fixture(scope="module")
def clean():
    eng = engine()
    start = eng.start_location
    return start, [capture(eng, start + [i * 20.0, 0, 0], (0, 10.0 * i, 0)) for i in range(4)]


def test_no_faults_by_default(clean):
    start, frames = clean
    eng = engine()
    again = [capture(eng, start + [i * 20.0, 0, 0], (0, 10.0 * i, 0)) for i in range(4)]
    for a, b in zip(frames, again):
        np.testing.assert_array_equal(a[0], b[0])
    assert all(f[0].mean() > 30 for f in frames)


def test_black_frame(clean):
    start, frames = clean
    eng = engine(black_frame=1.0)
    lit, depth, mask = capture(eng, start, (0, 0, 0))
    assert lit.max() == 0
    assert depth == frames[0][1] and mask == frames[0][2]  # ground truth untouched


def test_frozen_frame(clean):
    start, frames = clean
    eng = engine(frozen_frame=1.0)
    first = capture(eng, start)[0]
    moved = capture(eng, start + [20.0, 0, 0], (0, 10.0, 0))
    np.testing.assert_array_equal(moved[0], first)  # image unchanged although the pose moved
    assert moved[1] == frames[1][1]
    assert np.abs(frames[1][0].astype(int) - first.astype(int)).mean() > 5


def test_exposure_spike(clean):
    start, frames = clean
    lit = capture(engine(exposure_spike=1.0, exposure_gain=2.5), start)[0]
    assert lit.mean() > 1.6 * frames[0][0].mean()
    assert (lit == 255).mean() > 0.05


def test_flicker_scales_brightness_only(clean):
    start, frames = clean
    eng = engine(flicker=1.0, flicker_gain=0.7)
    lit, depth, _ = capture(eng, start)
    ratio = lit.astype(float).mean() / frames[0][0].astype(float).mean()
    assert ratio == pytest.approx(0.7, abs=0.02)
    assert depth == frames[0][1]
    assert eng.injected[-1]["fault"] == "flicker" and eng.injected[-1]["gain"] == 0.7


def test_glitch_replaces_a_band_with_blocks(clean):
    start, frames = clean
    lit = capture(engine(glitch=1.0, glitch_area=0.25), start)[0]
    changed_rows = np.any(lit != frames[0][0], axis=(1, 2))
    assert 0.15 <= changed_rows.mean() <= 0.3  # one band of about a quarter of the rows
    rows = np.flatnonzero(changed_rows)
    assert rows[-1] - rows[0] + 1 == len(rows)  # contiguous


def test_blur_fault(clean):
    start, frames = clean
    lit = capture(engine(blur=1.0, blur_sigma=2.0), start)[0]
    assert sharpness(lit) < 0.3 * sharpness(frames[0][0])
    np.testing.assert_allclose(lit.mean(), frames[0][0].mean(), atol=1.0)


def test_pose_offset_renders_from_a_turned_pose(clean):
    start, frames = clean
    eng = engine(pose_offset=1.0, pose_offset_deg=10.0)
    lit = capture(eng, start, (0, 0, 0))[0]
    record = eng.injected[-1]
    assert record["fault"] == "pose_offset" and abs(record["degrees"]) == 10.0
    turned = capture(engine(), start, (0, record["degrees"], 0))[0]
    np.testing.assert_array_equal(lit, turned)
    assert eng.handle("vget /camera/0/rotation") == "0.000 0.000 0.000"  # the pose it reports is unchanged


def test_streaming_blur_after_a_large_jump(clean):
    start, _ = clean
    eng = engine(streaming_blur_jump_cm=300.0, streaming_blur_frames=3, streaming_blur_sigma=3.0)
    reference = engine()
    scores = []
    for i, offset in enumerate([0, 20, 500, 510, 520, 530, 540]):  # a 480 cm jump at capture 2
        location = start + [offset, 0.0, 0.0]
        blurred = capture(eng, location)[0]
        sharp = capture(reference, location)[0]
        scores.append(sharpness(blurred) / sharpness(sharp))
    assert scores[0] == pytest.approx(1.0) and scores[1] == pytest.approx(1.0)  # small steps: sharp
    assert scores[2] < scores[3] < scores[4] < 0.9  # blurred, recovering
    assert scores[5] == pytest.approx(1.0) and scores[6] == pytest.approx(1.0)


def test_slow_reply_and_fault_log(tmp_path):
    log = tmp_path / "faults.jsonl"
    with StandinServer(EngineConfig(**SMALL, faults=FaultConfig(slow_reply=1.0, slow_reply_seconds=0.3)), fault_log=log) as srv:
        raw = RawClient(srv.port)
        start = time.perf_counter()
        assert raw.request(0, "vget /unrealcv/version") == b"0:1.1.0"
        assert time.perf_counter() - start >= 0.3
        raw.close()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records == [{"request": 1, "fault": "slow_reply"}]


def test_dropped_connection():
    with StandinServer(EngineConfig(**SMALL, faults=FaultConfig(drop_connection=1.0))) as srv:
        raw = RawClient(srv.port)
        raw.send_raw(pack(b"0:vget /unrealcv/version"))
        assert read_message(raw.sock) is None
        raw.close()


def test_process_crash_after_n_requests():
    with standin_process("--scene", "room-1", "--width", "64", "--height", "36", "--set", "faults.crash_after=3") as (proc, port):
        raw = RawClient(port)
        for i in range(3):
            assert raw.request(i, "vget /unrealcv/version") == f"{i}:1.1.0".encode()
        raw.send_raw(pack(b"3:vget /unrealcv/version"))
        assert read_message(raw.sock) is None
        assert proc.wait(timeout=10) == 3
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)


def test_in_process_crash_stops_serving():
    with StandinServer(EngineConfig(**SMALL, faults=FaultConfig(crash_after=0))) as srv:
        raw = RawClient(srv.port)
        raw.send_raw(pack(b"0:vget /unrealcv/version"))
        assert read_message(raw.sock) is None
        time.sleep(0.3)
        assert srv.crashed


@pytest.mark.parametrize("kwargs,message", [(dict(black_frame=1.5), "black_frame is a probability"),
                                            (dict(crash_after=-1), "crash_after must be >= 0"),
                                            (dict(streaming_blur_frames=0), "streaming_blur_frames"),
                                            (dict(glitch_area=0.0), "glitch_area"),
                                            (dict(pose_offset=2.0), "pose_offset is a probability")])
def test_fault_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FaultConfig(**kwargs)
