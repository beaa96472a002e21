"""UnrealCV wire protocol pieces: framing, UE-style command templates, image payload encoders.

Framing: every message is `<uint32 magic 0x9E2B83C1><uint32 size><payload>`, little-endian.
Requests are `"{id}:{command}"`; replies `"{id}:" + result`. Command templates use UE's argument
patterns: `[uint]` = `(\\d*)`, `[float]` = `([-+]?\\d*[.]?\\d+)` (so `1e-05` or `nan` match nothing,
as in UE), `[str]` = `([^ ]*)`; unmatched commands get UE's "Can not find a handler" error.
"""

from __future__ import annotations

import io
import re
import select
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

MAGIC = 0x9E2B83C1
HEADER = struct.Struct("<II")
MAX_PAYLOAD = 256 * 1024 * 1024
REQUEST = re.compile(rb"^(\d+):(.*)$", re.DOTALL)
_ARGUMENT = {"[uint]": r"(\d*)", "[float]": r"([-+]?\d*[.]?\d+)", "[str]": r"([^ ]*)"}


class ProtocolError(ConnectionError):
    """The peer broke the framing (bad magic, empty or oversized payload); the connection must close."""


def pack(payload: bytes) -> bytes:
    """One framed message (header and payload together, for a single sendall)."""
    return HEADER.pack(MAGIC, len(payload)) + payload


def recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Exactly `size` bytes, or None if the peer closed first."""
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(sock: socket.socket) -> bytes | None:
    """The next framed payload; None on a clean close. Raises ProtocolError on broken framing."""
    header = recv_exact(sock, HEADER.size)
    if header is None:
        return None
    size = _check_header(header)
    payload = recv_exact(sock, size)
    if payload is None:
        raise ProtocolError(f"connection closed inside a {size}-byte payload")
    return payload


def _check_header(data: bytes | bytearray) -> int:
    """The payload size of a frame header (the first 8 bytes of `data`); ProtocolError if invalid."""
    magic, size = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic 0x{magic:08X}")
    if size == 0:
        raise ProtocolError("empty payload")
    if size > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {size} bytes is over the {MAX_PAYLOAD} limit")
    return size


class IdleTimeout(ConnectionError):
    """The peer sent nothing for too long (or stopped inside a message); the connection must close."""


class MessageReader:
    """Buffered framed-message reader: one recv can bring several requests (a client's batch).

    `idle_timeout`: the longest wait for the next message; `message_timeout`: for the rest of a
    message once its first bytes arrived. Past either, `next` raises IdleTimeout. None: no limit."""

    def __init__(self, sock: socket.socket, idle_timeout: float | None = None, message_timeout: float | None = None):
        self.sock = sock
        self.buffer = bytearray()
        self.idle_timeout, self.message_timeout = idle_timeout, message_timeout

    def next(self, block: bool = True) -> bytes | None:
        """The next complete payload. Without `block`, None when none is complete yet; with it,
        None only on a clean close. Raises ProtocolError on broken framing, IdleTimeout when the
        peer is silent too long."""
        while True:
            message = self._parse()
            if message is not None:
                return message
            if block:
                self._wait()
            try:
                chunk = self.sock.recv(1 << 20, 0 if block else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
            if not chunk:
                if self.buffer:
                    raise ProtocolError(f"connection closed inside a message ({len(self.buffer)} bytes pending)")
                return None
            self.buffer += chunk

    def _wait(self) -> None:
        limit = self.message_timeout if self.buffer else self.idle_timeout
        if limit is not None and not select.select([self.sock], [], [], limit)[0]:
            where = f"inside a message ({len(self.buffer)} bytes pending)" if self.buffer else "between messages"
            raise IdleTimeout(f"nothing received for {limit:g} s {where}")

    def _parse(self) -> bytes | None:
        if len(self.buffer) < HEADER.size:
            return None
        size = _check_header(self.buffer)
        if len(self.buffer) < HEADER.size + size:
            return None
        payload = bytes(self.buffer[HEADER.size : HEADER.size + size])
        del self.buffer[: HEADER.size + size]
        return payload


Handler = Callable[..., "bytes | str"]


@dataclass(frozen=True)
class Command:
    template: str  # e.g. "vset /camera/[uint]/location [float] [float] [float]"
    handler: Handler
    pattern: re.Pattern[str]


def command(template: str, handler: Handler) -> Command:
    parts = re.split(r"(\[uint\]|\[float\]|\[str\])", template)
    regex = "".join(_ARGUMENT.get(p, re.escape(p)) for p in parts)
    return Command(template, handler, re.compile(f"^{regex}[ ]*$"))


def dispatch(commands: list[Command], text: str) -> bytes | str:
    """Run the first command whose template matches `text`; UE's error when none does."""
    for cmd in commands:
        match = cmd.pattern.match(text)
        if match:
            return cmd.handler(*match.groups())
    return f"error Can not find a handler for URI '{text}'"


def encode_png(rgb: np.ndarray) -> bytes:
    """8-bit RGBA PNG, as UE encodes its BGRA8 captures."""
    bgra = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    ok, data = cv2.imencode(".png", bgra)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()


def encode_bmp(rgb: np.ndarray, ue_count_quirk: bool = False) -> bytes:
    """32-bit BI_RGB, top-down (negative height) BMP, as UnrealCV writes it.

    `ue_count_quirk` inserts the 4-byte element count UE's TArray serializer writes before the
    pixels (unrealcv.md 2.4), which shifts naive decoders by one pixel.
    """
    h, w = rgb.shape[:2]
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA).tobytes()
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, w, -h, 1, 32, 0, len(pixels), 2835, 2835, 0, 0)
    count = struct.pack("<i", len(pixels)) if ue_count_quirk else b""
    return header + info + count + pixels


def encode_npy(array: np.ndarray) -> bytes:
    """NPY bytes, little-endian float32, C order."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype="<f4"))
    return buffer.getvalue()
