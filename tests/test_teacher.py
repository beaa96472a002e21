"""The teacher on CPU: RoPE, flow math, conditioning invariances, CFG dropout, overfitting, checkpoints, CLI."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from annotate.actions import ActionSpec, encode_actions
from tests.training_helpers import (clip_batch, randomized_model, random_pose, tiny_config, wait_until_group_gone,
                                    write_tiny_shards)
from training import teacher
from training.conditioning import frame_actions, patch_rays, plucker, pose_features
from training.data import crop
from training.flow import add_noise, sample_i2v, schedule, velocity_target, x0_from_velocity
from training.model import VideoDiT, patchify, unpatchify
from training.rope import apply_rope, rope_angles
from training.runtime import load_checkpoint, save_checkpoint
from training.teacher import model_from_checkpoint, teacher_loss


@settings(max_examples=30, deadline=None)
@given(st.floats(-20, 20), st.floats(-20, 20), st.floats(-5, 5), st.integers(0, 2**31 - 1))
def test_rope_scores_depend_only_on_relative_position(a, b, shift, seed):
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(1, 24, generator=g, dtype=torch.float64), torch.randn(1, 24, generator=g, dtype=torch.float64)
    pos = torch.tensor([[a, b, a - b]], dtype=torch.float64)

    def score(offset: float) -> torch.Tensor:
        p = pos + offset
        return (apply_rope(q, rope_angles(p, 24)) * apply_rope(k, rope_angles(p + torch.tensor([[1.0, 2.0, 3.0]],
                dtype=torch.float64), 24))).sum()

    assert torch.allclose(score(0.0), score(shift), atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 9), st.sampled_from([12, 24, 64]), st.integers(0, 2**31 - 1))
def test_rope_rotates_each_interleaved_pair_by_its_angle(batch, tokens, head_dim, seed):
    """Known answer: pair (x[2i], x[2i+1]) -> (x·cos - y·sin, x·sin + y·cos); bf16 in, bf16 out,
    rotated in fp32; a strided input (a slice of a longer sequence) gives the same."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 2, tokens + 2, head_dim, generator=g, dtype=torch.float64)[:, :, 1:-1]
    angles = rope_angles(torch.rand(tokens, 3, generator=g, dtype=torch.float64) * 40 - 20, head_dim)
    even, odd = x[..., 0::2], x[..., 1::2]
    want = torch.stack([even * angles.cos() - odd * angles.sin(), even * angles.sin() + odd * angles.cos()], dim=-1)
    assert torch.allclose(apply_rope(x, angles), want.flatten(-2), rtol=0, atol=1e-12)
    low = x.to(torch.bfloat16)
    got = apply_rope(low, angles)
    assert got.dtype == torch.bfloat16
    assert torch.equal(got, apply_rope(low.float(), angles).to(torch.bfloat16))


def test_rope_position_interpolation_and_ntk():
    pos = torch.tensor([[8.0, 1.0, 2.0]], dtype=torch.float64)
    half = pos.clone()
    half[:, 0] /= 4
    assert torch.allclose(rope_angles(pos, 24, time_scale=0.25), rope_angles(half, 24))
    # NTK leaves the highest time frequency alone and slows the lowest
    base, ntk = rope_angles(pos, 24), rope_angles(pos, 24, time_ntk=4.0)
    assert torch.isclose(base[0, 0], ntk[0, 0]) and ntk[0, 3] < base[0, 3]
    # rows/cols untouched by either
    assert torch.allclose(base[0, 4:], ntk[0, 4:])


def test_flow_round_trip_and_exact_euler():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 3, 8, 8, generator=g), torch.randn(2, 3, 3, 8, 8, generator=g)
    sigma = torch.rand(2, 3, generator=g)
    xs = add_noise(x0, noise, sigma)
    assert torch.allclose(x0_from_velocity(xs, velocity_target(x0, noise), sigma), x0, atol=1e-6)
    s = schedule(10, 3.0)
    assert float(s[0]) == 1.0 and float(s[-1]) == 0.0 and bool((s[1:] < s[:-1]).all())
    # the straight path's exact velocity field is integrated exactly by Euler: frames land on the target
    target = torch.randn(2, 4, 3, 8, 8, generator=g, dtype=torch.float64)

    def velocity(x, sig, keep):
        s_ = sig[:, :, None, None, None].to(x.dtype).clamp_min(1e-12)
        return torch.where(sig[:, :, None, None, None] > 0, (x - target) / s_, torch.zeros_like(x))

    out = sample_i2v(velocity, target[:, 0], 4, steps=7, shift=3.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out, target, atol=1e-5)  # sigma reaches the model as float32


