"""Helpers for stand-in tests: launch the server as a subprocess, raw protocol sockets."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator

from capture.standin.launch import StandinProcess
from capture.standin.protocol import pack, read_message


@contextlib.contextmanager
def standin_process(*args: str) -> Iterator[tuple[subprocess.Popen, int]]:
    """`python -m capture.standin --port 0 ...` as a subprocess; yields (process, port)."""
    with StandinProcess(args, startup_timeout=60) as standin:
        yield standin.proc, standin.port


class RawClient:
    """A bare protocol client for conformance tests (no threads, explicit timeouts)."""

    def __init__(self, port: int, timeout: float = 5.0, greet: bool = True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.greeting = read_message(self.sock) if greet else None

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, request_id: int, text: str) -> bytes:
        self.sock.sendall(pack(f"{request_id}:{text}".encode()))
        reply = read_message(self.sock)
        assert reply is not None, "connection closed"
        return reply

    def close(self) -> None:
        self.sock.close()
