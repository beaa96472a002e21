"""Launch and supervise one Unreal Engine game instance with the UnrealCV plugin (a packaged Linux
build, its `.sh`, or the stand-in laid out as one: capture/standin/packaged.py).

Each instance gets a free port on its command line (`-UnrealCVPort 9001`: a space, never `=`,
which UE4's parser reads as 0), the image size and FOV the same way, `-RenderOffScreen`,
`-graphicsadapter=N` for the GPU it was given, `-unattended -nosound`, then the user's arguments;
the binary's shared `unrealcv.ini` is never touched (instances would race on it). Its stdout and
stderr go to its own log file. Ready means the UnrealCV greeting and a `vget /unrealcv/status`
that reports the port asked for, before the startup deadline; no fixed sleeps. An instance that
exits, never listens, or listens elsewhere fails with a `GameLaunchError` naming the instance, the
exit code and its log. The instance runs in a process group of its own, and `stop()` ends the
whole group (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

from capture.standin.protocol import ProtocolError, pack, read_message

POLL_S = 0.2


@dataclass(frozen=True)
class GameConfig:
    binary: str  # a packaged Linux build: <Project>.sh or <Project>/Binaries/Linux/<Project>
    map: str | None = None  # the level to open (`/Game/Maps/X` or `X`); None: the game's default
    args: tuple[str, ...] = ()  # more command-line arguments, after the ones the pipeline sets
    width: int = 640
    height: int = 480
    fov: float = 90.0
    startup_deadline_s: float = 180.0
    log_dir: str | None = None  # default: <staging>/engine_logs
    offscreen: bool = True  # -RenderOffScreen

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1 or not 0 < self.fov < 180 or not self.startup_deadline_s > 0:
            raise ValueError(f"game {self.binary}: width/height >= 1, fov in (0, 180), startup_deadline_s > 0")

    def check_binary(self) -> None:
        path = pathlib.Path(self.binary)
        if not path.is_file():
            raise GameLaunchError(f"game binary {path} does not exist")
        if not os.access(path, os.X_OK):
            raise GameLaunchError(f"game binary {path} is not executable (chmod +x it)")


class GameLaunchError(RuntimeError):
    """An instance that did not come up; the message names it and its log."""


def free_port() -> int:
    """A port nothing listens on now (the OS's pick; the game binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command_line(config: GameConfig, port: int, gpu: int | None) -> list[str]:
    words = [config.binary]
    if config.map:
        words.append(config.map)
    words += ["-UnrealCVPort", str(port), "-UnrealCVWidth", str(config.width), "-UnrealCVHeight", str(config.height),
              "-UnrealCVFOV", f"{config.fov:.4f}"]
    if config.offscreen:
        words.append("-RenderOffScreen")
    if gpu is not None:
        words.append(f"-graphicsadapter={gpu}")
    return words + ["-unattended", "-nosound", *config.args]


@dataclass
class GameInstance:
    config: GameConfig
    name: str
    log_dir: pathlib.Path
    gpu: int | None = None
    port: int = 0
    process: subprocess.Popen | None = None
    log_path: pathlib.Path | None = None
    launches: int = field(default=0)

    def start(self) -> None:
        """Launch on a fresh port and wait until it serves UnrealCV; GameLaunchError if it does not."""
        self.config.check_binary()
        self.stop()
        self.port = free_port()
        self.launches += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"{self.name}.{self.launches}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command_line(self.config, self.port, self.gpu), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.config.startup_deadline_s
        assert self.process is not None
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise GameLaunchError(f"{self.name}: exited with code {code} before serving UnrealCV on port "
                                      f"{self.port}; log: {self.log_path}")
            status = probe_status(self.port)
            if status is not None:
                if f"Port: {self.port}" not in status:
                    raise GameLaunchError(f"{self.name}: serves on port {self.port} but reports another port "
                                          f"({status.splitlines()[:3]}); log: {self.log_path}")
                return
            time.sleep(POLL_S)
        raise GameLaunchError(f"{self.name}: did not serve UnrealCV on port {self.port} within "
                              f"{self.config.startup_deadline_s:g} s (was the port flag ignored, or is it hung?); "
                              f"log: {self.log_path}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace_s: float = 5.0) -> None:
        """End the instance's whole process group: SIGTERM, then SIGKILL after `grace_s`."""
        proc, self.process = self.process, None
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # what the group left (children that outlived the leader)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def probe_status(port: int, host: str = "127.0.0.1", timeout_s: float = 2.0) -> str | None:
    """`vget /unrealcv/status` from whatever serves UnrealCV on the port, or None when nothing does
    (no listener, no greeting yet, or broken framing)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            if read_message(sock) is None:  # the greeting
                return None
            sock.sendall(pack(b"1:vget /unrealcv/status"))
            reply = read_message(sock)
    except (OSError, ProtocolError):
        return None
    if reply is None or not reply.startswith(b"1:"):
        return None
    return reply[2:].decode("utf-8", "replace")
