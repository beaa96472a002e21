"""The evaluation's worker processes, forked without a half-copied OpenCV thread pool.

A process that has run one of OpenCV's parallel operations (a blur, a resize of a large image) has
OpenCV's thread pool running, and a child forked from it hangs for ever at its first OpenCV call
that touches the pool (`cv2.setNumThreads` among them): the threads it waits for were not copied.
`process_pool` sets this process to one OpenCV thread while its workers are forked and work (which
stops the pool's threads), and gives the number back afterwards; the workers keep one thread each
(they run one item each, side by side). Forking keeps what a fresh
interpreter would not have: the caller's sys.path and modules, and a start in milliseconds.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

import cv2


@contextmanager
def process_pool(workers: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of `workers` forked processes, OpenCV's threads in this process stopped while it lives."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            yield pool
    finally:
        cv2.setNumThreads(threads)
