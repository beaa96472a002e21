"""Student benchmarks (issue 8): peak memory vs rollout length, student vs teacher frames/s, and
per-frame latency vs position in the stream. Weights are random: none of these depend on them.

    python bench/student.py --preset small            # on a GPU; prints figures and the machine
    python bench/student.py --preset tiny --quick     # CPU smoke run

1. Memory: one generator backward (rollout + a stand-in DMD gradient + backward) for rollouts of
   1x, 2x, 4x, 8x `--base-frames`, naive (every block's exit step kept in one graph) vs replayed
   (rollout without grad, then one block's forward at a time). Peak = max allocated (CUDA).
2. Speed: the teacher sampling a clip (its eval sampler: Euler `--teacher-steps`, CFG 1, and also
   CFG `--teacher-cfg`, the real score DMD distils) vs the student generating the same frames
   (its steps + a commit per block), frames/s at each batch of `--batches` (streams at once), and
   the analytic matmul FLOPs per generated frame of each (the compute-bound ceiling of the ratio).
3. Latency: per-frame time of a long stream at frame ~20 and ~300, with the bounded compressed
   memory and with a full cache (window None, nothing pooled), at each of `--latency-batches`
   (batch 1 is launch-bound in eager mode: take --graphs there, or a batch where compute dominates).
   With --graphs the full cache at frame f is a graphed block over exactly that cache.
4. Reaction (`--sections reaction`, batch 1, with --compile/--graphs the fastest mode): the time from
   an action to its first frame. A live student stream (`Student.stream_live`) commits the block
   before last and only then reads the next block's actions, so an action reaches the screen after
   that block's steps alone (the median block past frame 10 of a stream, from the moment its actions
   are read to its frames on the host side of a sync); the commit runs while the frames are up and
   is timed apart, with the whole block (steps + commit, the stream's period). The teacher can show
   a new action only with its next whole clip (one sampled clip of `--teacher-frames`,
   `--teacher-steps`, CFG 1). A row per student step count of `--reaction-steps` (warped schedules,
   the same network). Target (issue 25): student <= 1/10 of the teacher.
5. Curve (`--sections curve`): the speed half of the speed/quality curve: frames/s of the student
   with each step count of `--student-steps` (warped schedules, the same network) and each commit of
   `--curve-commits` (clean: a commit forward per block; fold: none, its last step's K/V kept), of the teacher
   at each of `--curve-teacher-steps`, CFG 1 and `--teacher-cfg`, at each of `--curve-batches`.
   bench/speed_quality.py joins it with the held-out quality of trained students and teachers.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import statistics
import sys
import time
from dataclasses import replace

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from common.cli import add_dry_run, dry_run  # noqa: E402

from bench.speed_quality import student_key  # noqa: E402
from training.config import preset  # noqa: E402
from training.distill import teacher_velocity  # noqa: E402
from training.flow import sample_i2v  # noqa: E402
from training.graphs import BlockGraphs, capture  # noqa: E402
from training.memory import MemoryConfig, view_tokens  # noqa: E402
from training.model import VideoDiT, forward_flops  # noqa: E402
from training.runtime import autocast  # noqa: E402
from training.student import Student, StudentConfig, block_spans, warped_steps  # noqa: E402

COMPRESSED = MemoryConfig(window=8, pool=(2, 4), max_old=16)
FULL = MemoryConfig(window=None)


def inputs(model: VideoDiT, frames: int, device: torch.device, seed: int = 0, batch: int = 1):
    cfg = model.cfg
    g = torch.Generator(device="cpu").manual_seed(seed)
    first = (torch.rand(batch, 3, cfg.height, cfg.width_px, generator=g) * 2 - 1).to(device)
    actions = torch.zeros(batch, frames, 13)
    actions[:, :, 0] = 1 / 3  # forward
    poses = torch.eye(4, dtype=torch.float64).repeat(batch, frames, 1, 1)
    poses[:, :, 2, 3] = torch.arange(frames, dtype=torch.float64) * 0.05
    noise = torch.randn(batch, frames - 1, 3, cfg.height, cfg.width_px, generator=g).to(device)
    return first, actions.to(device), poses.to(device), noise


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(student: Student, frames: int, mode: str, device: torch.device, precision: str) -> float:
    model = student.model
    model.zero_grad(set_to_none=True)
    first, actions, poses, noise = inputs(model, frames, device)
    steps = len(student.config.steps)
    exits = [int(i) for i in torch.randint(0, steps, (len(block_spans(frames, student.config.block_frames)) - 1,),
                                           generator=torch.Generator().manual_seed(1))]
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with autocast(device, precision):
        if mode == "naive":
            out = student.rollout(first, actions, poses, noise, exits, grad=True)
            x_hat = out.frames[:, 1:].float()
            delta = torch.randn_like(x_hat)
            (0.5 * (x_hat - (x_hat - delta).detach()).pow(2).mean()).backward()
        else:
            with torch.no_grad():
                out = student.rollout(first, actions, poses, noise, exits, keep_store=False)
            delta = torch.randn_like(out.frames[:, 1:].float())
            student.replay_backward(out, delta, actions, poses)
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    model.zero_grad(set_to_none=True)
    return peak


def frames_per_second(fn, frames: int, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return frames / statistics.median(times)


def teacher_sampler(field, first: torch.Tensor, args: argparse.Namespace, device: torch.device, steps: int,
                    cfg: float):
    """The teacher sampling one `--teacher-frames` clip (Euler `steps`, CFG `cfg`, shift 3) as a callable,
    captured as one CUDA graph with --graphs (call under no_grad and the precision's autocast)."""
    def sample() -> torch.Tensor:
        return sample_i2v(field, first, args.teacher_frames, steps, 3.0, cfg)
    return capture(sample, device)[0].replay if args.graphs else sample


@torch.no_grad()
def block_latencies(student: Student, frames: int, device: torch.device, precision: str,
                    batch: int = 1) -> list[tuple[int, float]]:
    """(first frame of block, seconds per frame) for every block of one long stream (`batch` streams at once)."""
    first, actions, poses, _ = inputs(student.model, frames, device, batch=batch)
    out: list[tuple[int, float]] = []
    with autocast(device, precision):
        sync(device)
        t0 = time.perf_counter()
        for start, end, _block in student.stream(first, actions, poses, torch.Generator().manual_seed(0)):
            sync(device)
            now = time.perf_counter()
            out.append((start, (now - t0) / (end - start)))
            t0 = now
    return out


def around(latencies: list[tuple[int, float]], frame: int, span: int = 10) -> float:
    return statistics.median(t for s, t in latencies if abs(s - frame) <= span)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    parser.add_argument("--block-frames", type=int, default=2)
    parser.add_argument("--base-frames", type=int, default=17, help="1x rollout length (frames, incl. the first)")
    parser.add_argument("--teacher-frames", type=int, default=33)
    parser.add_argument("--teacher-steps", type=int, default=20)
    parser.add_argument("--teacher-cfg", type=float, default=2.0, help="also time the teacher with this CFG")
    parser.add_argument("--batches", default="1,8,32,64", help="streams at once for the speed section")
    parser.add_argument("--stream-frames", type=int, default=321)
    parser.add_argument("--latency-batches", default="1", help="latency section: streams at once")
    parser.add_argument("--quick", action="store_true", help="small sizes for a CPU smoke run")
    parser.add_argument("--compile", action="store_true",
                        help="speed, reaction, curve, profile: torch.compile the model's forward (static shapes) for teacher and "
                             "student alike; the student pads its memory views to one capacity (static_view)")
    parser.add_argument("--graphs", action="store_true",
                        help="speed, reaction, curve, latency, profile: CUDA graphs for both, the student one per block (steps + commit, "
                             "training.graphs, static memory views) and the teacher one per sampled clip")
    parser.add_argument("--static-view", action="store_true",
                        help="pad the student's memory views to one capacity (implied by --compile, --graphs)")
    parser.add_argument("--student-steps", default="1,2,4", help="curve section: student step counts")
    parser.add_argument("--reaction-steps", default="4", help="reaction section: student step counts")
    parser.add_argument("--curve-commits", default="clean",
                        help="curve section: student commits, clean and/or fold (the commit folded into the last step)")
    parser.add_argument("--curve-teacher-steps", default="10,20,50", help="curve section: teacher Euler steps")
    parser.add_argument("--curve-batches", default="1,16", help="curve section: streams at once")
    parser.add_argument("--profile-rows", type=int, default=25, help="profile section: ops to list")
    parser.add_argument("--profile-student", default="4",
                        help="profile section: the student's step count, with f for its commit folded (e.g. 1f)")
    parser.add_argument("--profile-batch", type=int, help="profile section: streams at once (default: the largest "
                        "of --batches)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--sections", default="memory,speed,latency",
                        help="comma-separated subset to run (also: profile, top kernels at the largest batch)")
    args = add_dry_run(parser).parse_args()
    if args.dry_run:
        return dry_run(arguments=args)
    device = torch.device(args.device)
    if args.quick:
        args.base_frames, args.teacher_frames, args.stream_frames, args.teacher_steps = 5, 9, 41, 4
        args.batches = "1,2"
    torch.manual_seed(0)
    model = VideoDiT(preset(args.preset)).to(device)
    sections = set(args.sections.split(","))
    if (args.compile or args.graphs) and not sections <= {"speed", "profile", "reaction", "curve", "latency"}:
        parser.error("--compile and --graphs apply to the speed, profile, reaction, curve and latency sections alone")
    if args.compile and "latency" in sections:
        parser.error("--compile does not apply to the latency section (a full cache has a new shape every block)")
    if args.graphs and device.type != "cuda":
        parser.error("--graphs needs a CUDA device")
    if args.compile:  # forward and forward_kv (the student's commit) both go through forward_kv
        # one graph per (batch, frames, context or not, CFG) variant: about 5 per batch for the student
        torch._dynamo.config.recompile_limit = 64
        model.forward_kv = torch.compile(model.forward_kv, dynamic=False)  # type: ignore[method-assign]
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"machine: {gpu}; torch {torch.__version__}; preset {args.preset} "
          f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params, {model.cfg.width_px}x{model.cfg.height}, "
          f"{model.cfg.tokens_per_frame} tokens/frame); {args.precision}{'; compiled' if args.compile else ''}"
          f"{'; CUDA graphs' if args.graphs else ''}")
    results: dict = {"machine": gpu, "preset": args.preset, "compiled": args.compile, "graphs": args.graphs}

    student = Student(model, StudentConfig(block_frames=args.block_frames, memory=COMPRESSED,
                                           static_view=args.static_view or args.compile or args.graphs))
    if args.graphs:
        student.graphs = BlockGraphs(student)
    if "memory" in sections:
        memory_section(student, args, device, results)
    if "speed" in sections:
        speed_section(student, args, device, results)
    if "latency" in sections:
        latency_section(student, args, device, results)
    if "reaction" in sections:
        reaction_section(student, args, device, results)
    if "curve" in sections:
        curve_section(student, args, device, results)
    if "profile" in sections:
        profile_section(student, args, device, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def memory_section(student: Student, args: argparse.Namespace, device: torch.device, results: dict) -> None:
    results["memory_mib"] = {}
    print("\npeak memory (MiB) of one generator backward vs rollout length")
    for mult in (1, 2, 4, 8):
        frames = 1 + (args.base_frames - 1) * mult
        row = {mode: peak_memory(student, frames, mode, device, args.precision) for mode in ("naive", "replay")}
        results["memory_mib"][frames] = row
        print(f"  {mult}x ({frames:4d} frames): naive {row['naive']:9.1f}   replay {row['replay']:9.1f}")
    mem = results["memory_mib"]
    lo, hi = min(mem), max(mem)
    for mode in ("naive", "replay"):
        print(f"  growth 1x -> 8x, {mode}: {mem[hi][mode] / mem[lo][mode]:.2f}x")



def speed_section(student: Student, args: argparse.Namespace, device: torch.device, results: dict) -> None:
    """Frames/s of the teacher sampling `teacher_frames`-frame clips (its eval sampler, CFG 1 and
    `--teacher-cfg`) and of the student generating the same frames, at each batch of `--batches`:
    batch 1 is one stream (launch-bound for a model this small), larger batches many streams
    at once, where both become compute-bound and the ratio approaches their FLOP ratio."""
    model = student.model
    model.eval()
    gen = args.teacher_frames - 1
    results["speed"] = {"teacher": f"{args.teacher_steps} Euler steps, bidirectional over {args.teacher_frames} frames",
                        "student": f"{len(student.config.steps)} steps + commit per {args.block_frames}-frame block",
                        "by_batch": {}}
    cfgs = sorted({1.0, args.teacher_cfg})
    flops = analytic_flops(student, args.teacher_frames, args.teacher_steps)
    results["speed"]["gflop_per_frame"] = flops
    print(f"\nmatmul GFLOP per generated frame (forward_flops): teacher {flops['teacher_cfg1']:.1f} (CFG 1), "
          f"student {flops['student']:.1f} -> at most {flops['teacher_cfg1'] / flops['student']:.1f}x at CFG 1, "
          f"{2 * flops['teacher_cfg1'] / flops['student']:.1f}x at CFG != 1, where compute-bound")
    print(f"\nframes/s generating {gen} frames per stream (teacher: {args.teacher_steps} steps; student: "
          f"{len(student.config.steps)} steps + commit)")
    for batch in (int(b) for b in args.batches.split(",")):
        first, actions, poses, noise = inputs(model, args.teacher_frames, device, batch=batch)
        field = teacher_velocity(model, actions, poses)
        row: dict[str, float] = {}
        with torch.no_grad(), autocast(device, args.precision):  # student first: its warm-up (compile) is shorter
            row["student"] = frames_per_second(lambda: student.rollout(first, actions, poses, noise, keep_store=False),
                                               batch * gen, device, 3)
            print(f"  batch {batch:3d}: student {row['student']:8.1f} ...", flush=True)
            for cfg in cfgs:
                run = teacher_sampler(field, first, args, device, args.teacher_steps, cfg)
                row[f"teacher_cfg{cfg:g}"] = frames_per_second(run, batch * gen, device, 3)
        for cfg in cfgs:
            row[f"ratio_cfg{cfg:g}"] = row["student"] / row[f"teacher_cfg{cfg:g}"]
        results["speed"]["by_batch"][batch] = row
        print(f"  batch {batch:3d}: student {row['student']:8.1f}  " + "  ".join(
            f"teacher CFG {cfg:g} {row[f'teacher_cfg{cfg:g}']:8.1f} ({row[f'ratio_cfg{cfg:g}']:.1f}x)" for cfg in cfgs))


def student_variant(student: Student, steps: int, graphs: bool, commit: str = "clean") -> Student:
    """The same network as an n-step student (warped schedule) with `commit`, with its own CUDA graphs if asked."""
    variant = Student(student.model, replace(student.config, steps=warped_steps(steps), commit=commit))
    if graphs:
        variant.graphs = BlockGraphs(variant)
    return variant


def curve_section(student: Student, args: argparse.Namespace, device: torch.device, results: dict) -> None:
    """Frames/s of `--teacher-frames`-frame streams: the student at each step count (its block
    schedule `warped_steps(n)`, a commit per block, CUDA graphs per block with --graphs), the teacher
    at each Euler step count and CFG (one graph per clip with --graphs), at each batch."""
    model = student.model
    model.eval()
    gen = args.teacher_frames - 1
    counts = [int(n) for n in args.student_steps.split(",")]
    commits = args.curve_commits.split(",")
    variants = [(n, c) for n in counts for c in commits]
    teacher_steps = [int(n) for n in args.curve_teacher_steps.split(",")]
    cfgs = sorted({1.0, args.teacher_cfg})
    curve: dict = {"teacher_frames": args.teacher_frames, "block_frames": args.block_frames,
                   "student": {student_key(n, c): {} for n, c in variants},
                   "teacher": {f"{t}_cfg{c:g}": {} for t in teacher_steps for c in cfgs}}
    print(f"\nspeed/quality curve, speed half: frames/s generating {gen} frames per stream")
    for batch in (int(b) for b in args.curve_batches.split(",")):
        first, actions, poses, noise = inputs(model, args.teacher_frames, device, batch=batch)
        field = teacher_velocity(model, actions, poses)
        with torch.no_grad(), autocast(device, args.precision):
            for n, commit in variants:
                variant = student_variant(student, n, args.graphs, commit)
                run = functools.partial(variant.rollout, first, actions, poses, noise, keep_store=False)
                fps = frames_per_second(run, batch * gen, device, 3)
                curve["student"][student_key(n, commit)][str(batch)] = fps
                label = "+ commit" if commit == "clean" else "commit folded"
                print(f"  batch {batch:3d}: student {n} step(s) {label:13s} {fps:9.1f}", flush=True)
                del variant, run  # its graphs' memory goes before the next variant's
            for steps in teacher_steps:
                for cfg in cfgs:
                    run = teacher_sampler(field, first, args, device, steps, cfg)
                    fps = frames_per_second(run, batch * gen, device, 3)
                    curve["teacher"][f"{steps}_cfg{cfg:g}"][str(batch)] = fps
                    print(f"  batch {batch:3d}: teacher {steps} steps CFG {cfg:g} {fps:9.1f}", flush=True)
                    del run
    results["curve"] = curve


def parse_student(spec: str) -> tuple[int, str]:
    """"4" -> (4, "clean"), "1f" -> (1, "fold"): a step count, f for the commit folded into the last step."""
    fold = spec.endswith("f")
    try:
        steps = int(spec[:-1] if fold else spec)
    except ValueError:
        raise ValueError(f"a student is a step count with an optional f (its commit folded), e.g. 4 or 1f; "
                         f"got {spec!r}")
    return steps, "fold" if fold else "clean"


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched while active: the eager ops a block issues around its graphs
    (a CUDA graph's replay dispatches none: its kernels are one launch)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def profile_section(student: Student, args: argparse.Namespace, device: torch.device, results: dict) -> None:
    """Where the time goes: torch.profiler over one student rollout (`--profile-student`) and one
    teacher sample (CFG 1) at `--profile-batch` streams, the top ops by device time (CPU time on a
    CPU) for each; and for each its wall time against the device's busy time (the kernels' total:
    what is left is the device waiting on the host) and the eager ops the student dispatches per
    block (with --graphs: those around the graphs, the view, the copies and the memory's append)."""
    from torch.profiler import ProfilerActivity, profile

    batch = args.profile_batch or max(int(b) for b in args.batches.split(","))
    model = student.model
    model.eval()
    steps, commit = parse_student(args.profile_student)
    variant = student_variant(student, steps, args.graphs, commit)
    first, actions, poses, noise = inputs(model, args.teacher_frames, device, batch=batch)
    field = teacher_velocity(model, actions, poses)
    blocks = len(block_spans(args.teacher_frames, args.block_frames)) - 1
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    results["profile"] = {}
    for name in ("student", "teacher"):
        with torch.no_grad(), autocast(device, args.precision):
            fn = (functools.partial(variant.rollout, first, actions, poses, noise, keep_store=False)
                  if name == "student"  # the teacher's sampler is captured here, under no_grad
                  else teacher_sampler(field, first, args, device, args.teacher_steps, 1.0))
            fn()
            sync(device)
            counter = OpCounter()
            with counter:
                fn()
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            wall = time.perf_counter() - start
            with profile(activities=activities) as prof:
                fn()
                sync(device)
        key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
        total = sum(getattr(e, key) for e in events)
        busy = total / 1e6 / wall  # the kernels' (or ops') seconds over the wall seconds
        what = f"{steps} step(s){', commit folded' if commit == 'fold' else ' + commit'}" if name == "student" else \
            f"{args.teacher_steps} steps, CFG 1"
        per_block = f"; {counter.ops / blocks:.0f} eager ops per block ({blocks} blocks)" if name == "student" else ""
        print(f"\nprofile, {name} ({what}), batch {batch}: {wall * 1e3:.1f} ms wall, {total / 1e3:.1f} ms of "
              f"{'device' if device.type == 'cuda' else 'CPU'} time ({100 * busy:.0f}% busy); "
              f"{counter.ops} eager ops{per_block}; top ops by self time")
        rows = []
        for e in events[:args.profile_rows]:
            t = getattr(e, key)
            rows.append({"op": e.key, "ms": t / 1e3, "share": t / total, "calls": e.count})
            print(f"  {t / 1e3:9.2f} ms {100 * t / total:5.1f}% {e.count:6d}x  {e.key[:90]}")
        entry = {"batch": batch, "wall_ms": wall * 1e3, "total_ms": total / 1e3, "busy": busy,
                 "eager_ops": counter.ops, "top": rows}
        if name == "student":
            entry.update(steps=steps, commit=commit, eager_ops_per_block=counter.ops / blocks)
        results["profile"][name] = entry


def analytic_flops(student: Student, frames: int, teacher_steps: int) -> dict[str, float]:
    """Matmul GFLOP per generated frame: the teacher's Euler steps over the whole clip (x2 with CFG),
    the student's steps + commit per block over its memory view (frame 0's commit included)."""
    cfg, memory, steps = student.model.cfg, student.config.memory, len(student.config.steps)
    teacher = teacher_steps * forward_flops(cfg, frames)
    total = forward_flops(cfg, 1)
    for start, end in block_spans(frames, student.config.block_frames)[1:]:
        total += (steps + 1) * forward_flops(cfg, end - start, view_tokens(start, cfg.grid, memory))
    gen = frames - 1
    return {"teacher_cfg1": teacher / gen / 1e9, "student": total / gen / 1e9}


def latency_section(student: Student, args: argparse.Namespace, device: torch.device, results: dict) -> None:
    """Per-frame latency at frame ~20 and ~`--stream-frames` - 21, compressed memory against a full
    cache, at each of `--latency-batches`. Eager: one long stream each, its blocks timed. With
    --graphs every block replays one captured program over a view padded to its capacity, so a block
    costs what its capacity holds wherever it is in the stream: the compressed memory is timed over a
    stream as eager is; the full cache at frame f is the memory whose capacity is exactly the full
    cache there (window f, nothing older), timed on the blocks where that view is full."""
    model = student.model
    near, far = 20, args.stream_frames - 21
    warm = 10 + 4 * args.block_frames  # blocks past the first few (graph capture, allocator warm-up)
    mode = "CUDA graphs" if args.graphs else "eager"
    results["latency_ms"] = {}
    for batch in (int(b) for b in args.latency_batches.split(",")):
        print(f"\nper-frame latency (ms) in a {args.stream_frames}-frame stream, batch {batch}, {mode}")
        figures: dict = {}
        for name, memory in (("compressed", COMPRESSED), ("full cache", FULL)):
            if args.graphs and name == "full cache":
                at = [full_cache_latency(student, f, batch, warm, device, args.precision) for f in (near, far)]
            else:
                s = Student(model, replace(student.config, memory=memory))
                lat = stream_latencies(s, args.stream_frames, batch, device, args.precision, args.graphs, warm)
                at = [around(lat, near), around(lat, far)]
            a, b = at[0] * 1e3, at[1] * 1e3
            tokens = (view_tokens(near, model.cfg.grid, memory), view_tokens(far, model.cfg.grid, memory))
            figures[name] = {"near": a, "far": b, "ratio": b / a, "frames": [near, far], "memory_tokens": tokens}
            print(f"  {name:10s}: frame {near} {a:6.2f}  frame {far} {b:6.2f}  ratio {b / a:.2f}  "
                  f"(memory tokens {tokens[0]} -> {tokens[1]})", flush=True)
        full_tokens, kept = view_tokens(far, model.cfg.grid, FULL), figures["compressed"]["memory_tokens"][1]
        print(f"  token reduction at frame {far}: {full_tokens} -> {kept} ({full_tokens / kept:.0f}x)")
        results["latency_ms"][str(batch)] = figures
    results["latency_mode"] = mode


def full_cache_memory(frame: int) -> MemoryConfig:
    """The bounded memory whose view is the full cache up to frame `frame` and whose fixed capacity
    is that cache (window `frame`, older frames dropped): a stream under it generates the same frames
    as under a full cache up to `frame` and, from there on, reads as many tokens a block."""
    return MemoryConfig(window=frame, pool=(0,), max_old=1)


def full_cache_latency(student: Student, frame: int, batch: int, warm: int, device: torch.device,
                       precision: str) -> float:
    """Seconds per frame of a CUDA-graphed block that reads the full cache of frame `frame`
    (full_cache_memory), timed on the blocks that start at or past `frame`, where its view is full."""
    s = Student(student.model, replace(student.config, memory=full_cache_memory(frame), static_view=True))
    lat = stream_latencies(s, frame + warm, batch, device, precision, True, warm)
    return statistics.median(t for start, t in lat if start >= frame)


def stream_latencies(student: Student, frames: int, batch: int, device: torch.device, precision: str,
                     graphs: bool, warm: int) -> list[tuple[int, float]]:
    """block_latencies of one stream; with `graphs`, CUDA graphs captured first on a stream of `warm`
    frames (the block shapes the timed stream has, a short last block included), then replayed."""
    if graphs:
        student.graphs = BlockGraphs(student)
        block_latencies(student, warm, device, precision, batch)
    return block_latencies(student, frames, device, precision, batch)


def reaction_times(student: Student, frames: int, device: torch.device, precision: str) -> list[tuple[int, float, float]]:
    """(block start, action -> frames seconds, commit seconds) for every block of one live stream at
    batch 1: a block's actions are handed over when the stream asks for them (after the previous
    block's commit, which is waited for), its frames are out when the stream yields them (synced)."""
    first, actions, poses, _ = inputs(student.model, frames, device)
    asked: dict[int, float] = {}
    shown: list[float] = []
    commits: dict[int, float] = {}

    def block_inputs(start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        sync(device)  # the previous block's commit is done: it ran while its frames were up
        now = time.perf_counter()
        if shown:
            commits[start] = now - shown[-1]
        asked[start] = now
        return actions[:, start:end], poses[:, start:end]

    out = []
    with torch.no_grad(), autocast(device, precision):
        for start, _end, _block in student.stream_live(first, poses[:, 0], block_inputs, torch.Generator().manual_seed(0),
                                                      frames=frames):
            sync(device)
            shown.append(time.perf_counter())
            out.append((start, shown[-1] - asked[start]))
    return [(start, seconds, commits.get(start + student.config.block_frames, float("nan"))) for start, seconds in out]


def reaction_section(student: Student, args: argparse.Namespace, device: torch.device, results: dict) -> None:
    """Action to first frame on screen, batch 1: a student block's steps in a running live stream (its
    commit off the path), for each step count of `--reaction-steps` (warped schedules, the same network),
    against one whole teacher clip (the teacher's next chance to show a new action)."""
    model = student.model
    model.eval()
    frames = max(args.stream_frames // 4, 10 + 4 * args.block_frames)
    first, actions, poses, _ = inputs(model, args.teacher_frames, device)
    field = teacher_velocity(model, actions, poses)
    with torch.no_grad(), autocast(device, args.precision):
        run = teacher_sampler(field, first, args, device, args.teacher_steps, 1.0)
        clip = args.teacher_frames / frames_per_second(run, args.teacher_frames, device, 5)
    del run
    results["reaction_ms"] = {}
    print(f"\naction -> first frame (ms, batch 1): teacher clip {clip * 1e3:.2f} ({args.teacher_frames} frames, "
          f"{args.teacher_steps} steps, CFG 1); a student's commit runs while its frames are up; target <= 0.1")
    for n in (int(c) for c in args.reaction_steps.split(",")):
        variant = student_variant(student, n, args.graphs)
        blocks, commits = [], []
        for _ in range(3):  # blocks past frame 10: the first stream's first blocks compile and capture the graphs
            for start, seconds, commit in reaction_times(variant, frames, device, args.precision):
                if start > 10:
                    blocks.append(seconds)
                    if not math.isnan(commit):  # the last block's commit is not timed (nothing asks for a next block)
                        commits.append(commit)
        del variant
        block, commit = statistics.median(blocks), statistics.median(commits)
        results["reaction_ms"][str(n)] = {
            "student_steps": n, "student_block": block * 1e3, "student_commit": commit * 1e3,
            "student_period": (block + commit) * 1e3, "teacher_clip": clip * 1e3, "ratio": block / clip,
            "block_frames": args.block_frames, "teacher_frames": args.teacher_frames,
            "teacher_steps": args.teacher_steps, "blocks_timed": len(blocks)}
        print(f"  student, {n} step(s): {block * 1e3:.2f} ({args.block_frames}-frame block; commit "
              f"{commit * 1e3:.2f}; median of {len(blocks)})  ratio {block / clip:.3f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
