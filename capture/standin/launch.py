"""Launch a stand-in engine as a subprocess (`python -m capture.standin --port 0 ...`).

The child prints `listening on HOST:PORT scene NAME` once it accepts connections; the parent reads
the port from that line, with a deadline, so a child that fails to start is an error, not a hang.
"""

from __future__ import annotations

import os
import pathlib
import selectors
import subprocess
import sys
import time
from collections.abc import Sequence

ROOT = pathlib.Path(__file__).resolve().parents[2]


class StandinLaunchError(RuntimeError):
    pass


class StandinProcess:
    """A running stand-in child: `.host`, `.port`, `.alive()`, `.close()`."""

    def __init__(self, args: Sequence[str] = (), startup_timeout: float = 60.0, log_path: pathlib.Path | None = None):
        self.args = list(args)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self._log = open(log_path, "ab") if log_path is not None else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "capture.standin", "--port", "0", *self.args],
            stdout=subprocess.PIPE, stderr=self._log if self._log is not None else subprocess.DEVNULL,
            cwd=ROOT, env=env,
        )
        try:
            line = self._first_line(startup_timeout)
            if not line.startswith("listening on "):
                raise StandinLaunchError(f"stand-in {' '.join(self.args)} did not start: {line!r} "
                                         f"(exit code {self.proc.poll()})")
            address, self.level = line.split()[2], line.split()[4]
            host, port = address.rsplit(":", 1)
            self.host, self.port = host, int(port)
        except BaseException:
            self.close()
            raise

    def _first_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if selector.select(timeout=0.2):
                    return self.proc.stdout.readline().decode("utf-8", "replace").strip()
                if self.proc.poll() is not None:
                    return ""
        raise StandinLaunchError(f"stand-in {' '.join(self.args)} did not report a port within {timeout:.0f} s")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> StandinProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
