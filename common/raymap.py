"""`ray_map(fn, items)`: map a function over items as Ray tasks (one CPU each), results in input
order, with a tqdm bar as they finish. Ray must be initialised by the caller (entry scripts do)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def ray_map(fn: Callable[[T], R], items: Iterable[T], progress: bool = True, desc: str = "") -> list[R]:
    import ray

    task = ray.remote(num_cpus=1)(fn)
    refs = [task.remote(item) for item in items]
    index = {ref: i for i, ref in enumerate(refs)}
    out: list[R | None] = [None] * len(refs)
    pending = list(refs)
    with tqdm(total=len(refs), desc=desc, disable=not progress, unit="item") as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                out[index[ref]] = ray.get(ref)
                bar.update(1)
    return out  # type: ignore[return-value]
