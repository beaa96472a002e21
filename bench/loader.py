"""Loader throughput per worker next to raw JPEG decoding of the same frames, same run.

    python bench/loader.py [--out out/demo] [--batch 4] [--workers 0 1 2] [--pool-slots 8 0] [--pin-memory on off]
                           [--decode workers device]

Streams the build's train+val shards through `datasets.loader` (decode, tensors, batching) in
process and with N DataLoader workers (each with its pool of reused shared batch buffers, or with
`--pool-slots 0` a fresh one per batch), and decodes every JPEG member of the same shards with the
loader's decoder into one reused buffer in a plain loop (the baseline: the decode a loader cannot
avoid). Each loader run is `--frames-per-worker` frames a worker, or 30 batches if more. Prints frames/s per
worker and the ratio (target >= 0.8), with the CPU seconds per second of the main process and of each
worker (is a worker slower, or waiting?); for N > 1 workers also the raw decode of N processes at
once, what the machine itself gives N decoders. `--pin-memory on off` measures DataLoader's
pin-memory thread (on by default where CUDA is available). `--decode device` adds, per worker
count, the frames/s in all of the workers passing the JPEG bytes on undecoded and the main process
decoding them on the GPU (nvJPEG through torchvision; on the CPU with OpenCV where there is no
GPU), next to the same workers decoding them themselves. Build the shards first
(python pipelines/build_dataset.py; for 1280x720 shards add
--set capture.capture.camera.width=1280 --set capture.capture.camera.height=720 --out out/hd).
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so `datasets` is the package)

_common.single_thread_env()

import argparse  # noqa: E402
import pathlib  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tarfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets.device_decode import decode_frames  # noqa: E402
from datasets.loader import LoaderConfig, decode_jpeg_rgb, make_loader  # noqa: E402
from _common import machine  # noqa: E402
from common.cli import add_dry_run, dry_run  # noqa: E402


def batch_frames(shards: list[str]) -> int:
    """Frames per clip (the first sample's frame count)."""
    with tarfile.open(shards[0]) as tar:
        first = tar.next()
        assert first is not None
        key = first.name.split(".", 1)[0]
        return sum(1 for m in tar.getmembers() if m.name.startswith(key + ".") and m.name.endswith(".jpg"))


def raw_decode_rate(shards: list[str], min_seconds: float = 2.0) -> float:
    """Frames/s of decoding every JPEG member of the shards with the loader's decoder into one reused
    frame buffer (the codec's speed: a loop that gets a new array per frame pays the allocator too,
    at 1280x720 more than half its time on a 2-core VM, mapping and zeroing 2.7 MB a frame), in whole
    passes until `min_seconds` have gone by: one pass over the demo shards takes about 0.6 s on a fast
    core, too short to average out a VM's drift next to a loader run of several seconds."""
    into = np.empty(decode_jpeg_rgb(_first_jpeg(shards)).shape, np.uint8)  # before the clock starts
    start = time.perf_counter()
    frames = 0
    while not frames or time.perf_counter() - start < min_seconds:
        for shard in shards:
            with tarfile.open(shard) as tar:
                for member in tar:
                    if member.name.endswith(".jpg"):
                        data = tar.extractfile(member).read()  # type: ignore[union-attr]
                        decode_jpeg_rgb(data, into)
                        frames += 1
    return frames / (time.perf_counter() - start)


def parallel_raw_rate(shards: list[str], processes: int) -> float:
    """Raw decode frames/s per process with `processes` of them decoding at once: what this machine
    gives N decoders side by side (shared cores, memory bandwidth), next to the loader's N workers."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return statistics.mean(pool.map(raw_decode_rate, [shards] * processes))


MIN_BATCHES = 30  # a worker's batches per run, at least: its first few get fresh shared buffers


def run_frames(frames_per_worker: int, batch: int, clip_frames: int) -> int:
    """Frames a worker reads in one run: `frames_per_worker`, or MIN_BATCHES batches if that is more.
    A worker's pooled buffers (datasets.pool) are new, so mapped and zeroed page by page, until the
    main process hands its first batches back; at 1280x720 a batch of 4 clips is 365 MB, and runs of
    800 frames (6 batches) measured mostly that warm-up: one worker on a 2-core VM read 345 frames/s
    in them against 493 over 30 batches."""
    return max(frames_per_worker, MIN_BATCHES * batch * clip_frames)


def loader_rate(shards: list[str], workers: int, batch: int, frames_per_worker: int, pool_slots: int = 8,
                pin_memory: bool | None = None) -> tuple[float, float, float]:
    """(frames/s per worker, the main process's CPU seconds per wall second, the workers' CPU
    seconds per worker and wall second). Endless resampled mode sized by `run_frames`; the
    rate's clock starts at the first batch, so worker start-up is not counted in it. The main
    process's share covers its own thread and DataLoader's pin-memory thread (near 1: the main
    process is the limit). The workers' share runs from the loader's start to its last worker's
    exit, start-up included (well under 1: workers waited for the main process or for each other).
    0 workers: the whole pipeline in this process, shares NaN."""
    t = int(batch_frames(shards))
    config = LoaderConfig(urls=tuple(shards), batch_size=batch, shuffle_buffer=0, resampled=True,
                          epoch_samples=run_frames(frames_per_worker, batch, t) // t, pool_slots=pool_slots)
    seen = 0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    opened = start = time.perf_counter()
    cpu = time.process_time()
    for i, item in enumerate(make_loader(config, num_workers=workers, pin_memory=pin_memory)):
        if i == 0:
            start, cpu = time.perf_counter(), time.process_time()
            continue
        seen += item["frames"].shape[0] * item["frames"].shape[1]
    end = time.perf_counter()
    main_cpu = (time.process_time() - cpu) / (end - start)
    # the exhausted iterator has joined its workers, so their CPU time is in RUSAGE_CHILDREN now
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    worker_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    busy = worker_cpu / (workers * (time.perf_counter() - opened)) if workers else float("nan")
    return seen / (end - start) / max(workers, 1), main_cpu if workers else float("nan"), busy


def total_rate(shards: list[str], workers: int, batch: int, frames_per_worker: int,
               decode_on: torch.device | None) -> tuple[float, int]:
    """Frames/s in all (not per worker) of the loader with `workers` workers, after its first batch,
    and the frames counted: the workers decoding (`decode_on` None) or passing the JPEG bytes on and
    the main process decoding them on `decode_on` (synchronised per batch, so the figure is decoded
    frames). Each worker reads `run_frames` (`epoch_samples` is per worker), as in `loader_rate`."""
    t = int(batch_frames(shards))
    config = LoaderConfig(urls=tuple(shards), batch_size=batch, shuffle_buffer=0, resampled=True,
                          epoch_samples=run_frames(frames_per_worker, batch, t) // t,
                          frames="decoded" if decode_on is None else "jpeg")
    seen, start = 0, time.perf_counter()
    for i, item in enumerate(make_loader(config, num_workers=workers, pin_memory=False)):
        if decode_on is not None:
            item = decode_frames(item, decode_on)
            if decode_on.type == "cuda":
                torch.cuda.synchronize(decode_on)
        if i == 0:
            start = time.perf_counter()
            continue
        seen += item["frames"].shape[0] * item["frames"].shape[1]
    return seen / (time.perf_counter() - start), seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("out/demo"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--frames-per-worker", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3, help="alternating raw/loader runs; medians reported")
    parser.add_argument("--pool-slots", type=int, nargs="*", default=[8],
                        help="LoaderConfig.pool_slots to measure (0: a fresh shared buffer per batch)")
    parser.add_argument("--pin-memory", choices=("auto", "on", "off"), nargs="*", default=["auto"],
                        help="make_loader's pin_memory to measure (auto: its default, on when CUDA is available)")
    parser.add_argument("--decode", choices=("workers", "device"), nargs="*", default=["workers"],
                        help="device: also the JPEG bytes decoded in the main process on the GPU (or CPU)")
    args = add_dry_run(parser).parse_args()
    if args.dry_run:
        dry_run(arguments=args)
        return
    print(machine())
    torch.set_num_threads(1)
    shards = sorted(str(p) for p in (args.out / "shards").glob("*.tar"))
    if not shards:
        raise SystemExit(f"no shards under {args.out / 'shards'}: run python pipelines/build_dataset.py first")
    print(f"{len(shards)} shards of {batch_frames(shards)}-frame clips; each loader run sits between two raw JPEG "
          f"decodes of the same shards on one core, 2 s or more each (this VM's speed drifts); medians of {args.repeats}\n")
    pins = {"auto": None, "on": True, "off": False}
    print(f"pin_memory auto: {'on' if torch.cuda.is_available() else 'off'} here (on where CUDA is available)")
    runs = [(w, p, pin) for w in args.workers for p in (args.pool_slots if w else args.pool_slots[:1])
            for pin in args.pin_memory] if "workers" in args.decode else []  # `--decode device`: its rows only
    side_by_side: set[int] = set()  # worker counts whose N-decoders-at-once baseline is printed
    for workers, pool_slots, pin in runs:
        raws, rates, main_cpu, busy = [raw_decode_rate(shards)], [], [], []
        for _ in range(args.repeats):  # raw decode on either side of each loader run; ratio to their mean
            rate, cpu, worker_busy = loader_rate(shards, workers, args.batch, args.frames_per_worker, pool_slots,
                                                 pins[pin])
            rates.append(rate)
            main_cpu.append(cpu)
            busy.append(worker_busy)
            raws.append(raw_decode_rate(shards))
        ratio = statistics.median(r / ((a + b) / 2) for r, a, b in zip(rates, raws, raws[1:]))
        label = ("in process (0 workers)" if workers == 0 else f"{workers} worker(s), pool_slots {pool_slots}") + \
            ("" if pin == "auto" else f", pin_memory {pin}")
        main_busy = "" if workers == 0 else (f"; CPU s/s: main process {statistics.median(main_cpu):.2f}, "
                                             f"per worker {statistics.median(busy):.2f}")
        print(f"loader, {label}: {statistics.median(rates):.0f} frames/s per worker; raw decode "
              f"{statistics.median(raws):.0f}; ratio {ratio:.2f} (target >= 0.8){main_busy}")
        if workers > 1 and workers not in side_by_side:
            side_by_side.add(workers)
            side = statistics.median(parallel_raw_rate(shards, workers) for _ in range(args.repeats))
            print(f"  raw decode in {workers} processes at once: {side:.0f} frames/s per process "
                  f"({side / statistics.median(raws):.2f} of one alone; the loader per worker is "
                  f"{statistics.median(rates) / side:.2f} of it)")
    if "device" in args.decode:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        frame_shape = decode_jpeg_rgb(_first_jpeg(shards)).shape
        print(f"\ndecode where the batch is used ({device}), {frame_shape[1]}x{frame_shape[0]} frames, "
              f"frames/s in all, medians of {args.repeats}:")
        for workers in args.workers:
            owns, theres = ([total_rate(shards, workers, args.batch, args.frames_per_worker, on)
                             for _ in range(args.repeats)] for on in (None, device))
            own, there = (statistics.median(rate for rate, _ in runs) for runs in (owns, theres))
            counted = statistics.median(n for _, n in owns + theres)
            print(f"  {workers} worker(s), {counted:.0f} frames a run: the workers decode {own:.0f}; bytes on, "
                  f"decoded on {device.type} {there:.0f} ({there / own:.2f}x)")


def _first_jpeg(shards: list[str]) -> bytes:
    with tarfile.open(shards[0]) as tar:
        member = next(m for m in tar if m.name.endswith(".jpg"))
        return tar.extractfile(member).read()  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
