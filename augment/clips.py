"""Training clips from clean segments: windows of T frames at the target fps, and palindromes.

A window is a list of source frame indices (the trajectory's own numbering, so every sample says
exactly which staged frames it holds). Palindromes follow conventions.md section 4: the forward
frames f_0 ... f_{n-1} then f_{n-2} ... f_0 (2n - 1 frames, the turning frame not repeated), with
poses in the same order; actions and motion are recomputed from the palindrome's own poses, never
by reversing or negating the forward ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from annotate.actions import ActionSpec, encode_actions
from annotate.geometry import relative_motion


@dataclass(frozen=True)
class WindowConfig:
    frames: int = 33  # T, frames per clip (odd when palindromes are made: a palindrome has 2n - 1 frames)
    stride: int = 16  # frames (at the target fps) between the starts of consecutive windows
    fps: float | None = None  # target fps; None keeps the stored rate. Must divide it: frames are subsampled

    def __post_init__(self) -> None:
        if self.frames < 2 or self.stride < 1:
            raise ValueError(f"window.frames must be >= 2 and window.stride >= 1, got {self.frames}, {self.stride}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"window.fps must be > 0, got {self.fps}")


@dataclass(frozen=True)
class PalindromeConfig:
    share: float = 0.25  # fraction of windows that also give a palindrome clip (seeded draw per window)

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"augment.share must be in [0, 1], got {self.share}")


def frame_step(source_fps: float, target_fps: float | None, where: str = "trajectory") -> int:
    """Subsampling step from the stored rate to the target rate; it must be a whole number."""
    if target_fps is None:
        return 1
    ratio = source_fps / target_fps
    step = int(round(ratio))
    if step < 1 or abs(ratio - step) > 1e-3 * ratio:
        raise ValueError(f"{where}: target fps {target_fps:g} does not divide the stored {source_fps:g} fps "
                         f"(ratio {ratio:.4f}); frames are subsampled, not interpolated")
    return step


def windows(spans: Sequence[tuple[int, int]], step: int, config: WindowConfig) -> list[np.ndarray]:
    """Source frame indices of every window: within each clean span (start, end exclusive), frames
    start, start + step, ...; windows of `config.frames` of them every `config.stride`."""
    out = []
    for start, end in spans:
        frames = np.arange(start, end, step)
        for first in range(0, len(frames) - config.frames + 1, config.stride):
            out.append(frames[first:first + config.frames])
    return out


def palindrome_frames(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """f_0 .. f_{n-1}, f_{n-2} .. f_0 and the turn index n - 1."""
    frames = np.asarray(frames)
    if len(frames) < 2:
        raise ValueError("a palindrome needs at least 2 frames")
    return np.concatenate([frames, frames[-2::-1]]), len(frames) - 1


def forward_length(clip_frames: int) -> int:
    """Forward frames n of a palindrome with `clip_frames` = 2n - 1 frames (clip_frames must be odd)."""
    if clip_frames % 2 == 0:
        raise ValueError(f"window.frames must be odd for palindromes (2n - 1 frames), got {clip_frames}")
    return (clip_frames + 1) // 2


def clip_labels(poses: np.ndarray, times: np.ndarray, spec: ActionSpec) -> tuple[np.ndarray, np.ndarray]:
    """(T, 4, 4) poses and (T,) times of a clip as it will be played -> (T-1, 6) motion and (T-1, 13)
    actions, computed from these poses (conventions.md 2-3). For a palindrome, `times` are the
    played times (forward frame times continued with the same intervals mirrored)."""
    motion = relative_motion(poses)
    return motion, encode_actions(motion, np.diff(times), spec)


def palindrome_times(times: np.ndarray) -> np.ndarray:
    """Played times of a palindrome of forward times t_0..t_{n-1}: the return leg repeats the
    forward intervals in reverse order, so every transition keeps its own frame interval."""
    dt = np.diff(times)
    return np.concatenate([times, times[-1] + np.cumsum(dt[::-1])])
