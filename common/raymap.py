"""`ray_map(fn, items)`: map a function over items as Ray tasks (one CPU each), results in input
order, with a tqdm bar as they finish; failed tasks are retried by Ray (a lost node's work is
redone elsewhere). Ray must be initialised by the caller (entry scripts do)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from tqdm import tqdm

from common.raysession import raise_if_interrupted

T = TypeVar("T")
R = TypeVar("R")


def ray_map(fn: Callable[..., R], items: Iterable[T], progress: bool = True, desc: str = "",
            shared: Mapping[str, Any] | None = None, options: Sequence[Mapping[str, Any]] | None = None,
            each: Callable[[R], R] | None = None) -> list[R]:
    """`fn(item, **shared)` for each item; `shared` keyword arguments go to the object store once.
    `options`: Ray task options per item (e.g. a scheduling strategy), in item order. `each` is
    applied to every result as it arrives (on this process), and what it returns is kept: it can
    store a result's bulk and drop it, so that results do not pile up in memory."""
    import ray

    task = ray.remote(num_cpus=1)(fn)
    shared_refs = {name: ray.put(value) for name, value in (shared or {}).items()}
    items = list(items)
    if options is not None and len(options) != len(items):
        raise ValueError(f"ray_map: {len(options)} options for {len(items)} items")
    refs = [(task.options(**options[i]) if options is not None else task).remote(item, **shared_refs)
            for i, item in enumerate(items)]
    index = {ref: i for i, ref in enumerate(refs)}
    out: list[R | None] = [None] * len(refs)
    pending = list(refs)
    with tqdm(total=len(refs), desc=desc, disable=not progress, unit="item") as bar:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            raise_if_interrupted()  # a Ctrl-C Ray's wait consumed
            for ref in done:
                result = ray.get(ref)
                out[index[ref]] = each(result) if each is not None else result
                bar.update(1)
    return out  # type: ignore[return-value]
