"""Data-parallel training (training/distributed.py) with two gloo processes on the CPU: after k
teacher steps the parameters are identical on both ranks and equal, in float64, to one process
that averaged the two ranks' losses (their batches together) — also with gradient accumulation;
and `torchrun --nproc_per_node 2 -m training.teacher` trains, rank 0 alone writes, and the run
resumes on one process."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from common.config import from_dict, to_dict
from tests.training_helpers import clip_batch, randomized_model, tiny_config, tiny_teacher_checkpoint, write_tiny_shards
from training.config import TrainConfig
from training.distributed import Dist
from training.student_train import StudentTrainConfig
from training.teacher import teacher_loss, teacher_step

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS, ACCUM, WORLD = 3, 2, 2
CONFIG = from_dict(TrainConfig, {"precision": "fp32", "optim": {"grad_accum": ACCUM, "action_dropout": 0.5,
                                                                "grad_clip": 0.05}})


def _batch(rank: int, step: int, micro: int):
    return clip_batch(tiny_config(), 2, 5, seed=1000 * step + 10 * rank + micro, dtype=torch.float64)


def _generator(rank: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(77 + 100 * step + rank)


def _optimizer(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)


def _rank(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    torch.manual_seed(rank)  # a different local init on each rank: the broadcast must make them equal
    model = randomized_model(tiny_config(), seed=rank, dtype=torch.float64).train()
    from training.distributed import broadcast_parameters

    place = Dist(rank, WORLD, 0)
    broadcast_parameters(model, place)
    optimizer = _optimizer(model)
    for step in range(STEPS):
        batches = [_batch(rank, step, m) for m in range(ACCUM)]
        teacher_step(model, model, optimizer, batches, CONFIG, torch.device("cpu"), place, _generator(rank, step))
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_step_like_one_process_on_both_batches(tmp_path):
    mp.spawn(_rank, args=(f"file://{tmp_path}/rendezvous", str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    model = randomized_model(tiny_config(), seed=0, dtype=torch.float64).train()  # rank 0's weights
    optimizer = _optimizer(model)
    for step in range(STEPS):  # the global batch: every rank's micro-batches, each rank's noise stream
        losses = []
        for rank in range(WORLD):
            generator = _generator(rank, step)
            losses += [teacher_loss(model, _batch(rank, step, m), CONFIG.flow.shift, CONFIG.optim.action_dropout,
                                    generator) for m in range(ACCUM)]
        torch.stack(losses).mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CONFIG.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    reference = model.state_dict()
    moved = 0
    for name, value in reference.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-10, atol=1e-12, msg=name)
        moved += int(not torch.equal(value, randomized_model(tiny_config(), seed=0, dtype=torch.float64)
                                     .state_dict()[name]))
    assert moved > len(reference) // 2  # the steps changed the weights: the comparison is not vacuous


@pytest.mark.timeout(600)
def test_torchrun_trains_the_teacher_on_two_processes_and_resumes_on_one(tmp_path):
    shards = write_tiny_shards(tmp_path / "shards", clips=16, frames=5, height=16, width=16)
    common = ["-m", "training.teacher", "--shards", shards, "--preset", "tiny", "--out", str(tmp_path / "run"),
              "--device", "cpu", "--set", "data.batch_size=2", "--set", "data.frames=5", "--set", "data.workers=0",
              "--set", "log_every=1", "--set", "precision=fp32"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a crash prints every thread's Python stack
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", "29531", *common, "--steps", "3"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # one writer: rank 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 3
    assert two.stdout.count('"steps": 3') == 1  # the summary printed once
    one = subprocess.run([sys.executable, *common, "--steps", "5"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    assert "resumed" in one.stderr and json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 5


def _dmd_parts():
    import copy

    from training.student import Student, StudentConfig

    config = from_dict(StudentTrainConfig, {"stage": "dmd", "precision": "fp32", "dmd": {"critic_steps": 1},
                                            "grad_clip": 0.05})
    teacher = randomized_model(tiny_config(), seed=0, dtype=torch.float64).requires_grad_(False)
    fake = copy.deepcopy(teacher).train().requires_grad_(True)
    student = Student(randomized_model(tiny_config(), seed=1, dtype=torch.float64).train(), StudentConfig())
    optimizer = torch.optim.AdamW(student.model.parameters(), lr=1e-3, betas=(0.0, 0.999))
    critic = torch.optim.AdamW(fake.parameters(), lr=1e-3, betas=(0.0, 0.999))
    return config, teacher, fake, student, optimizer, critic


def _part(rank: int):
    from training.student_train import MicroBatch

    batch = clip_batch(tiny_config(), 2, 5, seed=rank, dtype=torch.float64)
    gen = torch.Generator().manual_seed(5 + rank)
    noise = torch.randn(batch.frames[:, 1:].shape, generator=gen, dtype=torch.float64)
    return MicroBatch(batch, batch.frames[:, 0], noise, gen)


def _dmd_one(ranks: list[int], place: Dist) -> dict[str, torch.Tensor]:
    """One DMD step (a critic update, then a generator update with its replayed backward) over the
    micro-batches of `ranks`; the generator's and the critic's weights after it."""
    from training.student_train import _dmd_step

    config, teacher, fake, student, optimizer, critic = _dmd_parts()
    record = _dmd_step(config, 0, student, teacher, fake, optimizer, critic, [_part(r) for r in ranks], place)
    assert "dmd_loss" in record and "critic_loss" in record
    return {**{f"g.{k}": v.detach().clone() for k, v in student.model.state_dict().items()},
            **{f"f.{k}": v.detach().clone() for k, v in fake.state_dict().items()}}


def _dmd_rank(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    torch.save(_dmd_one([rank], Dist(rank, WORLD, 0)), f"{out}/dmd{rank}.pt")
    dist.destroy_process_group()


def test_a_dmd_step_with_its_replayed_backward_equals_one_process_on_both_batches(tmp_path):
    """Two ranks, one DMD step each on its own batch and noise: the generator and the critic end
    identical on both ranks and equal, in float64, to one process's step on both micro-batches."""
    mp.spawn(_dmd_rank, args=(f"file://{tmp_path}/rendezvous", str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"dmd{r}.pt") for r in range(WORLD)]
    together = _dmd_one(list(range(WORLD)), Dist())
    alone = _dmd_one([0], Dist())
    for name, value in together.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-10, atol=1e-12, msg=name)
    assert any(not torch.equal(together[n], alone[n]) for n in together if n.startswith("g."))


