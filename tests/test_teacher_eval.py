"""training/eval: action scripts, ground-truth clips, metrics, the summary and the CLI."""

from __future__ import annotations

import json
import math
import multiprocessing
import pathlib
import subprocess
import sys
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from annotate.actions import CHANNELS, ActionSpec
from capture.standin.render import Renderer
from capture.standin.scene import make_scene
from tests.training_helpers import randomized_model, tiny_config
from training.eval.__main__ import main as eval_main
from training.eval.compare import CompareError, compare, main as compare_main
from training.eval.evaluate import (SamplerConfig, frame_metrics, run_method, shuffled_scripts, summarize,
                                    summarize_paths, warp_first_videos)
from training.eval.groundtruth import EvalSet, EvalSetConfig, load_eval_set, save_eval_set, scene_clips
from training.eval.metrics import psnr, ssim
from training.eval.scripts import revisit_scripts, standard_scripts
from training.eval.stats import mean_se, with_z, z_score
from training.eval.table import cell, frame_verdict, markdown_table, strict_json
from training.runtime import save_checkpoint

DT = 1 / 15


def test_psnr_known_answer_and_ssim_properties():
    x = torch.full((2, 3, 16, 16), 100.0)
    assert torch.allclose(psnr(x + 10, x), torch.full((2,), 20 * np.log10(255 / 10), dtype=torch.float64))
    assert torch.allclose(psnr(x, x), torch.full((2,), 10 * np.log10(12 * 255**2), dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 32, 32, generator=g) * 255
    assert torch.allclose(ssim(img, img), torch.ones(1, dtype=torch.float64), atol=1e-5)
    noisy = [(img + torch.randn(img.shape, generator=g) * s).clamp(0, 255) for s in (5, 20, 60)]
    scores = [float(ssim(n, img)) for n in noisy]
    assert scores[0] > scores[1] > scores[2]
    assert torch.allclose(ssim(noisy[1], img), ssim(img, noisy[1]), atol=1e-6)


def test_scripts_cover_every_motion_and_out_and_back_returns():
    scripts = {s.name: s for s in standard_scripts(32, DT)}
    spec = ActionSpec()
    for channel in CHANNELS[:-1]:
        active = scripts[channel].actions(DT, spec) > 0
        assert active[:, CHANNELS.index(channel)].all() and active.sum(axis=1).max() == 1, channel
    mix = scripts["forward+yaw_right"].actions(DT, spec) > 0
    assert mix[:, CHANNELS.index("forward")].all() and mix[:, CHANNELS.index("yaw_right")].all()
    for name in ("forward~back", "yaw_right~back", "left~back"):
        poses = scripts[name].poses(np.eye(4))
        assert np.allclose(poses[-1], poses[0], atol=1e-9), name
        assert not np.allclose(poses[16], poses[0], atol=1e-3)
    with pytest.raises(ValueError, match="even number"):
        standard_scripts(31, DT)


@pytest.mark.parametrize("transitions", [16, 32, 64])
def test_revisit_scripts_return_to_the_first_pose_after_their_length(transitions):
    scripts = revisit_scripts(transitions, DT)
    assert {s.kind for s in scripts} == {"out_and_back", "loop"} and len(scripts) == 4
    for script in scripts:
        poses = script.poses(np.eye(4))
        assert len(poses) == transitions + 1
        assert np.allclose(poses[-1], poses[0], atol=1e-9), script.name
        far = np.linalg.norm(poses[:, :3, 3] - poses[0, :3, 3], axis=1).max()
        turned = max(np.degrees(np.arccos(np.clip((np.trace(poses[0, :3, :3].T @ p[:3, :3]) - 1) / 2, -1, 1)))
                     for p in poses)
        assert far > 0.2 or turned > 10, script.name  # it went somewhere before coming back
    square = next(s for s in scripts if s.name == "square")
    assert np.allclose(square.motion[:, 3:], 0.0)  # a loop without turning: same heading all the way
    with pytest.raises(ValueError, match="multiple of 4"):
        revisit_scripts(18, DT)


def test_eval_clips_are_rendered_along_free_scripted_paths(tmp_path):
    config = EvalSetConfig(scenes=("room_0001",), starts=1, frames=5, width=32, height=18)
    eval_set = scene_clips("room_0001", config)
    clips = eval_set.clips
    assert len(clips) == 21 and eval_set.unfit == [] and {c.kind for c in clips} == {"single", "mix", "out_and_back"}
    scene = make_scene("room_0001")
    renderer = Renderer(scene)
    for clip in clips[:3]:
        assert clip.frames.shape == (5, 18, 32, 3)
        assert np.array_equal(clip.frames[3], renderer.render(clip.poses[3], 32, 18, 90.0).lit)
        assert scene.is_free(clip.poses[:, :3, 3], config.clearance_m).all()
    again = scene_clips("room_0001", config).clips
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(clips, again))
    path = tmp_path / "set.npz"
    save_eval_set(eval_set, config, path)
    loaded = load_eval_set(path, config)
    assert loaded is not None and np.array_equal(loaded.clips[5].poses, clips[5].poses) and loaded.unfit == []
    assert load_eval_set(path, EvalSetConfig(scenes=("room_0001",), starts=2, frames=5, width=32, height=18)) is None


