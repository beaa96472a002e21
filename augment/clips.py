"""Training clips from clean segments: windows of T frames at the target fps, and palindromes.

A window is a list of source frame indices (the trajectory's own numbering, so every sample says
exactly which staged frames it holds). Palindromes follow conventions.md section 4: a clip of T
frames goes forward f_0 ... f_t to the turning frame t, then back f_{t-1}, f_{t-2}, ... until it
has T frames (the turning frame not repeated). `turn: middle` turns at t = (T - 1) / 2 and comes
all the way back to f_0; `turn: uniform_second_half` (RELIC's choice) draws t uniformly from the
second half, ceil((T - 1) / 2) ... T - 2, so the return is partial. Poses follow the frames; actions
and motion are recomputed from the palindrome's own poses, never by reversing or negating the
forward ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from annotate.actions import ActionSpec, encode_actions, translation_scale
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


TURNS = ("middle", "uniform_second_half")


@dataclass(frozen=True)
class PalindromeConfig:
    share: float = 0.25  # fraction of windows that also give a palindrome clip (seeded draw per window)
    # where the clip turns back: `middle` (t = (T-1)/2, back to the first frame; needs odd T) or
    # `uniform_second_half` (RELIC: t ~ U(T/2, T), seeded per window; the return is partial)
    turn: str = "middle"

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"palindrome.share must be in [0, 1], got {self.share}")
        if self.turn not in TURNS:
            raise ValueError(f"palindrome.turn must be one of {list(TURNS)}, got {self.turn!r}")

    def check_frames(self, clip_frames: int) -> None:
        """A clear error when T frames cannot make palindromes with this turn rule."""
        if self.turn == "middle":
            forward_length(clip_frames)
        elif clip_frames < 3:
            raise ValueError(f"window.frames must be >= 3 for palindromes turning in the second half, got {clip_frames}")

    def turns(self, clip_frames: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n,) turning indices t for n palindromes of `clip_frames` frames."""
        self.check_frames(clip_frames)
        if self.turn == "middle":
            return np.full(n, (clip_frames - 1) // 2, dtype=np.int64)
        return rng.integers(-(-(clip_frames - 1) // 2), clip_frames - 1, size=n)


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


def palindrome_frames(frames: np.ndarray, length: int | None = None) -> tuple[np.ndarray, int]:
    """Forward frames f_0 .. f_t (t = len(frames) - 1, the turn index), then back f_{t-1}, f_{t-2}, ...
    until the clip has `length` frames (default 2t + 1: back to f_0). Returns (frames, t)."""
    frames = np.asarray(frames)
    turn = len(frames) - 1
    length = 2 * turn + 1 if length is None else length
    if turn < 1 or not turn + 1 < length <= 2 * turn + 1:
        raise ValueError(f"a palindrome turning at frame {turn} has {turn + 2}..{2 * turn + 1} frames, asked {length}")
    return np.concatenate([frames, frames[-2::-1][:length - turn - 1]]), turn


def forward_length(clip_frames: int) -> int:
    """Forward frames n of a palindrome with `clip_frames` = 2n - 1 frames (clip_frames must be odd)."""
    if clip_frames % 2 == 0:
        raise ValueError(f"window.frames must be odd for palindromes (2n - 1 frames), got {clip_frames}")
    return (clip_frames + 1) // 2


def clip_labels(poses: np.ndarray, times: np.ndarray, spec: ActionSpec) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(T, 4, 4) poses and (T,) times of a clip as it will be played -> (T-1, 6) motion, (T-1, 13)
    actions and the translation scale (m/s, `clip_mean` normalisation; None otherwise), computed
    from these poses (conventions.md 2-3). For a palindrome, `times` are the played times (forward
    frame times continued with the same intervals mirrored)."""
    motion = relative_motion(poses)
    dt = np.diff(times)
    scale = translation_scale(motion, dt, spec)
    return motion, encode_actions(motion, dt, spec, scale), scale


def palindrome_times(times: np.ndarray, length: int | None = None) -> np.ndarray:
    """Played times of a palindrome of forward times t_0..t_t with `length` frames (as
    `palindrome_frames`): the return leg repeats the forward intervals in reverse order, so every
    transition keeps its own frame interval."""
    dt = np.diff(times)
    length = 2 * len(dt) + 1 if length is None else length
    return np.concatenate([times, times[-1] + np.cumsum(dt[::-1])])[:length]
