"""Atomic file output: readers never see a partial file, and files get normal permissions."""

from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(path: str | pathlib.Path) -> Iterator[pathlib.Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error delete it.

    The temporary file is created by whatever writes it, so it gets the process umask's permissions
    (unlike tempfile.mkstemp's 0600), and the rename is atomic on one filesystem.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
