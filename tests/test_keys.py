"""Keyboard steering (training.keys) and `python -m training.play --keys`: the held-key rules, the
recorded script, and a steered session that its recorded script replays."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from annotate.actions import ActionSpec, encode_actions
from annotate.geometry import integrate
from tests.training_helpers import randomized_model, tiny_config, tiny_student_checkpoint
from training import keys
from training.conditioning import frame_actions
from training.keys import HeldKeys, KeyControl, block_motion, script_text
from training.play import main as play_main, parse_script
from training.student import Student, StudentConfig


class ScriptedWindow:
    """A Window whose keys come from a schedule: `presses[k]` are pending once k frames have been
    shown (the first frame is frame 1), read one per poll. Nothing waits: poll returns at once."""

    def __init__(self, presses: dict[int, str]):
        self.presses = {k: [ord(c) if len(c) == 1 else int(c) for c in v.split(",")] for k, v in presses.items()}
        self.shown: list[np.ndarray] = []
        self.closed = False

    def show(self, rgb: np.ndarray) -> None:
        self.shown.append(rgb.copy())

    def poll(self, ms: int) -> int:
        pending = self.presses.get(len(self.shown), [])
        return pending.pop(0) if pending else -1

    def close(self) -> None:
        self.closed = True


def test_a_press_holds_its_channel_until_it_lapses_or_the_opposite_or_space():
    held = HeldKeys(hold_s=0.5)
    held.press(ord("w"), 0.0)
    held.press(ord("L"), 0.1)  # shift folded: L is l
    assert held.channels(0.2) == ("forward", "yaw_right")
    assert held.channels(0.55) == ("yaw_right",)  # forward's press lapsed, yaw_right's has not
    held.press(ord("w"), 0.6)
    held.press(ord("s"), 0.7)  # the opposite releases forward
    assert held.channels(0.8) == ("backward",)
    held.press(65361, 0.8)  # left arrow: yaw left releases yaw right
    assert held.channels(0.9) == ("backward", "yaw_left")
    held.press(ord(" "), 1.0)
    assert held.channels(1.0) == () and not held.quit
    held.press(ord("x"), 1.0)  # not a key of the map: nothing
    assert held.channels(1.0) == ()
    held.press(27, 1.1)
    assert held.quit
    with pytest.raises(ValueError, match="hold_s"):
        HeldKeys(0)


def test_the_recorded_script_replays_the_same_motion():
    spec, fps = ActionSpec(), 15.0
    blocks = [(("forward",), 2), (("forward",), 2), (("forward", "yaw_right"), 2), ((), 1), (("pitch_down",), 3)]
    text = script_text(blocks)
    assert text == "forward:4,forward+yaw_right:2,static:1,pitch_down:3"
    live = np.concatenate([block_motion(c, n, 1 / fps, spec, 1) for c, n in blocks])
    np.testing.assert_array_equal(parse_script(text, fps, 1, spec), live)
    actions = encode_actions(live, 1 / fps, spec)
    assert actions[6, 12] == 1 and actions[:6, 12].sum() == 0  # the still transition is the static action


def _tiny_student() -> Student:
    model = randomized_model(tiny_config()).double()
    return Student(model, StudentConfig(block_frames=2))


def test_a_steered_session_equals_its_recorded_script_streamed():
    """KeyControl feeds stream_live block by block; the script it records, integrated whole and
    streamed with the same seed, gives the same actions, poses and frames."""
    student = _tiny_student()
    cfg = student.model.cfg
    spec, fps = ActionSpec(), 15.0
    first = torch.rand(1, 3, cfg.height, cfg.width_px, dtype=torch.float64) * 2 - 1
    start = integrate(np.eye(4), np.array([[0.1, 0.0, 0.2, 10.0, -5.0, 0.0]]))[1]
    # W after frame 1, L after frame 3 (W still held), S after 5 (releases W), space after 7, q after 9
    window = ScriptedWindow({1: "w", 3: "l", 5: "s", 7: " ", 9: "q"})
    control = KeyControl(window, start, fps, 1, spec, torch.device("cpu"), HeldKeys(hold_s=1e6))
    window.show(np.zeros((2, 2, 3), np.uint8))  # the first frame goes up before the first block
    live = []
    for s, e, block in student.stream_live(first, torch.from_numpy(start)[None], control,
                                           torch.Generator().manual_seed(5)):
        live.append(block)
        for _ in range(e - s):
            window.show(np.zeros((2, 2, 3), np.uint8))
    script, _ = control.recorded(9)
    assert script == "forward:2,forward+yaw_right:2,backward+yaw_right:2,static:2"
    assert len(live) == 4  # q was read before the fifth block
    # a session cut inside its third block (Ctrl-C) keeps the frames that came out
    cut_script, cut_poses = control.recorded(6)
    assert cut_script == "forward:2,forward+yaw_right:2,backward+yaw_right:1" and cut_poses.shape == (6, 4, 4)
    np.testing.assert_array_equal(cut_poses, np.concatenate([start[None], *control.poses])[:6])
    motion = parse_script(script, fps, 1, spec)
    poses = integrate(start, motion)
    np.testing.assert_allclose(np.concatenate([start[None], *control.poses]), poses, atol=1e-12)
    actions = frame_actions(torch.from_numpy(encode_actions(motion, 1 / fps, spec)).double()[None])
    replayed = [b for _, _, b in student.stream(first, actions, torch.from_numpy(poses)[None],
                                                torch.Generator().manual_seed(5))]
    assert len(replayed) == len(live)
    for a, b in zip(live, replayed):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=0)


def test_ctrl_c_ends_a_keys_session_but_not_a_script_run():
    from training.play import _until_interrupted

    with _until_interrupted(True):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt), _until_interrupted(False):
        raise KeyboardInterrupt


def test_stream_live_names_a_block_with_wrong_inputs():
    student = _tiny_student()
    cfg = student.model.cfg
    first = torch.zeros(1, 3, cfg.height, cfg.width_px, dtype=torch.float64)
    bad = student.stream_live(first, torch.eye(4, dtype=torch.float64)[None],
                              lambda s, e: (torch.zeros(1, 1, 13), torch.eye(4)[None, None]))
    with pytest.raises(ValueError, match=r"block \[1, 3\): inputs must be actions \(1, 2, 13\)"):
        next(bad)


def test_play_keys_records_a_session_and_its_script(tmp_path, monkeypatch):
    config = tiny_config()
    ckpt = tiny_student_checkpoint(tmp_path / "student.pt", config)
    windows: list[ScriptedWindow] = []

    def scripted(title, size, scale):
        windows.append(ScriptedWindow({1: "w", 4: "65363"}))  # W after the first frame, right arrow after 4
        return windows[-1]

    monkeypatch.setattr(keys, "CvWindow", scripted)
    out = tmp_path / "keys"
    common = ["--checkpoint", str(ckpt), "--scene", "room_0001", "--device", "cpu", "--precision", "fp32"]
    assert play_main([*common, "--out", str(out), "--keys", "--max-frames", "7", "--hold", "1000", "--fps", "200",
                      "--truth"]) == 0
    report = json.loads((out / "play.json").read_text())
    assert report["mode"] == "keys" and report["frames"] == 7
    # blocks [1, 3) and [3, 5) forward; the arrow is read while frame 4 is up, so [5, 7) turns too
    assert report["script"] == "forward:4,forward+yaw_right:2"
    assert len(report["psnr_by_frame"]) == 7 and windows[0].closed
    assert len(windows[0].shown) == 7  # the first frame, then every generated one
    assert all(f.shape == (config.height, config.width_px, 3) for f in windows[0].shown)
    assert len(list(_frames(out / "video.mp4"))) == 7
    # the same session from its script, same seed: the same ground truth path
    replay = tmp_path / "replay"
    assert play_main([*common, "--out", str(replay), "--script", report["script"], "--fps", "200", "--truth"]) == 0
    again = json.loads((replay / "play.json").read_text())
    assert again["mode"] == "script" and again["frames"] == 7
    np.testing.assert_allclose(again["psnr_by_frame"], report["psnr_by_frame"], atol=1e-3)


def test_play_keys_without_a_display_says_so(tmp_path, monkeypatch, capsys):
    ckpt = tiny_student_checkpoint(tmp_path / "student.pt")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert play_main(["--checkpoint", str(ckpt), "--scene", "room_0001", "--device", "cpu", "--out",
                      str(tmp_path / "k"), "--keys"]) == 2
    assert "--keys needs a display" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --keys and --script exclude each other
        play_main(["--checkpoint", str(ckpt), "--scene", "room_0001", "--out", str(tmp_path / "k"), "--keys",
                   "--script", "forward:2"])


def _frames(path):
    video = cv2.VideoCapture(str(path))
    while True:
        ok, frame = video.read()
        if not ok:
            return
        yield frame


def test_play_keys_in_a_real_window(tmp_path):
    """The OpenCV window itself on a virtual X display: keys typed into it (a letter and an arrow)
    steer the stream."""
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        if os.environ.get("CI"):
            pytest.fail("CI needs Xvfb and xdotool for the --keys window test: apt-get install xvfb xdotool")
        pytest.skip("needs Xvfb and xdotool (apt-get install xvfb xdotool)")
    ckpt = tiny_student_checkpoint(tmp_path / "student.pt")
    display = f":{90 + os.getpid() % 500}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "640x480x24"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    env = {**os.environ, "DISPLAY": display}
    try:
        out = tmp_path / "keys"
        play = subprocess.Popen([sys.executable, "-m", "training.play", "--checkpoint", str(ckpt), "--scene", "room_0001",
                                 "--device", "cpu", "--precision", "fp32", "--out", str(out), "--keys", "--fps", "10",
                                 "--hold", "100", "--max-frames", "21"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        window = ""
        deadline = time.monotonic() + 60
        while not window and time.monotonic() < deadline and play.poll() is None:
            found = subprocess.run(["xdotool", "search", "--name", "training.play"], env=env, capture_output=True,
                                   text=True)
            window = found.stdout.split()[0] if found.stdout.split() else ""
            time.sleep(0.2)
        assert window, f"no window appeared: {play.communicate(timeout=30)[0]}"
        # typed until the stream ends: a window just mapped may not take keys yet (held 100 s, a repeat changes nothing)
        while play.poll() is None and time.monotonic() < deadline + 60:
            subprocess.run(["xdotool", "key", "--window", window, "w", "Right"], env=env, capture_output=True)
            time.sleep(0.3)
        log = play.communicate(timeout=60)[0]
        assert play.returncode == 0, log
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
    report = json.loads((out / "play.json").read_text())
    assert report["frames"] == 21 and "forward+yaw_right:" in report["script"], report["script"]
    assert "replay this session: --script" in log
