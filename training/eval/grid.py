"""The eval grid: for a few clips, ground truth above each method's frames, at spaced frame indices."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.eval.groundtruth import EvalClip  # noqa: E402


def pick_clips(clips: Sequence[EvalClip], names: Sequence[str]) -> list[int]:
    """Index of the first clip of each named script (in the given order), skipping absent ones."""
    picked = []
    for name in names:
        hit = next((i for i, c in enumerate(clips) if c.script == name), None)
        if hit is not None:
            picked.append(hit)
    return picked


def save_grid(path: pathlib.Path, clips: Sequence[EvalClip], videos: dict[str, np.ndarray], indices: Sequence[int],
              columns: int = 5) -> None:
    """videos: method -> (N, F, 3, H, W) uint8. Rows: per clip, ground truth then each method."""
    f = next(iter(videos.values())).shape[1]
    times = np.unique(np.linspace(0, f - 1, columns).round().astype(int))
    rows = [r for i in indices for r in
            [(i, "ground truth", np.stack([clips[i].frames[t] for t in times]))]
            + [(i, m, v[i][times].transpose(0, 2, 3, 1)) for m, v in videos.items()]]
    h, w = rows[0][2].shape[1:3]
    fig, axes = plt.subplots(len(rows), len(times), figsize=(len(times) * w / 50, len(rows) * h / 50 + 0.3),
                             squeeze=False)
    for r, (i, label, frames) in enumerate(rows):
        for c, t in enumerate(times):
            ax = axes[r][c]
            ax.imshow(frames[c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {t}", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"{clips[i].script}\n{label}", fontsize=6)
    fig.tight_layout(pad=0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
