"""The student's folded commit (`student.commit: fold`) in float64 on CPU: the memory keeps the K/V of
the forward that made each block, no commit forward runs, and the ODE stage commits what the student
would (the teacher's state at the last student sigma)."""

from __future__ import annotations

import pytest
import torch

from common.config import ConfigError, from_dict
from tests.training_helpers import clip_batch, float64_deterministic, randomized_model, tiny_config
from training.conditioning import static_first
from training.distill import hybrid_forcing_loss
from training.memory import MemoryConfig
from training.student import Student, StudentConfig, block_spans, warped_steps

ALL = MemoryConfig(window=None)  # every frame kept at full resolution: the store can be compared entry by entry


@pytest.fixture(autouse=True)
def float64():
    with float64_deterministic():
        yield


def _setup(frames: int = 9, steps: int = 2, commit: str = "fold", memory: MemoryConfig = ALL):
    config = tiny_config()
    model = randomized_model(config, dtype=torch.float64)
    batch = clip_batch(config, 2, frames, dtype=torch.float64)
    noise = torch.randn(2, frames - 1, 3, config.height, config.width_px, generator=torch.Generator().manual_seed(0))
    student = Student(model, StudentConfig(block_frames=2, steps=warped_steps(steps), memory=memory, commit=commit))
    return student, batch, noise


def _forwards(student: Student) -> list[float]:
    """Record the sigma of every forward the student's model runs (patching forward_kv, which all go through)."""
    sigmas: list[float] = []
    inner = student.model.forward_kv

    def counted(x, sigma, *args, **kwargs):
        sigmas.append(float(sigma.flatten()[0]))
        return inner(x, sigma, *args, **kwargs)

    student.model.forward_kv = counted  # type: ignore[method-assign]
    return sigmas


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_a_folded_block_costs_its_steps_alone(steps):
    """Per generated block: `steps` forwards folded, steps + 1 (the sigma-0 commit) clean; frame 0 is
    committed clean in both."""
    frames = 9
    blocks = len(block_spans(frames, 2)) - 1
    for commit, per_block in (("fold", steps), ("clean", steps + 1)):
        student, batch, noise = _setup(frames, steps, commit)
        sigmas = _forwards(student)
        with torch.no_grad():
            student.rollout(batch.frames[:, 0], batch.actions, batch.poses, noise, generator=torch.Generator().manual_seed(1))
        assert len(sigmas) == 1 + blocks * per_block, (commit, sigmas)
        assert sigmas[0] == 0.0  # frame 0, given clean
        if commit == "fold":
            assert 0.0 not in sigmas[1:]
            assert sigmas[1:] == list(warped_steps(steps)) * blocks


def test_the_folded_memory_holds_each_blocks_exit_forward():
    """Known answer by another path: a store rebuilt by committing each block's exit-step input at its
    sigma (Student.commit with sigma) holds exactly the rollout's K/V, frame by frame; exits vary."""
    student, batch, noise = _setup(frames=11, steps=4)
    exits = [3, 0, 2, 1, 3]
    with torch.no_grad():
        rolled = student.rollout(batch.frames[:, 0], batch.actions, batch.poses, noise, exits,
                                 generator=torch.Generator().manual_seed(1))
        store = student.new_store()
        actions, origin = static_first(batch.actions), batch.poses[:, 0]
        student.commit(batch.frames[:, :1], 0, store, actions, batch.poses, origin)
        for state in rolled.replay:
            student.commit(state.x, state.start, store, actions, batch.poses, origin, sigma=state.sigma)
    assert rolled.store is not None and len(rolled.store.frames) == len(store.frames) == 11
    for got, want in zip(rolled.store.frames, store.frames):
        assert got.full is not None and want.full is not None
        for a, b in zip(got.full, want.full):
            assert torch.allclose(a.k, b.k, atol=1e-12) and torch.allclose(a.v, b.v, atol=1e-12)
    assert [s.sigma for s in rolled.replay] == [warped_steps(4)[e] for e in exits]


def test_folding_changes_what_later_blocks_read_and_nothing_before():
    """The first generated block reads frame 0 alone, committed the same way in both modes: equal; every
    later block reads folded K/V instead of clean ones: different. Streams equal rollouts in both."""
    outs = {}
    for commit in ("clean", "fold"):
        student, batch, noise = _setup(frames=9, steps=2, commit=commit, memory=MemoryConfig(window=2, pool=(1, 2)))
        with torch.no_grad():
            outs[commit] = student.rollout(batch.frames[:, 0], batch.actions, batch.poses, noise,
                                           generator=torch.Generator().manual_seed(1)).frames
    clean, fold = outs["clean"], outs["fold"]
    assert torch.equal(clean[:, :3], fold[:, :3])
    assert (clean[:, 3:] - fold[:, 3:]).abs().amax(dim=(0, 2, 3, 4)).min() > 1e-6


def test_hybrid_forcing_folded_commits_the_teachers_last_state():
    """With noisy_blocks=1 only the last block is regressed; the earlier blocks reach the loss only
    through the memory. Folded, that is the teacher's state at the last student sigma (the clean frames
    of earlier blocks do not matter); clean, it is the clean frames (the states there do not)."""
    steps = warped_steps(2)
    losses = {}
    for commit in ("clean", "fold"):
        student, batch, _ = _setup(frames=7, steps=2, commit=commit)
        clean = batch.frames[:, 1:]
        g = torch.Generator().manual_seed(3)
        states = torch.stack([(1 - s) * clean + s * torch.randn(clean.shape, generator=g) for s in steps])
        bumped_clean, bumped_states = clean.clone(), states.clone()
        bumped_clean[:, :4] += 0.5  # blocks 1-2 (frames 1-4); the last block (frames 5-6) is the regressed one
        bumped_states[-1, :, :4] += 0.5

        def loss(c: torch.Tensor, s: torch.Tensor) -> float:
            with torch.no_grad():
                return float(hybrid_forcing_loss(student, batch.frames[:, 0], s, c, batch.actions, batch.poses,
                                                 noisy_blocks=1, generator=torch.Generator().manual_seed(4)))

        losses[commit] = (loss(clean, states), loss(bumped_clean, states), loss(clean, bumped_states))
    base, bumped_clean_loss, bumped_states_loss = losses["fold"]
    assert bumped_clean_loss == base and abs(bumped_states_loss - base) > 1e-8
    base, bumped_clean_loss, bumped_states_loss = losses["clean"]
    assert abs(bumped_clean_loss - base) > 1e-8 and bumped_states_loss == base


def test_commit_is_checked_and_old_checkpoints_read_as_clean():
    with pytest.raises(ValueError, match="student.commit"):
        StudentConfig(commit="folded")
    with pytest.raises(ConfigError, match="commit"):
        from_dict(StudentConfig, {"commit": "late"})
    assert from_dict(StudentConfig, {"block_frames": 2}).commit == "clean"  # a checkpoint from before the option
    assert from_dict(StudentConfig, {"commit": "fold"}).commit == "fold"
