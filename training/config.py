"""Model sizes and trainer settings: frozen dataclasses, loadable from YAML (common.config).

`PRESETS` is the registry of model sizes: `tiny` runs CPU tests in seconds, `small` trains in
minutes on one H100/H200, `base` is the same recipe at about 4x the compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Literal

from annotate.actions import N_CHANNELS


#: the ways the camera can enter the model; `model.camera` joins one or more with "+" ("pose+prope")
CAMERA_PARTS = ("pose", "plucker", "prope")
SPATIAL_ROPES = ("grid", "rays")


@dataclass(frozen=True)
class ModelConfig:
    width: int = 384  # D, token width
    depth: int = 12  # transformer blocks
    heads: int = 6  # attention heads; head_dim = width / heads
    mlp_ratio: float = 4.0
    patch: int = 8  # pixel patch side: a token is a patch x patch x 3 block of pixels
    channels: int = 3
    height: int = 72  # frame size the model is built for (pixels)
    width_px: int = 128
    action_dim: int = N_CHANNELS
    pose_dim: int = 9  # translation (3) + the first two columns of the rotation (6), relative to frame 0
    rope_theta: float = 10000.0
    # RoPE over time: positions are frame_index * rope_time_scale (position interpolation: < 1),
    # and the temporal base is rope_theta * rope_time_ntk (NTK-style extension: > 1).
    rope_time_scale: float = 1.0
    rope_time_ntk: float = 1.0
    # how the camera enters the model, one or more of CAMERA_PARTS joined by "+": "pose" adds a
    # per-frame pose embedding to q and k; "plucker" adds a per-token embedding of the Plücker
    # coordinates of the token's centre ray (relative to the origin camera) to the tokens; "prope"
    # gives every head `prope_dims` more dims of q, k, v, transformed by the frame's camera, so
    # attention between two frames sees their relative camera transform, translation included
    # (PRoPE/GTA); RoPE keeps all of its head_dim
    camera: str = "pose"
    prope_dims: int = 16  # with "prope": the camera's dims added to each head (4 per 4x4 block)
    # the (row, col) of each token's RoPE position: "grid" its place on the patch grid; "rays" the
    # direction of its centre ray in the origin camera (conditioning.view_positions), so attention
    # relates tokens by relative view direction, which a camera rotation does not change
    spatial_rope: str = "grid"
    fov: float = 90.0  # horizontal FOV (degrees, on the longer side) of the frames, for the rays
    # False: a plain video model (pretraining on action-free video) with no action or camera inputs;
    # a conditioned run started from it (--init) adds them with zero-initialised output layers
    conditioned: bool = True

    def __post_init__(self) -> None:
        parts = self.camera.split("+")
        if not all(part in CAMERA_PARTS for part in parts) or len(set(parts)) != len(parts):
            raise ValueError(f"model.camera must join distinct parts of {CAMERA_PARTS} with '+', got {self.camera!r}")
        if self.prope and (self.prope_dims <= 0 or self.prope_dims % 4):
            raise ValueError(f"model.prope_dims must be a positive multiple of 4, got {self.prope_dims}")
        if self.spatial_rope not in SPATIAL_ROPES:
            raise ValueError(f"model.spatial_rope must be one of {SPATIAL_ROPES}, got {self.spatial_rope!r}")
        if not 0 < self.fov < 180:
            raise ValueError(f"model.fov must be in (0, 180) degrees, got {self.fov}")
        if self.width % self.heads or (self.width // self.heads) % 2:
            raise ValueError(f"model.width {self.width} must split into {self.heads} heads of even size")
        if self.height % self.patch or self.width_px % self.patch:
            raise ValueError(f"model: frame {self.width_px}x{self.height} is not a multiple of patch {self.patch}")
        if self.head_dim < 12:
            raise ValueError(f"model: head_dim {self.head_dim} too small for 3D RoPE (>= 12)")
        if self.rope_time_scale <= 0 or self.rope_time_ntk <= 0:
            raise ValueError("model.rope_time_scale and rope_time_ntk must be > 0")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def prope(self) -> bool:
        """Camera transforms in attention (camera "prope"; a plain video model has no camera)."""
        return self.conditioned and "prope" in self.camera.split("+")

    @property
    def attn_dim(self) -> int:
        """Dims of a head's q, k and v: head_dim (RoPE), plus prope_dims with camera "prope"."""
        return self.head_dim + self.prope_dims if self.prope else self.head_dim

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of patch tokens per frame."""
        return self.height // self.patch, self.width_px // self.patch

    @property
    def tokens_per_frame(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def patch_dim(self) -> int:
        return self.patch * self.patch * self.channels


PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(width=48, depth=2, heads=2, patch=4, height=16, width_px=16),
    "small": ModelConfig(width=384, depth=12, heads=6),
    "base": ModelConfig(width=768, depth=12, heads=12),
}


def preset(name: str, **overrides: object) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; presets are {sorted(PRESETS)}")
    base = PRESETS[name]
    known = {f.name: type(getattr(base, f.name)) for f in fields(base)}
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ValueError(f"model overrides: unknown field(s) {unknown}; fields are {sorted(known)}")
    # YAML gives numbers; cast each to the field's own type (depth: 8.0 -> 8)
    return replace(base, **{k: known[k](v) for k, v in overrides.items()})


@dataclass(frozen=True)
class FlowConfig:
    shift: float = 3.0  # timestep shift: sigma = shift*u / (1 + (shift-1)*u), u ~ U(0, 1)
    sample_steps: int = 20  # Euler steps of the sampler
    guidance: float = 1.0  # classifier-free guidance scale on the motion condition (1 = off)

    def __post_init__(self) -> None:
        if self.shift <= 0 or self.sample_steps < 1:
            raise ValueError("flow.shift must be > 0 and flow.sample_steps >= 1")


@dataclass(frozen=True)
class DataConfig:
    shards: str = ""  # path, brace pattern or pipe: URL (datasets.loader)
    frames: int = 9  # frames per training clip, cropped at random from each sample
    batch_size: int = 32
    workers: int = 8
    shuffle_buffer: int = 256
    # where the JPEG frames are decoded: "workers" (the DataLoader workers, on the CPU) or "device"
    # (the workers pass the JPEG bytes on, the training device decodes them: nvJPEG through
    # torchvision on a GPU; datasets.device_decode)
    decode: Literal["workers", "device"] = "workers"
    # train on one frame in every `frame_step` of the samples (a clip then spans (frames - 1) x frame_step
    # + 1 stored frames): 3 trains a 15 fps build at 5 fps, three times the motion per step. Actions are
    # recomputed from the poses (datasets.loader.subsample_labels); the checkpoint records the rate
    # trained at, and evaluation and play command the model at it
    frame_step: int = 1

    def __post_init__(self) -> None:
        if self.frames < 2 or self.batch_size < 1 or self.workers < 0:
            raise ValueError("data.frames must be >= 2, data.batch_size >= 1, data.workers >= 0")
        if self.frame_step < 1:
            raise ValueError(f"data.frame_step must be >= 1, got {self.frame_step}")
        if self.decode not in ("workers", "device"):
            raise ValueError(f"data.decode must be 'workers' or 'device', got {self.decode!r}")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 200
    grad_clip: float = 1.0
    ema: float = 0.999  # EMA decay of the weights used for sampling; 0 = no EMA
    action_dropout: float = 0.1  # per clip: drop actions and poses together (the CFG "unconditional")
    # micro-batches of data.batch_size per optimiser step and rank: the global batch is
    # data.batch_size x grad_accum x processes, so it can be held fixed across process counts
    grad_accum: int = 1

    def __post_init__(self) -> None:
        if self.grad_accum < 1:
            raise ValueError(f"optim.grad_accum must be >= 1, got {self.grad_accum}")


@dataclass(frozen=True)
class ContextConfig:
    """Memory context (training/context.py): each training sample gives a `window`-frame clip, its
    first frame clean, and up to `frames` earlier frames of the sample, clean, at their own times:
    a teacher that can score a student's frames with the memory the student had (dmd.context)."""
    frames: int = 0  # most context frames per clip; 0: plain clips of data.frames frames
    window: int = 9  # frames of the clip itself (the loss is on all but its first)

    def __post_init__(self) -> None:
        if self.frames < 0 or self.window < 2:
            raise ValueError(f"context.frames must be >= 0 and context.window >= 2, got {self.frames}, {self.window}")