def _save_when_both_are_ready(args) -> None:
    barrier, eval_set, config, path, rounds = args
    for _ in range(rounds):
        barrier.wait(timeout=60)  # the other failed: this one stops too
        save_eval_set(eval_set, config, path)


def test_scripts_that_fit_no_start_pose_are_left_out_with_their_reasons(tmp_path, monkeypatch):
    """33 frames at 5 fps are 6.4 s of motion: pitch and roll pass the planner's limits at every bin
    level (no start can help), and `down` goes through the floor from every start. Those scripts are
    left out of the set and recorded with the reason, the rest are rendered, the cache keeps the
    record, and the report's table names them; a set in which nothing fits is an error."""
    from training.eval import groundtruth
    from training.eval.groundtruth import make_eval_set, unfit_summary

    config = EvalSetConfig(scenes=("room_0001",), starts=1, frames=33, fps=5.0, width=32, height=18)
    eval_set = scene_clips("room_0001", config)
    unfit = unfit_summary(eval_set.unfit)
    turns = ("pitch_up", "pitch_down", "roll_left", "roll_right", "left+pitch_up", "right+pitch_down")
    for name in turns:
        assert unfit[name] == {"starts": 1, "reasons": ["turns past the planner's pitch 40 / roll 25 degree limits "
                                                        "at every bin level"]}
    assert unfit["down"]["reasons"] == ["no start pose in 500 draws keeps its path 0.3 m clear"]
    names = {c.script for c in eval_set.clips}
    assert not names & set(unfit) and len(names) + len(unfit) == len(standard_scripts(32, 0.2))
    assert {"forward", "yaw_left", "forward~back", "left~back"} <= names
    for clip in eval_set.clips:  # what was kept is whole: 33 frames along a free path inside the limits
        assert clip.frames.shape[0] == 33 and make_scene("room_0001").is_free(clip.poses[:, :3, 3], 0.3).all()
    path = tmp_path / "set.npz"
    save_eval_set(eval_set, config, path)
    loaded = load_eval_set(path, config)
    assert loaded is not None and loaded.unfit == eval_set.unfit and len(loaded.clips) == len(eval_set.clips)
    table = markdown_table({"methods": {}, "unfit": unfit})
    assert "Left out, fitting no start pose: " in table and "down at 1 starts (no start pose in 500 draws" in table
    monkeypatch.setattr(groundtruth, "_fits", lambda *args: False)
    with pytest.raises(RuntimeError, match=r"no eval clip fits: 5 frames at 15 fps in \['room_0001'\] \(room_0001 "
                                           r"forward: no start pose in 500 draws"):
        make_eval_set(EvalSetConfig(scenes=("room_0001",), starts=1, frames=5, width=32, height=18))


