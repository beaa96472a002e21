"""The 13-dim action vector (conventions.md section 3): binning relative motion, and decoding it.

Thresholds are rates (m/s, deg/s) compared against motion / dt, which is the same as comparing the
per-frame motion against `rate * dt` (tau_T = v_dead * dt, tau_R = omega_dead * dt): a trajectory
resampled to another fps keeps its labels as long as its speeds do.

Magnitude bins of one group (translation or rotation), all rates, strictly increasing:

    dead_zone < centers[0] <= edges[0] < centers[1] <= edges[1] < ... < centers[L-1]

A channel's level is 0 when |rate| <= dead_zone, k (1-based) when the rate falls in bin k:
(dead_zone, edges[0]], (edges[0], edges[1]], ..., (edges[L-2], inf). The stored value is level / L.
Decoding uses `centers[k-1]` as bin k's representative rate.

Scale-free translation (`translation.normalize: clip_mean`, RELIC's choice): scenes differ in scale,
so the camera-frame translation rates are divided by the clip's mean moving speed s (m/s: the mean
norm of (dx, dy, dz) / dt over the transitions faster than `moving_speed`) before binning, and the
translation bins are in multiples of s. s is stored with the sample (`translation_scale`) so the
action decodes back to metric motion; a clip that never moves faster than `moving_speed` has no
scale and no translation channel set. Rotations are never normalised.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

#: Channel names in order (conventions.md section 3).
CHANNELS = (
    "forward",
    "backward",
    "left",
    "right",
    "up",
    "down",
    "yaw_left",
    "yaw_right",
    "pitch_up",
    "pitch_down",
    "roll_left",
    "roll_right",
    "static",
)
N_CHANNELS = len(CHANNELS)
STATIC = CHANNELS.index("static")

# Each ± pair: (motion column, channel when the value is positive, channel when negative).
# Motion columns: 0 dx (right), 1 dy (down), 2 dz (forward), 3 yaw (right), 4 pitch (up), 5 roll (right).
PAIRS = (
    (2, CHANNELS.index("forward"), CHANNELS.index("backward")),
    (0, CHANNELS.index("right"), CHANNELS.index("left")),
    (1, CHANNELS.index("down"), CHANNELS.index("up")),
    (3, CHANNELS.index("yaw_right"), CHANNELS.index("yaw_left")),
    (4, CHANNELS.index("pitch_up"), CHANNELS.index("pitch_down")),
    (5, CHANNELS.index("roll_right"), CHANNELS.index("roll_left")),
)


NORMALIZE = ("none", "clip_mean")


@dataclass(frozen=True)
class BinSpec:
    """Dead zone and magnitude bins of one motion group; all values are rates per second."""

    dead_zone: float
    edges: tuple[float, ...]
    centers: tuple[float, ...]
    # translation only: `none` bins metric rates (m/s); `clip_mean` bins rates divided by the clip's
    # mean moving speed (the bins are then multiples of it); `moving_speed` (m/s) is what counts as moving
    normalize: str = "none"
    moving_speed: float = 0.05

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {list(NORMALIZE)}, got {self.normalize!r}")
        if not (np.isfinite(self.moving_speed) and self.moving_speed >= 0):
            raise ValueError(f"moving_speed must be finite and >= 0, got {self.moving_speed}")
        if len(self.centers) != len(self.edges) + 1:
            raise ValueError(
                f"need one more center than edges (L bins: L centers, L-1 edges), got "
                f"{len(self.centers)} centers and {len(self.edges)} edges"
            )
        if not np.isfinite([self.dead_zone, *self.edges, *self.centers]).all():
            raise ValueError(f"bin values must be finite: {self}")
        if self.dead_zone < 0:
            raise ValueError(f"dead_zone must be >= 0, got {self.dead_zone}")
        # dead_zone < centers[0] <= edges[0] < centers[1] <= edges[1] < ... < centers[-1]
        chain = [self.dead_zone]
        for center, edge in zip(self.centers, self.edges):
            chain += [center, edge]
        chain.append(self.centers[-1])
        for i, (lo, hi) in enumerate(zip(chain, chain[1:])):
            if not (lo < hi if i % 2 == 0 else lo <= hi):
                raise ValueError(
                    "bins must satisfy dead_zone < centers[0] <= edges[0] < centers[1] <= ... ; got "
                    f"dead_zone={self.dead_zone}, edges={list(self.edges)}, centers={list(self.centers)}"
                )

    @property
    def levels(self) -> int:
        return len(self.centers)

    def level(self, rate: np.ndarray) -> np.ndarray:
        """|rate| -> integer level 0..L (0 inside the dead zone)."""
        magnitude = np.abs(rate)
        level = np.searchsorted(np.asarray(self.edges), magnitude, side="left") + 1
        return np.where(magnitude > self.dead_zone, level, 0)


@dataclass(frozen=True)
class ActionSpec:
    """Binning of the 13-dim action; written next to every action table and into shard metadata."""

    translation: BinSpec = field(
        default_factory=lambda: BinSpec(dead_zone=0.05, edges=(0.75, 2.0), centers=(0.4, 1.4, 3.0))
    )  # m/s
    rotation: BinSpec = field(
        default_factory=lambda: BinSpec(dead_zone=2.0, edges=(15.0, 45.0), centers=(8.0, 30.0, 75.0))
    )  # deg/s

    def __post_init__(self) -> None:
        if self.rotation.normalize != "none":
            raise ValueError(f"rotation.normalize must be 'none' (rotations are not normalised), got "
                             f"{self.rotation.normalize!r}")

    def group(self, column: int) -> BinSpec:
        return self.translation if column < 3 else self.rotation

    @property
    def scaled(self) -> bool:
        """Translation bins are multiples of the clip's mean moving speed (`clip_mean`)."""
        return self.translation.normalize == "clip_mean"

    def to_metadata(self) -> dict:
        """The JSON-safe description written into shard metadata and parquet schema metadata."""
        return {
            "channels": list(CHANNELS),
            "units": {"translation": "x translation_scale (the clip's mean moving speed, m/s)" if self.scaled
                      else "m/s", "rotation": "deg/s"},
            "rule": "value = level / L; level 0 when |motion/dt| <= dead_zone, else the bin "
            "(dead_zone, edges[0]], (edges[0], edges[1]], ..., (edges[-1], inf) that holds |motion/dt|",
            **{k: dataclasses.asdict(v) for k, v in (("translation", self.translation), ("rotation", self.rotation))},
        }


