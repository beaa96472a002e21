"""`python -m training.eval --checkpoint RUN/checkpoint.pt --manifest BUILD/manifest.parquet --out DIR`

Renders (or reuses, `--cache`) the held-out clips in the build's val scenes, samples the model with
each script's actions, with shuffled scripts, and the baselines copy-first-frame and warp-first-frame (the
first frame moved along the path by its rendered depth: geometry with nothing learned), and writes
DIR/metrics.json (PSNR/SSIM mean ± SE overall, per kind, per frame; paired differences) and
DIR/grid.png. `--student` evaluates a distilled student streaming over its memory (override the
memory with --memory-window/--memory-pool/--memory-max-old, e.g. window-only: --memory-pool 0);
metrics.json's "revisit" holds the last-frame PSNR of out-and-back clips per clip. `--rope-time-scale` / `--rope-time-ntk` evaluate a checkpoint at a longer context
without retraining (RoPE extension before fine-tuning).

Action following: metrics.json's "paths" holds the relative pose error of the camera path recovered
from every video (training.eval.odometry) against the commanded path, for the model, the baselines
and the ground-truth renders (the estimator's floor). Memory: with `--revisit 2,4,8` (a student's
default) the revisit scripts (out-and-back walks and a square loop) that return to their first pose
after 2x, 4x and 8x the memory window are rolled out, with the student's memory and window-only
(pool 0), and "revisits" holds their return-frame PSNR/SSIM. DIR/table.md has every method in a row.
Scripts that fit no start pose (long clips at a low frame rate: 6.4 s of `down` or `pitch_up`) are left
out of the set and listed, with their reasons, under "unfit" (and under each revisit multiple).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from common.cli import add_dry_run, dry_run
from common.config import to_dict
from training.eval.evaluate import (SamplerConfig, frame_metrics, paths_report, return_frame_metrics, revisit,
                                    run_method, shuffled_scripts, student_generator, summarize, summarize_returns,
                                    teacher_generator, warp_first_videos)
from training.eval.table import markdown_table, strict_json, unfit_lines
from training.eval.grid import pick_clips, save_grid
from training.data import checkpoint_action_spec, checkpoint_fps
from training.eval.groundtruth import EvalSetConfig, cached_eval_set, script_frames, unfit_summary
from training.eval.odometry import TRACKERS, OdometryConfig
from training.runtime import autocast, load_checkpoint, pick_device
from training.student import Student
from training.student_train import student_from_state
from training.teacher import flow_shift, model_from_state

GRID_SCRIPTS = ("forward", "yaw_right", "left", "forward+yaw_right", "pitch_up", "forward~back")


def val_scenes(manifest: pathlib.Path) -> tuple[str, ...]:
    import pandas as pd

    table = pd.read_parquet(manifest, columns=["split", "scene"])
    scenes = tuple(sorted(table.loc[table["split"] == "val", "scene"].unique()))
    if not scenes:
        raise ValueError(f"{manifest}: no val scenes (build with splits.val_fraction > 0)")
    return scenes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.eval", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, required=True,
                        help="a teacher checkpoint, or with --student a training.student_train one")
    parser.add_argument("--student", action="store_true", help="evaluate the causal student (streamed)")
    parser.add_argument("--memory-window", type=int, help="student: override memory.window (frames)")
    parser.add_argument("--memory-pool", help="student: override memory.pool, e.g. 2,4 (0 drops older frames)")
    parser.add_argument("--memory-max-old", type=int, help="student: override memory.max_old")
    parser.add_argument("--memory-select", choices=("spaced", "view"),
                        help="student: override memory.select (view: retrieve older frames by view overlap; "
                             "with --memory-pool 1)")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--manifest", type=pathlib.Path, help="a build's manifest.parquet: evaluate in its val scenes")
    where.add_argument("--scenes", help="comma-separated stand-in scenes (never trained on)")
    parser.add_argument("--frames", type=int, default=9, help="frames per generated clip (first frame given)")
    parser.add_argument("--starts", type=int, default=3, help="start poses per scene")
    parser.add_argument("--steps", type=int, default=20, help="Euler steps")
    parser.add_argument("--shift", type=float, help="sampler timestep shift (default: the checkpoint's)")
    parser.add_argument("--guidance", type=float, default=1.0, help="CFG scale on actions+poses (1 = off)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rope-time-scale", type=float, help="override model.rope_time_scale")
    parser.add_argument("--rope-time-ntk", type=float, help="override model.rope_time_ntk")
    parser.add_argument("--cache", type=pathlib.Path, help="eval-set cache (.npz), reused when its settings match; "
                        "revisit sets are cached next to it")
    parser.add_argument("--revisit", help="student: multiples of the memory window after which revisit scripts "
                        "return, e.g. 2,4,8 (the student's default; 'none' skips)")
    parser.add_argument("--no-rpe", action="store_true", help="skip the pose estimation (action following)")
    parser.add_argument("--odometry", choices=TRACKERS, default=OdometryConfig.tracker,
                        help="how the RPE's visual odometry follows points: dense optical flow (default) or "
                             "corners tracked by Lucas-Kanade (the estimator of results before 2026-12-07)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes rendering ground truth")
    parser.add_argument("--device")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    args = add_dry_run(parser).parse_args(argv)
    if args.dry_run:
        return dry_run(arguments=args)

    scenes = val_scenes(args.manifest) if args.manifest else tuple(s for s in args.scenes.split(",") if s)
    device = pick_device(args.device)
    overrides = {k: v for k, v in (("rope_time_scale", args.rope_time_scale), ("rope_time_ntk", args.rope_time_ntk))
                 if v is not None}
    state = load_checkpoint(args.checkpoint, "cpu")  # read once: weights, model and run config
    student = None
    if args.student:
        student = student_from_state(state, device, str(args.checkpoint))
        memory = student.config.memory
        changes: dict[str, Any] = {k: v for k, v in (
            ("window", args.memory_window), ("max_old", args.memory_max_old), ("select", args.memory_select),
            ("pool", tuple(int(p) for p in args.memory_pool.split(",")) if args.memory_pool else None))
            if v is not None}
        try:
            memory = replace(memory, **changes)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        student = Student(student.model, replace(student.config, memory=memory))
        model = student.model
    else:
        model = model_from_state(state, device, **overrides)
    shift = args.shift if args.shift is not None else flow_shift(state)
    spec = checkpoint_action_spec(state)  # commanded actions binned as the training data was
    fps = checkpoint_fps(state)  # and stepped at the rate the model was trained at
    del state
    cfg = model.cfg
    set_config = EvalSetConfig(scenes=scenes, starts=args.starts, frames=script_frames(args.frames, fps), fps=fps,
                               width=cfg.width_px, height=cfg.height, actions=spec)
    started = time.perf_counter()
    eval_set = cached_eval_set(set_config, args.cache, args.workers)
    clips = eval_set.clips
    render_s = time.perf_counter() - started
    unfit = unfit_summary(eval_set.unfit)
    for line in unfit_lines(unfit):
        print(f"left out of the eval set: {line}", file=sys.stderr)
    sampler = SamplerConfig(frames=args.frames, steps=args.steps, shift=shift, guidance=args.guidance,
                            batch=args.batch)
    precision = lambda: autocast(device, args.precision)  # noqa: E731
    generate = student_generator(student, precision) if student is not None else \
        teacher_generator(model, sampler, precision)
    started = time.perf_counter()
    videos = {"model": run_method(generate, clips, sampler, device),
              "shuffled": run_method(generate, clips, sampler, device, shuffled_scripts(clips, seed=1)),
              "copy_first": run_method(None, clips, sampler, device)}
    sample_s = time.perf_counter() - started
    videos["warp_first"] = warp_first_videos(clips, args.frames, set_config.fov)  # geometry: no sampling
    metrics = {name: frame_metrics(v, clips) for name, v in videos.items()}
    summary = summarize(metrics, clips)
    summary["revisit"] = revisit(metrics, clips)
    if not args.no_rpe:
        summary["paths"] = paths_report(videos, clips, args.frames, set_config.fov, args.workers,
                                        OdometryConfig(tracker=args.odometry))
    multiples = _revisit_multiples(args.revisit, student is not None)
    if multiples:
        if student is None:
            raise SystemExit("--revisit needs --student (revisits are measured against the memory window)")
        summary["revisits"] = _revisits(student, multiples, set_config, args, sampler, precision, device)
    report = {"checkpoint": str(args.checkpoint), "scenes": list(scenes), "fps": fps, "sampler": asdict(sampler),
              "student": None if student is None else to_dict(student.config),
              "model_overrides": overrides, "unfit": unfit,
              "render_seconds": round(render_s, 1),
              "sample_seconds": round(sample_s, 1), **summary}
    args.out.mkdir(parents=True, exist_ok=True)
    report = strict_json(report)  # NaN/inf (an empty group, one clip's SE) as null
    (args.out / "metrics.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    (args.out / "table.md").write_text(markdown_table(report))
    save_grid(args.out / "grid.png", clips, {"model": videos["model"], "shuffled": videos["shuffled"]},
              pick_clips(clips, GRID_SCRIPTS))
    methods = summary["methods"]
    print(" ".join(f"{m}: PSNR {v['psnr']['mean']:.2f}±{v['psnr']['se']:.2f} SSIM {v['ssim']['mean']:.3f}"
                   for m, v in methods.items()))
    for name, diff in summary["paired"].items():
        d = diff["psnr_db"]
        print(f"{name}: {d['mean']:+.2f} dB ± {d['se']:.2f} (z = {d['z']:.1f}, n = {d['n']})")
    print(markdown_table(report))
    return 0


def _revisit_multiples(option: str | None, is_student: bool) -> tuple[int, ...]:
    if option is None:
        return (2, 4, 8) if is_student else ()
    if option.strip().lower() in ("", "none", "0"):
        return ()
    return tuple(int(m) for m in option.split(",") if m)


def _revisits(student: Student, multiples: tuple[int, ...], set_config: EvalSetConfig, args: argparse.Namespace,
              sampler: SamplerConfig, precision: Any, device: Any) -> dict[str, Any]:
    """Return-frame PSNR/SSIM of the revisit scripts after each multiple of the memory window, with the
    student's memory and window-only."""
    window = student.config.memory.window
    if not window:
        raise SystemExit("--revisit needs a student memory window (memory.window >= 1)")
    window_only = Student(student.model, replace(student.config, memory=replace(student.config.memory, pool=(0,))))
    out: dict[str, Any] = {}
    for multiple in multiples:
        transitions = multiple * window
        if transitions % 4:
            raise SystemExit(f"--revisit {multiple}: {multiple} x window {window} must be a multiple of 4 steps")
        config = replace(set_config, frames=transitions + 1, scripts="revisit")
        cache = args.cache.with_name(f"{args.cache.stem}_revisit{transitions}.npz") if args.cache else None
        eval_set = cached_eval_set(config, cache, args.workers)
        clips = eval_set.clips
        long = replace(sampler, frames=transitions + 1)
        videos = {"model": run_method(student_generator(student, precision), clips, long, device),
                  "window_only": run_method(student_generator(window_only, precision), clips, long, device)}
        out[f"{multiple}x"] = {"frames": transitions + 1, "window": window,
                               "unfit": unfit_summary(eval_set.unfit),
                               **summarize_returns({k: return_frame_metrics(v, clips) for k, v in videos.items()},
                                                   clips)}
    return out


if __name__ == "__main__":
    sys.exit(main())
