"""Memory context for the bidirectional scores (WorldPlay's context forcing).

A causal student generates a block while reading its memory: earlier frames of its own stream. A
teacher that scores the student's frames (DMD's real score, and the fake score beside it) but sees
only a short window of them cannot know what the memory held — how the place looked when the camera
was last there — so it pulls the student towards any plausible frame, not towards the one its
memory implies. With context, the scores see a window of frames together with earlier frames of the
same stream, clean, at their own time indices, as the student's memory did. The teacher learns to use
such context in training (`context.frames` of TrainConfig: a window of each training sample with up
to that many earlier frames of the sample), and the DMD stage gives its scores the same
(`dmd.context`).

Which earlier frames: `context_indices` spreads them evenly over everything before the window,
frame 0 (the stream's given first frame) always among them and the frame just before the window
too, the shape of the student's spaced memory (its recent window and evenly spaced older frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.conditioning import static_first
from training.data import ClipBatch
from training.flow import draw_device


def context_indices(start: int, count: int) -> tuple[int, ...]:
    """`count` frame indices spread evenly over [0, start): frame 0 first, start - 1 last; all of
    [0, start) when it holds fewer; none when count or start is 0."""
    if count < 0 or start < 0:
        raise ValueError(f"context of {count} frames before frame {start}")
    count = min(count, start)
    if count == 0:
        return ()
    if count == 1:
        return (0,)
    return tuple(round(i * (start - 1) / (count - 1)) for i in range(count))


@dataclass(frozen=True)
class ContextWindow:
    """Frames [start, start + length) of a sample with `context` earlier frames before them."""
    start: int
    length: int
    context: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.length < 2 or self.start < 0:
            raise ValueError(f"a context window needs a start >= 0 and 2 frames or more, got {self}")
        if any(not 0 <= c < self.start for c in self.context) or list(self.context) != sorted(set(self.context)):
            raise ValueError(f"context frames {self.context} must be distinct, increasing and before {self.start}")

    @property
    def indices(self) -> tuple[int, ...]:
        return (*self.context, *range(self.start, self.start + self.length))

    @property
    def clean(self) -> int:
        """The frames given clean: the context and the window's first."""
        return len(self.context) + 1

    def take(self, batch: ClipBatch) -> ClipBatch:
        """The context and window frames of every sample, as one clip: the context and the window's first
        frame clean, each frame at its own time index (the earliest at 0). The window's first frame
        carries the static action, as a window cropped on its own does; context frames keep theirs."""
        idx = torch.tensor(self.indices, device=batch.frames.device)
        end = self.start + self.length
        if end > batch.frames.shape[1]:
            raise ValueError(f"a window up to frame {end} of clips of {batch.frames.shape[1]} frames")
        actions = batch.actions[:, idx].clone()
        actions[:, len(self.context):] = static_first(actions[:, len(self.context):])
        times = torch.tensor(self.indices, dtype=torch.float64) - self.indices[0]
        return ClipBatch(batch.frames[:, idx], actions, batch.poses[:, idx], batch.posed, self.clean, times)


def draw_window(frames: int, length: int, max_context: int, generator: torch.Generator | None = None
                ) -> ContextWindow:
    """A window of `length` frames at a uniform random start in a `frames`-frame sample, with a uniform
    random number of context frames from 0 to `max_context` (at most the frames before it), spread
    by `context_indices`. Drawing zero sometimes keeps the model good without context."""
    if length > frames:
        raise ValueError(f"a {length}-frame window does not fit clips of {frames} frames")
    at = draw_device(generator, "cpu")
    start = int(torch.randint(0, frames - length + 1, (1,), generator=generator, device=at))
    count = int(torch.randint(0, max_context + 1, (1,), generator=generator, device=at))
    return ContextWindow(start, length, context_indices(start, count))
