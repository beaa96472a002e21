"""Engine client: the official `unrealcv.Client` (1.3.2) with bounded waits and error checks.

What it adds to the plain client (docs/unrealcv.md has the protocol facts it relies on):
- every wait is bounded: connect + greeting (`connect_timeout_s`) and each frame's batch
  (`request_timeout_s`; the client's own `request_batch` waits forever);
- a lost connection is noticed at once (the client's 55 s re-read loop is turned off) and any
  timeout or lost connection closes the client: its reply stream is out of step after one, so the
  caller must `connect()` again (a fresh `unrealcv.Client`);
- text replies starting with `error` raise `EngineReplyError` naming the command;
- a spawned camera (id >= 1) with size and FOV set and read back; per frame, one batch sets the
  pose, reads it back and fetches lit (+ depth, object mask), optionally inside `vbatch N`;
- floats in fixed notation (UE's float regex rejects `1e-05`), images checked for size.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import sys
import threading
import time
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
import unrealcv

from capture.config import CameraConfig, ClientConfig
from capture.levels import level_short_name  # noqa: F401  (re-exported: callers import it from here)
from capture.standin.protocol import pack

log = logging.getLogger(__name__)

# The unrealcv package's own chatter, silenced at its source and no wider:
# - its logger prints every greeting at INFO ("Got connection confirm"); warnings and errors still show;
logging.getLogger("unrealcv").setLevel(logging.WARNING)
# - the 4.27 and 5.x plugins cannot list their commands (docs/unrealcv.md), so the 1.3.2 client warns on
#   every connect that the server is "too old"; this client never relies on that list;
warnings.filterwarnings("ignore", message="The connected UnrealCV server is too old to report its supported commands",
                        category=UserWarning)
# - and `connect()` prints which socket type it uses (_QuietConnect drops that line, nothing else).
_SOCKET_NOTICES = frozenset({"=>Info: using ip-port socket", "=>Info: using uds socket"})


class _QuietConnect(io.TextIOBase):
    """Standard output during `unrealcv.Client.connect`: its socket-type notice is dropped, every
    other line passes through to the real stream."""

    def __init__(self, target):
        self.target = target
        self._dropped = False  # the last write was a dropped notice: its line end goes too

    def write(self, text: str) -> int:
        notice = text.strip() in _SOCKET_NOTICES
        if not notice and not (self._dropped and text == "\n"):
            self.target.write(text)
        self._dropped = notice
        return len(text)

    def flush(self) -> None:
        self.target.flush()


class EngineError(Exception):
    """A capture attempt failed because of the engine (not the trajectory)."""


class EngineUnavailable(EngineError):
    """Could not connect: refused, unreachable, or no greeting in time."""


class EngineConnectionLost(EngineError):
    """The engine stopped answering (timeout) or closed the connection mid-request."""


class EngineReplyError(EngineError):
    """The engine answered `error ...`."""


class EngineDataError(EngineError):
    """The engine answered, but with unusable data (wrong image size, undecodable image, bad pose)."""


class EngineLevelError(EngineError):
    """A level the engine cannot open, or that never finished loading."""


LEVEL_POLL_S = 0.1


class _Client(unrealcv.Client):
    """unrealcv.Client that reports a closed connection at once instead of re-reading for ~55 s,
    and passes a failure of its receive thread to the waiting caller."""

    RECONNECT_ATTEMPTS = 0

    def connect(self, timeout=1, start_receive_thread=True) -> bool:
        with contextlib.redirect_stdout(_QuietConnect(sys.stdout)):
            return super().connect(timeout, start_receive_thread)

    def receive_loop_queue(self) -> None:
        try:
            super().receive_loop_queue()
        except (ConnectionError, AssertionError, OSError, AttributeError) as exc:
            self.recv_data_q.put(ConnectionError(f"receive failed: {exc}"))

    def request_batch_timed(self, batch: list[str], timeout: float) -> list[str | bytes]:
        """Send the batch in one write, then wait for its replies in order until `timeout`."""
        if self.sock is None:
            raise ConnectionError("not connected")
        first = self.send_message_id
        payload = b"".join(pack(b"%d:%s" % (first + i, m.encode("ascii"))) for i, m in enumerate(batch))
        self.sock.sendall(payload)
        self.send_message_id += len(batch)
        self.recv_num_q.put(-len(batch))
        deadline = time.monotonic() + timeout
        replies: list[str | bytes] = []
        for message in batch:
            try:
                reply = self.recv_data_q.get(timeout=max(deadline - time.monotonic(), 1e-3))
            except queue.Empty:
                raise TimeoutError(f"no reply to {message!r} within {timeout:g} s") from None
            if isinstance(reply, Exception):
                raise reply
            if reply is None:
                raise ConnectionError("connection lost")
            replies.append(reply)
        return replies


def fixed(values) -> str:
    """Floats for a `vset` command, fixed notation: UE's [float] regex has no exponent."""
    return " ".join(f"{float(v):.4f}" for v in values)