def test_warp_first_moves_the_first_frame_by_its_depth(tmp_path):
    """The geometric baseline: frame 0 is the first frame, an out-and-back clip's return frame is the
    first frame again (exactly: every pixel has a depth, the sky an infinite one), and along the paths it
    beats copy-first at every frame (measured at 5 fps, 9 frames: +6.4 dB over copy-first in this scene).
    An eval-set cache written before the first frame's depth was kept is rendered again."""
    config = EvalSetConfig(scenes=("room_0001",), starts=1, frames=17, fps=5.0)
    clips = scene_clips("room_0001", config).clips
    assert all(c.depth0.shape == (72, 128) and c.depth0.dtype == np.float32 and (c.depth0 > 0).all() for c in clips)
    videos = warp_first_videos(clips, 17, config.fov)
    assert videos.shape == (len(clips), 17, 3, 72, 128) and videos.dtype == np.uint8
    firsts = np.stack([c.frames[0] for c in clips]).transpose(0, 3, 1, 2)
    assert (videos[:, 0] == firsts).all()
    back = [i for i, c in enumerate(clips) if c.kind == "out_and_back"]
    assert back and (videos[back, -1] == firsts[back]).all()
    nine = {"warp": frame_metrics(videos[:, :9], clips),
            "copy": frame_metrics(run_method(None, clips, SamplerConfig(frames=9), torch.device("cpu")), clips)}
    diff = nine["warp"]["psnr"] - nine["copy"]["psnr"]
    assert diff.mean() > 4 and (diff.mean(axis=0) > 2).all()
    path = tmp_path / "set.npz"
    save_eval_set(EvalSet(clips), config, path)
    with np.load(path) as npz:
        older = {k: npz[k] for k in npz.files}
    depth0 = older.pop("depth0")
    np.savez(path, **older)
    assert load_eval_set(path, config) is None
    np.savez(path, **older, depth0=depth0)  # the same file with the depth: loads
    assert load_eval_set(path, config) is not None


def test_evaluations_side_by_side_can_write_the_same_eval_set(tmp_path):
    """Two evaluations started together on a missing cache both render and save it: neither fails
    on the other's temporary file, and the set left behind loads whole."""
    config = EvalSetConfig(scenes=("room_0001",), starts=1, frames=5, width=32, height=18)
    eval_set = EvalSet(scene_clips("room_0001", config).clips * 40)  # a save long enough to overlap
    path = tmp_path / "set.npz"
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(2)
    with context.Pool(2) as pool:
        pool.map(_save_when_both_are_ready, [(barrier, eval_set, config, path, 5)] * 2)
    loaded = load_eval_set(path, config)
    assert loaded is not None and len(loaded.clips) == len(eval_set.clips)
    assert [p.name for p in tmp_path.iterdir()] == ["set.npz"]