def translation_scale(motion: np.ndarray, dt: np.ndarray | float, spec: ActionSpec) -> float | None:
    """The clip's mean moving speed (m/s) that `clip_mean` divides translation rates by: the mean of
    |(dx, dy, dz)| / dt over transitions faster than `translation.moving_speed`; None when the spec
    does not normalise or no transition moves that fast."""
    if not spec.scaled:
        return None
    motion = _check_motion(motion)
    speed = np.linalg.norm(motion[:, :3], axis=1) / _check_dt(dt, len(motion))
    moving = speed[speed > spec.translation.moving_speed]
    return float(moving.mean()) if len(moving) else None


def encode_actions(motion: np.ndarray, dt: np.ndarray | float, spec: ActionSpec,
                   scale: float | None = None) -> np.ndarray:
    """(N, 6) relative motion and frame intervals dt (s, scalar or (N,)) -> (N, 13) float32 actions.

    With `clip_mean` the translation rates are divided by `scale` (m/s); by default the scale of
    this motion itself (`translation_scale`: the rows are the clip). Without it `scale` must be None.
    """
    motion = _check_motion(motion)
    dt = _check_dt(dt, len(motion))
    rates = motion / dt[:, None]
    if spec.scaled:
        scale = translation_scale(motion, dt, spec) if scale is None else _check_scale(scale)
        rates[:, :3] = rates[:, :3] / scale if scale is not None else 0.0  # never moving: no translation
    elif scale is not None:
        raise ValueError(f"translation scale {scale} given, but translation.normalize is 'none'")
    actions = np.zeros((len(motion), N_CHANNELS), dtype=np.float32)
    for column, positive, negative in PAIRS:
        bins = spec.group(column)
        value = (bins.level(rates[:, column]) / bins.levels).astype(np.float32)
        up = rates[:, column] > 0
        actions[:, positive] = np.where(up, value, 0.0)
        actions[:, negative] = np.where(up, 0.0, value)
    actions[:, STATIC] = ~actions[:, :STATIC].any(axis=1)
    return actions


