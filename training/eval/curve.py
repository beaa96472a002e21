"""Quality against training, and how far a target is: a saturating power law fitted to a run's points.

gain(t) = a − b·t^(−c) with a, b, c > 0 (t in training minutes or steps, gain e.g. the paired PSNR
over copy-first): rises with t and levels off at `a`. The time to reach a target g < a is
t = (b / (a − g))^(1/c); a target at or above the fitted ceiling `a` is out of this curve's reach.
Extrapolating a fit of a few points is a forecast, not a measurement; the reader gets the fit, its
points and their standard errors together (bench/quality_curve.py).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit


@dataclass(frozen=True)
class SaturatingFit:
    a: float  # the ceiling the gain approaches
    b: float
    c: float  # how fast: the gap to the ceiling falls as t^(-c)
    rmse: float  # of the fit on its points

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        return self.a - self.b * np.power(np.asarray(t, dtype=np.float64), -self.c)

    def time_to(self, target: float) -> float:
        """t at which the fitted gain reaches `target`; inf when it never does (target >= the ceiling)
        or only past the largest float (a fit that is nearly flat: c near 0)."""
        if target >= self.a:
            return math.inf
        if self.b <= 0:  # flat at the ceiling: reached from the start
            return 0.0
        log_t = (math.log(self.b) - math.log(self.a - target)) / self.c  # in logs: b/(a-g) ** (1/c) overflows
        return math.exp(log_t) if log_t < math.log(np.finfo(np.float64).max) else math.inf


def saturating(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(t, -c)


def fit_saturating(t: np.ndarray | list[float], gain: np.ndarray | list[float],
                   sigma: np.ndarray | list[float] | None = None) -> SaturatingFit:
    """Least squares (weighted by `sigma`, e.g. the points' standard errors) of gain = a − b·t^(−c)."""
    t, gain = np.asarray(t, dtype=np.float64), np.asarray(gain, dtype=np.float64)
    if t.shape != gain.shape or t.ndim != 1 or len(t) < 3:
        raise ValueError(f"a saturating fit needs at least 3 points of (t, gain), got {t.shape} and {gain.shape}")
    if (t <= 0).any():
        raise ValueError(f"training time must be > 0, got {t.tolist()}")
    span = float(gain.max() - gain.min()) or 1.0
    start = (float(gain.max()) + 0.5 * span, span * float(t.min()) ** 0.5, 0.5)
    with warnings.catch_warnings():  # the parameters' covariance is not used (3 points leave none)
        warnings.simplefilter("ignore", OptimizeWarning)
        params, _ = curve_fit(saturating, t, gain, p0=start, sigma=None if sigma is None else np.asarray(sigma),
                              bounds=([-np.inf, 0.0, 1e-3], [np.inf, np.inf, 5.0]), maxfev=20_000)
    a, b, c = (float(p) for p in params)
    rmse = float(np.sqrt(np.mean((saturating(t, a, b, c) - gain) ** 2)))
    return SaturatingFit(a, b, c, rmse)