def test_methods_metrics_and_paired_summary():
    config = EvalSetConfig(scenes=("room_0001",), starts=1, frames=5, width=32, height=18)
    clips = scene_clips("room_0001", config).clips
    sampler = SamplerConfig(frames=5, batch=8)

    def oracle(first, actions, poses, frames, generator):  # the truth plus a little noise
        idx = [i for i, c in enumerate(clips) if np.allclose(c.poses[:frames], poses[0].numpy())][0]
        n = first.shape[0]
        truth = torch.from_numpy(np.stack([c.frames for c in clips[idx:idx + n]])).permute(0, 1, 4, 2, 3)
        return truth.float() / 127.5 - 1 + 0.01 * torch.randn(truth.shape, generator=generator)

    videos = {"model": run_method(oracle, clips, sampler, torch.device("cpu")),
              "copy_first": run_method(None, clips, sampler, torch.device("cpu"))}
    assert videos["copy_first"].shape == (21, 5, 3, 18, 32)
    assert (videos["copy_first"][:, 3] == videos["copy_first"][:, 0]).all()
    metrics = {k: frame_metrics(v, clips) for k, v in videos.items()}
    assert metrics["model"]["psnr"].shape == (21, 4)
    summary = summarize(metrics, clips)
    paired = summary["paired"]["model-copy_first"]["psnr_db"]
    assert paired["mean"] > 5 and paired["z"] > 3 and paired["n"] == 21
    assert set(summary["methods"]["model"]["psnr_by_kind"]) == {"single", "mix", "out_and_back"}
    assert len(summary["methods"]["model"]["psnr_by_frame"]) == 4
    by_frame = summary["paired"]["model-copy_first"]["psnr_db_by_frame"]  # frames 1..4, each paired over clips
    diff = metrics["model"]["psnr"] - metrics["copy_first"]["psnr"]
    assert [d["n"] for d in by_frame] == [21] * 4 and all(d["z"] > 3 for d in by_frame)
    assert [d["mean"] for d in by_frame] == pytest.approx(diff.mean(axis=0).tolist())
    assert by_frame[2]["se"] == pytest.approx(diff[:, 2].std(ddof=1) / np.sqrt(21))
    by_kind = summary["paired"]["model-copy_first"]["psnr_db_by_frame_by_kind"]  # the same, per script kind
    kind_of = np.array([c.kind for c in clips])
    assert set(by_kind) == {"single", "mix", "out_and_back"}
    for kind, frames in by_kind.items():
        assert [d["n"] for d in frames] == [int((kind_of == kind).sum())] * 4
        assert [d["mean"] for d in frames] == pytest.approx(diff[kind_of == kind].mean(axis=0).tolist())
    shuffled = shuffled_scripts(clips, seed=0)
    assert all(not np.allclose(a, c.actions) or c.kind == "out_and_back" for (a, _), c in zip(shuffled, clips))
    assert all(np.allclose(p[0], c.poses[0]) for (_, p), c in zip(shuffled, clips))


def test_z_scores_and_the_per_frame_verdict():
    """z = mean / SE, with what a report needs at the edges; the table line that says whether a model is
    above a baseline at every frame (by 3 SE), or which frames it is not, with their means and z."""
    assert with_z(mean_se(np.array([1.0, 2.0, 3.0]))) == pytest.approx({"mean": 2.0, "se": 1 / np.sqrt(3),
                                                                       "n": 3, "z": 2 * np.sqrt(3)})
    assert z_score(0.5, 0.0) == math.inf and z_score(-0.5, 0.0) == -math.inf  # every clip differs the same
    assert z_score(0.0, 0.0) == 0.0 and z_score(0.0, math.nan) == 0.0
    assert math.isnan(z_score(0.5, math.nan))  # one clip: no SE, so no z (not an infinitely sure difference)
    assert math.isnan(with_z(mean_se(np.array([])))["z"])
    frames = [with_z(mean_se(np.array(v))) for v in ([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], [0.5, 1.5, -0.2],
                                                     [-3.0, -3.1, -2.9], [4.0, 4.1, 3.9])]
    assert frame_verdict(frames[:2]) == "above at every frame (smallest z 17.3, frame 2)"
    assert frame_verdict(frames) == ("above at frames 1-2, 5; not at 3 (+0.60 dB, z 1.2), 4 (-3.00 dB, z -52.0)")
    assert frame_verdict([frames[3]]) == "above at no frame; not at 1 (-3.00 dB, z -52.0)"
    report = {"paired": {"model-copy_first": {"psnr_db_by_frame": frames,
                                              "psnr_db_by_frame_by_kind": {"single": frames[:2]}}}}
    table = markdown_table({"methods": {}, **report})
    assert ("- PSNR per frame, model against copy first frame (paired, z >= 3): above at frames 1-2, 5; not at 3 "
            in table)
    assert "  - single (3 clips): above at every frame (smallest z 17.3, frame 2)" in table


