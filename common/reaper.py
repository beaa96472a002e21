"""A watchdog that ends what a session started when the process that started it is gone.

`Reaper.start()` launches `python -m common.reaper`, a small process of its own, holding the read
end of a pipe whose write end only the session's process holds. Every half second it notes the
session process's descendants that were created after the session began (Ray's GCS, raylet,
agents and workers, the engines the capture actors launched). When the pipe reaches end of file —
the session closed it on the way out, or the process died however it died, `kill -9` included — it
sends SIGTERM to each noted process still alive (the same pid and creation time: never a reused
pid), waits `grace_s`, and SIGKILLs what remains. Ray's dashboard and runtime-env agents, which
otherwise outlive a killed driver by a minute or more, go with the rest.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass

import psutil

POLL_S = 0.5


def descendants(pid: int, since: float, exclude: set[int]) -> dict[int, float]:
    """pid -> creation time of `pid`'s descendants created at or after `since` (epoch seconds)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return {}
    out = {}
    for child in children:
        try:
            created = child.create_time()
        except psutil.Error:
            continue
        if created >= since and child.pid not in exclude:
            out[child.pid] = created
    return out


def end(noted: dict[int, float], grace_s: float) -> list[int]:
    """SIGTERM, then after `grace_s` SIGKILL, each noted process still alive; returns the pids ended."""
    alive = []
    for pid, created in noted.items():
        try:
            proc = psutil.Process(pid)
            if abs(proc.create_time() - created) < 1e-3:
                proc.terminate()
                alive.append(proc)
        except psutil.Error:
            continue
    _, still = psutil.wait_procs(alive, timeout=grace_s)
    for proc in still:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return [p.pid for p in alive]


def watch(pid: int, since: float, fd: int, grace_s: float) -> None:
    """The watchdog's loop: note descendants until `fd` reaches EOF, then end them."""
    noted: dict[int, float] = {}
    me = {os.getpid()}
    while True:
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready and not os.read(fd, 4096):
            break
        noted.update(descendants(pid, since, me))
    end(noted, grace_s)


@dataclass
class Reaper:
    """The session side: start() before starting what it should reap, stop() after shutting it down."""

    grace_s: float = 3.0
    process: subprocess.Popen | None = None
    write_fd: int | None = None

    def start(self) -> Reaper:
        read_fd, self.write_fd = os.pipe()
        os.set_inheritable(read_fd, True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(__file__)),
                                                          os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "common.reaper", str(os.getpid()), repr(time.time() - 1.0), str(read_fd),
             repr(self.grace_s)], pass_fds=(read_fd,), env=env, stdin=subprocess.DEVNULL, start_new_session=True)
        os.close(read_fd)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the pipe (the watchdog ends survivors and exits) and wait for it."""
        if self.write_fd is not None:
            os.close(self.write_fd)
            self.write_fd = None
        if self.process is not None:
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


if __name__ == "__main__":
    watch(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
