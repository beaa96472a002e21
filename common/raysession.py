"""`ray_session(...)`: the Ray runtime of one entry script (build, capture, filter), started and
shut down in one place.

- `address` given: join that cluster as it is configured.
- Otherwise: start a local cluster with `num_cpus`, no dashboard. Ray turns token authentication on
  for a new local cluster and logs a notice saying so on every start; that one notice is dropped
  (its opposite, that authentication is disabled, still shows).
- The runtime is shut down on the way out, also after an exception, Ctrl-C or SIGTERM (which
  becomes SystemExit(143) while the session is open, so the shutdown runs).
- Ctrl-C is remembered as well as raised: Ray's `wait` checks for signals inside its C++ wait and
  can consume the KeyboardInterrupt that check raises (a build kept capturing 120 s after SIGINT,
  its main thread in the scheduler's `ray.wait` loop), so the driver's wait loops call
  `raise_if_interrupted()` after each wait and the interrupt surfaces within a second.
- A watchdog (common/reaper.py) ends whatever processes the session started that are still alive
  when it ends, or when this process dies without shutting down (kill -9): no Ray agent or engine
  outlives a killed build.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator

AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
AUTH_ENABLED_NOTICE = "Token authentication is enabled for this Ray cluster."


#: set by the session's SIGINT handler (a signal is the whole process's, as this is): raise_if_interrupted
_interrupted = threading.Event()


def raise_if_interrupted() -> None:
    """KeyboardInterrupt if Ctrl-C arrived during the open session; call it from the main thread after
    each `ray.wait` of a driver loop, where Ray may have consumed the one the signal raised."""
    if _interrupted.is_set():
        raise KeyboardInterrupt


class _DropNotice(logging.Filter):
    """Drops log records whose message starts with one known text."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    import ray

    from common.reaper import Reaper

    reaper = Reaper().start()
    restore = _exit_on_sigterm()
    auth_log = logging.getLogger(AUTH_LOGGER)
    notice = _DropNotice(AUTH_ENABLED_NOTICE)
    auth_log.addFilter(notice)
    try:
        try:
            if address:
                ray.init(address=address, logging_level=logging.WARNING)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
        finally:
            auth_log.removeFilter(notice)
        signal_restore = _exit_on_sigterm()  # again: ray.init installs its own SIGTERM handler
        sigint_restore = _remember_sigint()
        try:
            yield
        finally:
            ray.shutdown()
            sigint_restore()
            signal_restore()
    finally:
        restore()
        reaper.stop()


def _remember_sigint() -> Callable[[], None]:
    """SIGINT sets `_interrupted` and raises KeyboardInterrupt in the main thread; returns what puts
    the old handler back and forgets the interrupt."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        _interrupted.set()
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGINT, handler)

    def restore() -> None:
        signal.signal(signal.SIGINT, old)
        _interrupted.clear()

    return restore


def _exit_on_sigterm() -> Callable[[], None]:
    """SIGTERM raises SystemExit(143) in the main thread; returns what puts the old handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    old = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, old)

    return restore