def test_patchify_round_trip():
    x = torch.randn(2, 3, 3, 16, 24)
    assert torch.equal(unpatchify(patchify(x, 4), 4, 3, 16, 24), x)
    # a token holds one patch: token (row 1, col 2) of frame 0 is pixels [4:8, 8:12]
    tokens = patchify(x, 4)
    assert torch.equal(tokens[0, 0, 1 * 6 + 2].reshape(4, 4, 3), x[0, 0, :, 4:8, 8:12].permute(1, 2, 0))


def test_frame_actions_shift():
    a = torch.rand(2, 5, 13)
    per_frame = frame_actions(a)
    assert per_frame.shape == (2, 6, 13)
    assert torch.equal(per_frame[:, 1:], a)
    assert per_frame[:, 0, 12].eq(1).all() and per_frame[:, 0, :12].eq(0).all()


@pytest.mark.parametrize("camera", ["pose", "plucker", "pose+plucker"])
def test_pose_conditioning_is_invariant_to_moving_the_trajectory(camera):
    torch.set_default_dtype(torch.float64)
    try:
        config = tiny_config(camera=camera)
        model = randomized_model(config, dtype=torch.float64)
        batch = clip_batch(config, 2, 4, dtype=torch.float64)
        rng = np.random.default_rng(3)
        world = torch.from_numpy(np.stack([random_pose(rng) for _ in range(2)]))  # a rigid move per clip
        moved = world[:, None] @ batch.poses
        sigma = torch.full((2, 4), 0.5)
        out = model(batch.frames, sigma, batch.actions, batch.poses)
        out_moved = model(batch.frames, sigma, batch.actions, moved)
        assert torch.allclose(pose_features(batch.poses), pose_features(moved), atol=1e-10)
        assert torch.allclose(out, out_moved, atol=1e-10)
        # ...but not to changing the motion inside it
        bent = batch.poses.clone()
        bent[:, 2:, 0, 3] += 0.5
        assert not torch.allclose(out, model(batch.frames, sigma, batch.actions, bent), atol=1e-6)
    finally:
        torch.set_default_dtype(torch.float32)


