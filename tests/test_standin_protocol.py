"""UnrealCV wire-protocol conformance of the stand-in, and the real unrealcv client against it."""

from __future__ import annotations

import io
import socket
import struct
import time
import warnings

import cv2
import numpy as np
import pytest
import unrealcv

from capture.standin.engine import EngineConfig, FaultConfig
from capture.standin.protocol import MAGIC, pack, read_message
from capture.standin.render import Renderer
from capture.standin.scene import make_scene
from capture.standin.server import StandinServer
from tests.standin_helpers import RawClient, standin_process

SMALL = dict(width=96, height=54, shadow_resolution=128)


@pytest.fixture
def server():
    with StandinServer(EngineConfig(scene="room-2", **SMALL)) as srv:
        yield srv


def connect_real_client(port: int, reports_commands: bool = False) -> unrealcv.Client:
    client = unrealcv.Client(("127.0.0.1", port))
    with warnings.catch_warnings():
        if reports_commands:
            warnings.simplefilter("error")  # a capability warning would mean our command list is wrong
        else:
            warnings.filterwarnings("ignore", "The connected UnrealCV server is too old")
        assert client.connect()
    return client


def test_real_client_against_a_standin_process():
    with standin_process("--scene", "street-4", "--width", "128", "--height", "72",
                         "--set", "report_commands=true") as (_, port):
        client = connect_real_client(port, reports_commands=True)
        try:
            assert client.request("vget /unrealcv/status").startswith("Is Listening\nClient Connected\n")
            assert client.request("vget /scene/name") == "street_0004"
            cam = client.request("vset /cameras/spawn")
            assert client.request("vget /cameras").split() == ["PawnSensor", cam]
            replies = client.request([
                "vset /camera/1/size 96 54",
                "vset /camera/1/fov 75.000",
                "vset /camera/1/location 250.000 -120.500 165.000",
                "vset /camera/1/rotation -5.000 30.000 2.000",
                "vget /camera/1/location", "vget /camera/1/rotation", "vget /camera/1/fov",
                "vget /camera/1/lit png", "vget /camera/1/lit bmp", "vget /camera/1/depth npy",
                "vget /camera/1/object_mask png", "vget /camera/1/object_mask bmp",
            ])
            assert replies[:7] == ["ok", "ok", "ok", "ok", "250.000 -120.500 165.000", "-5.000 30.000 2.000", "75.000000"]
            png, bmp, npy, mask_png, mask_bmp = replies[7:]
            assert all(isinstance(r, bytes) for r in (png, bmp, npy, mask_png, mask_bmp))
            lit_png = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
            lit_bmp = cv2.imdecode(np.frombuffer(bmp, np.uint8), cv2.IMREAD_UNCHANGED)
            assert lit_png.shape == (54, 96, 4) and lit_bmp.shape[:2] == (54, 96)
            np.testing.assert_array_equal(lit_png[..., :3], lit_bmp[..., :3])
            depth = np.load(io.BytesIO(npy))
            assert depth.shape == (54, 96) and depth.dtype == np.float32 and (depth > 0).all()
            mask = cv2.imdecode(np.frombuffer(mask_png, np.uint8), cv2.IMREAD_COLOR)
            np.testing.assert_array_equal(mask, cv2.imdecode(np.frombuffer(mask_bmp, np.uint8), cv2.IMREAD_COLOR))
            # The frame is exactly what the renderer makes for the pose that was set.
            want = Renderer(make_scene("street-4")).render_ue([250.0, -120.5, 165.0], [-5.0, 30.0, 2.0], 96, 54, 75.0)
            np.testing.assert_array_equal(cv2.cvtColor(lit_png, cv2.COLOR_BGRA2RGB), want.lit)
            np.testing.assert_array_equal(depth, want.depth)
            colors = {client.request(f"vget /object/{name}/color") for name in client.request("vget /objects").split()[:5]}
            assert all(c.startswith("(R=") and c.endswith(",A=255)") for c in colors)
        finally:
            client.disconnect()


def test_greeting_and_in_order_replies(server):
    raw = RawClient(server.port)
    assert raw.greeting.startswith(b"connected to RelicStandin room_0002")
    raw.send_raw(b"".join(pack(f"{i}:vget /unrealcv/echo msg{i}".encode()) for i in range(7, 12)))
    assert [read_message(raw.sock) for _ in range(5)] == [f"{i}:msg{i}".encode() for i in range(7, 12)]
    assert raw.request(12, "vbatch 2") == b"12:ok"
    raw.close()


def test_a_frame_split_into_single_bytes_is_read(server):
    raw = RawClient(server.port)
    for byte in pack(b"3:vget /unrealcv/version"):
        raw.send_raw(bytes([byte]))
    assert read_message(raw.sock) == b"3:1.1.0"
    raw.close()


@pytest.mark.parametrize("frame", [struct.pack("<II", 0xDEADBEEF, 4) + b"0:hi", struct.pack("<II", MAGIC, 0)],
                         ids=["bad magic", "empty payload"])
def test_broken_framing_closes_the_connection_and_the_server_goes_on(server, frame):
    raw = RawClient(server.port)
    raw.send_raw(frame)
    assert read_message(raw.sock) is None  # closed by the server
    raw.close()
    again = RawClient(server.port)
    assert again.request(0, "vget /unrealcv/version") == b"0:1.1.0"
    again.close()