def decode_actions(actions: np.ndarray, dt: np.ndarray | float, spec: ActionSpec,
                   scale: float | None = None) -> np.ndarray:
    """(N, 13) actions -> (N, 6) approximate relative motion using each bin's center rate * dt.

    With `clip_mean`, `scale` is the sample's `translation_scale` (m/s): translation centres are
    multiples of it. Raises ValueError naming the row for values off the bin grid, both channels of
    a pair set, a `static` channel that disagrees with the others, or a translation without a scale.
    """
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != N_CHANNELS:
        raise ValueError(f"actions must be (N, {N_CHANNELS}), got {actions.shape}")
    dt = _check_dt(dt, len(actions))
    if scale is not None and not spec.scaled:
        raise ValueError(f"translation scale {scale} given, but translation.normalize is 'none'")
    motion = np.zeros((len(actions), 6))
    for column, positive, negative in PAIRS:
        bins = spec.group(column)
        pos, neg = _levels(actions, positive, bins), _levels(actions, negative, bins)
        both = np.flatnonzero((pos > 0) & (neg > 0))
        if len(both):
            raise ValueError(
                f"action row {both[0]}: both {CHANNELS[positive]} and {CHANNELS[negative]} are set"
            )
        centers = np.concatenate([[0.0], bins.centers])
        if column < 3 and spec.scaled:
            rows = np.flatnonzero((pos > 0) | (neg > 0))
            if len(rows) and scale is None:
                raise ValueError(f"action row {rows[0]}: translation.normalize is 'clip_mean'; decoding "
                                 f"{CHANNELS[positive]}/{CHANNELS[negative]} needs the sample's translation_scale")
            centers = centers * (_check_scale(scale) if len(rows) else 0.0)
        motion[:, column] = (centers[pos] - centers[neg]) * dt
    moving = actions[:, :STATIC].any(axis=1)
    static = actions[:, STATIC]
    wrong = np.flatnonzero(~np.isin(static, (0.0, 1.0)) | ((static == 1.0) == moving))
    if len(wrong):
        raise ValueError(f"action row {wrong[0]}: static={static[wrong[0]]} disagrees with channels 0-11")
    return motion


def _levels(actions: np.ndarray, channel: int, bins: BinSpec) -> np.ndarray:
    scaled = actions[:, channel] * bins.levels
    level = np.rint(scaled).astype(np.int64)
    off = np.flatnonzero((np.abs(scaled - level) > 1e-4) | (level < 0) | (level > bins.levels))
    if len(off):
        row = int(off[0])
        raise ValueError(
            f"action row {row}: {CHANNELS[channel]}={actions[row, channel]} is not a level k/{bins.levels}"
        )
    return level


def _check_motion(motion: np.ndarray) -> np.ndarray:
    motion = np.array(motion, dtype=np.float64)
    if motion.ndim != 2 or motion.shape[1] != 6:
        raise ValueError(f"motion must be (N, 6), got {motion.shape}")
    return motion


def _check_scale(scale: float | None) -> float:
    if scale is None or not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"translation scale must be finite and > 0 (m/s), got {scale}")
    return float(scale)


def _check_dt(dt: np.ndarray | float, n: int) -> np.ndarray:
    dt = np.broadcast_to(np.asarray(dt, dtype=np.float64), (n,))
    bad = np.flatnonzero(~(np.isfinite(dt) & (dt > 0)))
    if len(bad):
        raise ValueError(f"frame interval dt[{bad[0]}] = {dt[bad[0]]} must be finite and > 0")
    return dt
