"""Keyboard control for `python -m training.play --keys`: keys -> held motion channels -> each
block's actions and poses, as the student streams (Student.stream_live).

    W / S  forward / backward        A / D  left / right          R / F  up / down
    J / L  yaw left / right          I / K  pitch up / down       U / O  roll left / right
    arrow keys: yaw and pitch        space: stop (release every key)   Q / Esc / closing the window: quit

A press holds its channel for `hold_s`, longer than a keyboard's auto-repeat delay, so a key held
down stays held between its repeats and a tap moves for about that long; pressing the opposite
channel (S while W is held) releases the first. Channels combine (W with L: forward while turning
right). Each channel moves at the centre of action bin `level` (the rates the evaluation scripts
use), so the actions the model sees are the ones a recorded human holding that key would produce.
The session is recorded as a script (`--script` syntax, `static` for stretches with no key held)
that replays the same motion.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from annotate.actions import CHANNELS, PAIRS, ActionSpec, encode_actions
from annotate.geometry import integrate
from training.eval.scripts import channel_rate

KEYS: dict[int, str] = {
    ord("w"): "forward", ord("s"): "backward", ord("a"): "left", ord("d"): "right", ord("r"): "up", ord("f"): "down",
    ord("j"): "yaw_left", ord("l"): "yaw_right", ord("i"): "pitch_up", ord("k"): "pitch_down",
    ord("u"): "roll_left", ord("o"): "roll_right",
    # arrow keys as cv2.waitKeyEx reports them on Linux (X11 keysyms)
    65361: "yaw_left", 65363: "yaw_right", 65362: "pitch_up", 65364: "pitch_down",
}
STOP = ord(" ")
QUIT = (27, ord("q"))
OPPOSITE = {CHANNELS[a]: CHANNELS[b] for _, p, n in PAIRS for a, b in ((p, n), (n, p))}


def normalise(code: int) -> int:
    """A waitKeyEx code with Shift / Caps Lock folded away (W and w are the same key)."""
    return code + 32 if ord("A") <= code <= ord("Z") else code


class HeldKeys:
    """Which motion channels are held, from key presses and the clock."""

    def __init__(self, hold_s: float = 0.6):
        if hold_s <= 0:
            raise ValueError(f"hold_s must be > 0, got {hold_s}")
        self.hold_s = hold_s
        self.quit = False
        self._last: dict[str, float] = {}

    def press(self, code: int, now: float) -> None:
        code = normalise(code)
        if code in QUIT:
            self.quit = True
        elif code == STOP:
            self._last.clear()
        elif code in KEYS:
            channel = KEYS[code]
            self._last.pop(OPPOSITE[channel], None)
            self._last[channel] = now

    def channels(self, now: float) -> tuple[str, ...]:
        """The channels held at `now`, in CHANNELS order."""
        return tuple(c for c in CHANNELS if c in self._last and now - self._last[c] < self.hold_s)


def block_motion(channels: Sequence[str], transitions: int, dt: float, spec: ActionSpec, level: int) -> np.ndarray:
    """(transitions, 6) relative motion holding `channels` (none: standing still): a keys block, and
    a script's `a+b:n` segment (training.play.parse_script)."""
    rate = sum((channel_rate(c, spec, level) for c in channels), np.zeros(6))
    return np.tile(rate * dt, (transitions, 1))


def script_text(blocks: Sequence[tuple[tuple[str, ...], int]]) -> str:
    """[(channels, transitions)] -> the `--script` text that replays them ('forward+yaw_right:4,static:2')."""
    segments: list[list] = []
    for channels, count in blocks:
        name = "+".join(channels) or "static"
        if segments and segments[-1][0] == name:
            segments[-1][1] += count
        else:
            segments.append([name, count])
    return ",".join(f"{name}:{count}" for name, count in segments)


class Window(Protocol):
    """Where frames are shown and keys read: `poll(ms)` waits up to ms for a key and returns its
    code, or -1 (cv2.waitKeyEx's contract)."""

    def show(self, rgb: np.ndarray) -> None: ...

    def poll(self, ms: int) -> int: ...

    def close(self) -> None: ...


class CvWindow:
    """An OpenCV window, the frames scaled up `scale` times (nearest: the model's pixels as they are)."""

    def __init__(self, title: str, size: tuple[int, int], scale: int = 4):
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RuntimeError("--keys needs a display (an X or Wayland session, or ssh -X); on a headless machine "
                               "use --script")
        import cv2

        self.cv2, self.title, self.scale = cv2, title, scale
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        cv2.resizeWindow(title, size[0] * scale, size[1] * scale)

    def show(self, rgb: np.ndarray) -> None:
        big = np.repeat(np.repeat(rgb, self.scale, axis=0), self.scale, axis=1)
        self.cv2.imshow(self.title, self.cv2.cvtColor(big, self.cv2.COLOR_RGB2BGR))

    def poll(self, ms: int) -> int:
        key = self.cv2.waitKeyEx(max(1, ms))
        if key == -1 and self.cv2.getWindowProperty(self.title, self.cv2.WND_PROP_VISIBLE) < 1:
            return QUIT[0]  # the window was closed: as Esc
        return key

    def close(self) -> None:
        self.cv2.destroyWindow(self.title)


class KeyControl:
    """Student.stream_live's BlockInputs from the keys held: each block moves by the channels held
    when it is asked for. `wait(until)` shows nothing but reads keys until the clock reaches
    `until` (the player calls it between frames, so keys are read while frames are shown)."""

    def __init__(self, window: Window, start_pose: np.ndarray, fps: float, level: int, spec: ActionSpec,
                 device: torch.device, held: HeldKeys, max_frames: int | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.window, self.dt, self.level, self.spec = window, 1 / fps, level, spec
        self.start = self.pose = np.asarray(start_pose, np.float64)
        self.device, self.held, self.max_frames, self.clock = device, held, max_frames, clock
        self.blocks: list[tuple[tuple[str, ...], int]] = []  # (channels held, transitions) per block
        self.poses: list[np.ndarray] = []  # each block's (n, 4, 4) camera-to-world poses

    def wait(self, until: float) -> None:
        while True:
            left = until - self.clock()
            key = self.window.poll(max(1, round(left * 1e3)) if left > 0 else 1)
            if key != -1:
                self.held.press(key, self.clock())
            if self.held.quit or (key == -1 and self.clock() >= until):
                return

    def __call__(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        self.wait(self.clock())  # keys pressed since the last frame was shown
        if self.held.quit or (self.max_frames is not None and start >= self.max_frames):
            return None
        n = end - start
        channels = self.held.channels(self.clock())
        motion = block_motion(channels, n, self.dt, self.spec, self.level)
        poses = integrate(self.pose, motion)[1:]
        self.pose = poses[-1]
        self.blocks.append((channels, n))
        self.poses.append(poses)
        actions = torch.from_numpy(encode_actions(motion, self.dt, self.spec))[None].to(self.device)
        return actions, torch.from_numpy(poses)[None].to(self.device)

    def recorded(self, frames: int) -> tuple[str, np.ndarray]:
        """The session's first `frames` frames (first included) as a script and their (frames, 4, 4)
        poses: a session interrupted inside a block keeps only the frames that came out."""
        kept, left = [], frames - 1
        for channels, n in self.blocks:
            if left <= 0:
                break
            kept.append((channels, min(n, left)))
            left -= n
        poses = np.concatenate([self.start[None], *self.poses])[:frames]
        return script_text(kept), poses
