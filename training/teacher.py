"""Train the bidirectional teacher from shards: `python -m training.teacher --shards ... --preset small --out DIR`.

Flow matching on image-to-video clips: frame 0 clean, the other frames noised to one shifted
sigma per clip, velocity loss on frames 1..F-1; actions and poses dropped together with
probability `optim.action_dropout` (the CFG unconditional), and always for plain video samples
(`posed` False: formats.md 3), which a batch may mix in. bf16 autocast on CUDA, optional
torch.compile, EMA weights for sampling. The run directory holds `checkpoint.pt` (resumed from
automatically), `log.jsonl` (loss, lr, clips/s, tokens/s, MFU every `log_every` steps),
`config.yaml` and `summary.json`; with `snapshot_every` also `snapshots/step<N>.pt` (weights only, loadable
wherever a checkpoint is: the points of a quality-against-training curve, bench/quality_curve.py).

Long horizon: train at a short `data.frames`, then start a new run `--init SHORT/checkpoint.pt`
at ≥ 4x the frames with `--set model.rope_time_scale=0.25` (position interpolation) or
`model.rope_time_ntk=4` (NTK); training/eval measures both before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F

from common.cli import add_dry_run, dry_run
from common.config import ConfigError, dump_yaml, load_config, to_dict
from common.stopping import StopSignals
from training.config import FlowConfig, ModelConfig, TrainConfig
from training.data import ActionSpecGuard, ClipBatch, crop, stream
from training.distributed import (Dist, any_rank, average_gradients, broadcast_parameters, leave, rank_seed,
                                  setup, teardown)
from training.flow import add_noise, draw_device, i2v_sigma, sample_sigma, velocity_target
from training.model import VideoDiT, forward_flops, load_init
from training.context import draw_window
from training.runtime import EMA, JsonlLog, Throughput, autocast, load_checkpoint, pick_device, save_checkpoint, unwrap


def teacher_loss(model: Callable[..., torch.Tensor], batch: ClipBatch, shift: float, dropout: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Flow-matching loss of one image-to-video batch (frames in [-1, 1]): its first `batch.clean`
    frames given clean (frame 0, or a memory context and the window's first), the rest noised to one
    sigma per clip and scored."""
    x0 = batch.frames
    b, f = x0.shape[:2]
    device = x0.device
    at = draw_device(generator, device)
    sigma = i2v_sigma(b, f, sample_sigma(b, shift, generator, at).to(device), device)
    sigma[:, :batch.clean] = 0.0
    noise = torch.randn(x0.shape, generator=generator, device=at).to(device, x0.dtype)
    keep = (torch.rand(b, generator=generator, device=at) >= dropout).to(device)
    if batch.posed is not None:  # plain video samples train the unconditional model only
        keep = keep & batch.posed
    extra = {} if batch.times is None else {"times": batch.times}
    v = model(add_noise(x0, noise, sigma), sigma, batch.actions, batch.poses, keep=keep, **extra)
    target = velocity_target(x0, noise)
    return F.mse_loss(v[:, batch.clean:].float(), target[:, batch.clean:].float())


def teacher_step(model: torch.nn.Module, forward: Callable[..., torch.Tensor], optimizer: torch.optim.Optimizer,
                 batches: Sequence[ClipBatch], config: TrainConfig, device: torch.device, place: Dist = Dist(),
                 generator: torch.Generator | None = None) -> tuple[float, float]:
    """One optimiser step over this rank's micro-batches (`optim.grad_accum` of them): their mean
    loss back-propagated locally, the gradients averaged over the ranks once, clipped, applied.
    Returns this rank's loss and the (global) gradient norm."""
    total = 0.0
    for batch in batches:
        with autocast(device, config.precision):
            loss = teacher_loss(forward, batch, config.flow.shift, config.optim.action_dropout, generator) / len(batches)
        loss.backward()
        total += float(loss.detach())
    average_gradients(model.parameters(), place)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total, float(grad_norm)