def test_payload_without_id_gets_no_reply(server):
    raw = RawClient(server.port, timeout=0.5)
    raw.send_raw(pack(b"vget /unrealcv/version"))
    with pytest.raises(socket.timeout):
        read_message(raw.sock)
    assert raw.request(1, "vget /unrealcv/version") == b"1:1.1.0"
    raw.close()


@pytest.mark.parametrize(
    "command,reply",
    [
        ("vset /camera/0/location 1e-05 0 0", "error Can not find a handler for URI 'vset /camera/0/location 1e-05 0 0'"),
        ("vset /camera/0/location nan 0 0", "error Can not find a handler for URI 'vset /camera/0/location nan 0 0'"),
        ("vset /camera/0/rotation 5. 0 0", "error Can not find a handler for URI 'vset /camera/0/rotation 5. 0 0'"),
        ("vset /camera/0/location -.5 +2 3.25", "ok"),
        ("vget /camera/0/teleport", "error Can not find a handler for URI 'vget /camera/0/teleport'"),
        ("vget /camera/3/location", "error Invalid sensor id"),
        ("vget /camera/3/fov", "error Argument Invalid"),
        ("vget /camera/0/lit", "error Can not find a handler for URI 'vget /camera/0/lit'"),
        ("vget /camera/0/lit jpg", "error Invalid filename type, filename jpg"),
        ("vget /camera/0/depth png", "error Invalid filename type, filename png"),
        ("vget /object/nothing/color", "error Can not find object"),
        ("vset /camera/0/size 0 10", "error Argument Invalid"),
    ],
)
def test_command_errors_match_ue(server, command, reply):
    raw = RawClient(server.port)
    assert raw.request(4, command) == b"4:" + reply.encode()
    raw.close()


def test_commands_list_is_what_the_client_checks_against():
    server = StandinServer(EngineConfig(scene="room-2", report_commands=True, **SMALL)).start()
    raw = RawClient(server.port)
    templates = raw.request(0, "vget /unrealcv/commands").decode().split("\n", 1)[1].splitlines()
    assert "vget /unrealcv/commands" in raw.request(1, "vget /unrealcv/commands").decode().splitlines()
    assert "vset /camera/[uint]/location [float] [float] [float]" in templates
    raw.close()
    server.close()


def test_files_are_saved_server_side(tmp_path):
    with StandinServer(EngineConfig(scene="room-2", output_dir=tmp_path, **SMALL)) as srv:
        raw = RawClient(srv.port)
        assert raw.request(0, "vget /camera/0/lit shots/a.png") == b"0:shots/a.png"
        assert raw.request(1, "vget /camera/0/depth d.npy") == b"1:d.npy"
        raw.close()
    assert cv2.imread(str(tmp_path / "shots" / "a.png")).shape == (54, 96, 3)
    assert np.load(tmp_path / "d.npy").shape == (54, 96)


def test_ue_bmp_count_quirk():
    with StandinServer(EngineConfig(scene="room-2", ue_bmp_quirk=True, **SMALL)) as srv:
        raw = RawClient(srv.port)
        bmp = raw.request(0, "vget /camera/0/lit bmp")[2:]
        png = raw.request(1, "vget /camera/0/lit png")[2:]
        raw.close()
    assert len(bmp) == 58 + 4 * 96 * 54
    fixed = cv2.imdecode(np.frombuffer(bmp[:54] + bmp[58:], np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(fixed, cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR))


def test_second_client_waits_for_the_first(server):
    first = RawClient(server.port)
    second = RawClient(server.port, timeout=0.5, greet=False)  # TCP connect succeeds (backlog)
    with pytest.raises(socket.timeout):
        read_message(second.sock)
    assert first.request(0, "vget /unrealcv/status").split(b"\n")[1] == b"Client Connected"
    first.close()
    second.sock.settimeout(5)
    assert read_message(second.sock).startswith(b"connected to")
    assert second.request(0, "vget /unrealcv/version") == b"0:1.1.0"
    second.close()


def test_real_client_times_out_then_reconnects_cleanly():
    faults = FaultConfig(slow_reply=1.0, slow_reply_seconds=0.6)
    with StandinServer(EngineConfig(scene="room-2", faults=faults, **SMALL)) as srv:
        client = connect_real_client(srv.port)
        with pytest.raises(TimeoutError):
            client.request("vget /camera/0/location", timeout=0.2)
        # the late reply still arrives: the stream is out of step after a timeout, so never reuse it.
        # Waiting for it also lets the client's receive thread go idle before the disconnect; cut off
        # mid-read, it would retry for ~55 s and then raise in its thread (a warning in a later test)
        late = client.recv_data_q.get(timeout=5)
        assert isinstance(late, str) and len(late.split()) == 3
        client.disconnect()
        client = connect_real_client(srv.port)
        assert client.request("vset /camera/0/location 1.000 2.000 3.000", timeout=5) == "ok"
        assert client.request("vget /camera/0/location", timeout=5) == "1.000 2.000 3.000"
        client.disconnect()


def test_commands_error_mode_like_ue_4_27_is_the_default():
    assert EngineConfig().report_commands is False
    with StandinServer(EngineConfig(scene="room-2", **SMALL)) as srv:
        client = unrealcv.Client(("127.0.0.1", srv.port))
        with pytest.warns(UserWarning, match="too old to report its supported commands"):
            assert client.connect()
        version = client.request("vget /unrealcv/version")
        assert version == "1.1.0" and tuple(int(part) for part in version.split(".")) == (1, 1, 0)
        client.disconnect()
