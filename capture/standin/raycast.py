"""Vectorized ray / axis-aligned-box intersection (slab method). Pure numpy.

Rays are o + t d with d not necessarily unit length: t is in units of |d|. With camera rays whose
camera-space z is 1, t is the planar depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Hits closer than this (in t) are ignored: rays starting on a surface do not hit it again.
T_MIN = 1e-4


@dataclass(frozen=True, eq=False)
class Hits:
    t: np.ndarray  # (N,) float32, inf where the ray hits nothing
    box: np.ndarray  # (N,) int, index into the boxes, -1 for a miss
    axis: np.ndarray  # (N,) int 0..2, the axis of the face hit (its normal)
    sign: np.ndarray  # (N,) float32 +-1, the face normal's direction along `axis`


def cast(
    origins: np.ndarray,
    dirs: np.ndarray,
    box_min: np.ndarray,
    box_max: np.ndarray,
    *,
    chunk_elements: int = 4_000_000,
) -> Hits:
    """Nearest hit of each ray. origins (N, 3) or (3,), dirs (N, 3); boxes (B, 3) min and max corners.

    Rays that start inside a box do not hit that box (its faces are seen from inside, as culled
    back faces would be). Work is chunked so N * B stays bounded in memory.
    """
    dirs = np.asarray(dirs, dtype=np.float32)
    n = len(dirs)
    origins = np.broadcast_to(np.asarray(origins, dtype=np.float32), (n, 3))
    t_out = np.full(n, np.inf, dtype=np.float32)
    box_out = np.full(n, -1, dtype=np.int64)
    axis_out = np.zeros(n, dtype=np.int64)
    if len(box_min) == 0 or n == 0:
        return Hits(t_out, box_out, axis_out, np.ones(n, dtype=np.float32))
    box_min = np.asarray(box_min, dtype=np.float32)
    box_max = np.asarray(box_max, dtype=np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(dirs == 0, np.float32(1e-30), dirs)
    step = max(1, chunk_elements // len(box_min))
    for start in range(0, n, step):
        sl = slice(start, start + step)
        # Structure of arrays: per axis an (n, B) slab interval, combined elementwise (reductions
        # over a size-3 axis are several times slower in numpy).
        nears, fars = [], []
        for k in range(3):
            o, iv = origins[sl, k, None], inv[sl, k, None]
            t1 = (box_min[None, :, k] - o) * iv
            t2 = (box_max[None, :, k] - o) * iv
            nears.append(np.minimum(t1, t2))
            fars.append(np.maximum(t1, t2))
        t_near = np.maximum(np.maximum(nears[0], nears[1]), nears[2])
        t_far = np.minimum(np.minimum(fars[0], fars[1]), fars[2])
        t_near = np.where((t_near <= t_far) & (t_near > T_MIN), t_near, np.float32(np.inf))
        best = t_near.argmin(axis=1)
        rows = np.arange(len(best))
        t_best = t_near[rows, best]
        t_out[sl] = t_best
        box_out[sl] = np.where(np.isfinite(t_best), best, -1)
        axis_out[sl] = np.stack([near[rows, best] for near in nears], axis=1).argmax(axis=1)
    sign = -np.sign(np.take_along_axis(dirs, axis_out[:, None], axis=1)[:, 0]).astype(np.float32)
    return Hits(t_out, box_out, axis_out, sign)
