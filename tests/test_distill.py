"""Distillation steps on CPU: ODE targets on the student's grid, hybrid forcing, the DMD gradient, the critic."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.training_helpers import clip_batch, randomized_model, tiny_config
from training.context import context_indices
from training.data import ClipBatch
from training.distill import (DMDConfig, ScoreWindow, critic_loss, dmd_delta, hybrid_forcing_loss, ode_grid,
                              ode_prefix_blocks, ode_targets, score_window)
from training.flow import schedule
from training.memory import MemoryConfig
from training.model import VideoDiT
from training.student import Student, StudentConfig

STEPS = (1.0, 0.9375, 0.8333333333333334, 0.625)


def test_ode_grid_holds_the_student_sigmas():
    grid = ode_grid(STEPS, 20, 3.0)
    assert grid[0] == 1.0 and grid[-1] == 0.0
    assert all(a > b for a, b in zip(grid, grid[1:]))
    assert set(STEPS) <= set(grid)
    # below the student's sigmas, the teacher's own 20-step shifted schedule, untouched
    teacher = [float(s) for s in schedule(20, 3.0)]
    assert [s for s in grid if s < STEPS[-1]] == [s for s in teacher if s < STEPS[-1]]
    assert set(grid) - set(STEPS) <= set(teacher)
    # a student sigma that is on the teacher's grid is not doubled
    assert len(ode_grid((1.0, float(schedule(20, 3.0)[5])), 20, 3.0)) == 21


def test_ode_targets_are_the_teacher_states_at_the_student_sigmas():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 5, 3, 8, 8, generator=g, dtype=torch.float64)
    noise = torch.randn(2, 4, 3, 8, 8, generator=g, dtype=torch.float64)

    def straight(x, sigma, keep):  # the exact field of the straight path to `target`
        s = sigma[:, :, None, None, None].to(x.dtype)
        return torch.where(s > 0, (x - target) / s.clamp_min(1e-12), torch.zeros_like(x))

    states, clean = ode_targets(straight, target[:, 0], noise, STEPS, teacher_steps=6)
    assert states.shape == (4, 2, 4, 3, 8, 8)
    for i, s in enumerate(STEPS):
        assert torch.allclose(states[i], (1 - s) * target[:, 1:] + s * noise, atol=1e-5), i
    assert torch.allclose(clean, target[:, 1:], atol=1e-5)


def test_hybrid_forcing_regresses_the_noisy_blocks():
    torch.manual_seed(0)
    config = tiny_config()
    student = Student(VideoDiT(config), StudentConfig(block_frames=2, steps=STEPS,
                                                      memory=MemoryConfig(window=2, pool=(2,))))
    batch = clip_batch(config, 2, 7)
    g = torch.Generator().manual_seed(1)
    clean = batch.frames[:, 1:]
    states = torch.stack([(1 - s) * clean + s * torch.randn(clean.shape, generator=g) for s in STEPS])
    optimizer = torch.optim.AdamW(student.model.parameters(), lr=3e-3)

    def loss_at(seed: int) -> torch.Tensor:
        return hybrid_forcing_loss(student, batch.frames[:, 0], states, clean, batch.actions, batch.poses,
                                   noisy_blocks=2, generator=torch.Generator().manual_seed(seed))

    with torch.no_grad():
        before = float(loss_at(99))
    for step in range(60):
        loss = loss_at(step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(loss_at(99))
    assert after < 0.5 * before, (before, after)
    with pytest.raises(ValueError, match="noisy_blocks"):
        hybrid_forcing_loss(student, batch.frames[:, 0], states, clean, batch.actions, batch.poses, noisy_blocks=9)


def test_hybrid_forcing_on_a_prefix_is_the_loss_of_the_truncated_clip():
    config = tiny_config()
    student = Student(randomized_model(config, seed=0), StudentConfig(block_frames=2, steps=STEPS,
                                                                      memory=MemoryConfig(window=2, pool=(2,))))
    batch = clip_batch(config, 2, 9)  # 4 generated blocks
    g = torch.Generator().manual_seed(1)
    clean = batch.frames[:, 1:]
    states = torch.stack([(1 - s) * clean + s * torch.randn(clean.shape, generator=g) for s in STEPS])
    first = batch.frames[:, 0]
    with torch.no_grad():
        prefix = hybrid_forcing_loss(student, first, states, clean, batch.actions, batch.poses, 1,
                                     torch.Generator().manual_seed(5), blocks=1)
        truncated = hybrid_forcing_loss(student, first, states[:, :, :2], clean[:, :2], batch.actions[:, :3],
                                        batch.poses[:, :3], 1, torch.Generator().manual_seed(5))
        later = clean.clone()
        later[:, 2:] += 1.0  # frames after the prefix do not matter
        moved = hybrid_forcing_loss(student, first, states, later, batch.actions, batch.poses, 1,
                                    torch.Generator().manual_seed(5), blocks=1)
        full = hybrid_forcing_loss(student, first, states, clean, batch.actions, batch.poses, 1,
                                   torch.Generator().manual_seed(5))
    assert float(prefix) == pytest.approx(float(truncated), rel=1e-6)
    assert float(moved) == pytest.approx(float(prefix), rel=1e-6)
    assert abs(float(full) - float(prefix)) > 1e-6  # the default regresses the last block instead
    with pytest.raises(ValueError, match="blocks"):
        hybrid_forcing_loss(student, first, states, clean, batch.actions, batch.poses, 2, blocks=1)


def test_ode_prefix_blocks_reach_every_position():
    g = torch.Generator().manual_seed(0)
    draws = [ode_prefix_blocks(17, 2, 2, g) for _ in range(700)]  # 8 blocks: 2..8
    counts = {n: draws.count(n) for n in range(2, 9)}
    assert set(draws) == set(counts) and min(counts.values()) > 60, counts
    assert ode_prefix_blocks(17, 2, 8, g) == 8
    with pytest.raises(ValueError, match="noisy_blocks"):
        ode_prefix_blocks(9, 2, 5, g)


def test_score_window_is_a_cropped_clip_and_places_its_delta_at_the_window_mean():
    config = tiny_config()
    batch = clip_batch(config, 2, 9)
    whole = ScoreWindow(0, 9).clip(batch.frames, batch.actions, batch.poses)
    assert whole.clean == 1 and torch.equal(whole.frames, batch.frames) and torch.equal(whole.times, torch.arange(9.0))
    assert torch.equal(whole.actions, batch.actions) and torch.equal(whole.poses, batch.poses)  # frame 0 already static
    window = ScoreWindow(3, 4)
    clip = window.clip(batch.frames, batch.actions, batch.poses)
    assert clip.clean == 1 and torch.equal(clip.frames, batch.frames[:, 3:7])
    assert torch.equal(clip.actions[:, 1:], batch.actions[:, 4:7]) and torch.equal(clip.actions[:, 0], batch.actions[:, 0])
    assert torch.equal(clip.poses, batch.poses[:, 3:7]) and torch.equal(clip.times, torch.arange(4.0))
    # with context: frames 0 and 2 first, clean, at their own times; the window's first frame still static
    remembered = ScoreWindow(3, 4, (0, 2)).clip(batch.frames, batch.actions, batch.poses)
    assert remembered.clean == 3 and torch.equal(remembered.frames, batch.frames[:, [0, 2, 3, 4, 5, 6]])
    assert torch.equal(remembered.times, torch.tensor([0.0, 2, 3, 4, 5, 6]))
    assert torch.equal(remembered.actions[:, 1], batch.actions[:, 2]) and torch.equal(remembered.actions[:, 2],
                                                                                          batch.actions[:, 0])
    delta = torch.randn(2, 3, 3, 4, 4, dtype=torch.float64)
    placed = window.place(delta, 8)
    assert placed.shape == (2, 8, 3, 4, 4)
    assert placed[:, :3].abs().sum() == 0 and placed[:, 6:].abs().sum() == 0
    assert torch.allclose(placed[:, 3:6], delta * 8 / 3)
    assert float(placed.sum() / placed.numel()) == pytest.approx(float(delta.mean()))  # the replay's normalisation
    g = torch.Generator().manual_seed(0)
    starts = [score_window(33, 9, g).start for _ in range(500)]
    assert min(starts) == 0 and max(starts) == 24
    assert score_window(9, 9, g) == ScoreWindow(0, 9) and score_window(9, None, g) == ScoreWindow(0, 9)
    drawn = [score_window(33, 9, g, context=3) for _ in range(200)]
    assert all(w.context == context_indices(w.start, 3) for w in drawn)
    assert {len(w.context) for w in drawn} == {0, 1, 2, 3}  # fewer where the window starts early
    with pytest.raises(ValueError, match="window"):
        DMDConfig(window=1)
    with pytest.raises(ValueError, match="needs dmd.window"):
        DMDConfig(context=2)


def test_dmd_delta_vanishes_when_the_fake_score_is_the_teacher_and_is_normalised():
    config = tiny_config()
    teacher = randomized_model(config, seed=0)
    batch = clip_batch(config, 2, 4)
    x_hat = batch.frames[:, 1:] + 0.1
    cfg = DMDConfig(guidance=1.0)
    clip = ClipBatch(torch.cat([batch.frames[:, :1], x_hat], dim=1), batch.actions, batch.poses)
    same = dmd_delta(clip, teacher, copy.deepcopy(teacher), cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(same, torch.zeros_like(same), atol=1e-6)
    fake = randomized_model(config, seed=1)
    delta = dmd_delta(clip, teacher, fake, cfg, torch.Generator().manual_seed(0))
    assert delta.shape == x_hat.shape and delta.abs().max() > 1e-3 and torch.isfinite(delta).all()
    # scaling the fake's disagreement scales Δ; guidance changes the real score
    guided = dmd_delta(clip, teacher, fake, DMDConfig(guidance=3.0), torch.Generator().manual_seed(0))
    assert not torch.allclose(guided, delta)
    # the scores see a context frame: Δ is for the frames after it and depends on it
    longer = clip_batch(config, 2, 6)
    window = ScoreWindow(2, 4, (0,))
    with_context = dmd_delta(window.clip(longer.frames, longer.actions, longer.poses), teacher, fake, cfg,
                             torch.Generator().manual_seed(0))
    other = longer.frames.clone()
    other[:, 0] = -other[:, 0]
    changed = dmd_delta(window.clip(other, longer.actions, longer.poses), teacher, fake, cfg,
                        torch.Generator().manual_seed(0))
    assert with_context.shape == (2, 3, *longer.frames.shape[2:]) and not torch.allclose(with_context, changed)


def test_critic_loss_trains_only_the_fake_score():
    config = tiny_config()
    fake = randomized_model(config, seed=1).train()
    student = randomized_model(config, seed=2)
    batch = clip_batch(config, 2, 4)
    x_hat = student(batch.frames, torch.full((2, 4), 0.5), batch.actions, batch.poses)[:, 1:]
    clip = ClipBatch(torch.cat([batch.frames[:, :1], x_hat], dim=1), batch.actions, batch.poses)
    loss = critic_loss(fake, clip, 3.0, torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in student.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in fake.parameters())