def test_eval_cli_writes_metrics_and_grid(tmp_path):
    config = tiny_config(height=16, width_px=32)
    model = randomized_model(config)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "ema": None, "model_config": asdict(config),
                           "config": {"flow": {"shift": 3.0}}})
    out = tmp_path / "eval"
    rc = eval_main(["--checkpoint", str(ckpt), "--scenes", "room_0001", "--out", str(out), "--frames", "5",
                    "--starts", "1", "--steps", "2", "--device", "cpu", "--precision", "fp32", "--workers", "1",
                    "--cache", str(tmp_path / "set.npz")])
    assert rc == 0
    def no_constants(name):
        raise AssertionError(f"metrics.json is not strict JSON: it holds {name}")

    report = json.loads((out / "metrics.json").read_text(), parse_constant=no_constants)  # no NaN / Infinity
    assert set(report["methods"]) == {"model", "shuffled", "copy_first", "warp_first"}
    assert report["paired"]["model-warp_first"]["psnr_db"]["mean"] < 0  # geometry beats a random model
    one_clip = report["paths"]["methods"]["model"]["rpe_t_by_script"]["forward"]  # one start: one clip a script
    assert one_clip["n"] == 1 and one_clip["se"] is None and isinstance(one_clip["mean"], float)
    assert report["clips"] == 21 and report["sampler"]["frames"] == 5 and report["unfit"] == {}
    assert (out / "grid.png").stat().st_size > 1000
    paths = report["paths"]
    assert set(paths["methods"]) == {"model", "shuffled", "copy_first", "warp_first", "ground_truth"}
    assert len(paths["methods"]["model"]["rpe_t_per_clip"]) == 21
    assert set(paths["methods"]["model"]["rpe_r_by_kind"]) == {"single", "mix", "out_and_back"}
    assert paths["paired"]["model-ground_truth"]["rpe_t"]["n"] == 21 and paths["steps"]["translation_m"] > 0
    assert paths["odometry"]["tracker"] == "dense"  # the default, recorded with the figures it made
    for method in paths["methods"].values():
        assert 0.0 <= method["turned_share"] <= 1.0 and len(method["parallax_px_per_clip"]) == 21
    table = (out / "table.md").read_text()
    assert "| ground-truth renders | — | — |" in table and "| copy first frame |" in table
    assert "| first frame warped by its depth |" in table
    assert "| RPE-r deg | parallax px |" in table
    assert "; odometry: dense" in table.splitlines()[0]
    assert "revisits" not in report  # a teacher has no memory window
    corners = tmp_path / "corners"  # the estimator of the figures before dense flow, on request
    assert eval_main(["--checkpoint", str(ckpt), "--scenes", "room_0001", "--out", str(corners), "--frames", "5",
                      "--starts", "1", "--steps", "2", "--device", "cpu", "--precision", "fp32", "--workers", "1",
                      "--cache", str(tmp_path / "set.npz"), "--odometry", "corners"]) == 0
    again = json.loads((corners / "metrics.json").read_text())["paths"]
    assert again["odometry"]["tracker"] == "corners"
    assert again["methods"]["ground_truth"]["rpe_t"] != paths["methods"]["ground_truth"]["rpe_t"]


