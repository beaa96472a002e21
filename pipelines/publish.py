"""Publish a build's shards and tables to object storage or any filesystem pyarrow.fs reaches.

`publish: s3://bucket/datasets/run1` (or gs://, hdfs://, file://) in the build config: at the start
the build writes and reads back a probe object there and removes it, so a URI it cannot write to
stops the build before any capture (exit 2, naming the URI and the error); at the end it copies
`shards/`, `manifest.parquet`, `trajectories.parquet`, `stats.json`, `config.yaml` and the report
there, shards first and `manifest.parquet` last (a reader that finds the manifest finds its shards).
Credentials come from the environment, as pyarrow.fs reads them (AWS_*, GOOGLE_APPLICATION_CREDENTIALS).
"""

from __future__ import annotations

import pathlib
import secrets

import pyarrow.fs as pafs
from pyarrow import ArrowException

PUBLISHED = ("shards", "report", "trajectories.parquet", "stats.json", "config.yaml", "manifest.parquet")


class PublishError(Exception):
    """The publish URI cannot be written; the message names it."""


def _open(uri: str) -> tuple[pafs.FileSystem, str]:
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ArrowException, ValueError, OSError) as exc:
        raise PublishError(f"publish: {uri}: not a location pyarrow.fs can open ({exc})") from exc


def check_publish(uri: str) -> None:
    """Write, read back and delete a probe object under `uri`; PublishError when any step fails."""
    fs, root = _open(uri)
    probe = f"{root.rstrip('/')}/.probe-{secrets.token_hex(8)}"
    token = secrets.token_bytes(16)
    try:
        fs.create_dir(root, recursive=True)
        with fs.open_output_stream(probe) as out:
            out.write(token)
        with fs.open_input_stream(probe) as back:
            if back.read() != token:
                raise PublishError(f"publish: {uri}: a probe object read back differs from what was written")
        fs.delete_file(probe)
    except (ArrowException, OSError) as exc:
        raise PublishError(f"publish: {uri}: cannot write there ({exc})") from exc


def publish(out: pathlib.Path, uri: str) -> list[str]:
    """Copy the build's outputs under `uri` (the layout of `out`); returns the relative paths copied."""
    fs, root = _open(uri)
    local = pafs.LocalFileSystem()
    copied = []
    try:
        for name in PUBLISHED:
            source = out / name
            if source.is_dir():
                fs.create_dir(f"{root}/{name}", recursive=True)
                pafs.copy_files(str(source), f"{root}/{name}", source_filesystem=local, destination_filesystem=fs)
                copied += [str(p.relative_to(out)) for p in sorted(source.rglob("*")) if p.is_file()]
            elif source.is_file():
                pafs.copy_files(str(source), f"{root}/{name}", source_filesystem=local, destination_filesystem=fs)
                copied.append(name)
    except (ArrowException, OSError) as exc:
        raise PublishError(f"publish: copying {out} to {uri} failed ({exc}); the local build is complete, "
                           "re-run to publish again") from exc
    return copied
