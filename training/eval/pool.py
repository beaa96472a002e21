"""The evaluation's worker processes, started clean.

A process that has run one of OpenCV's parallel operations (a blur, a resize of a large image) has
OpenCV's thread pool running, and a child forked from it hangs for ever at its first OpenCV call
that touches the pool (`cv2.setNumThreads` among them): the threads it waits for were not copied.
So the pools here fork their workers from a server process that has run nothing (multiprocessing's
forkserver), whatever the calling process did before.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` processes forked from multiprocessing's forkserver, not from this process."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
