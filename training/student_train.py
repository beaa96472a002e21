"""Distil a teacher checkpoint into the causal student:
`python -m training.student_train --teacher T/checkpoint.pt --shards ... --stage ode|dmd --out DIR`.

* `--stage ode`: ODE init with hybrid forcing. The teacher integrates each streamed clip from noise
  (its `ode_teacher_steps`-step shifted schedule with the student's sigmas inserted, CFG
  `ode_guidance`; each trajectory batch serves `ode_reuse` updates, at fresh random steps), and the student
  regresses its last `noisy_blocks` blocks to the teacher's endpoint over a compressed clean context.
  The student starts from the teacher's weights (or `--init`).
* `--stage dmd`: distribution matching over self-rollouts of `data.frames` frames (which may exceed
  the teacher's clips: pass `teacher_rope_time_scale` for the teacher's position interpolation).
  Every step the fake score takes one flow-matching step on a fresh rollout; every `critic_steps`-th
  step the generator takes one: rollout without grad, Δ over the whole sequence, replayed backward
  block by block, one optimiser step. Fake score and generator start from `--init` (the ODE stage's
  checkpoint) / the teacher. AdamW with β1 = 0 for both (Self-Forcing).
The run directory holds checkpoint.pt (resumed automatically), log.jsonl, config.yaml, summary.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from common.cli import add_dry_run, dry_run
from common.config import ConfigError, dump_yaml, from_dict, load_config, to_dict
from common.stopping import StopSignals
from training.config import DataConfig
from training.data import ActionSpecGuard, ClipBatch, crop, stream
from training.distributed import (Dist, any_rank, average_gradients, broadcast_parameters, leave, rank_seed,
                                  setup, teardown)
from training.distill import (DMDConfig, critic_loss, dmd_delta, hybrid_forcing_loss, ode_prefix_blocks, ode_targets,
                              score_window, teacher_velocity)
from training.model import VideoDiT
from training.runtime import EMA, JsonlLog, autocast, load_checkpoint, pick_device, save_checkpoint
from training.student import Student, StudentConfig
from training.teacher import flow_shift, model_from_checkpoint, model_from_state


@dataclass(frozen=True)
class StudentTrainConfig:
    teacher: str = ""  # teacher checkpoint (its EMA weights)
    init: str | None = None  # student (and fake score) start; default the teacher
    stage: Literal["ode", "dmd"] = "ode"
    data: DataConfig = field(default_factory=lambda: DataConfig(frames=17, batch_size=8))
    student: StudentConfig = field(default_factory=StudentConfig)
    ode_teacher_steps: int = 20  # the teacher's Euler steps (its sampler schedule; student sigmas inserted)
    ode_shift: float | None = None  # that schedule's shift; default the teacher checkpoint's flow shift
    ode_reuse: int = 1  # student updates per teacher trajectory batch (the ODE targets are the costly part)
    ode_guidance: float = 1.0
    noisy_blocks: int = 2
    ode_prefix: Literal["full", "random"] = "random"  # the clip's first n blocks per update, n uniform in
    #   [noisy_blocks, all]: the noisy blocks land at every position (with "full" always at the clip's end,
    #   never right after the first frame)
    dmd: DMDConfig = field(default_factory=DMDConfig)
    teacher_rope_time_scale: float | None = None
    lr: float = 5e-5
    beta1: float | None = None  # AdamW β1 of both optimisers; default 0.9 for ode, 0 for dmd (Self-Forcing)
    ema_decay: float = 0.0  # EMA of the generator's weights (saved as "ema", what eval and --init load); 0 = off
    critic_lr: float = 5e-5
    grad_clip: float = 1.0
    grad_accum: int = 1  # micro-batches per optimiser step and rank (ODE updates, DMD critic and generator
    #   steps alike): the global batch is data.batch_size x grad_accum x processes
    seed: int = 0
    max_steps: int = 100_000
    max_minutes: float | None = None
    log_every: int = 20
    checkpoint_every: int = 500
    precision: Literal["bf16", "fp32"] = "bf16"

    def __post_init__(self) -> None:
        if not 0 <= self.ema_decay < 1 or (self.beta1 is not None and not 0 <= self.beta1 < 1):
            raise ValueError(f"ema_decay and beta1 must be in [0, 1), got {self.ema_decay}, {self.beta1}")
        if self.ode_teacher_steps < 1 or self.ode_reuse < 1 or self.grad_accum < 1:
            raise ValueError(f"ode_teacher_steps, ode_reuse and grad_accum must be >= 1, got "
                             f"{self.ode_teacher_steps}, {self.ode_reuse}, {self.grad_accum}")


def train(config: StudentTrainConfig, out: pathlib.Path, device: torch.device, place: Dist = Dist(),
          stop: StopSignals | None = None) -> dict[str, Any]:
    """Train (or resume) a student stage in `out`; under torchrun `place` is this process's rank
    (training/distributed.py): the generator and the critic start from rank 0's weights, each rank
    draws its own data and noise, and every gradient (the ODE loss's, the critic's, the generator's
    replayed backward) is averaged over the ranks once before its optimiser step; the frozen
    teacher is only read. Rank 0 alone writes. A signal `stop` received ends the run after the step
    in progress, as its budget does (checkpoint and summary written; summary["stopped"] names it)."""
    stop = StopSignals() if stop is None else stop  # one never entered: no signal reaches it
    torch.manual_seed(config.seed)
    if not config.teacher:
        raise ConfigError("teacher: a teacher checkpoint is required (--teacher)")
    rope: dict[str, Any] = ({} if config.teacher_rope_time_scale is None
                            else {"rope_time_scale": config.teacher_rope_time_scale})
    teacher_state = load_checkpoint(pathlib.Path(config.teacher), "cpu")  # read once: teacher, shift, default init
    if config.stage == "dmd" and config.dmd.context:
        context_ready(teacher_state, config.dmd.context, config.data.frames, config.teacher)
    teacher = model_from_state(teacher_state, device, **rope).requires_grad_(False)
    ode_shift = config.ode_shift if config.ode_shift is not None else flow_shift(teacher_state)
    generator_model = (model_from_checkpoint(pathlib.Path(config.init), device) if config.init
                       else model_from_state(teacher_state, device)).train()
    specs = ActionSpecGuard(teacher_state.get("action_spec"), f"its teacher {config.teacher}",
                            fps=teacher_state.get("fps"))
    del teacher_state
    student = Student(generator_model, config.student)
    fake = copy.deepcopy(teacher).train().requires_grad_(True) if config.stage == "dmd" else None
    betas = (config.beta1 if config.beta1 is not None else (0.9 if config.stage == "ode" else 0.0), 0.999)
    ema = EMA(generator_model, config.ema_decay) if config.ema_decay > 0 else None
    optimizer = torch.optim.AdamW(generator_model.parameters(), lr=config.lr, betas=betas, weight_decay=0.01)
    critic_opt = None if fake is None else torch.optim.AdamW(fake.parameters(), lr=config.critic_lr, betas=betas,
                                                              weight_decay=0.01)
    checkpoint = out / "checkpoint.pt"
    step, elapsed = 0, 0.0
    if checkpoint.exists():
        state = load_checkpoint(checkpoint, device)
        generator_model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optim"])
        if fake is not None and critic_opt is not None:
            fake.load_state_dict(state["fake"])
            critic_opt.load_state_dict(state["critic_optim"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        if ema is not None:
            ema.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    broadcast_parameters(generator_model, place)
    if fake is not None:
        broadcast_parameters(fake, place)
    if ema is not None and place.active and not checkpoint.exists():
        ema.load_state_dict(generator_model.state_dict())
    if place.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(dump_yaml(config))
    log = JsonlLog(out / "log.jsonl") if place.main else None
    started = time.perf_counter() - elapsed
    budget = None if config.max_minutes is None else config.max_minutes * 60
    gen = torch.Generator(device).manual_seed(rank_seed(config.seed + step, place))  # all training noise, on the device

    def save() -> None:
        save_checkpoint(checkpoint, {
            "model": generator_model.state_dict(), "ema": None if ema is None else ema.state_dict(),
            "optim": optimizer.state_dict(),
            "fake": None if fake is None else fake.state_dict(),
            "critic_optim": None if critic_opt is None else critic_opt.state_dict(),
            "step": step, "elapsed": time.perf_counter() - started, "config": to_dict(config),
            "model_config": asdict(generator_model.cfg), "student_config": to_dict(config.student),
            "action_spec": specs.spec, "fps": specs.fps})

    window_start = time.perf_counter()
    targets: list[tuple[torch.Tensor, torch.Tensor]] = []
    uses = config.ode_reuse if config.stage == "ode" else 1
    pending: list[MicroBatch] = []
    for raw in stream(config.data, seed=rank_seed(config.seed + step, place), device=device):
        specs.check(raw)
        batch = crop(raw, config.data.frames).to(device)
        noise = torch.randn(batch.frames[:, 1:].shape, generator=gen, device=device)
        pending.append(MicroBatch(batch, batch.frames[:, 0], noise, gen))
        if len(pending) < config.grad_accum:
            continue
        parts, pending = pending, []
        for use in range(uses):  # ODE: `ode_reuse` student updates per teacher trajectory batch
            if any_rank(step >= config.max_steps or (budget is not None and time.perf_counter() - started >= budget)
                        or stop.received is not None, place, device):
                break  # every rank stops at the same step
            record: dict[str, Any] = {"step": step + 1}
            with autocast(device, config.precision):
                if config.stage == "ode":
                    if use == 0:
                        targets = [ode_targets(teacher_velocity(teacher, p.batch.actions, p.batch.poses), p.first,
                                               p.noise, config.student.steps, config.ode_teacher_steps, ode_shift,
                                               config.ode_guidance) for p in parts]
                    record.update(_ode_step(config, student, optimizer, parts, targets, place), ode_use=use)
                    if ema is not None:
                        ema.update(generator_model)
                elif fake is not None and critic_opt is not None:  # dmd: both exist
                    record.update(_dmd_step(config, step, student, teacher, fake, optimizer, critic_opt, parts,
                                            place))
                    if ema is not None and "dmd_loss" in record:  # a generator step
                        ema.update(generator_model)
            step += 1
            if log is not None and step % config.log_every == 0:
                now = time.perf_counter()
                record.update({"elapsed_s": round(now - started, 2),
                               "clips_per_s": (config.log_every * config.data.batch_size * config.grad_accum
                                               * place.world / (now - window_start))})
                if device.type == "cuda":
                    record["max_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                log.write(record)
                window_start = now
            if place.main and step % config.checkpoint_every == 0:
                save()
        else:
            continue
        break
    if not place.main:
        return {"stage": config.stage, "steps": step, "rank": place.rank}
    save()
    summary = {"stage": config.stage, "steps": step, "train_seconds": round(time.perf_counter() - started, 1),
               "stopped": stop.received}
    stop.notice(step, checkpoint)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


@dataclass(frozen=True, eq=False)
class MicroBatch:
    """One micro-batch of a step: its clips, first frames, rollout noise and noise generator."""

    batch: ClipBatch
    first: torch.Tensor
    noise: torch.Tensor
    gen: torch.Generator


def _ode_step(config: StudentTrainConfig, student: Student, optimizer: torch.optim.Optimizer,
              parts: Sequence[MicroBatch], targets: Sequence[tuple[torch.Tensor, torch.Tensor]],
              place: Dist = Dist()) -> dict[str, float]:
    """One ODE-stage update over this rank's micro-batches and their teacher targets (states,
    clean): the gradient is the mean of the parts' hybrid-forcing losses, accumulated locally, then
    averaged over the ranks once, clipped, one optimiser step."""
    optimizer.zero_grad(set_to_none=True)
    n = len(parts)
    losses = []
    for part, (states, clean) in zip(parts, targets, strict=True):
        blocks = None if config.ode_prefix == "full" else ode_prefix_blocks(
            config.data.frames, config.student.block_frames, config.noisy_blocks, part.gen)
        dtype = part.first.dtype  # the targets may come from the teacher's reduced precision
        loss = hybrid_forcing_loss(student, part.first, states.to(dtype), clean.to(dtype), part.batch.actions,
                                   part.batch.poses, config.noisy_blocks, part.gen, blocks)
        (loss / n).backward()
        losses.append(float(loss.detach()))
    average_gradients(student.model.parameters(), place)
    torch.nn.utils.clip_grad_norm_(student.model.parameters(), config.grad_clip)
    optimizer.step()
    return {"loss": sum(losses) / n}


def _dmd_step(config: StudentTrainConfig, step: int, student: Student, teacher: VideoDiT, fake: VideoDiT,
              optimizer: torch.optim.Optimizer, critic_opt: torch.optim.Optimizer, parts: Sequence[MicroBatch],
              place: Dist = Dist()) -> dict[str, float]:
    """One DMD step over this rank's micro-batches `parts`: a critic (fake score) update on fresh
    rollouts; every `critic_steps`-th step also a generator update (rollouts with random exit
    steps, Δ, replayed backward, one step). Each update's gradient is the mean over the parts,
    accumulated locally, then averaged over the ranks once: the step of one process on every rank's
    parts together."""
    record: dict[str, float] = {}
    n = len(parts)
    critic_opt.zero_grad(set_to_none=True)
    losses = []
    for part in parts:
        with torch.no_grad():
            rollout = student.rollout(part.first, part.batch.actions, part.batch.poses, part.noise, generator=part.gen,
                                      keep_store=False)
        frames = rollout.frames.shape[1]
        scored = score_window(frames, config.dmd.window, part.gen, config.dmd.context).clip(
            rollout.frames.float(), part.batch.actions, part.batch.poses)
        loss_c = critic_loss(fake, scored, config.dmd.shift, part.gen)
        (loss_c / n).backward()
        losses.append(float(loss_c.detach()))
    average_gradients(fake.parameters(), place)  # once per critic step, over every rank's rollouts
    torch.nn.utils.clip_grad_norm_(fake.parameters(), config.grad_clip)
    critic_opt.step()
    record["critic_loss"] = sum(losses) / n
    if (step + 1) % config.dmd.critic_steps == 0:  # after the critic has tracked `critic_steps` rollouts
        optimizer.zero_grad(set_to_none=True)
        fake.eval()
        losses = []
        for part in parts:
            exits = torch.randint(0, len(config.student.steps), (len(rollout.replay),), generator=part.gen,
                                  device=part.gen.device).tolist()
            with torch.no_grad():
                rollout = student.rollout(part.first, part.batch.actions, part.batch.poses, part.noise, exits,
                                          generator=part.gen, keep_store=False)
            window = score_window(frames, config.dmd.window, part.gen, config.dmd.context)
            scored = window.clip(rollout.frames.float(), part.batch.actions, part.batch.poses)
            delta = window.place(dmd_delta(scored, teacher, fake, config.dmd, part.gen), frames - 1)
            # Δ/n: the surrogate's gradient is Δ, so this part adds its 1/n share (its loss is n² smaller)
            scaled = student.replay_backward(rollout, delta / n, part.batch.actions, part.batch.poses)
            losses.append(float(scaled) * n * n)
        fake.train()
        record["dmd_loss"] = sum(losses) / n
        average_gradients(student.model.parameters(), place)  # the replayed backward accumulated locally: once
        torch.nn.utils.clip_grad_norm_(student.model.parameters(), config.grad_clip)
        optimizer.step()
    return record


def context_ready(teacher_state: dict[str, Any], context: int, frames: int, source: str) -> None:
    """Context forcing asks the teacher to score windows with `context` earlier frames of `frames`-frame
    rollouts at their own times: it must have been trained so (context.frames, on samples as long)."""
    trained = teacher_state.get("config", {})
    have = int(trained.get("context", {}).get("frames", 0))
    if have < context:
        raise ConfigError(f"dmd.context {context}: the teacher {source} was trained with context.frames {have} "
                          "(train it with --set context.frames=N --set data.frames=33 first)")
    seen = int(trained.get("data", {}).get("frames", 0))
    if seen < frames:
        raise ConfigError(f"dmd.context {context}: rollouts of data.frames {frames} put context frames at times the "
                          f"teacher {source} never saw (its samples had {seen} frames): train it on samples as long")


def student_from_state(state: dict[str, Any], device: torch.device, source: str) -> Student:
    """The distilled student (weights + block/step/memory settings) from a loaded student_train checkpoint."""
    return Student(model_from_state(state, device), from_dict(StudentConfig, state["student_config"], source=source))


def student_from_checkpoint(path: pathlib.Path, device: torch.device) -> Student:
    return student_from_state(load_checkpoint(path, "cpu"), device, str(path))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.student_train", description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", help="teacher checkpoint")
    parser.add_argument("--shards", help="shard URLs (data.shards)")
    parser.add_argument("--stage", choices=("ode", "dmd"))
    parser.add_argument("--init", help="student start (e.g. the ODE stage's checkpoint for dmd)")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--config", type=pathlib.Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--device")
    args = add_dry_run(parser).parse_args(argv)
    overrides = list(args.set)
    for key, value in (("teacher", args.teacher), ("data.shards", args.shards), ("stage", args.stage),
                       ("init", args.init), ("max_minutes", args.minutes), ("max_steps", args.steps)):
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        config = load_config(StudentTrainConfig, args.config, overrides)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        return dry_run(out=args.out, config=config)
    place, ranked = setup(args.device)  # under torchrun: this process's rank and device
    finished = False
    try:
        with StopSignals() as stop:
            summary = train(config, args.out, ranked or pick_device(args.device), place, stop)
        finished = True
    except ConfigError as exc:  # found once the checkpoints are read (e.g. a teacher the stage cannot use)
        print(f"error: {exc}", file=sys.stderr)
        return leave(place, 2)
    finally:
        teardown(place, finished)
    if place.main:
        print(json.dumps(summary, indent=2))
    return leave(place, stop.exit_code())  # 128 + the signal's number when one stopped the run


if __name__ == "__main__":
    sys.exit(main())
