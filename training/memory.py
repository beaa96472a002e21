"""The student's memory: an append-only per-frame K/V store and a pure `view` over it.

Each committed frame keeps, per layer, its keys (pose embedding included) and values at full
resolution, (B, heads, N, head_dim) with N = rows·cols tokens, the keys rotated (RoPE) at their
positions when the frame is committed. `view(store, start)` returns what a block starting at frame
`start` attends to:

* the last `window` frames before `start` at full resolution (all of them when window is None);
* older frames (all, or `max_old` evenly spaced over the history, which bounds the view and so
  the per-frame latency) spatially average-pooled by their factor in the interleaved `pool` schedule
  (frame f uses pool[f % len(pool)]; 1 keeps it full), keys pooled before RoPE, and RoPE applied
  at the pooled cells' positions, which are the same pooling of the patch positions (the cells'
  centres, fractional). A frame whose factor is 0 is dropped from memory.
* or, with `select: view` (WorldPlay's reconstituted context memory), the `max_old` older frames
  whose view overlaps the block's camera most, per sample, at full resolution
  (training/retrieval.py); every frame's full K/V are kept for that, so `pool` is (1,), or (0,)
  for window-only.

A frame's RoPE positions never change (its frame index, and its cells' centres once pooled), so
its keys are rotated once, at commit: pooled from the pre-RoPE keys, then rotated at the pooled
positions. A view is then a concatenation; every denoising step and the commit of a block read
the same view. A view can reserve room after its tokens for the block's own keys and values
(`reserve`): a forward without grad writes them there instead of concatenating the whole view
again (model.Attention).

Entries are never modified. A frame's pooled K/V are made once, at commit; its full-resolution K/V
are released when it leaves the last window that needs them (`MemoryStore.release`), so the store
grows by the pooled size per frame. The replayed backward rebuilds the store in block order from
the rollout's clean frames (the same commit passes, so the same numbers), and reads exactly the
view each block had.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from training.model import LayerContext, LayerKV
from training.retrieval import ViewGeometry, retrieve
from training.rope import Rotation, apply_rope, rotation

#: rope(positions (..., L, 3)) -> angles (..., L, head_dim/2): the model's RoPE (VideoDiT.rope_angles)
RopeFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class MemoryConfig:
    window: int | None = 8  # frames kept at full resolution before the block; None = all
    pool: tuple[int, ...] = (1, 2, 4)  # factors for older frames, interleaved by frame index; 0 drops
    max_old: int | None = None  # older frames per view, evenly spaced over the history; None = all
    # which older frames a view reads: "spaced" (evenly over the history, pooled by `pool`) or "view"
    # (the max_old whose view overlaps the block's camera most, at full resolution: training/retrieval.py)
    select: str = "spaced"
    distance_m: float = 1.0  # select view: a frame's overlap counts exp(-camera distance / distance_m)

    def __post_init__(self) -> None:
        if self.select not in ("spaced", "view"):
            raise ValueError(f"memory.select must be 'spaced' or 'view', got {self.select!r}")
        if self.select == "view":
            if self.window is None or self.max_old is None:
                raise ValueError("memory.select view needs memory.window and memory.max_old (the frames retrieved)")
            if tuple(self.pool) not in ((1,), (0,)):
                raise ValueError(f"memory.select view reads retrieved frames at full resolution: memory.pool must be "
                                 f"[1] (or [0]: window only), got {list(self.pool)}")
            if self.distance_m <= 0:
                raise ValueError(f"memory.distance_m must be > 0, got {self.distance_m}")
        if self.max_old is not None and self.max_old < 1:
            raise ValueError(f"memory.max_old must be >= 1 or None, got {self.max_old}")
        if self.window is not None and self.window < 0:
            raise ValueError(f"memory.window must be >= 0 or None, got {self.window}")
        if not self.pool or any(p < 0 for p in self.pool):
            raise ValueError(f"memory.pool must be non-empty factors >= 0, got {self.pool}")


@dataclass
class FrameMemory:
    full: list[LayerKV] | None  # per layer, full resolution, keys rotated; released once no later block needs it
    pooled: list[LayerKV] | None  # per layer, at the frame's pool factor (> 1), keys rotated; None otherwise
    camera: torch.Tensor | None = None  # (B, 4, 4) camera-to-world relative to the rollout's first frame (select view)


@dataclass
class MemoryStore:
    """Append-only per-frame memory. A frame's pooled K/V are made when it is committed; its
    full-resolution K/V are released (`release`) once it has left every later block's window,
    unless its factor is 1. So the store grows by the pooled size per frame, not the full size."""

    grid: tuple[int, int]  # (rows, cols) of a frame's tokens
    config: MemoryConfig
    rope: RopeFn  # the model's RoPE: keys are rotated at commit
    geometry: ViewGeometry | None = None  # the frames' pinhole (select view)
    frames: list[FrameMemory] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)

    def append(self, kvs: list[LayerKV], count: int, positions: torch.Tensor | None = None,
               cameras: torch.Tensor | None = None) -> None:
        """Split one call's per-layer K/V (B, H, count·N, hd; keys before RoPE) into `count` frames
        and append them, keys rotated at their positions (pooled ones: pooled, then rotated at
        the cells' centres) and stored in the values' dtype. `positions` are the call's RoPE
        positions (count·N, 3), or (B, count·N, 3) per sample (VideoDiT.positions); None: the patch
        grid at the next frame indices. `cameras` (B, count, 4, 4) the frames' cameras relative to
        the rollout's first frame, which `select: view` retrieves by. The given K/V are not kept: the
        store holds its own (detached) copies, so a caller may overwrite them afterwards (a CUDA graph's
        outputs)."""
        if self.config.select == "view" and cameras is None:
            raise ValueError("memory.select view: frames are stored with their cameras (append(..., cameras=))")
        n = self.grid[0] * self.grid[1]
        device = kvs[0].k.device
        first = len(self.frames)
        if positions is None:
            positions = torch.cat([frame_positions(first + j, self.grid, 1, device) for j in range(count)], dim=-2)
        # every layer at once (layers, B, H, count·N, hd): a handful of ops per call instead of dozens per
        # layer and frame — at batch 1 the student's block time is mostly these small ops' dispatch
        keys = torch.stack([kv.k.detach() for kv in kvs])
        values = torch.stack([kv.v.detach() for kv in kvs])
        rotated = apply_rope(keys, self._rotation(positions)).to(values.dtype)
        for j in range(count):
            frame = first + j
            tokens = slice(j * n, (j + 1) * n)
            # the frame's own copy: a view would keep the whole call's K/V alive until its last frame goes
            full = _layers(rotated[..., tokens, :].clone(), values[..., tokens, :].clone())
            factor = old_factor(frame, self.config)
            pooled = None
            if factor > 1:
                rot = self._rotation(pool_positions(positions[..., tokens, :], self.grid, factor))
                pooled = _layers(apply_rope(_pool_tokens(keys[..., tokens, :], self.grid, factor), rot).to(values.dtype),
                                 _pool_tokens(values[..., tokens, :], self.grid, factor))
            self.frames.append(FrameMemory(full, pooled, None if cameras is None else cameras[:, j]))

    def _rotation(self, positions: torch.Tensor) -> Rotation:
        """RoPE of (L, 3) positions, or of per-sample (B, L, 3) ones broadcast over the heads."""
        angles = self.rope(positions)
        return rotation(angles if angles.dim() == 2 else angles[:, None])

    def release(self, before: int) -> None:
        """Drop the full-resolution K/V of frames < `before` that only appear pooled (or not at all)
        from now on. Call with the next block's start minus the window."""
        for f in range(max(0, before)):
            if old_factor(f, self.config) != 1:
                self.frames[f].full = None

    def nbytes(self) -> int:
        total = 0
        for frame in self.frames:
            for part in (frame.full, frame.pooled):
                for kv in part or []:
                    total += kv.k.numel() * kv.k.element_size() + kv.v.numel() * kv.v.element_size()
        return total


def _layers(keys: torch.Tensor, values: torch.Tensor) -> list[LayerKV]:
    """(layers, B, H, N, hd) keys and values -> one LayerKV per layer (views of the two tensors)."""
    return [LayerKV(k, v) for k, v in zip(keys.unbind(0), values.unbind(0))]


def _pool_tokens(x: torch.Tensor, grid: tuple[int, int], factor: int) -> torch.Tensor:
    """(..., N, d) tokens on a rows x cols grid -> (..., N', d) averaged over factor x factor cells
    (edge cells cover what is left: ceil mode, no padding counted)."""
    *lead, _, d = x.shape
    rows, cols = grid
    img = x.reshape(-1, rows, cols, d).permute(0, 3, 1, 2)
    pooled = F.avg_pool2d(img, factor, factor, ceil_mode=True)
    return pooled.permute(0, 2, 3, 1).reshape(*lead, -1, d)


def frame_positions(frame: int, grid: tuple[int, int], factor: int, device: torch.device) -> torch.Tensor:
    """(N', 3) (t, row, col) positions of one frame's tokens on the patch grid, pooled by `factor`
    (1: the patch grid)."""
    rows, cols = grid
    r, c = torch.meshgrid(torch.arange(rows, device=device, dtype=torch.float64),
                          torch.arange(cols, device=device, dtype=torch.float64), indexing="ij")
    pos = torch.stack([torch.full_like(r, float(frame)), r, c], dim=-1).reshape(-1, 3)
    return pool_positions(pos, grid, factor)


def pool_positions(positions: torch.Tensor, grid: tuple[int, int], factor: int) -> torch.Tensor:
    """One frame's token positions (..., N, 3) on a rows x cols grid -> (..., N', 3) of its tokens
    pooled factor x factor (as _pool_tokens): the mean position of each cell's tokens."""
    if factor == 1:
        return positions
    rows, cols = grid
    lead = positions.shape[:-2]
    img = positions.reshape(-1, rows, cols, 3).permute(0, 3, 1, 2)
    pooled = F.avg_pool2d(img, factor, factor, ceil_mode=True)
    return pooled.permute(0, 2, 3, 1).reshape(*lead, -1, 3)


def view_frames(start: int, config: MemoryConfig) -> list[int]:
    """The committed frames a block at `start` reads: older ones (evenly spaced, at most max_old,
    the oldest and newest included) then the window. With `select: view` every older frame is a
    candidate: the view retrieves max_old of them per sample."""
    old_end = 0 if config.window is None else max(0, start - config.window)
    old = list(range(old_end))
    if config.select == "spaced" and config.max_old is not None and len(old) > config.max_old:
        picks = torch.linspace(0, old_end - 1, config.max_old, dtype=torch.float64).round().long().tolist()
        old = sorted(set(picks))
    return old + list(range(old_end, start))


def old_factor(frame: int, config: MemoryConfig) -> int:
    """The pooling factor of `frame` once it is outside the window (1 when there is no window)."""
    return 1 if config.window is None else config.pool[frame % len(config.pool)]


def frame_factor(frame: int, start: int, config: MemoryConfig) -> int:
    """The pooling factor of committed frame `frame` seen from a block starting at `start`."""
    if config.window is None or frame >= start - config.window:
        return 1
    return old_factor(frame, config)


#: persistent view buffers by (layers, K/V shape, dtype, device): a fixed-capacity view written into the
#: same tensors every block (training.graphs.BlockGraphs owns one, and its graphs read them in place)
ViewBuffers = dict[tuple[object, ...], list[LayerContext]]


def view(store: MemoryStore, start: int, capacity: int | None = None, reserve: int = 0,
         camera: torch.Tensor | None = None, buffers: ViewBuffers | None = None) -> list[LayerContext] | None:
    """Per-layer context for a block whose first frame is `start` (frames < start must be stored).
    With `capacity` the view is zero-padded to that many tokens and `valid` marks the real ones,
    so every view has the same shape (a compiled or CUDA-graphed forward sees one shape; see
    view_capacity). `reserve` adds room for that many tokens after the view (the block's own:
    LayerContext.reserved). `camera` (B, 4, 4): the block's first frame's camera relative to the
    rollout's first frame, which `select: view` retrieves the older frames by. With `buffers` (and a
    capacity) the view is written into the buffers of its shape (made on first use) and they are
    returned: the previous view of that shape is overwritten, and the padding holds whatever the
    last view left there (finite, and masked by `valid` as zeros would be)."""
    if start > len(store):
        raise ValueError(f"view for a block at frame {start}, but only {len(store)} frames are stored")
    if start == 0:
        return None
    config = store.config
    segments: list[list[LayerKV]] = []  # per part of the view, its per-layer K/V, in reading order
    frames = view_frames(start, config)
    if config.select == "view":
        old_end = max(0, start - (config.window or 0))
        candidates = [f for f in frames if f < old_end and frame_factor(f, start, config) != 0]
        if candidates:
            segments.append(_retrieved(store, candidates, camera))
        frames = [f for f in frames if f >= old_end]
    for f in frames:
        factor = frame_factor(f, start, config)
        if factor == 0:
            continue
        entry = store.frames[f].full if factor == 1 else store.frames[f].pooled
        if entry is None:
            raise ValueError(f"frame {f} was released from memory; a view for frame {start} needs it at "
                             f"factor {factor} (replay rebuilds the store in order)")
        segments.append(entry)
    if not segments:
        return None
    tokens = sum(part[0].k.shape[2] for part in segments)
    if capacity is not None and tokens > capacity:
        raise ValueError(f"the view for frame {start} has {tokens} tokens, more than its capacity {capacity}")
    if buffers is not None and capacity is not None:
        return _into_buffers(segments, tokens, capacity, reserve, buffers)
    extra = (0 if capacity is None else capacity - tokens) + reserve
    device = segments[0][0].k.device
    valid = None if capacity is None else torch.arange(capacity, device=device) < tokens

    def joined(parts: list[torch.Tensor]) -> torch.Tensor:  # one copy: the frames, padding and reserved room
        if extra:
            b, h, _, d = parts[0].shape
            parts = parts + [parts[0].new_zeros(b, h, extra, d)]
        return torch.cat(parts, dim=2)

    return [LayerContext(joined([part[i].k for part in segments]), joined([part[i].v for part in segments]), valid,
                         reserve) for i in range(len(segments[0]))]


def _into_buffers(segments: list[list[LayerKV]], tokens: int, capacity: int, reserve: int,
                  buffers: ViewBuffers) -> list[LayerContext]:
    """`view`'s K/V written into the persistent buffers of their shape: one concatenation per layer and
    tensor straight into its buffer, and the mask, instead of a fresh padded tensor each block."""
    k0 = segments[0][0].k
    b, h, _, d = k0.shape
    key = (len(segments[0]), b, h, capacity + reserve, d, k0.dtype, k0.device, reserve)
    out = buffers.get(key)
    if out is None:
        mask = torch.zeros(capacity, dtype=torch.bool, device=k0.device)
        out = buffers[key] = [LayerContext(k0.new_zeros(b, h, capacity + reserve, d),
                                           k0.new_zeros(b, h, capacity + reserve, d), mask, reserve)
                              for _ in segments[0]]
    for i, layer in enumerate(out):
        torch.cat([part[i].k for part in segments], dim=2, out=layer.k[:, :, :tokens])
        torch.cat([part[i].v for part in segments], dim=2, out=layer.v[:, :, :tokens])
    valid = out[0].valid
    assert valid is not None  # made with one
    valid[:tokens].fill_(True)
    valid[tokens:].fill_(False)
    return out


def _retrieved(store: MemoryStore, candidates: list[int], camera: torch.Tensor | None) -> list[LayerKV]:
    """Per layer, the K/V of the max_old candidate frames that overlap `camera`'s view most, per
    sample (B, heads, max_old·N, head_dim), oldest first."""
    if camera is None or store.geometry is None:
        raise ValueError("memory.select view: a view needs the block's camera and the store its geometry")
    cameras: list[torch.Tensor] = []
    full: list[list[LayerKV]] = []
    for f in candidates:
        frame = store.frames[f]
        if frame.camera is None or frame.full is None:
            raise ValueError(f"memory.select view: older frame {f} is not stored at full resolution with its camera")
        cameras.append(frame.camera)
        full.append(frame.full)
    config = store.config
    picks = retrieve(torch.stack(cameras, dim=1), camera, store.geometry, config.max_old or len(candidates),
                     config.distance_m)
    rows = torch.arange(picks.shape[0], device=picks.device)[:, None]

    def gather(parts: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(parts, dim=1)[rows, picks]  # (B, k, heads, N, head_dim)
        b, k, h, n, d = stacked.shape
        return stacked.permute(0, 2, 1, 3, 4).reshape(b, h, k * n, d)

    return [LayerKV(gather([kvs[i].k for kvs in full]), gather([kvs[i].v for kvs in full])) for i in range(len(full[0]))]


def view_capacity(grid: tuple[int, int], config: MemoryConfig) -> int:
    """The most tokens any view can hold under a bounded config (window and max_old set): the window
    at full resolution plus max_old older frames at the finest nonzero factor of the schedule."""
    if config.window is None or config.max_old is None:
        raise ValueError("a fixed view capacity needs a bounded memory (memory.window and memory.max_old set)")
    rows, cols = grid
    factors = [p for p in config.pool if p > 0]
    per_old = max((-(-rows // p) * -(-cols // p) for p in factors), default=0)
    return config.window * rows * cols + config.max_old * per_old


def view_tokens(start: int, grid: tuple[int, int], config: MemoryConfig) -> int:
    """Tokens a block at `start` attends to in memory (for reporting the reduction)."""
    rows, cols = grid
    total, retrieved = 0, 0
    for f in view_frames(start, config):
        factor = frame_factor(f, start, config)
        if factor and config.select == "view" and f < start - (config.window or 0):
            retrieved += 1
        elif factor:
            total += -(-rows // factor) * -(-cols // factor)
    return total + min(retrieved, config.max_old or retrieved) * rows * cols
