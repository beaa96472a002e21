"""`ray_map(fn, items)`: map a function over items as Ray tasks (one CPU each), results in input
order, with a tqdm bar as they finish; failed tasks are retried by Ray (a lost node's work is
redone elsewhere). Ray must be initialised by the caller (entry scripts do)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def ray_map(fn: Callable[..., R], items: Iterable[T], progress: bool = True, desc: str = "",
            shared: Mapping[str, Any] | None = None) -> list[R]:
    """`fn(item, **shared)` for each item; `shared` keyword arguments go to the object store once."""
    import ray

    task = ray.remote(num_cpus=1)(fn)
    shared_refs = {name: ray.put(value) for name, value in (shared or {}).items()}
    refs = [task.remote(item, **shared_refs) for item in items]
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