@dataclass(frozen=True, eq=False)
class FrameCapture:
    lit: np.ndarray  # (H, W, 3) uint8 BGR
    depth: np.ndarray | None  # (H, W) float32 metres (planar)
    mask: np.ndarray | None  # (H, W, 3) uint8 BGR
    location: np.ndarray  # (3,) UE cm, as read back
    rotation: np.ndarray  # (3,) UE pitch yaw roll, as read back


class EngineClient:
    """One connection to one engine, with one spawned camera."""

    def __init__(self, host: str, port: int, settings: ClientConfig):
        self.host, self.port, self.settings = host, port, settings
        self._client: _Client | None = None
        self.camera_id: int | None = None
        self.camera: CameraConfig | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        return self._client is not None

    def connect(self) -> None:
        """Connect once (bounded by connect_timeout_s); raises EngineUnavailable."""
        self.close()
        client = _Client((self.host, self.port))
        outcome: dict[str, bool] = {}
        thread = threading.Thread(target=lambda: outcome.setdefault("ok", client.connect()),
                                  name=f"connect-{self.endpoint}", daemon=True)
        thread.start()
        thread.join(self.settings.connect_timeout_s)
        if thread.is_alive():
            client.disconnect()
            raise EngineUnavailable(f"{self.endpoint}: no greeting within {self.settings.connect_timeout_s:g} s "
                                    "(engine busy with another client, or hung)")
        if not outcome.get("ok"):
            client.disconnect()
            raise EngineUnavailable(f"{self.endpoint}: connection refused or closed before the greeting")
        self._client = client
        self.camera_id = None

    def close(self) -> None:
        client, self._client = self._client, None
        self.camera_id = None
        if client is not None:
            client.disconnect()

    def request(self, commands: list[str]) -> list[str | bytes]:
        """Send `commands` as one batch; error replies raise EngineReplyError. Any timeout or lost
        connection closes this client and raises EngineConnectionLost."""
        if self._client is None:
            raise EngineConnectionLost(f"{self.endpoint}: not connected")
        try:
            replies = self._client.request_batch_timed(commands, self.settings.request_timeout_s)
        except (TimeoutError, ConnectionError, OSError) as exc:
            self.close()
            raise EngineConnectionLost(f"{self.endpoint}: {exc}") from exc
        for command, reply in zip(commands, replies):
            if isinstance(reply, str) and reply.lstrip().lower().startswith("error"):
                raise EngineReplyError(f"{self.endpoint}: {command!r} -> {reply.strip()!r}")
        return replies

    def text(self, command: str) -> str:
        reply = self.request([command])[0]
        if not isinstance(reply, str):
            raise EngineDataError(f"{self.endpoint}: {command!r} returned {len(reply)} bytes, expected text")
        return reply

    # -- level and camera ------------------------------------------------------------------------
    def level(self) -> str:
        return self.text("vget /level/name").strip()

    def open_level(self, name: str) -> None:
        """`vrun open <level>`, then wait until `vget /level/name` reports it (map travel is
        asynchronous in UE) for at most `level_load_timeout_s`; EngineLevelError naming the level
        if the engine refuses it or never gets there. Spawned cameras are gone afterwards."""
        try:
            self.text(f"vrun open {name}")
        except EngineReplyError as exc:
            raise EngineLevelError(f"{self.endpoint}: level {name!r} cannot be opened: {exc}") from exc
        self.camera_id = None
        want, timeout = level_short_name(name), self.settings.level_load_timeout_s
        deadline = time.monotonic() + timeout
        while (now := self.level()) != want:
            if time.monotonic() >= deadline:
                raise EngineLevelError(f"{self.endpoint}: level {name!r} never loaded: the engine still reports "
                                       f"{now!r} {timeout:g} s after `vrun open` (is the map in the packaged build?)")
            time.sleep(LEVEL_POLL_S)

    def setup_camera(self, camera: CameraConfig) -> int:
        """Spawn a camera, find its id in `vget /cameras`, set size and FOV, read the FOV back."""
        name = self.text("vset /cameras/spawn").strip()
        names = self.text("vget /cameras").split()
        if name not in names:
            raise EngineDataError(f"{self.endpoint}: spawned camera {name!r} is not in `vget /cameras` ({names})")
        cid = names.index(name)
        if cid == 0:
            raise EngineDataError(f"{self.endpoint}: spawned camera {name!r} got id 0, the pawn camera's")
        self.request([f"vset /camera/{cid}/size {camera.width} {camera.height}", f"vset /camera/{cid}/fov {fixed([camera.fov])}"])
        fov = float(self.text(f"vget /camera/{cid}/fov"))
        if abs(fov - camera.fov) > 1e-3:
            raise EngineDataError(f"{self.endpoint}: camera {cid} FOV reads back {fov}, set {camera.fov}")
        self.camera_id, self.camera = cid, camera
        return cid

    # -- frames ----------------------------------------------------------------------------------
    def capture(self, location: np.ndarray, rotation: np.ndarray) -> FrameCapture:
        """Set the camera pose and capture, in one batch; check what came back."""
        if self.camera_id is None or self.camera is None:
            raise EngineConnectionLost(f"{self.endpoint}: no camera set up")
        cid, cam, fmt = self.camera_id, self.camera, self.settings.image_format
        commands = [
            f"vset /camera/{cid}/location {fixed(location)}",
            f"vset /camera/{cid}/rotation {fixed(rotation)}",
            f"vget /camera/{cid}/location",
            f"vget /camera/{cid}/rotation",
            f"vget /camera/{cid}/lit {fmt}",
        ]
        if cam.depth:
            commands.append(f"vget /camera/{cid}/depth npy")
        if cam.object_mask:
            commands.append(f"vget /camera/{cid}/object_mask {fmt}")
        if self.settings.use_vbatch:
            commands.insert(0, f"vbatch {len(commands)}")
        replies = self.request(commands)[1 if self.settings.use_vbatch else 0:]
        where = f"{self.endpoint} camera {cid}"
        loc, rot = parse_floats(replies[2], 3, where), parse_floats(replies[3], 3, where)
        lit = decode_image(replies[4], cam.width, cam.height, f"{where} lit")
        rest = replies[5:]
        depth = decode_depth(rest.pop(0), cam.width, cam.height, f"{where} depth") if cam.depth else None
        mask = decode_image(rest.pop(0), cam.width, cam.height, f"{where} object_mask") if cam.object_mask else None
        return FrameCapture(lit, depth, mask, loc, rot)


