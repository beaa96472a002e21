"""Camera conditioning A/B that fits a CPU: tiny teachers on small frames, one per arm, same data,
same steps, same seed, scored on held-out scenes against copying the first frame.

This is a test of a mechanism, not of the README's model: whether an arm lets a model follow the
commanded camera at all, in minutes on a laptop-class CPU. The training clips are the
evaluation's own action scripts (every single motion, six mixes, three out-and-back walks: the
metric bins' rates) played from random textured start poses in stand-in scenes that are never
evaluated (seeds from `--first-seed`), rendered at `--width`x`--height`; the held-out set is the
same scripts in the evaluation's 8 held-out scenes. Every arm trains from the same initial weights
on the same batches in the same order (the loss is the teacher's: flow matching, frame 0 clean,
actions and poses dropped 10%), and its EMA weights are sampled with the Euler sampler. PSNR per
clip is paired across arms and against copy-first, overall and by script group (rotations only,
translations only, mixes, out-and-back); each arm is also scored with another clip's script
(shuffled), so "arm − shuffled" says how much of its score comes from following the actions.
`--fps` plays the scripts at another rate (5: three times the motion per step of the default 15),
training and held-out clips alike.

    python bench/camera_cpu.py --arms grid rays --steps 1500 --json out/camera_cpu.json

Prints the machine, the settings, each arm's training time and the tables.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so the packages are found)

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import HELD_OUT_SCENES, machine  # noqa: E402
from training.conditioning import frame_actions  # noqa: E402
from training.config import ModelConfig, TrainConfig  # noqa: E402
from training.data import ClipBatch, to_unit  # noqa: E402
from training.eval.evaluate import (SamplerConfig, frame_metrics, run_method, shuffled_scripts,  # noqa: E402
                                    teacher_generator)
from training.eval.groundtruth import EvalClip, EvalSetConfig, cached_eval_set, unfit_summary  # noqa: E402
from training.eval.table import unfit_lines  # noqa: E402
from training.eval.scripts import GROUPS, script_group  # noqa: E402
from training.eval.stats import mean_se  # noqa: E402
from training.model import VideoDiT  # noqa: E402
from training.runtime import EMA  # noqa: E402
from training.teacher import lr_at, teacher_step  # noqa: E402

KINDS = ("room", "corridor", "courtyard", "street")
#: arm name -> model overrides
ARMS: dict[str, dict[str, Any]] = {
    "grid": {"spatial_rope": "grid"}, "rays": {"spatial_rope": "rays"}, "plucker": {"camera": "plucker"},
    "plucker_rays": {"camera": "plucker", "spatial_rope": "rays"},
    # camera transforms in attention next to the view-direction RoPE: 8 camera dims added to each 24-dim head
    "prope_rays": {"camera": "pose+prope", "prope_dims": 8, "spatial_rope": "rays"}}


def batches(clips: list[EvalClip], batch: int, seed: int) -> Any:
    """Endless random batches of whole clips (uint8 frames, per-frame actions, poses)."""
    frames = torch.from_numpy(np.stack([c.frames for c in clips])).permute(0, 1, 4, 2, 3).contiguous()
    actions = frame_actions(torch.from_numpy(np.stack([c.actions for c in clips])).float())
    poses = torch.from_numpy(np.stack([c.poses for c in clips]))
    g = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, len(clips), (batch,), generator=g)
        yield ClipBatch(to_unit(frames[idx]), actions[idx], poses[idx])


def train_arm(model_config: ModelConfig, clips: list[EvalClip], steps: int, batch: int, seed: int
              ) -> tuple[VideoDiT, dict[str, Any]]:
    torch.manual_seed(seed)
    model = VideoDiT(model_config)
    config = replace(TrainConfig(), max_steps=steps, precision="fp32")
    ema = EMA(model, config.optim.ema)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, betas=config.optim.betas,
                                  weight_decay=config.optim.weight_decay)
    data = batches(clips, batch, seed)
    noise = torch.Generator().manual_seed(seed + 1)
    losses, started = [], time.perf_counter()
    for step in range(steps):
        for g in optimizer.param_groups:
            g["lr"] = lr_at(config, step, step / steps)
        loss, _ = teacher_step(model, model, optimizer, [next(data)], config, torch.device("cpu"), generator=noise)
        ema.decay = min(config.optim.ema, (1 + step) / (10 + step))
        ema.update(model)
        losses.append(loss)
    seconds = time.perf_counter() - started
    model.load_state_dict(ema.state_dict())
    tail = losses[-max(1, steps // 10):]
    return model.eval(), {"train_s": round(seconds, 1), "s_per_step": round(seconds / steps, 3),
                          "final_loss": float(np.mean(tail))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", default=["grid", "rays"], choices=sorted(ARMS))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=5, help="frames per clip (first given)")
    parser.add_argument("--fps", type=float, default=15.0, help="rate the scripts are played at")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=36)
    parser.add_argument("--patch", type=int, default=4, help="pixels per token side (8 at 128x72: the same 16x9 "
                        "tokens as 4 at 64x36, four times the pixels in each; needs --model-width >= 3 x patch^2)")
    parser.add_argument("--model-width", type=int, default=96)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--scenes", type=int, default=24, help="training scenes (seeds from --first-seed)")
    parser.add_argument("--starts", type=int, default=6, help="start poses per training scene")
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--sample-steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=pathlib.Path, default=pathlib.Path("out/camera_cpu"))
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args()
    if args.model_width < 3 * args.patch ** 2:  # measured: width 96 at patch 8 (192 values) learns nothing
        parser.error(f"--model-width {args.model_width} is below the {3 * args.patch ** 2} values of a "
                     f"{args.patch}x{args.patch} RGB token: each token is squeezed below its own pixels")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(machine())
    train_scenes = tuple(f"{KINDS[i % 4]}_{args.first_seed + i:04d}" for i in range(args.scenes))
    size = dict(frames=args.frames, width=args.width, height=args.height, fps=args.fps)
    rate = "" if args.fps == 15.0 else f"_{args.fps:g}fps"  # the caches of runs before --fps keep their names
    started = time.perf_counter()
    name = f"{args.width}x{args.height}_{args.frames}{rate}.npz"
    train_set = cached_eval_set(EvalSetConfig(scenes=train_scenes, starts=args.starts, **size),
                                args.cache / f"train_{name}", args.workers)
    held_set = cached_eval_set(EvalSetConfig(scenes=HELD_OUT_SCENES, starts=3, **size), args.cache / f"held_{name}",
                               args.workers)
    for label, eval_set in (("training", train_set), ("held-out", held_set)):
        for line in unfit_lines(unfit_summary(eval_set.unfit)):
            print(f"left out of the {label} clips: {line}")
    train, held = train_set.clips, held_set.clips
    print(f"data: {len(train)} training clips in {len(train_scenes)} scenes, {len(held)} held-out clips in "
          f"{len(HELD_OUT_SCENES)} scenes, {args.frames} frames at {args.width}x{args.height} (patch {args.patch}), "
          f"{args.fps:g} fps ({time.perf_counter() - started:.0f} s)")
    base = ModelConfig(width=args.model_width, depth=args.depth, heads=args.model_width // 24, patch=args.patch,
                       height=args.height, width_px=args.width)
    sampler = SamplerConfig(frames=args.frames, steps=args.sample_steps, shift=3.0, batch=64)
    device = torch.device("cpu")
    psnr: dict[str, np.ndarray] = {"copy_first": frame_metrics(run_method(None, held, sampler, device), held)["psnr"]}
    arms: dict[str, Any] = {}
    for arm in args.arms:
        model, info = train_arm(replace(base, **ARMS[arm]), train, args.steps, args.batch, args.seed)
        generate = teacher_generator(model, sampler, torch.no_grad)
        with torch.no_grad():
            videos = run_method(generate, held, sampler, device)
            shuffled = run_method(generate, held, sampler, device, shuffled_scripts(held, seed=1))
        psnr[arm] = frame_metrics(videos, held)["psnr"]
        psnr[f"{arm}_shuffled"] = frame_metrics(shuffled, held)["psnr"]
        arms[arm] = info
        print(f"{arm}: {args.steps} steps in {info['train_s']:.0f} s ({info['s_per_step']:.2f} s/step), "
              f"final loss {info['final_loss']:.4f}", flush=True)
    groups = ["all", *GROUPS]
    member = {g: np.array([g == "all" or script_group(c.script) == g for c in held]) for g in groups}
    table = {name: {g: mean_se(values[member[g]]) for g in groups} for name, values in psnr.items()}
    paired = {}
    names = list(args.arms)
    pairs = ([(a, "copy_first") for a in names] + [(a, f"{a}_shuffled") for a in names]
             + [(b, a) for i, a in enumerate(names) for b in names[i + 1:]])
    for a, b in pairs:
        paired[f"{a}-{b}"] = {g: mean_se((psnr[a] - psnr[b])[member[g]]) for g in groups}
    print(f"\nPSNR dB on {len(held)} held-out clips (mean ± SE), by script group")
    print(f"{'method':<14}" + "".join(f"{g:>18}" for g in groups))
    for name, row in table.items():
        print(f"{name:<14}" + "".join(f"{row[g]['mean']:>11.2f} ± {row[g]['se']:.2f}" for g in groups))
    print("\npaired differences dB (mean ± SE)")
    for name, row in paired.items():
        print(f"{name:<22}" + "".join(f"{row[g]['mean']:>+10.2f} ± {row[g]['se']:.2f}" for g in groups))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
                                         "arms": arms, "psnr": table, "paired": paired,
                                         "per_clip": {k: v.tolist() for k, v in psnr.items()}}, indent=2))


if __name__ == "__main__":
    main()