def test_plucker_rays_known_answer_and_invariance():
    rays = patch_rays(90.0, 16, 32, 8)  # a 2x4 grid; f = 16, centres at x = 4, 12, 20, 28 and y = 4, 12
    assert rays.shape == (8, 3)
    assert torch.allclose(rays[0], torch.tensor([(4 - 16) / 16, (4 - 8) / 16, 1.0], dtype=torch.float64))
    assert torch.allclose(rays[-1], torch.tensor([(28 - 16) / 16, (12 - 8) / 16, 1.0], dtype=torch.float64))
    rng = np.random.default_rng(0)
    poses = torch.from_numpy(np.stack([random_pose(rng) for _ in range(3)]))[None]
    coords = plucker(poses, rays)
    assert coords.shape == (1, 3, 8, 6)
    d, m = coords[..., :3].double(), coords[..., 3:].double()
    assert torch.allclose(d.norm(dim=-1), torch.ones(1, 3, 8, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(m[0, 0], torch.zeros(8, 3, dtype=torch.float64), atol=1e-6)  # the origin camera
    rel = torch.linalg.inv(poses[0, 0]) @ poses[0, 2]  # moment = centre x direction, in the origin camera
    assert torch.allclose(m[0, 2], torch.cross(rel[:3, 3].expand(8, 3), d[0, 2], dim=-1), atol=1e-5)
    # relative to the origin camera: moving the whole trajectory rigidly changes nothing
    world = torch.from_numpy(random_pose(rng))
    assert torch.allclose(plucker(world @ poses, rays), coords, atol=1e-5)


def test_a_plucker_model_starts_blind_to_the_camera_and_learns_to_see_it():
    config = tiny_config(camera="plucker")
    model = VideoDiT(config)
    batch = clip_batch(config, 2, 4)
    other = clip_batch(config, 2, 4, seed=5)
    sigma = torch.full((2, 4), 0.5)
    out = model(batch.frames, sigma, batch.actions, batch.poses)
    assert torch.equal(out, model(batch.frames, sigma, batch.actions, other.poses))  # zero-initialised rays
    with torch.no_grad():  # the output layers start at zero; open them so gradients reach the rays
        model.patch_out.weight.normal_(0, 0.05)
        for block in model.blocks:
            block.ada.weight.normal_(0, 0.05)
    loss = model(batch.frames, sigma, batch.actions, batch.poses).square().mean()
    loss.backward()
    assert model.ray_embed is not None and model.ray_embed[2].weight.grad.abs().sum() > 0
    assert model.pose_embed[0].weight.grad is None or model.pose_embed[0].weight.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="model.camera"):
        tiny_config(camera="rays")


@pytest.mark.parametrize("camera", ["pose", "plucker"])
def test_action_dropout_removes_the_motion_condition(camera):
    config = tiny_config(camera=camera)
    model = randomized_model(config)
    batch = clip_batch(config, 2, 4)
    other = clip_batch(config, 2, 4, seed=9)
    sigma = torch.full((2, 4), 0.7)
    drop, keep = torch.zeros(2, dtype=torch.bool), torch.ones(2, dtype=torch.bool)
    with torch.no_grad():
        dropped = model(batch.frames, sigma, batch.actions, batch.poses, keep=drop)
        dropped_other = model(batch.frames, sigma, other.actions, other.poses, keep=drop)
        kept = model(batch.frames, sigma, batch.actions, batch.poses, keep=keep)
        kept_other = model(batch.frames, sigma, other.actions, other.poses, keep=keep)
    assert torch.allclose(dropped, dropped_other)  # no trace of actions or poses once dropped
    assert not torch.allclose(kept, kept_other, atol=1e-5)
    assert not torch.allclose(kept, dropped, atol=1e-5)
    # per clip: dropping clip 0 only leaves clip 1 as it was
    mixed = model(batch.frames, sigma, batch.actions, batch.poses, keep=torch.tensor([False, True]))
    assert torch.allclose(mixed[0], dropped[0], atol=1e-6) and torch.allclose(mixed[1], kept[1], atol=1e-6)


def test_dropout_probability_in_the_loss(monkeypatch):
    seen = []
    config = tiny_config()
    model = VideoDiT(config)
    original = model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["keep"].clone())
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "forward", spy)
    batch = clip_batch(config, 64, 3)
    teacher_loss(model, batch, 3.0, dropout=0.25, generator=torch.Generator().manual_seed(0))
    share = 1 - seen[0].float().mean().item()
    assert 0.1 < share < 0.4


def test_tiny_teacher_overfits_a_fixed_batch():
    torch.manual_seed(0)
    config = tiny_config()
    model = VideoDiT(config)
    batch = clip_batch(config, 4, 5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def fixed_loss() -> float:
        with torch.no_grad():
            return float(teacher_loss(model, batch, 3.0, 0.0, generator=torch.Generator().manual_seed(123)))

    before = fixed_loss()
    for step in range(150):
        loss = teacher_loss(model, batch, 3.0, 0.0, generator=torch.Generator().manual_seed(step % 8))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = fixed_loss()
    assert after < 0.5 * before, (before, after)


def test_checkpoint_round_trip(tmp_path):
    config = tiny_config()
    model = randomized_model(config)
    path = tmp_path / "run" / "checkpoint.pt"
    from dataclasses import asdict
    save_checkpoint(path, {"model": model.state_dict(), "ema": model.state_dict(), "step": 3,
                           "model_config": asdict(config), "config": {"flow": {"shift": 3.0}}})
    assert not list(path.parent.glob(".*tmp"))
    loaded = model_from_checkpoint(path, torch.device("cpu"))
    batch = clip_batch(config, 1, 3)
    sigma = torch.full((1, 3), 0.4)
    with torch.no_grad():
        assert torch.equal(model(batch.frames, sigma, batch.actions, batch.poses),
                           loaded(batch.frames, sigma, batch.actions, batch.poses))
    assert load_checkpoint(path)["step"] == 3
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="checkpoint.pt"):
        load_checkpoint(path)


