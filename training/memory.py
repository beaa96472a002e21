"""The student's memory: an append-only per-frame K/V store and a pure `view` over it.

Each committed frame keeps, per layer, its pre-RoPE keys (pose embedding included) and values at
full resolution, (B, heads, N, head_dim) with N = rows·cols tokens. `view(store, start, config)`
returns what a block starting at frame `start` attends to:

* the last `window` frames before `start` at full resolution (all of them when window is None);
* every older frame spatially average-pooled by its factor in the interleaved `pool` schedule
  (frame f uses pool[f % len(pool)]; 1 keeps it full), keys pooled before RoPE, and RoPE applied
  at the pooled cells' positions, which are the same pooling of the patch positions (the cells'
  centres, fractional). A frame whose factor is 0 is dropped from memory.

Nothing is ever evicted or modified, so the view for block l can be rebuilt at any time — the
rollout, the replayed backward pass and the tests all read the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from training.model import LayerContext, LayerKV


@dataclass(frozen=True)
class MemoryConfig:
    window: int | None = 8  # frames kept at full resolution before the block; None = all
    pool: tuple[int, ...] = (1, 2, 4)  # factors for older frames, interleaved by frame index; 0 drops

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 0:
            raise ValueError(f"memory.window must be >= 0 or None, got {self.window}")
        if not self.pool or any(p < 0 for p in self.pool):
            raise ValueError(f"memory.pool must be non-empty factors >= 0, got {self.pool}")


@dataclass
class MemoryStore:
    """Append-only: frame index -> per-layer LayerKV of that frame's tokens (detached)."""

    grid: tuple[int, int]  # (rows, cols) of a frame's tokens
    frames: list[list[LayerKV]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    def append(self, kvs: list[LayerKV], count: int) -> None:
        """Split one call's per-layer K/V (B, H, count·N, hd) into `count` frames and append them."""
        n = self.grid[0] * self.grid[1]
        for j in range(count):
            self.frames.append([LayerKV(kv.k[:, :, j * n:(j + 1) * n].detach(), kv.v[:, :, j * n:(j + 1) * n].detach())
                                for kv in kvs])


def _pool_tokens(x: torch.Tensor, grid: tuple[int, int], factor: int) -> torch.Tensor:
    """(B, H, N, d) tokens on a rows x cols grid -> (B, H, N', d) averaged over factor x factor cells
    (edge cells cover what is left: ceil mode, no padding counted)."""
    b, h, _, d = x.shape
    rows, cols = grid
    img = x.reshape(b * h, rows, cols, d).permute(0, 3, 1, 2)
    pooled = F.avg_pool2d(img, factor, factor, ceil_mode=True)
    return pooled.permute(0, 2, 3, 1).reshape(b, h, -1, d)


def frame_positions(frame: int, grid: tuple[int, int], factor: int, device: torch.device) -> torch.Tensor:
    """(N', 3) (t, row, col) positions of one frame's tokens pooled by `factor` (1: the patch grid)."""
    rows, cols = grid
    r, c = torch.meshgrid(torch.arange(rows, device=device, dtype=torch.float64),
                          torch.arange(cols, device=device, dtype=torch.float64), indexing="ij")
    pos = torch.stack([r, c], dim=0)[None]  # (1, 2, rows, cols)
    if factor > 1:
        pos = F.avg_pool2d(pos, factor, factor, ceil_mode=True)
    pos = pos[0].reshape(2, -1).T
    return torch.cat([torch.full((len(pos), 1), float(frame), device=device, dtype=torch.float64), pos], dim=1)


def frame_factor(frame: int, start: int, config: MemoryConfig) -> int:
    """The pooling factor of committed frame `frame` seen from a block starting at `start`."""
    if config.window is None or frame >= start - config.window:
        return 1
    return config.pool[frame % len(config.pool)]


def view(store: MemoryStore, start: int, config: MemoryConfig, rope) -> list[LayerContext] | None:
    """Per-layer context for a block whose first frame is `start` (frames < start must be stored).
    `rope(positions (L, 3)) -> angles (L, head_dim/2)` is the model's RoPE."""
    if start > len(store):
        raise ValueError(f"view for a block at frame {start}, but only {len(store)} frames are stored")
    if start == 0:
        return None
    layers = len(store.frames[0])
    ks: list[list[torch.Tensor]] = [[] for _ in range(layers)]
    vs: list[list[torch.Tensor]] = [[] for _ in range(layers)]
    positions = []
    device = store.frames[0][0].k.device
    for f in range(start):
        factor = frame_factor(f, start, config)
        if factor == 0:
            continue
        positions.append(frame_positions(f, store.grid, factor, device))
        for layer, kv in enumerate(store.frames[f]):
            ks[layer].append(kv.k if factor == 1 else _pool_tokens(kv.k, store.grid, factor))
            vs[layer].append(kv.v if factor == 1 else _pool_tokens(kv.v, store.grid, factor))
    if not positions:
        return None
    angles = rope(torch.cat(positions))
    return [LayerContext(torch.cat(ks[i], dim=2), torch.cat(vs[i], dim=2), angles) for i in range(layers)]


def view_tokens(start: int, grid: tuple[int, int], config: MemoryConfig) -> int:
    """Tokens a block at `start` attends to in memory (for reporting the reduction)."""
    rows, cols = grid
    total = 0
    for f in range(start):
        factor = frame_factor(f, start, config)
        if factor:
            total += -(-rows // factor) * -(-cols // factor)
    return total