def _ode_one(ranks: list[int], place: Dist) -> dict[str, torch.Tensor]:
    """One ODE-stage update (teacher targets, hybrid forcing) over the micro-batches of `ranks`; the
    generator's weights after it."""
    from training.distill import ode_targets, teacher_velocity
    from training.student_train import _ode_step

    config, teacher, _, student, optimizer, _ = _dmd_parts()
    config = from_dict(StudentTrainConfig, {**to_dict(config), "stage": "ode", "data": {"frames": 5},
                                            "ode_teacher_steps": 2})
    parts = [_part(r) for r in ranks]
    targets = [ode_targets(teacher_velocity(teacher, p.batch.actions, p.batch.poses), p.first, p.noise,
                           config.student.steps, config.ode_teacher_steps) for p in parts]
    record = _ode_step(config, student, optimizer, parts, targets, place)
    assert record["loss"] > 0
    return {k: v.detach().clone() for k, v in student.model.state_dict().items()}


def _ode_rank(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=WORLD)
    torch.save(_ode_one([rank], Dist(rank, WORLD, 0)), f"{out}/ode{rank}.pt")
    dist.destroy_process_group()


def test_an_ode_stage_update_equals_one_process_on_both_batches(tmp_path):
    """Two ranks, one hybrid-forcing update each on its own clips: the student ends identical on both
    and equal, in float64, to one process's update on both micro-batches (grad_accum 2)."""
    mp.spawn(_ode_rank, args=(f"file://{tmp_path}/rendezvous", str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"ode{r}.pt") for r in range(WORLD)]
    together = _ode_one(list(range(WORLD)), Dist())
    alone = _ode_one([0], Dist())
    for name, value in together.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-10, atol=1e-12, msg=name)
    assert any(not torch.equal(together[n], alone[n]) for n in together)


@pytest.mark.timeout(600)
def test_torchrun_runs_the_ode_and_dmd_stages_on_two_processes(tmp_path):
    from training.runtime import load_checkpoint

    shards = write_tiny_shards(tmp_path / "shards", clips=8, frames=6, height=16, width=16)
    teacher = tmp_path / "teacher.pt"
    tiny_teacher_checkpoint(teacher)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a crash prints every thread's Python stack
    common = ["-m", "training.student_train", "--teacher", str(teacher), "--shards", shards, "--device", "cpu",
              "--set", "data.frames=5", "--set", "data.batch_size=2", "--set", "data.workers=0", "--set", "log_every=1",
              "--set", "precision=fp32", "--set", "ode_teacher_steps=2"]
    for stage, extra in (("ode", []), ("dmd", ["--init", str(tmp_path / "ode" / "checkpoint.pt"),
                                                "--set", "dmd.critic_steps=1", "--set", "grad_accum=2"])):
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--master_port", "29533", *common, "--stage", stage, "--steps", "2",
                               "--out", str(tmp_path / stage), *extra], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        log = [json.loads(line) for line in (tmp_path / stage / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1, 2], log  # rank 0 alone logs
        assert load_checkpoint(tmp_path / stage / "checkpoint.pt")["step"] == 2
    assert all("dmd_loss" in r for r in log)