def test_crop_keeps_frames_actions_and_poses_aligned():
    t = 10
    frames = torch.arange(t, dtype=torch.uint8).reshape(1, t, 1, 1, 1).expand(3, t, 3, 4, 4).clone()
    actions = torch.arange(t - 1, dtype=torch.float32).reshape(1, t - 1, 1).expand(3, t - 1, 13).clone()
    poses = torch.arange(t, dtype=torch.float64).reshape(1, t, 1, 1).expand(3, t, 4, 4).clone()
    batch = crop({"frames": frames, "actions": actions, "poses": poses, "key": ["a", "b", "c"]}, 4,
                 torch.Generator().manual_seed(0))
    for b in range(3):
        start = int(batch.frames[b, 0, 0, 0, 0])
        assert batch.frames[b, :, 0, 0, 0].tolist() == list(range(start, start + 4))
        assert batch.poses[b, :, 0, 0].tolist() == list(range(start, start + 4))
        assert batch.actions[b, 1:, 0].tolist() == list(range(start, start + 3))  # frame j gets A_{start+j-1}
    with pytest.raises(ValueError, match="cannot crop 11 frames"):
        crop({"frames": frames, "actions": actions, "poses": poses, "key": ["a"]}, 11)


def test_teacher_cli_trains_from_shards_and_resumes(tmp_path):
    shards = write_tiny_shards(tmp_path / "shards", clips=8, frames=6, height=16, width=16)
    out = tmp_path / "run"
    common = ["--shards", shards, "--preset", "tiny", "--out", str(out), "--device", "cpu",
              "--set", "data.batch_size=2", "--set", "data.workers=0", "--set", "data.frames=4",
              "--set", "log_every=2", "--set", "checkpoint_every=2", "--set", "data.shuffle_buffer=4",
              "--set", "snapshot_every=3"]
    assert teacher.main([*common, "--steps", "4"]) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    # a snapshot holds the weights at its step (no optimiser) and loads wherever a checkpoint does
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step0000003.pt"]
    snap = load_checkpoint(out / "snapshots" / "step0000003.pt")
    assert snap["step"] == 3 and "optim" not in snap and snap["ema"] is not None
    assert teacher.model_from_state(snap, torch.device("cpu")) is not None
    assert all(np.isfinite(r["loss"]) and r["clips_per_s"] > 0 for r in records)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["params"] > 0
    assert teacher.main([*common, "--steps", "6"]) == 0  # resumes at 4
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6]
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step0000003.pt", "step0000006.pt"]
    # a different model in the same run directory is refused, not silently mixed
    with pytest.raises(Exception, match="was trained with model"):
        teacher.main([*common, "--steps", "8", "--set", "model.depth=3"])
    # camera transforms in attention train from the same flags (tiny heads: 8 of 24 dims)
    prope = [*common[:5], str(tmp_path / "prope"), *common[6:]]
    assert teacher.main([*prope, "--steps", "2", "--set", "model.camera=pose+prope", "--set", "model.prope_dims=8"]) == 0
    assert load_checkpoint(tmp_path / "prope" / "checkpoint.pt")["model_config"]["camera"] == "pose+prope"


def test_the_checkpoint_records_the_shards_action_spec_and_mixed_specs_are_refused(tmp_path):
    """A run on clip_mean shards records their binning, so the eval bins its commanded actions the
    same way; shards binned two ways, or a resumed run fed other bins, stop with the sample named."""
    from annotate.actions import BinSpec
    from common.config import to_dict
    from training.data import checkpoint_action_spec
    from training.eval.groundtruth import EvalSetConfig, scene_clips

    scaled = ActionSpec(translation=BinSpec(0.05, (0.75, 1.5), (0.4, 1.0, 2.0), normalize="clip_mean"))
    shards = write_tiny_shards(tmp_path / "scaled", clips=4, frames=6, height=16, width=16, spec=scaled)
    out = tmp_path / "run"
    common = ["--preset", "tiny", "--out", str(out), "--device", "cpu", "--set", "data.batch_size=2",
              "--set", "data.workers=0", "--set", "data.frames=4", "--set", "data.shuffle_buffer=4"]
    assert teacher.main(["--shards", shards, *common, "--steps", "2"]) == 0
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["action_spec"] == to_dict(scaled) and checkpoint_action_spec(state) == scaled
    assert checkpoint_action_spec({}) == ActionSpec()  # checkpoints from before: the metric bins
    clips = scene_clips("room-1", EvalSetConfig(scenes=("room-1",), starts=1, frames=9, width=32, height=18,
                                                 actions=scaled)).clips
    for clip in clips:  # metric script motion, binned as the training data was
        np.testing.assert_array_equal(clip.actions, encode_actions(clip.motion, 1 / 15, scaled))
    metric = write_tiny_shards(tmp_path / "metric", clips=4, frames=6, height=16, width=16)
    with pytest.raises(ValueError, match=r"sample room_0001-t00\d-\d{5}: its action_spec .* differs from the resumed run"):
        teacher.main(["--shards", metric, *common, "--steps", "4"])


