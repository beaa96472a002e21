"""Footage and damage for the data-integrity tests: clean ingest sequences cut from the demo build's
staged captures, and the ways careless or hostile users break them."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib

import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLEAN = (("room_0001", "plan0000"), ("courtyard_0003", "plan0000"))  # demo captures with no drops


def copy_sequence(staged: pathlib.Path, folder: pathlib.Path, frames: int = 40) -> pathlib.Path:
    """An ingest folder (poses.csv, frames/, meta.json) from a staged capture's first `frames` rows."""
    (folder / "frames").mkdir(parents=True)
    lines = (staged / "poses.csv").read_text().splitlines(keepends=True)
    (folder / "poses.csv").write_text("".join(lines[:frames + 1]))
    for src in sorted((staged / "frames").iterdir())[:frames]:
        shutil.copyfile(src, folder / "frames" / src.name)
    (folder / "meta.json").write_text(json.dumps({"fov": 90, "fps": 30}))
    return folder


def png_claiming(path: pathlib.Path, like: pathlib.Path, width: int, height: int) -> None:
    """A copy of PNG `like` whose IHDR (CRC fixed) claims width x height: a decompression bomb's header."""
    data = bytearray(like.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def build(out: pathlib.Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python pipelines/build_dataset.py --out OUT ARGS` as a user runs it (no progress bars)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    return subprocess.run([sys.executable, str(ROOT / "pipelines" / "build_dataset.py"), "--out", str(out),
                           "--no-progress", "--num-cpus", "2", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=out.parent)


def shard_members(out: pathlib.Path) -> dict[str, dict[str, bytes]]:
    """Every sample in OUT/shards, key -> {extension: bytes}; a key seen twice raises AssertionError."""
    samples: dict[str, dict[str, bytes]] = {}
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            keys_here: dict[str, dict[str, bytes]] = {}
            for member in tar:
                key, ext = member.name.split(".", 1)
                data = tar.extractfile(member)
                assert data is not None
                keys_here.setdefault(key, {})[ext] = data.read()
            for key, members in keys_here.items():
                assert key not in samples, f"sample {key} in two shards"
                samples[key] = members
    return samples


def trajectories(out: pathlib.Path) -> pd.DataFrame:
    return pd.read_parquet(out / "trajectories.parquet")
