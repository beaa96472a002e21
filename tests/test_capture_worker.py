"""The capture worker and engine client against stand-in subprocesses, with the real unrealcv client."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import tracemalloc

import cv2
import numpy as np
import pytest

from annotate.geometry import rotation_error
from annotate.readers import ReaderConfig, read_ue_csv, write_ue_csv
from annotate.ue import ue_to_pose
from capture.client import EngineClient, EngineConnectionLost, EngineReplyError, EngineUnavailable
from capture.config import CameraConfig, ClientConfig
from capture.records import CaptureJob
from capture.replay import ReplayConfig, ReplaySource, replay_job
from capture.worker import CaptureWorker, StandinEndpoint
from tests.capture_helpers import kill, partial_frames, small_config, walk, walk_job
from tests.standin_helpers import standin_process


def test_replayed_ue_csv_gives_frames_at_the_logged_poses(tmp_path):
    t, loc, rot = walk(40)
    rot[5, 1] = 270.0  # UE reports rotations normalised: 270 comes back as -90, the same pose
    log = tmp_path / "walk.csv"
    write_ue_csv(log, t, loc, rot)
    job = replay_job(ReplaySource(str(log), "room-1"), ReplayConfig())
    config = small_config(camera=CameraConfig(width=64, height=48, depth=True, object_mask=True))
    worker = CaptureWorker(StandinEndpoint("room-1"), config, str(tmp_path / "staging"))
    try:
        attempt = worker.capture(job, "fp")
    finally:
        worker.close()
    assert attempt.ok, attempt.reason
    folder = tmp_path / "staging" / "room_0001" / "walk"
    assert attempt.path == str(folder)
    staged = read_ue_csv(folder / "poses.csv", ReaderConfig())
    logged = read_ue_csv(log, ReaderConfig())
    assert len(staged.poses) == 40
    np.testing.assert_allclose(staged.timestamps, logged.timestamps, atol=1e-6)
    np.testing.assert_allclose(staged.poses[:, :3, 3], logged.poses[:, :3, 3], atol=1e-4)  # 0.01 cm
    assert rotation_error(staged.poses[:, :3, :3].transpose(0, 2, 1) @ logged.poses[:, :3, :3]).max() < np.radians(2e-3)
    frames = sorted((folder / "frames").glob("*.png"))
    assert [p.name for p in frames[:2]] == ["000000.png", "000001.png"] and len(frames) == 40
    image = cv2.imread(str(frames[7]))
    assert image.shape == (48, 64, 3) and image.std() > 5
    depth = np.load(folder / "depth" / "000007.npy")
    assert depth.shape == (48, 64) and depth.dtype == np.float32 and 0.05 < np.median(depth) < 30  # metres
    assert len(list((folder / "mask").glob("*.png"))) == 40
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["fov"] == 90.0 and meta["fps"] == pytest.approx(30.0) and meta["frames"] == 40
    assert meta["intrinsics"] == pytest.approx({"fx": 32.0, "fy": 32.0, "cx": 32.0, "cy": 24.0})
    assert meta["readback_max_error"]["cm"] < 0.01 and meta["modalities"] == ["lit", "depth", "object_mask"]
    assert not any((tmp_path / "staging" / ".partial").iterdir())


def test_the_same_pose_renders_the_same_frame_whatever_came_before(tmp_path):
    config = small_config()
    worker = CaptureWorker(StandinEndpoint("room-1"), config, str(tmp_path))
    try:
        a = worker.capture(walk_job(12, "a"), "fp")
        job = walk_job(12, "a")
        b_job = CaptureJob(job.scene, "b", job.locations[::-1].copy(), job.rotations[::-1].copy(), job.times, "test")
        b = worker.capture(b_job, "fp")
    finally:
        worker.close()
    assert a.ok and b.ok
    first = cv2.imread(str(tmp_path / "room_0001" / "a" / "frames" / "000000.png"))
    last = cv2.imread(str(tmp_path / "room_0001" / "b" / "frames" / "000011.png"))
    np.testing.assert_array_equal(first, last)


def test_a_job_in_another_level_switches_the_engine_there(tmp_path):
    worker = CaptureWorker(StandinEndpoint("room-1"), small_config(), str(tmp_path))
    try:
        attempt = worker.capture(walk_job(6, "w", scene="street_0004"), "fp")
        assert attempt.ok, attempt.reason
        assert worker.level == "street_0004" and worker.client.level() == "street_0004"
    finally:
        worker.close()


def test_error_replies_raise_and_the_connection_stays_usable():
    with standin_process("--scene", "room-1", "--width", "32", "--height", "24") as (_, port):
        client = EngineClient("127.0.0.1", port, ClientConfig())
        client.connect()
        with pytest.raises(EngineReplyError, match="vget /camera/9/location.*Invalid sensor id"):
            client.request(["vget /camera/0/location", "vget /camera/9/location"])
        assert client.level() == "room_0001"
        client.close()


def test_a_timeout_closes_the_client_and_a_reconnect_is_in_step():
    with standin_process("--scene", "room-1", "--width", "32", "--height", "24",
                         "--set", "faults.slow_reply=1.0", "--set", "faults.slow_reply_seconds=0.6") as (_, port):
        client = EngineClient("127.0.0.1", port, ClientConfig(request_timeout_s=0.3, connect_timeout_s=20))
        client.connect()  # the capability probe waits out its slow reply (15 s limit)
        with pytest.raises(EngineConnectionLost, match="no reply"):
            client.request(["vget /unrealcv/echo first"])
        assert not client.connected
        client.settings = ClientConfig(request_timeout_s=5.0, connect_timeout_s=20)
        client.connect()
        assert client.request(["vget /unrealcv/echo second"]) == ["second"]  # not the late "first"
        client.close()


def test_unreachable_endpoint_is_a_quick_clear_error():
    with standin_process("--scene", "room-1") as (_, port):
        pass  # the port is free again once the stand-in is gone
    client = EngineClient("127.0.0.1", port, ClientConfig(connect_timeout_s=2.0))
    start = time.monotonic()
    with pytest.raises(EngineUnavailable, match=f"127.0.0.1:{port}"):
        client.connect()
    assert time.monotonic() - start < 3.0


def test_wrong_resolution_fails_the_attempt_naming_it(tmp_path):
    worker = CaptureWorker(StandinEndpoint("room-1", ("faults.ignore_size=true", "width=80", "height=60")),
                           small_config(), str(tmp_path))
    try:
        attempt = worker.capture(walk_job(5), "fp")
    finally:
        worker.close()
    assert not attempt.ok and not attempt.engine_lost
    assert "wrong resolution returned: 80x60, expected 64x48" in attempt.reason
    assert not (tmp_path / "room_0001").exists() and not any((tmp_path / ".partial").iterdir())


def test_engine_killed_mid_trajectory_leaves_nothing_and_the_retry_is_complete(tmp_path):
    worker = CaptureWorker(StandinEndpoint("room-1"), small_config(), str(tmp_path))
    job = walk_job(120)
    killed = []

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            game = worker.game.process if worker.game is not None else None
            if game is not None and partial_frames(tmp_path) >= 20:
                killed.append(game.pid)
                kill(game.pid)
            time.sleep(0.005)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        first = worker.capture(job, "fp")
        thread.join()
        assert killed and not first.ok and first.engine_lost, first
        assert not (tmp_path / "room_0001" / "walk").exists() and not any((tmp_path / ".partial").iterdir())
        second = worker.capture(job, "fp")  # the worker relaunches its stand-in
    finally:
        thread.join()
        worker.close()
    assert second.ok and second.frames == 120 and worker.restarts == 1
    assert len(list((tmp_path / "room_0001" / "walk" / "frames").glob("*.png"))) == 120
    assert len(read_ue_csv(tmp_path / "room_0001" / "walk" / "poses.csv").poses) == 120


def test_memory_stays_flat_over_a_long_trajectory(tmp_path):
    """Frames go to disk as they come: the peak of traced allocations during a 1,500-frame capture
    is no larger than during a 100-frame one (plus the job's own pose arrays)."""
    config = small_config(camera=CameraConfig(width=96, height=72))
    worker = CaptureWorker(StandinEndpoint("room-1"), config, str(tmp_path))
    try:
        worker.capture(walk_job(5, "warm"), "fp")
        peaks = {}
        for n in (100, 1500):
            job = walk_job(n, f"n{n}")
            tracemalloc.start()
            attempt = worker.capture(job, "fp")
            peaks[n] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert attempt.ok, attempt.reason
    finally:
        worker.close()
    frame_bytes = 96 * 72 * 3
    assert peaks[1500] < peaks[100] + 1500 * 8 * 8 + 20 * frame_bytes, peaks  # not 1500 frames' worth


def test_levels_load_asynchronously_and_one_that_never_loads_or_does_not_exist_is_named(tmp_path):
    """`vrun open` is answered before the map has loaded (stand-in `level_load_s`, as UE's map
    travel): the worker waits for `vget /level/name`. A level that never arrives, or that the
    engine refuses, fails that trajectory naming the level and the engine's log; the engine goes
    on serving the next one without a relaunch."""
    config = small_config(client=dataclasses.replace(small_config().client, level_load_timeout_s=2.0))
    worker = CaptureWorker(StandinEndpoint("room-1", ("level_load_s=0.5",)), config, str(tmp_path))
    try:
        street = worker.capture(walk_job(5, "s", scene="street_0004"), "fp")
        missing = worker.capture(walk_job(5, "m", scene="NoSuchMap"), "fp")
        back = worker.capture(walk_job(5, "r", scene="room_0001"), "fp")
    finally:
        worker.close()
    assert street.ok and back.ok, (street.reason, back.reason)
    assert not missing.ok and not missing.engine_lost
    assert "EngineLevelError" in missing.reason and "level 'NoSuchMap' cannot be opened" in missing.reason
    assert "engine log: " in missing.reason and ".engine_logs/worker.1.log" in missing.reason
    assert worker.restarts == 0
    slow = small_config(client=dataclasses.replace(small_config().client, level_load_timeout_s=0.5))
    worker = CaptureWorker(StandinEndpoint("room-1", ("level_load_s=30",)), slow, str(tmp_path))
    try:
        never = worker.capture(walk_job(5, "n", scene="street_0004"), "fp")
    finally:
        worker.close()
    assert not never.ok and "level 'street_0004' never loaded: the engine still reports 'room_0001'" in never.reason