def test_eval_cli_on_a_student_with_memory_overrides(tmp_path):
    config = tiny_config(height=16, width_px=32)
    model = randomized_model(config)
    ckpt = tmp_path / "student.pt"
    save_checkpoint(ckpt, {"model": model.state_dict(), "ema": None, "model_config": asdict(config),
                           "student_config": {"block_frames": 2, "memory": {"window": 2}}, "config": {}})
    out = tmp_path / "eval"
    rc = eval_main(["--checkpoint", str(ckpt), "--student", "--memory-pool", "0", "--scenes", "room_0001",
                    "--out", str(out), "--frames", "33", "--starts", "1", "--device", "cpu", "--precision", "fp32",
                    "--workers", "1", "--revisit", "2,4", "--no-rpe"])
    assert rc == 0
    report = json.loads((out / "metrics.json").read_text())
    assert "paths" not in report
    for multiple, frames in (("2x", 5), ("4x", 9)):  # window 2: back at the first pose after 4 and 8 steps
        rev = report["revisits"][multiple]
        assert rev["frames"] == frames and rev["window"] == 2 and rev["clips"] == 4
        assert set(rev["methods"]) == {"model", "window_only"}
        assert set(rev["methods"]["model"]["psnr_by_kind"]) == {"out_and_back", "loop"}
        assert rev["paired"]["model-window_only"]["psnr_db"]["n"] == 4
    assert "return PSNR @4x window" in (out / "table.md").read_text()
    assert report["student"]["memory"] == {"window": 2, "pool": [0], "max_old": None, "select": "spaced",
                                           "distance_m": 1.0}
    revisit = report["revisit"]["model"]
    assert revisit["n"] == 3 and len(revisit["per_clip"]) == 3
    # copy-first is exact on the return frame of an out-and-back clip
    assert report["revisit"]["copy_first"]["mean"] > 50
    assert len(report["clip_ids"]) == 21 and len(report["methods"]["model"]["psnr_per_clip"]) == 21

    # pairing two runs on the same clips: copy-first beats this random model on the revisit frame
    assert compare_main([str(out / "metrics.json"), str(out / "metrics.json"), "--method", "copy_first",
                         "--method-b", "model", "--json", str(tmp_path / "cmp.json")]) == 0
    cmp = json.loads((tmp_path / "cmp.json").read_text(), parse_constant=pytest.fail)  # strict JSON too
    rev = cmp["revisit_psnr_db"]
    assert rev["n"] == 3 and rev["mean"] == pytest.approx(np.mean(report["revisit"]["copy_first"]["per_clip"])
                                                          - np.mean(revisit["per_clip"]), abs=1e-9)
    assert cmp["psnr_db"]["n"] == 21 and cmp["psnr_db"]["z"] > 0
    other = dict(report, clip_ids=report["clip_ids"][::-1])
    with pytest.raises(CompareError, match="different clips"):
        compare(report, other)
    with pytest.raises(CompareError, match="no per-clip PSNR"):
        compare(report, report, method_a="teacher")


