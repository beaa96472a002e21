"""The distillation CLI end to end on CPU: ODE init then DMD from tiny shards and a tiny teacher."""

from __future__ import annotations

import json

import pytest
import torch

from tests.training_helpers import tiny_config, tiny_student_checkpoint, tiny_teacher_checkpoint, write_tiny_shards
from training.runtime import load_checkpoint
from training.student_train import main, student_from_checkpoint


def test_ode_then_dmd_from_shards(tmp_path):
    shards = write_tiny_shards(tmp_path / "shards", clips=8, frames=6, height=16, width=16)
    teacher = tmp_path / "teacher.pt"
    model = tiny_teacher_checkpoint(teacher, tiny_config())
    common = ["--teacher", str(teacher), "--shards", shards, "--device", "cpu", "--set", "data.frames=5",
              "--set", "data.batch_size=2", "--set", "data.workers=0", "--set", "data.shuffle_buffer=4",
              "--set", "log_every=1", "--set", "precision=fp32", "--set", "ode_teacher_steps=3", "--set", "ode_reuse=2"]
    assert main([*common, "--stage", "ode", "--steps", "3", "--out", str(tmp_path / "ode"),
                 "--set", "ema_decay=0.5"]) == 0
    ode_log = [json.loads(line) for line in (tmp_path / "ode" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ode_log] == [1, 2, 3] and all(r["loss"] > 0 for r in ode_log)
    assert [r["ode_use"] for r in ode_log] == [0, 1, 0]  # one teacher trajectory batch per 2 updates
    init = str(tmp_path / "ode" / "checkpoint.pt")
    assert not torch.equal(load_checkpoint(tmp_path / "ode" / "checkpoint.pt")["model"]["patch_in.weight"],
                           model.state_dict()["patch_in.weight"])  # the student moved off the teacher
    ode_state = load_checkpoint(tmp_path / "ode" / "checkpoint.pt")
    ema_w, raw_w, start_w = (ode_state["ema"]["patch_in.weight"], ode_state["model"]["patch_in.weight"],
                             model.state_dict()["patch_in.weight"])
    assert not torch.equal(ema_w, raw_w) and not torch.equal(ema_w, start_w)  # an average, behind the weights
    assert main([*common, "--stage", "dmd", "--init", init, "--steps", "4", "--set", "dmd.critic_steps=2",
                 "--out", str(tmp_path / "dmd")]) == 0
    dmd_log = [json.loads(line) for line in (tmp_path / "dmd" / "log.jsonl").read_text().splitlines()]
    assert all("critic_loss" in r for r in dmd_log)
    assert [r["step"] for r in dmd_log if "dmd_loss" in r] == [2, 4]  # one generator step per 2 critic steps
    state = load_checkpoint(tmp_path / "dmd" / "checkpoint.pt")
    assert state["step"] == 4 and state["fake"] is not None
    # scores on 3-frame windows of the 5-frame rollouts
    assert main([*common, "--stage", "dmd", "--init", init, "--steps", "2", "--set", "dmd.critic_steps=2",
                 "--set", "dmd.window=3", "--out", str(tmp_path / "dmd_window")]) == 0
    window_log = [json.loads(line) for line in (tmp_path / "dmd_window" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in window_log if "dmd_loss" in r] == [2] and all(r["critic_loss"] > 0 for r in window_log)
    student = student_from_checkpoint(tmp_path / "dmd" / "checkpoint.pt", torch.device("cpu"))
    frames = torch.rand(1, 3, 16, 16) * 2 - 1
    actions = torch.zeros(1, 5, 13)
    poses = torch.eye(4, dtype=torch.float64).repeat(1, 5, 1, 1)
    with torch.no_grad():
        out = student.rollout(frames, actions, poses, torch.randn(1, 4, 3, 16, 16))
    assert out.frames.shape == (1, 5, 3, 16, 16) and torch.isfinite(out.frames).all()


def test_a_student_reads_its_shards_at_its_teachers_frame_rate(tmp_path):
    """A teacher trained at 7.5 fps distils from 15 fps shards read one frame in two (the student records
    the rate); read at 15 fps they are refused, naming the sample."""
    shards = write_tiny_shards(tmp_path / "shards", clips=4, frames=9, height=16, width=16, fps=15.0)
    teacher = tmp_path / "teacher.pt"
    tiny_teacher_checkpoint(teacher, tiny_config(), fps=7.5)
    common = ["--teacher", str(teacher), "--shards", shards, "--device", "cpu", "--set", "data.frames=5",
              "--set", "data.batch_size=2", "--set", "data.workers=0", "--set", "data.shuffle_buffer=4",
              "--set", "precision=fp32", "--set", "ode_teacher_steps=2", "--stage", "ode", "--steps", "1"]
    assert main([*common, "--out", str(tmp_path / "ode"), "--set", "data.frame_step=2"]) == 0
    assert load_checkpoint(tmp_path / "ode" / "checkpoint.pt")["fps"] == 7.5
    with pytest.raises(ValueError, match=r"sample room_0001-t00\d-\d{5}: plays at 15 fps, its teacher .* at 7.5 fps"):
        main([*common, "--out", str(tmp_path / "ode15")])


def test_a_ray_teacher_distils_into_a_student_that_retrieves_by_view(tmp_path):
    """The levers together: a view-direction RoPE teacher with camera transforms in attention
    ("pose+prope"), its students' memory retrieved by view (window 1, one older frame of two
    retrieved per block), through both stages; the student keeps the teacher's positions, camera
    and its memory settings."""
    shards = write_tiny_shards(tmp_path / "shards", clips=6, frames=6, height=16, width=16)
    teacher = tmp_path / "teacher.pt"
    model = tiny_teacher_checkpoint(teacher, tiny_config(spatial_rope="rays", camera="pose+prope", prope_dims=8))
    common = ["--teacher", str(teacher), "--shards", shards, "--device", "cpu", "--set", "data.frames=5",
              "--set", "data.batch_size=2", "--set", "data.workers=0", "--set", "data.shuffle_buffer=4",
              "--set", "precision=fp32", "--set", "ode_teacher_steps=3", "--set", "student.memory.window=1",
              "--set", "student.memory.pool=[1]", "--set", "student.memory.max_old=1",
              "--set", "student.memory.select=view"]
    assert main([*common, "--stage", "ode", "--steps", "2", "--out", str(tmp_path / "ode")]) == 0
    assert main([*common, "--stage", "dmd", "--init", str(tmp_path / "ode" / "checkpoint.pt"), "--steps", "2",
                 "--set", "dmd.critic_steps=1", "--out", str(tmp_path / "dmd")]) == 0
    student = student_from_checkpoint(tmp_path / "dmd" / "checkpoint.pt", torch.device("cpu"))
    assert student.model.cfg.spatial_rope == "rays" and student.config.memory.select == "view"
    assert student.model.cfg.camera == "pose+prope" and student.model.cfg.prope_dims == 8
    assert load_checkpoint(tmp_path / "dmd" / "checkpoint.pt")["step"] == 2


def test_play_streams_a_script_into_a_video(tmp_path):
    import cv2

    from training.play import main as play_main, parse_script
    from annotate.actions import ActionSpec

    motion = parse_script("forward:4,yaw_right+forward:2,left~back:3", 15.0, 1, ActionSpec())
    assert motion.shape == (4 + 2 + 4, 6)  # out-and-back rounds to an even count
    ckpt = tiny_student_checkpoint(tmp_path / "student.pt")
    out = tmp_path / "play"
    assert play_main(["--checkpoint", str(ckpt), "--out", str(out), "--scene", "room_0001", "--script",
                      "forward:4,yaw_right:3", "--device", "cpu", "--precision", "fp32", "--truth"]) == 0
    report = json.loads((out / "play.json").read_text())
    assert report["frames"] == 8 and report["steady_fps"] > 0 and len(report["psnr_by_frame"]) == 8
    assert report["fps"] == 15.0  # a checkpoint that does not record its rate was trained at 15 fps
    assert [b["start"] for b in report["blocks"]] == [1, 3, 5, 7]
    video = cv2.VideoCapture(str(out / "video.mp4"))
    count = 0
    while video.read()[0]:
        count += 1
    assert count == 8
    assert play_main(["--checkpoint", str(ckpt), "--out", str(out), "--scene", "room_0001",
                      "--script", "sideways:3", "--device", "cpu"]) == 2
    from annotate.actions import BinSpec

    scaled = ActionSpec(translation=BinSpec(0.05, (0.75, 1.5), (0.4, 1.0, 2.0), normalize="clip_mean"))
    scaled_ckpt = tiny_student_checkpoint(tmp_path / "scaled.pt", spec=scaled)
    assert play_main(["--checkpoint", str(scaled_ckpt), "--out", str(tmp_path / "scaled"), "--scene", "room_0001",
                      "--script", "forward:4", "--device", "cpu", "--precision", "fp32"]) == 0
    assert play_main(["--checkpoint", str(scaled_ckpt), "--out", str(tmp_path / "keys"), "--scene", "room_0001",
                      "--keys", "--device", "cpu"]) == 2  # a live session has no clip mean to scale by
    assert report["cuda_graphs"] is False
    slow = tiny_student_checkpoint(tmp_path / "slow.pt", fps=5.0)  # stepped at the rate it was trained at
    assert play_main(["--checkpoint", str(slow), "--out", str(tmp_path / "slow"), "--scene", "room_0001",
                      "--script", "forward:2", "--device", "cpu", "--precision", "fp32"]) == 0
    assert json.loads((tmp_path / "slow" / "play.json").read_text())["fps"] == 5.0
    assert play_main(["--checkpoint", str(ckpt), "--out", str(out), "--scene", "room_0001",
                      "--script", "forward:3", "--device", "cpu", "--cuda-graphs"]) == 2  # no GPU here


def test_sigusr1_stops_the_stage_at_a_saved_step_that_the_same_command_resumes(tmp_path):
    """A scheduler's warning (SLURM `--signal=USR1@...`) during the ODE stage: the step in progress
    ends, the checkpoint is saved at it, the exit code says which signal (128 + 10), and the same
    command picks the run up there; the process's own handler is back afterwards."""
    import os
    import signal
    import threading
    import time

    shards = write_tiny_shards(tmp_path / "shards", clips=8, frames=6, height=16, width=16)
    teacher = tmp_path / "teacher.pt"
    tiny_teacher_checkpoint(teacher, tiny_config())
    out = tmp_path / "ode"
    common = ["--teacher", str(teacher), "--shards", shards, "--device", "cpu", "--set", "data.frames=5",
              "--set", "data.batch_size=2", "--set", "data.workers=0", "--set", "data.shuffle_buffer=4",
              "--set", "log_every=1", "--set", "precision=fp32", "--set", "ode_teacher_steps=2",
              "--stage", "ode", "--out", str(out)]
    log = out / "log.jsonl"

    def warn() -> None:
        deadline = time.monotonic() + 120
        while not (log.exists() and len(log.read_text().splitlines()) >= 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGUSR1)

    before = signal.getsignal(signal.SIGUSR1)
    threading.Thread(target=warn, daemon=True).start()
    assert main([*common, "--minutes", "10"]) == 128 + signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) is before
    summary = json.loads((out / "summary.json").read_text())
    logged = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert summary["stopped"] == "SIGUSR1" and summary["steps"] == logged[-1] >= 2
    assert load_checkpoint(out / "checkpoint.pt")["step"] == summary["steps"]
    assert main([*common, "--steps", str(summary["steps"] + 1)]) == 0
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()][-1] == summary["steps"] + 1
