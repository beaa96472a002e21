"""The stand-in's TCP server: UnrealCV framing, one client at a time, in-order replies, faults.

Like UE's listener it serves a single connection; a second client's TCP connect succeeds (backlog)
but gets its greeting only when the first disconnects. Unlike UE, a client silent for
`idle_timeout_s`, or stalled inside a message for `message_timeout_s`, is disconnected, so a dead
or careless one cannot hold the only slot forever. Malformed request payloads (no `id:`) are
logged and get no reply, as in UnrealCV 1.x; bad magic or an empty payload closes the connection.
"""

from __future__ import annotations

import logging
import os
import pathlib
import socket
import threading
import time

from capture.standin.engine import PROJECT, Engine, EngineConfig, EngineCrash
from capture.standin.protocol import REQUEST, IdleTimeout, MessageReader, ProtocolError, pack

log = logging.getLogger(__name__)


class StandinServer:
    """Serve an Engine on host:port (port 0 picks a free one; see `.port`)."""

    def __init__(self, config: EngineConfig, host: str = "127.0.0.1", port: int = 0,
                 fault_log: pathlib.Path | None = None, exit_on_crash: bool = False):
        self.engine = Engine(config, fault_log)
        self.exit_on_crash = exit_on_crash
        self.listener = socket.create_server((host, port), backlog=1)
        self.listener.settimeout(0.1)
        self.host, self.port = self.listener.getsockname()[:2]
        self.engine.port = self.port
        self._stop = threading.Event()
        self._conn: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.crashed = False

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> StandinServer:
        """Serve in a daemon thread (in-process use)."""
        self._thread = threading.Thread(target=self.serve_forever, name=f"standin-{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_until_interrupted(self) -> int:
        """Serve in this thread until Ctrl-C (or an injected crash's exit); closes the server. 0."""
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.close()
        return 0

    def close(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            _close(conn)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.listener.close()

    def serve_forever(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break  # listener closed
            conn.setblocking(True)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conn = conn
            try:
                self._serve(conn, peer)
            except EngineCrash:
                self._crash()
                return
            finally:
                self._conn = None
                self.engine.client_connected = False
                _close(conn)

    def _serve(self, conn: socket.socket, peer) -> None:
        """Answer requests in order. Requests that have already arrived together (a client's
        batch) are answered with one sendall; replies pending before a fault are sent first."""
        log.info("client %s connected", peer)
        self.engine.client_connected = True
        conn.sendall(pack(f"connected to {PROJECT} {self.engine.scene.name}".encode()))
        reader = MessageReader(conn, self.engine.config.idle_timeout_s, self.engine.config.message_timeout_s)
        pending: list[bytes] = []
        while not self._stop.is_set():
            try:
                block = not pending
                payload = reader.next(block=block)
                if payload is None and pending:
                    if not _send(conn, pending):
                        return
                    continue
            except (ProtocolError, IdleTimeout) as exc:
                log.warning("client %s: %s; closing the connection", peer, exc)
                return
            except OSError:
                return
            if payload is None:
                log.info("client %s disconnected", peer)
                return
            match = REQUEST.match(payload)
            if not match:
                log.warning("client %s: malformed request %r ignored (no 'id:' prefix)", peer, payload[:80])
                continue
            request_id, body = match.group(1), match.group(2)
            if block:  # it arrived with every reply sent: the client waited, this runs in a new game tick
                self.engine.game_tick()
            fault = self.engine.before_request()
            if fault is not None and pending and not _send(conn, pending):
                return
            if fault == "crash":
                raise EngineCrash()
            if fault == "drop":
                return
            if fault == "slow":
                time.sleep(self.engine.faults.slow_reply_seconds)
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = body.decode("latin-1")
            try:
                result = self.engine.handle(text.strip("\r\n"))
            except EngineCrash:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad request must not take the engine down
                log.exception("client %s: %r failed", peer, text[:200])
                result = f"error Internal error: {type(exc).__name__}: {exc}"
            pending.append(pack(request_id + b":" + (result if isinstance(result, bytes) else result.encode("utf-8"))))

    def _crash(self) -> None:
        log.error("injected crash after %d requests", self.engine.requests - 1)
        self.crashed = True
        if self.exit_on_crash:
            os._exit(3)
        self._stop.set()
        self.listener.close()


def _send(conn: socket.socket, pending: list[bytes]) -> bool:
    """Send and clear the pending replies; False if the client has gone."""
    try:
        conn.sendall(b"".join(pending))
    except OSError:
        return False
    pending.clear()
    return True


def _close(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    conn.close()