@pytest.mark.parametrize("camera", ["pose", "plucker", "pose+plucker"])
def test_a_plain_video_model_starts_a_conditioned_one_unchanged(camera):
    """Pretraining on action-free video, then tuning with actions: the conditioned model started
    from the plain one (--init) gives exactly its output at step 0, whatever the actions and poses;
    only once its zero-initialised output layers move do the conditions matter."""
    from training.model import CONDITIONING, load_init

    plain = randomized_model(tiny_config(conditioned=False), seed=1)
    assert not any(part in f".{k}" for k in plain.state_dict() for part in CONDITIONING)
    tuned = VideoDiT(tiny_config(camera=camera))
    added = load_init(tuned, plain.state_dict(), "pretrained.pt")
    assert added and all(any(part in f".{k}" for part in CONDITIONING) for k in added)
    batch, other = clip_batch(tuned.cfg, 2, 4), clip_batch(tuned.cfg, 2, 4, seed=7)
    sigma = torch.full((2, 4), 0.6)
    with torch.no_grad():
        reference = plain(batch.frames, sigma, batch.actions, batch.poses)
        assert torch.equal(tuned(batch.frames, sigma, batch.actions, batch.poses), reference)
        assert torch.equal(tuned(batch.frames, sigma, other.actions, other.poses), reference)
        for block in tuned.blocks:  # training moves the output layers: now actions matter
            block.action_out.weight.normal_(std=0.05)
        assert not torch.allclose(tuned(batch.frames, sigma, other.actions, batch.poses),
                                  tuned(batch.frames, sigma, batch.actions, batch.poses))
    with pytest.raises(ValueError, match="missing outside the conditioning"):
        load_init(VideoDiT(tiny_config(depth=3)), plain.state_dict(), "pretrained.pt")


def test_a_run_at_a_frame_step_records_its_rate_and_the_eval_commands_the_model_at_it(tmp_path):
    """data.frame_step 2 trains 15 fps shards at 7.5 fps: the checkpoint says so, a resumed run fed the
    shards at another rate stops with the sample named, and the eval steps its scripts at 1/7.5 s."""
    from training.data import checkpoint_fps
    from training.eval.__main__ import main as eval_main
    from training.eval.groundtruth import EvalSetConfig, scene_clips, script_frames
    from training.eval.scripts import channel_rate

    shards = write_tiny_shards(tmp_path / "shards", clips=4, frames=9, height=16, width=32, fps=15.0)
    out = tmp_path / "run"
    common = ["--shards", shards, "--preset", "tiny", "--out", str(out), "--device", "cpu",
              "--set", "model.width_px=32", "--set", "data.batch_size=2", "--set", "data.workers=0",
              "--set", "data.frames=4", "--set", "data.shuffle_buffer=4"]
    assert teacher.main([*common, "--steps", "2", "--set", "data.frame_step=2"]) == 0  # 4 frames span 7 of 9
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["fps"] == 7.5 and checkpoint_fps(state) == 7.5
    assert checkpoint_fps({}) == 15.0  # checkpoints from before: every build they trained on ran at 15 fps
    with pytest.raises(ValueError, match=r"sample room_0001-t00\d-\d{5}: plays at 15 fps, the resumed run at 7.5"):
        teacher.main([*common, "--steps", "4"])
    with pytest.raises(ValueError, match="cannot crop 6 frames, one in every 2, from 9"):  # 6 would span 11
        teacher.main([*common, "--steps", "4", "--set", "data.frame_step=2", "--set", "data.frames=6"])
    # the eval set holds scripts of at least 32/15 s at the model's rate, stepped at 1 / its rate
    # (odd: out-and-back scripts need an even number of transitions)
    assert [script_frames(9, fps) for fps in (15.0, 7.5, 5.0)] == [33, 17, 13] and script_frames(40, 5.0) == 41
    five = scene_clips("room_0001", EvalSetConfig(scenes=("room_0001",), starts=1, frames=script_frames(9, 5.0),
                                                  fps=5.0, width=32, height=16)).clips
    assert len(five) == 21 and all(len(c.frames) == 13 for c in five)
    clips = scene_clips("room_0001", EvalSetConfig(scenes=("room_0001",), starts=1, frames=5, fps=7.5, width=32,
                                                    height=16)).clips
    forward = next(c for c in clips if c.script == "forward")
    np.testing.assert_allclose(forward.motion, np.tile(channel_rate("forward", ActionSpec(), forward.level) / 7.5,
                                                       (4, 1)))
    report_dir = tmp_path / "eval"
    assert eval_main(["--checkpoint", str(out / "checkpoint.pt"), "--scenes", "room_0001", "--out", str(report_dir),
                      "--frames", "5", "--starts", "1", "--steps", "2", "--device", "cpu", "--precision", "fp32",
                      "--workers", "1", "--no-rpe"]) == 0
    report = json.loads((report_dir / "metrics.json").read_text())
    assert report["fps"] == 7.5 and " at 7.5 fps" in (report_dir / "table.md").read_text().splitlines()[0]