def parse_floats(reply: str | bytes, n: int, where: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in (reply if isinstance(reply, str) else reply.decode()).split()])
    except (ValueError, UnicodeDecodeError):
        values = np.empty(0)
    if values.shape != (n,) or not np.isfinite(values).all():
        raise EngineDataError(f"{where}: expected {n} numbers, got {str(reply)[:60]!r}")
    return values


def _as_bytes(reply: str | bytes) -> bytes:
    # A tiny binary that happens to be valid UTF-8 arrives as str (unrealcv.md 1.3).
    return reply.encode("utf-8") if isinstance(reply, str) else reply


def decode_image(reply: str | bytes, width: int, height: int, where: str) -> np.ndarray:
    """PNG/BMP bytes -> (H, W, 3) uint8 BGR; UE's BMP with the extra 4-byte count is handled."""
    data = _as_bytes(reply)
    if data[:2] == b"BM" and len(data) == 58 + 4 * width * height:
        data = data[:54] + data[58:]  # UE writes TArray's element count before the pixels
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] < 3:
        raise EngineDataError(f"{where}: undecodable image ({len(data)} bytes, starts {data[:8]!r})")
    if image.shape[:2] != (height, width):
        raise EngineDataError(f"{where}: wrong resolution returned: {image.shape[1]}x{image.shape[0]}, "
                              f"expected {width}x{height}")
    return np.ascontiguousarray(image[:, :, :3])


def decode_depth(reply: str | bytes, width: int, height: int, where: str) -> np.ndarray:
    """NPY bytes (UE depth, cm) -> (H, W) float32 metres."""
    try:
        depth = np.load(io.BytesIO(_as_bytes(reply)), allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise EngineDataError(f"{where}: undecodable depth: {exc}") from exc
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.shape != (height, width):
        raise EngineDataError(f"{where}: wrong resolution returned: depth {depth.shape}, expected ({height}, {width})")
    return (depth.astype(np.float32) / 100.0).astype(np.float32)
