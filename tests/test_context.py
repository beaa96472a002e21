"""Context forcing (training/context.py): a teacher trained to see earlier frames of a sample as
clean context at their own times, and DMD scores that see the rollout's earlier frames the same way."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.training_helpers import clip_batch, randomized_model, tiny_config, tiny_teacher_checkpoint, write_tiny_shards
from training import teacher
from training.config import ContextConfig, DataConfig, TrainConfig
from training.context import ContextWindow, context_indices, draw_window
from training.data import ClipBatch
from training.runtime import load_checkpoint
from training.student_train import main as student_main


@settings(max_examples=200, deadline=None)
@given(start=st.integers(0, 60), count=st.integers(0, 20))
def test_context_frames_spread_over_what_came_before(start, count):
    got = context_indices(start, count)
    assert len(got) == min(start, count)
    assert list(got) == sorted(set(got)) and all(0 <= i < start for i in got)
    if got:
        assert got[0] == 0
    if len(got) >= 2:
        assert got[-1] == start - 1
        gaps = [b - a for a, b in zip(got, got[1:])]
        assert max(gaps) - min(gaps) <= 1  # evenly spread


def test_context_indices_known_answers_and_bad_input():
    assert context_indices(9, 3) == (0, 4, 8)
    assert context_indices(5, 10) == (0, 1, 2, 3, 4)
    assert context_indices(7, 1) == (0,) and context_indices(0, 3) == () and context_indices(9, 0) == ()
    with pytest.raises(ValueError):
        context_indices(-1, 2)
    with pytest.raises(ValueError, match="distinct, increasing and before"):
        ContextWindow(3, 4, (0, 3))


def test_a_window_with_context_is_one_clip_at_its_own_times():
    config = tiny_config()
    batch = clip_batch(config, 2, 9)
    clip = ContextWindow(5, 3, (0, 2)).take(batch)
    assert clip.clean == 3 and torch.equal(clip.frames, batch.frames[:, [0, 2, 5, 6, 7]])
    assert torch.equal(clip.poses, batch.poses[:, [0, 2, 5, 6, 7]])
    assert torch.equal(clip.times, torch.tensor([0.0, 2, 5, 6, 7]))
    assert torch.equal(clip.actions[:, :2], batch.actions[:, [0, 2]])  # context frames keep their actions
    assert torch.equal(clip.actions[:, 2], batch.actions[:, 0]) and torch.equal(clip.actions[:, 3:], batch.actions[:, 6:8])
    alone = ContextWindow(5, 3).take(batch)  # no context: a cropped clip, times from 0
    assert alone.clean == 1 and torch.equal(alone.times, torch.arange(3.0))
    with pytest.raises(ValueError, match="up to frame 10"):
        ContextWindow(7, 3).take(batch)
    g = torch.Generator().manual_seed(0)
    windows = [draw_window(17, 9, 4, g) for _ in range(300)]
    assert {w.start for w in windows} == set(range(9)) and {len(w.context) for w in windows} == {0, 1, 2, 3, 4}
    assert all(w.context == context_indices(w.start, len(w.context)) for w in windows)


def test_time_indices_move_the_rope_and_only_differences_count():
    """Frames at explicit times: 0..F-1 is the default; shifting every time alike changes nothing
    (RoPE sees differences); moving one frame's time changes the output."""
    model = randomized_model(tiny_config(), seed=0).double()
    batch = clip_batch(model.cfg, 2, 5)
    x, actions, poses = batch.frames.double(), batch.actions.double(), batch.poses
    sigma = torch.full((2, 5), 0.5, dtype=torch.float64)
    sigma[:, 0] = 0
    with torch.no_grad():
        default = model(x, sigma, actions, poses)
        counted = model(x, sigma, actions, poses, times=torch.arange(5.0))
        shifted = model(x, sigma, actions, poses, times=torch.arange(5.0) + 7)
        gapped = model(x, sigma, actions, poses, times=torch.tensor([0.0, 4, 5, 6, 7]))
    assert torch.equal(default, counted)
    assert torch.allclose(default, shifted, atol=1e-9)
    assert not torch.allclose(default, gapped, atol=1e-6)
    with pytest.raises(ValueError, match="one time index per frame"):
        model(x, sigma, actions, poses, times=torch.arange(4.0))


def test_the_loss_is_on_the_noised_frames_only_and_sees_the_clean_ones_at_their_times():
    seen = {}
    bias = torch.nn.Parameter(torch.zeros(6))

    def model(x, sigma, actions, poses, keep=None, times=None):
        seen.update(sigma=sigma.clone(), times=times)
        return x * 0 + bias[None, :, None, None, None]

    batch = clip_batch(tiny_config(), 2, 6)
    clip = ClipBatch(batch.frames, batch.actions, batch.poses, clean=3, times=torch.tensor([0.0, 3, 5, 6, 7, 8]))
    teacher.teacher_loss(model, clip, 3.0, 0.0, torch.Generator().manual_seed(0)).backward()
    assert (seen["sigma"][:, :3] == 0).all() and (seen["sigma"][:, 3:] > 0).all()
    assert torch.equal(seen["times"], clip.times)
    assert (bias.grad[:3] == 0).all() and (bias.grad[3:] != 0).all()


def test_context_training_needs_samples_longer_than_its_window():
    with pytest.raises(ValueError, match="needs samples longer than the window"):
        TrainConfig(data=DataConfig(frames=9), context=ContextConfig(frames=2, window=9))
    TrainConfig(data=DataConfig(frames=33), context=ContextConfig(frames=4, window=9))


def test_a_context_teacher_trains_and_scores_dmd_with_the_rollouts_context(tmp_path, capsys):
    shards = write_tiny_shards(tmp_path / "shards", clips=6, frames=7, height=16, width=16)
    data = ["--shards", shards, "--device", "cpu", "--set", "data.batch_size=2", "--set", "data.workers=0",
            "--set", "data.shuffle_buffer=4", "--set", "data.frames=7"]
    assert teacher.main([*data, "--preset", "tiny", "--steps", "3", "--out", str(tmp_path / "teacher"),
                         "--set", "context.frames=2", "--set", "context.window=4", "--set", "log_every=1"]) == 0
    trained = load_checkpoint(tmp_path / "teacher" / "checkpoint.pt")
    assert trained["config"]["context"] == {"frames": 2, "window": 4} and trained["step"] == 3
    student = [*data, "--set", "precision=fp32", "--set", "ode_teacher_steps=3", "--set", "dmd.critic_steps=1",
               "--set", "dmd.window=4", "--set", "dmd.context=2", "--stage", "dmd", "--steps", "2"]
    assert student_main([*student, "--teacher", str(tmp_path / "teacher" / "checkpoint.pt"),
                         "--out", str(tmp_path / "dmd")]) == 0
    assert load_checkpoint(tmp_path / "dmd" / "checkpoint.pt")["step"] == 2
    # a teacher never trained with context is refused, before any work, naming it
    plain = tmp_path / "plain.pt"
    tiny_teacher_checkpoint(plain)
    assert student_main([*student, "--teacher", str(plain), "--out", str(tmp_path / "refused")]) == 2
    assert f"the teacher {plain} was trained with context.frames 0" in capsys.readouterr().err
    assert not (tmp_path / "refused" / "checkpoint.pt").exists()
