"""Write samples into WebDataset shards: `webdataset.ShardWriter`, capped by count and size, each
shard written under a temporary name and renamed when closed (a reader never sees a partial tar),
members with a fixed mtime so that the same samples give byte-identical shards.
"""

from __future__ import annotations

import itertools
import os
import pathlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FIXED_MTIME = 0  # 1970-01-01: members carry no build time. An int: a float mtime makes Python's tarfile
# write a PAX extended header (1 KiB) before every member to hold its fractional value
TMP_SUFFIX = ".tmp"


@dataclass(frozen=True)
class ShardConfig:
    max_samples: int = 1000  # per shard
    max_bytes: int = 500_000_000  # per shard (a shard can exceed it by one sample, as ShardWriter does)

    def __post_init__(self) -> None:
        if self.max_samples < 1 or self.max_bytes < 1:
            raise ValueError("shards.max_samples and shards.max_bytes must be >= 1")


@dataclass(frozen=True)
class Written:
    key: str
    shard: str  # file name, relative to the shard folder
    bytes: int  # the sample's payload bytes


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def clear_shards(folder: pathlib.Path, split: str) -> None:
    """Remove a split's shards and leftover temporaries (a rebuild writes the split afresh)."""
    for path in folder.glob(f"{split}-*.tar*"):
        path.unlink()
    for path in folder.glob(f".{split}-*.tar{TMP_SUFFIX}"):
        path.unlink()


def write_shards(samples: Iterable[Mapping[str, Any]], folder: pathlib.Path, split: str,
                 config: ShardConfig) -> list[Written]:
    """Write `samples` (webdataset dicts of bytes, in the order given) as `<split>-NNNNNN.tar`; no
    shard at all when there are none. A key given twice is an error (ValueError): it would be two
    samples under one name."""
    folder.mkdir(parents=True, exist_ok=True)
    clear_shards(folder, split)
    written: list[Written] = []
    stream = iter(samples)
    first = next(stream, None)
    if first is None:
        return written
    keys: set[str] = set()

    def publish(tmp_name: str) -> None:
        tmp = pathlib.Path(tmp_name)
        os.replace(tmp, tmp.with_name(tmp.name[1:-len(TMP_SUFFIX)]))

    pattern = str(folder / f".{split}-%06d.tar{TMP_SUFFIX}")
    # imported here: webdataset imports torch (2-3 s), which the build's Ray workers (that import
    # ShardConfig through pipelines.config) never need
    import webdataset as wds

    with wds.ShardWriter(pattern, maxcount=config.max_samples, maxsize=config.max_bytes, post=publish, verbose=0,
                         mtime=FIXED_MTIME) as sink:
        for sample in itertools.chain([first], stream):
            if sample["__key__"] in keys:
                raise ValueError(f"sample key {sample['__key__']!r} given twice (split {split})")
            keys.add(str(sample["__key__"]))
            sink.write(dict(sample))
            name = pathlib.Path(sink.fname).name[1:-len(TMP_SUFFIX)]
            size = sum(len(v) for k, v in sample.items() if not k.startswith("__"))
            written.append(Written(str(sample["__key__"]), name, size))
    return written