@dataclass(frozen=True)
class TrainConfig:
    preset: str = "small"
    model: dict[str, bool | float | str] = field(default_factory=dict)  # overrides of the preset's ModelConfig fields
    data: DataConfig = field(default_factory=DataConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    seed: int = 0
    max_steps: int = 100_000
    max_minutes: float | None = None  # stop after this much training wall time
    log_every: int = 50
    checkpoint_every: int = 1000
    # every N steps also keep the weights (EMA and raw, no optimiser) as snapshots/step<N>.pt: a
    # quality-against-training curve from one run (bench/quality_curve.py)
    snapshot_every: int | None = None
    precision: Literal["bf16", "fp32"] = "bf16"  # bf16 autocast on CUDA; CPU always runs fp32
    compile: bool = False
    init: str | None = None  # start from these weights (a checkpoint) instead of at random

    def __post_init__(self) -> None:
        if self.snapshot_every is not None and self.snapshot_every < 1:
            raise ValueError(f"snapshot_every must be a positive number of steps, got {self.snapshot_every}")
        if self.context.frames and self.context.window >= self.data.frames:
            raise ValueError(f"context.frames {self.context.frames} needs samples longer than the window: "
                             f"data.frames {self.data.frames} <= context.window {self.context.window} (load "
                             "longer samples with data.frames, e.g. 33)")

    def model_config(self) -> ModelConfig:
        return preset(self.preset, **self.model)