def test_teacher_cli_pretrains_on_plain_video_then_tunes_with_actions(tmp_path, capsys):
    shards = write_tiny_shards(tmp_path / "shards", clips=4, frames=6, height=16, width=16)
    common = ["--shards", shards, "--preset", "tiny", "--device", "cpu", "--set", "data.batch_size=2",
              "--set", "data.workers=0", "--set", "data.frames=4", "--set", "data.shuffle_buffer=4", "--steps", "2"]
    assert teacher.main([*common, "--out", str(tmp_path / "plain"), "--set", "model.conditioned=false"]) == 0
    plain = load_checkpoint(tmp_path / "plain" / "checkpoint.pt")
    assert plain["model_config"]["conditioned"] is False and not any("action_out" in k for k in plain["model"])
    assert teacher.main([*common, "--out", str(tmp_path / "tuned"), "--init",
                         str(tmp_path / "plain" / "checkpoint.pt")]) == 0
    assert "a plain video model; action and camera conditioning added" in capsys.readouterr().err
    tuned = load_checkpoint(tmp_path / "tuned" / "checkpoint.pt")
    assert tuned["model_config"]["conditioned"] is True and any("action_out" in k for k in tuned["model"])


def test_teacher_cli_rejects_bad_config(tmp_path, capsys):
    assert teacher.main(["--out", str(tmp_path), "--preset", "huge"]) == 2
    assert "unknown model preset 'huge'" in capsys.readouterr().err


def test_a_signal_to_the_whole_job_saves_the_step_reached_and_the_same_command_resumes(tmp_path):
    """SIGTERM to the teacher's process group (a scheduler's warning, `timeout`, kill -- -PGID) while it
    trains with a DataLoader worker: the worker leaves the signal to its trainer, which ends the step,
    saves the checkpoint at that step, says so in summary.json, exits 143 and leaves no process
    behind; the same command then resumes from that step."""
    import os
    import signal
    import subprocess
    import sys
    import time

    shards = write_tiny_shards(tmp_path / "shards", clips=8, frames=6, height=16, width=16)
    out = tmp_path / "run"
    common = ["--shards", shards, "--preset", "tiny", "--out", str(out), "--device", "cpu",
              "--set", "data.batch_size=2", "--set", "data.workers=1", "--set", "data.frames=4",
              "--set", "log_every=1", "--set", "checkpoint_every=1000", "--set", "data.shuffle_buffer=4"]
    root = pathlib.Path(__file__).resolve().parents[1]
    job = subprocess.Popen([sys.executable, "-m", "training.teacher", *common, "--minutes", "10"], cwd=root,
                           start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "log.jsonl"
    deadline = time.monotonic() + 180
    while not (log.exists() and len(log.read_text().splitlines()) >= 3):
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGTERM)
    stdout, stderr = job.communicate(timeout=120)
    assert job.returncode == 128 + signal.SIGTERM, stderr
    summary = json.loads((out / "summary.json").read_text())
    logged = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert summary["stopped"] == "SIGTERM" and summary["steps"] == logged[-1] >= 3  # saved at the step reached
    assert load_checkpoint(out / "checkpoint.pt")["step"] == summary["steps"]
    assert "SIGTERM: stopped at step" in stderr and "resumes the run" in stderr
    # the worker ends itself once its trainer is gone
    wait_until_group_gone(job.pid, 30, "a process of the stopped job is still alive")
    reached = summary["steps"]
    assert teacher.main([*common, "--set", "data.workers=0", "--steps", str(reached + 2)]) == 0
    assert json.loads((out / "summary.json").read_text())["stopped"] is None  # ran to its budget
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()][-3:] == [reached, reached + 1, reached + 2]