def lr_at(config: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up, then cosine decay to 10% over the run (progress in [0, 1], steps or time)."""
    base = config.optim.lr
    if step < config.optim.warmup_steps:
        return base * (step + 1) / config.optim.warmup_steps
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def build_model(model_config: ModelConfig, device: torch.device) -> VideoDiT:
    return VideoDiT(model_config).to(device)


def checkpoint_weights(state: dict[str, Any], weights: str = "ema") -> dict[str, torch.Tensor]:
    """The `weights` entry of a loaded checkpoint (EMA by default), or its raw model weights when absent."""
    return state[weights] if state.get(weights) is not None else state["model"]


def model_from_state(state: dict[str, Any], device: torch.device, *, weights: str = "ema",
                     **overrides: Any) -> VideoDiT:
    """A model from a loaded checkpoint's config and its EMA (or raw) weights; `overrides` change
    config fields that carry no weights (e.g. the RoPE time scale for a longer context)."""
    model = VideoDiT(ModelConfig(**{**state["model_config"], **overrides}))
    model.load_state_dict(checkpoint_weights(state, weights))
    return model.to(device).eval()


def flow_shift(state: dict[str, Any]) -> float:
    """The timestep shift a loaded checkpoint was trained with (its sampler's default)."""
    return float(state["config"].get("flow", {}).get("shift", FlowConfig().shift))


def model_from_checkpoint(path: pathlib.Path, device: torch.device, *, weights: str = "ema",
                          **overrides: Any) -> VideoDiT:
    return model_from_state(load_checkpoint(path, "cpu"), device, weights=weights, **overrides)


def train(config: TrainConfig, out: pathlib.Path, device: torch.device, progress_every: int | None = None,
          place: Dist = Dist(), stop: StopSignals | None = None) -> dict[str, Any]:
    """Train (or resume) the teacher in `out`; under torchrun `place` is this process's rank
    (training/distributed.py): the same model on every rank, rank-aware data and noise, gradients
    averaged once per step, only rank 0 writing. A signal `stop` received ends the run after the
    step in progress, as its budget does (checkpoint and summary written; summary["stopped"] names it)."""
    stop = StopSignals() if stop is None else stop  # one never entered: no signal reaches it
    torch.manual_seed(config.seed)
    model_config = config.model_config()
    model = build_model(model_config, device)
    ema = EMA(model, config.optim.ema) if config.optim.ema > 0 else None
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, betas=config.optim.betas,
                                  weight_decay=config.optim.weight_decay, fused=device.type == "cuda")
    step, elapsed = 0, 0.0
    checkpoint = out / "checkpoint.pt"
    specs = ActionSpecGuard(video=True)
    if checkpoint.exists():
        state = load_checkpoint(checkpoint, device)
        specs = ActionSpecGuard(state.get("action_spec"), "the resumed run", video=True, fps=state.get("fps"))
        if state["model_config"] != asdict(model_config):
            raise ConfigError(f"{checkpoint}: was trained with model {state['model_config']}, "
                              f"not {asdict(model_config)}; use a new --out")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optim"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        print(f"resumed {checkpoint} at step {step}", file=sys.stderr)
    elif config.init:
        added = load_init(model, checkpoint_weights(load_checkpoint(pathlib.Path(config.init), device)), config.init)
        if added:
            print(f"--init {config.init}: a plain video model; action and camera conditioning added "
                  f"({len(added)} tensors, zero-initialised outputs)", file=sys.stderr)
        if ema is not None:
            ema.load_state_dict(model.state_dict())
    resumed = checkpoint.exists()
    broadcast_parameters(model, place)  # every rank starts from rank 0's weights
    if ema is not None and place.active and not resumed:
        ema.load_state_dict(model.state_dict())
    if place.active:  # this rank's own noise and dropout draws
        torch.manual_seed(rank_seed(config.seed + step, place) + 1)
    if place.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_yaml(config))
    log = JsonlLog(out / "log.jsonl") if place.main else None
    forward = torch.compile(model) if config.compile else model
    frames = config.data.frames
    meter = Throughput(device)
    budget = None if config.max_minutes is None else config.max_minutes * 60
    started = time.perf_counter() - elapsed

    def weights() -> dict[str, Any]:
        return {"model": unwrap(model).state_dict(), "ema": None if ema is None else ema.state_dict(),
                "step": step, "elapsed": time.perf_counter() - started, "config": to_dict(config),
                "model_config": asdict(model_config), "action_spec": specs.spec, "fps": specs.fps}

    def save() -> None:
        save_checkpoint(checkpoint, {**weights(), "optim": optimizer.state_dict()})

    model.train()
    batches = iter(stream(config.data, seed=rank_seed(config.seed + step, place), device=device))
    while True:
        elapsed = time.perf_counter() - started
        if any_rank(step >= config.max_steps or (budget is not None and elapsed >= budget) or stop.received is not None,
                    place, device):
            break  # every rank stops at the same step, also when one rank's clock says so
        micro = []
        for _ in range(config.optim.grad_accum):
            raw = next(batches)
            specs.check(raw)
            clip = crop(raw, frames)
            if config.context.frames:  # a window and up to context.frames earlier frames of each sample
                clip = draw_window(frames, config.context.window, config.context.frames).take(clip)
            micro.append(clip.to(device))
        progress = max(step / config.max_steps, elapsed / budget if budget else 0.0)
        lr = lr_at(config, step, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, grad_norm = teacher_step(model, forward, optimizer, micro, config, device, place)
        if ema is not None:
            ema.decay = min(config.optim.ema, (1 + step) / (10 + step))
            ema.update(model)
        step += 1
        clips = sum(b.frames.shape[0] for b in micro) * place.world  # the global batch
        seen = [b.frames.shape[1] for b in micro]  # frames per clip: with context, a window and what it drew
        meter.add(clips, model_config.tokens_per_frame * clips * sum(seen) // len(seen),
                  3 * clips * sum(forward_flops(model_config, f) for f in seen) / len(seen))  # forward + backward
        if log is not None and step % config.log_every == 0:
            record = {"step": step, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                      "elapsed_s": round(time.perf_counter() - started, 2), **meter.report()}
            if device.type == "cuda":
                record["max_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
            log.write(record)
            if progress_every and step % progress_every == 0:
                print(json.dumps(record), file=sys.stderr, flush=True)
        if place.main and step % config.checkpoint_every == 0:
            save()
        if place.main and config.snapshot_every and step % config.snapshot_every == 0:
            save_checkpoint(out / "snapshots" / f"step{step:07d}.pt", weights())
    if not place.main:
        return {"steps": step, "rank": place.rank}
    save()
    log_path = out / "log.jsonl"  # absent when the run ended before its first log_every
    records = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    steady = [r for r in records if r["step"] > config.optim.warmup_steps] or records
    summary = {"steps": step, "train_seconds": round(time.perf_counter() - started, 1),
               "params": sum(p.numel() for p in model.parameters()), "frames": frames,
               "final_loss": records[-1]["loss"] if records else None,
               "clips_per_s": _mean(r["clips_per_s"] for r in steady),
               "tokens_per_s": _mean(r["tokens_per_s"] for r in steady),
               "mfu": _mean(r["mfu"] for r in steady if r.get("mfu") is not None),
               "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "stopped": stop.received}
    stop.notice(step, checkpoint)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _mean(values: Any) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.teacher", description=__doc__.split("\n")[0])
    parser.add_argument("--shards", help="shard URLs: a path, brace pattern or pipe: command (data.shards)")
    parser.add_argument("--preset", help="model size: tiny, small, base (preset)")
    parser.add_argument("--out", type=pathlib.Path, required=True, help="run directory (resumed if it has a checkpoint)")
    parser.add_argument("--config", type=pathlib.Path, help="TrainConfig YAML")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override")
    parser.add_argument("--minutes", type=float, help="training wall-time budget (max_minutes)")
    parser.add_argument("--steps", type=int, help="max_steps")
    parser.add_argument("--init", help="start from this checkpoint's weights (e.g. for the long-context stage)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--device", help="torch device (default: cuda if available)")
    parser.add_argument("--progress-every", type=int, default=200, help="print a log record every N steps")
    args = add_dry_run(parser).parse_args(argv)
    overrides = list(args.set)
    for key, value in (("data.shards", args.shards), ("preset", args.preset), ("max_minutes", args.minutes),
                       ("max_steps", args.steps), ("init", args.init)):
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.compile:
        overrides.append("compile=true")
    try:
        config = load_config(TrainConfig, args.config, overrides)
        config.model_config()
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        return dry_run(out=args.out, config=config)
    place, ranked = setup(args.device)  # under torchrun: this process's rank and device
    device = ranked or pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    finished = False
    try:
        with StopSignals() as stop:
            summary = train(config, args.out, device, args.progress_every, place, stop)
        finished = True
    finally:
        teardown(place, finished)
    if place.main:
        print(json.dumps(summary, indent=2))
    return leave(place, stop.exit_code())  # 128 + the signal's number when one stopped the run


if __name__ == "__main__":
    sys.exit(main())