def test_eval_cli_on_a_student_that_retrieves_its_memory_by_view(tmp_path, capsys):
    config = tiny_config(height=16, width_px=32, spatial_rope="rays")
    ckpt = tmp_path / "student.pt"
    save_checkpoint(ckpt, {"model": randomized_model(config).state_dict(), "ema": None, "model_config": asdict(config),
                           "student_config": {"block_frames": 2, "memory": {"window": 2}}, "config": {}})
    common = ["--checkpoint", str(ckpt), "--student", "--scenes", "room_0001", "--frames", "9", "--starts", "1",
              "--device", "cpu", "--precision", "fp32", "--workers", "1", "--no-rpe"]
    assert eval_main([*common, "--out", str(tmp_path / "bad"), "--memory-select", "view"]) == 2
    assert "memory.select view needs memory.window and memory.max_old" in capsys.readouterr().err
    out = tmp_path / "eval"
    assert eval_main([*common, "--out", str(out), "--memory-select", "view", "--memory-pool", "1",
                      "--memory-max-old", "2", "--revisit", "2"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["student"]["memory"] == {"window": 2, "pool": [1], "max_old": 2, "select": "view", "distance_m": 1.0}
    rev = report["revisits"]["2x"]
    assert set(rev["methods"]) == {"model", "window_only"} and rev["clips"] == 4


def test_compare_pairs_the_rpe_of_two_runs_clip_by_clip():
    def report(psnr, rpe_t, rpe_r):
        return {"clip_ids": ["room_0001/0/forward", "room_0001/0/yaw_left", "room_0001/1/forward"],
                "sampler": {"frames": 9}, "methods": {"model": {"psnr_per_clip": psnr}},
                "paths": {"methods": {"model": {"rpe_t_per_clip": rpe_t, "rpe_r_per_clip": rpe_r}}}}

    a = report([20.0, 21.0, 22.0], [0.01, 0.02, 0.03], [0.5, 0.6, 0.7])
    b = report([19.0, 21.0, 20.0], [0.02, 0.02, 0.05], [0.5, 0.9, 1.0])
    cmp = compare(a, b)
    assert cmp["psnr_db"]["mean"] == pytest.approx(1.0)
    assert cmp["rpe_t"]["mean"] == pytest.approx(-0.01) and cmp["rpe_t"]["n"] == 3
    assert cmp["rpe_r"]["mean"] == pytest.approx(-0.2) and cmp["rpe_r"]["se"] == pytest.approx(np.std([0, -0.3, -0.3], ddof=1) / np.sqrt(3))
    by_group = cmp["psnr_db_by_group"]  # clips 0 and 2 walk forward, clip 1 turns
    assert list(by_group) == ["rotation", "translation"]
    assert by_group["translation"]["mean"] == pytest.approx(1.5) and by_group["translation"]["n"] == 2
    assert by_group["rotation"]["mean"] == 0.0 and by_group["rotation"]["z"] == 0.0  # one clip, no difference
    assert cmp["rpe_t_by_group"]["translation"]["mean"] == pytest.approx(-0.015)  # the path metrics by group too
    no_paths = {k: v for k, v in b.items() if k != "paths"}
    assert set(compare(a, no_paths)) == {"psnr_db", "psnr_db_by_group"}  # a run without --rpe pairs PSNR only
    with pytest.raises(ValueError, match="unknown action script 'spin'"):
        compare(dict(a, clip_ids=["r/0/spin", *a["clip_ids"][1:]]), dict(b, clip_ids=["r/0/spin", *b["clip_ids"][1:]]))


def test_a_clip_without_parallax_is_left_out_of_its_means_and_pairs():
    """A clip whose every window was lost has no parallax (NaN, None in metrics.json): the means,
    the paired differences, the table and the comparison of two runs leave it out, not count it 0."""
    clips = [SimpleNamespace(kind="single", script=s) for s in ("forward", "left", "yaw_left")]
    nan = float("nan")
    errors = {name: {"rpe_t": np.array([0.01, 0.02, 0.0]), "rpe_r": np.array([0.1, 0.2, 0.3]),
                     "lost": np.array([0.0, 0.0, 1.0]), "turned": np.array([0.0, 0.5, 0.0]),
                     "parallax_px": np.array(values)}
              for name, values in (("model", [2.0, 1.0, nan]), ("copy_first", [0.0, 0.5, 0.1]))}
    summary = summarize_paths(errors, clips)
    model = summary["methods"]["model"]
    assert model["parallax_px"]["mean"] == pytest.approx(1.5) and model["parallax_px"]["n"] == 2
    assert model["parallax_px_per_clip"] == [2.0, 1.0, None] and model["turned_share"] == pytest.approx(1 / 6)
    assert model["parallax_px_by_script"]["yaw_left"]["n"] == 0
    paired = summary["paired"]["model-copy_first"]["parallax_px"]
    assert paired["mean"] == pytest.approx(1.25) and paired["n"] == 2
    table = markdown_table({"paths": summary, "methods": {}})
    assert "| model | — | — | 0.0100 ± 0.0058 | 0.200 ± 0.058 | 1.50 ± 0.50 |" in table
    # one clip has a mean and no SE (null in metrics.json, NaN in older reports); no clip has neither
    empty = strict_json(model["parallax_px_by_script"]["yaw_left"])
    stats = ({"mean": 1.5, "se": None, "n": 1}, {"mean": 1.5, "se": nan, "n": 1},
             {"mean": None, "se": None, "n": 0}, empty)
    assert [cell(s, 2) for s in stats] == ["1.50", "1.50", "—", "—"]
    assert strict_json({"a": [nan, float("inf"), 1.0, 2], "b": (nan,)}) == {"a": [None, None, 1.0, 2], "b": [None]}
    old = markdown_table({"paths": {"methods": {"model": {k: v for k, v in model.items() if "parallax" not in k}}}})
    assert "parallax" not in old  # a report from before the column stays as it was
    ids = ["room_0001/0/forward", "room_0001/0/left", "room_0001/0/yaw_left"]
    runs = [{"clip_ids": ids, "sampler": {"frames": 9}, "methods": {"model": {"psnr_per_clip": [20.0, 21.0, 22.0]}},
             "paths": {"methods": {"model": {"parallax_px_per_clip": per_clip}}}}
            for per_clip in ([2.0, 1.0, None], [1.0, None, 0.5])]
    cmp = compare(*runs)["parallax_px"]
    assert cmp["n"] == 1 and cmp["mean"] == pytest.approx(1.0) and cmp["a"] == 2.0


def test_every_eval_script_falls_in_one_motion_group():
    from training.eval.scripts import GROUPS, revisit_scripts, script_group, standard_scripts

    groups = {s.name: script_group(s.name) for s in standard_scripts(8, 0.25) + revisit_scripts(8, 0.25)}
    assert set(groups.values()) == set(GROUPS)
    assert [n for n, g in groups.items() if g == "rotation"] == ["yaw_left", "yaw_right", "pitch_up", "pitch_down",
                                                                 "roll_left", "roll_right"]
    assert groups["forward+up"] == "mix" and groups["square"] == groups["left~back"] == "out_and_back"
    assert sum(g == "translation" for g in groups.values()) == 6


def test_trainers_and_eval_import_where_ray_and_unrealcv_are_missing():
    """The GPU host has neither: training.* must import there (a planner import once pulled the
    engine client in, and the eval died after a GPU run had trained its teacher), and so must the
    Ray-free renderer of training data (bench/device_data.py: the build's config, filter and clips)."""
    import pathlib
    probe = ("import builtins, sys\n"
             "real = builtins.__import__\n"
             "def guarded(name, *a, **k):\n"
             "    if name.split('.')[0] in ('ray', 'unrealcv'):\n"
             "        raise ModuleNotFoundError(name)\n"
             "    return real(name, *a, **k)\n"
             "builtins.__import__ = guarded\n"
             "import training.eval.__main__, training.teacher, training.student_train, training.play\n"
             "import bench.device_data\n"
             "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=pathlib.Path(__file__).resolve().parents[1])
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_baselines_bench_writes_a_table_without_a_model(tmp_path):
    """bench/eval_baselines.py: copy-first and warp-first on held-out clips in training.eval's layout, the
    warped first frame above copy-first (paired, per frame)."""
    root = pathlib.Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "bench" / "eval_baselines.py"), "--scenes", "room_0002",
                           "--starts", "1", "--fps", "5", "--no-rpe", "--workers", "1", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert set(report["methods"]) == {"copy_first", "warp_first"} and report["fps"] == 5
    paired = report["paired"]["warp_first-copy_first"]
    assert paired["psnr_db"]["mean"] > 2 and all(d["mean"] > 0 for d in paired["psnr_db_by_frame"])
    table = (tmp_path / "table.md").read_text()
    assert "| first frame warped by its depth |" in table and "| copy first frame |" in table
    assert "PSNR per frame, first frame warped by its depth against copy first frame" in table
