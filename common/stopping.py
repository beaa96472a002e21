"""A stop asked for by a signal: finish the step, save the checkpoint, exit — what a preempted job needs.

A cluster scheduler (SLURM's `--signal`, Kubernetes, `timeout`) warns a job with SIGTERM or SIGUSR1
before it kills it. While a `StopSignals` is active those signals set `received` instead of ending
the process; the trainers check it once per step (with every rank, under torchrun), save their
checkpoint and return, and the same command resumes the run. DataLoader workers leave the signals to
their trainer (`ignore_in_worker`, the loader's worker_init_fn): a signal sent to the whole process
group would otherwise kill a worker mid-batch and the trainer with it, before it could save; a
worker whose trainer is gone ends itself (the DataLoader's parent watchdog).

A worker that ignores SIGTERM must still end when its process exits: multiprocessing's exit hook
terminates daemonic children with SIGTERM and then joins them with no time limit, so a process that
left a loader's iterator alive (a trainer that raised mid-epoch: the traceback holds the iterator,
which never shuts its workers down) would hang at exit forever. This module's exit hook runs first
(`end_daemonic_children`): SIGTERM, a grace period, then SIGKILL to those still alive.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # noqa: F401  (first: its exit hook registered before ours, so ours runs before it)
import signal
import sys
import threading
import time
from types import FrameType, TracebackType

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
EXIT_GRACE_S = 2.0  # what a daemonic child gets at exit between SIGTERM and SIGKILL


class StopSignals:
    """Context manager: SIGTERM and SIGUSR1 set `received` (the signal's name) while it is active;
    the previous handlers come back on exit. Python installs handlers from the main thread only: in
    any other thread it installs none and `installed` is False (the signals keep their default)."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._previous = {}

    def notice(self, step: int, checkpoint: object) -> None:
        """After a trainer saved: say on stderr which signal stopped it where, and how to go on."""
        if self.received is not None:
            print(f"{self.received}: stopped at step {step}, {checkpoint} saved; the same command resumes the run",
                  file=sys.stderr)

    def exit_code(self) -> int:
        """0 when no signal came; else 128 + the signal's number, the shell's code for it."""
        return 0 if self.received is None else 128 + int(signal.Signals[self.received])


def ignore_in_worker(worker_id: int = 0) -> None:
    """A DataLoader worker's worker_init_fn: leave SIGTERM and SIGUSR1 to the process that owns it."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def end_daemonic_children(grace_s: float = EXIT_GRACE_S) -> list[int]:
    """Terminate this process's daemonic multiprocessing children and SIGKILL those still alive after
    `grace_s` seconds (DataLoader workers ignore SIGTERM); returns the pids killed. Registered to run at
    exit before multiprocessing's own hook, which would join them forever (see the module docstring)."""
    children = [p for p in multiprocessing.active_children() if p.daemon]
    for p in children:
        p.terminate()
    deadline = time.monotonic() + grace_s
    killed: list[int] = []
    for p in children:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive() and p.pid is not None:  # a started child always has its pid
            p.kill()
            p.join()
            killed.append(p.pid)
    return killed


atexit.register(end_daemonic_children)
