"""Loader throughput per worker next to raw JPEG decoding of the same frames, same run.

    python bench/loader.py [--out out/demo] [--batch 4] [--workers 1 2]

Streams the build's train+val shards through `datasets.loader` (decode, tensors, batching) with
N DataLoader workers, and decodes every JPEG member of the same shards with cv2.imdecode in a plain
loop (the baseline: the decode a loader cannot avoid). Prints frames/s per worker and the ratio
(target >= 0.8). Build the shards first (python pipelines/build_dataset.py).
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so `datasets` is the package)

_common.single_thread_env()

import argparse  # noqa: E402
import pathlib  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from datasets.loader import LoaderConfig, decode_rgb, make_loader  # noqa: E402
from _common import machine  # noqa: E402


def batch_frames(shards: list[str]) -> int:
    """Frames per clip (the first sample's frame count)."""
    with tarfile.open(shards[0]) as tar:
        first = tar.next()
        assert first is not None
        key = first.name.split(".", 1)[0]
        return sum(1 for m in tar.getmembers() if m.name.startswith(key + ".") and m.name.endswith(".jpg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/demo"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--frames-per-worker", type=int, default=20000)
    args = parser.parse_args()
    print(machine())
    torch.set_num_threads(1)
    shards = sorted(str(p) for p in (args.out / "shards").glob("*.tar"))
    if not shards:
        raise SystemExit(f"no shards under {args.out / 'shards'}: run python pipelines/build_dataset.py first")
    start = time.perf_counter()
    frames = 0
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".jpg"):
                    data = tar.extractfile(member).read()  # type: ignore[union-attr]
                    decode_rgb(data)
                    frames += 1
    raw = frames / (time.perf_counter() - start)
    print(f"{len(shards)} shards, {frames} frames; raw JPEG decode (one core): {raw:.0f} frames/s\n")
    for workers in args.workers:
        # endless resampled mode sized to ~`--frames-per-worker`; the clock starts at the first batch,
        # so worker start-up (process spawn, imports) is not counted
        t = int(batch_frames(shards))
        config = LoaderConfig(urls=tuple(shards), batch_size=args.batch, shuffle_buffer=0, resampled=True,
                              epoch_samples=args.frames_per_worker // t)
        seen = 0
        for i, batch in enumerate(make_loader(config, num_workers=workers)):
            if i == 0:
                start = time.perf_counter()
                continue
            seen += batch["frames"].shape[0] * batch["frames"].shape[1]
        rate = seen / (time.perf_counter() - start) / workers
        print(f"loader, {workers} worker(s): {rate:.0f} frames/s per worker ({seen} frames); "
              f"ratio to raw decode {rate / raw:.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
