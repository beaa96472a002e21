"""`ray_session(...)`: the Ray runtime of one entry script (build, capture, filter), started and
shut down in one place.

- `address` given: join that cluster as it is configured.
- Otherwise: start a local cluster with `num_cpus`, no dashboard. Ray turns token authentication on
  for a new local cluster and logs a notice saying so on every start; that one notice is dropped
  (its opposite, that authentication is disabled, still shows).
- The runtime is shut down on the way out, also after an exception or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
AUTH_ENABLED_NOTICE = "Token authentication is enabled for this Ray cluster."


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

    auth_log = logging.getLogger(AUTH_LOGGER)
    notice = _DropNotice(AUTH_ENABLED_NOTICE)
    auth_log.addFilter(notice)
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    finally:
        auth_log.removeFilter(notice)
    try:
        yield
    finally:
        ray.shutdown()
