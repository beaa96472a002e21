"""The stand-in under hostile or careless clients: poses outside the scene render the background
instead of killing the engine, a failing request is answered with an error and the engine goes on,
files are saved inside its output folder only, and a silent or stalled client loses the only slot
after a timeout instead of holding it forever."""

from __future__ import annotations

import time

import numpy as np
import pytest

from capture.standin.engine import Engine, EngineConfig
from capture.standin.protocol import HEADER, MAGIC
from capture.standin.render import FAR_DEPTH_CM, Renderer
from capture.standin.scene import make_scene
from capture.standin.server import StandinServer
from tests.standin_helpers import RawClient

SMALL = {"width": 32, "height": 24}


@pytest.mark.parametrize("scene", ["room-1", "street-4"])
@pytest.mark.parametrize("location", [(1e7, 0.0, 170.0), (1e308, -1e308, 0.0), (0.0, 0.0, -1e9)])
def test_a_camera_that_sees_nothing_renders_the_background(scene, location):
    renderer = Renderer(make_scene(scene))
    frame = renderer.render_ue(np.array(location), np.array([10.0, 30.0, 0.0]), 32, 24, 90.0)
    assert frame.lit.shape == (24, 32, 3) and (frame.object_index == -1).all()
    assert (frame.depth == FAR_DEPTH_CM).all() and (frame.mask == 0).all()


def test_far_poses_over_the_protocol_keep_the_engine_serving():
    with StandinServer(EngineConfig(scene="courtyard-3", **SMALL)) as server:
        client = RawClient(server.port)
        huge = f"{1e308:.4f}"
        assert client.request(0, f"vset /camera/0/location {huge} -{huge} 170.0000") == b"0:ok"
        assert client.request(1, "vget /camera/0/lit png").startswith(b"1:\x89PNG")
        assert client.request(2, "vget /camera/0/depth npy").startswith(b"2:\x93NUMPY")
        assert client.request(3, "vget /unrealcv/status").startswith(b"3:Is Listening")
        client.close()


def test_a_failing_request_is_answered_and_the_engine_goes_on(monkeypatch):
    with StandinServer(EngineConfig(scene="room-1", **SMALL)) as server:
        original = server.engine.handle

        def handle(text):
            if text == "vget /camera/0/lit png":
                raise IndexError("index 0 is out of bounds")
            return original(text)

        monkeypatch.setattr(server.engine, "handle", handle)
        client = RawClient(server.port)
        assert client.request(0, "vget /camera/0/lit png") == b"0:error Internal error: IndexError: index 0 is out of bounds"
        assert client.request(1, "vget /unrealcv/version") == b"1:1.1.0"
        client.close()


def test_files_are_saved_inside_the_output_folder_only(tmp_path):
    out = tmp_path / "engine_out"
    out.mkdir()
    (out / "escape").symlink_to(tmp_path)
    engine = Engine(EngineConfig(scene="room-1", output_dir=out, **SMALL))
    assert engine.handle("vget /camera/0/lit shots/a.png") == "shots/a.png"
    assert (out / "shots" / "a.png").read_bytes().startswith(b"\x89PNG")
    for name in ("/proc/x.png", "../x.png", "shots/../../x.png", "escape/x.png", str(tmp_path / "abs.png")):
        reply = engine.handle(f"vget /camera/0/lit {name}")
        assert reply == f"error Invalid filename {name}: files are saved inside the engine's output folder only", name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine_out"]


@pytest.mark.parametrize("stall", ["idle", "half message"])
def test_a_silent_or_stalled_client_loses_the_slot(stall):
    config = EngineConfig(scene="room-1", idle_timeout_s=1.0, message_timeout_s=0.5, **SMALL)
    with StandinServer(config) as server:
        first = RawClient(server.port)
        if stall == "half message":
            first.send_raw(HEADER.pack(MAGIC, 40) + b"0:vget /unr")
        started = time.monotonic()
        second = RawClient(server.port, timeout=10.0)  # its greeting comes once the first is dropped
        waited = time.monotonic() - started
        assert second.greeting.startswith(b"connected to")
        assert (0.4 if stall == "half message" else 0.9) < waited < 5.0
        assert second.request(0, "vget /unrealcv/version") == b"0:1.1.0"
        second.close()
        first.close()


def test_timeouts_are_validated():
    with pytest.raises(ValueError, match="idle_timeout_s must be > 0"):
        EngineConfig(idle_timeout_s=0)
    assert EngineConfig(idle_timeout_s=None).idle_timeout_s is None
