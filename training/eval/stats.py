"""Mean ± SE over clips and the z of a paired difference: one home for the statistics every
evaluation table, comparison and bench reports."""

from __future__ import annotations

import math

import numpy as np


def mean_se(values: np.ndarray) -> dict[str, float]:
    """Mean, its standard error (NaN for one value) and the count of per-clip values (NaN, NaN, 0
    for none)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return {"mean": math.nan, "se": math.nan, "n": 0}
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return {"mean": float(values.mean()), "se": se, "n": int(len(values))}


def z_score(mean: float, se: float) -> float:
    """mean / se; 0 for a zero mean; ±inf for a non-zero mean with no spread (every clip differs by the
    same amount); NaN where the SE is unknown (one clip, or none): one value says nothing of its noise."""
    if se > 0:
        return mean / se
    if mean == 0:
        return 0.0
    if se == 0:
        return math.copysign(math.inf, mean)
    return math.nan


def with_z(stats: dict[str, float]) -> dict[str, float]:
    """A `mean_se` result with its z."""
    return {**stats, "z": z_score(stats["mean"], stats["se"])}
