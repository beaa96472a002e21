"""Quality against training, and how far a target is: a saturating power law fitted to a run's points.

gain(t) = a − b·t^(−c) with a, b, c > 0 (t in training minutes or steps, gain e.g. the paired PSNR
over copy-first): rises with t and levels off at `a`. The time to reach a target g < a is
t = (b / (a − g))^(1/c); a target at or above the fitted ceiling `a` is out of this curve's reach.
Extrapolating a fit of a few points is a forecast, not a measurement; the reader gets the fit, its
points and their standard errors together (bench/quality_curve.py).

Points that show no ceiling (still rising at the same rate per doubling of t) drive c to its lower
bound, where a − b·t^(−c) ≈ (a − b) + b·c·ln t: `a` and `b` then grow without meaning. `fit_curve`
says so and fits the straight line in log t that those points are, gain(t) = g1 + d·log2(t), d dB per
doubling: its forecast has no ceiling, so read it as an upper bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar


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

    def describe(self, unit: str) -> str:
        return f"gain = {self.a:.2f} − {self.b:.3g}·{unit}^−{self.c:.2f}"


@dataclass(frozen=True)
class LogLinearFit:
    """gain(t) = at_one + per_doubling·log2(t): a curve with no ceiling in sight."""

    at_one: float  # the line's gain at t = 1
    per_doubling: float  # gain added by each doubling of t
    rmse: float

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        return self.at_one + self.per_doubling * np.log2(np.asarray(t, dtype=np.float64))

    def time_to(self, target: float) -> float:
        """t at which the line reaches `target`; inf when it does not rise (or only past the largest float)."""
        if self.per_doubling <= 0:
            return math.inf
        log2_t = (target - self.at_one) / self.per_doubling
        return 2.0 ** log2_t if log2_t < math.log2(np.finfo(np.float64).max) else math.inf

    def describe(self, unit: str) -> str:
        return f"gain = {self.at_one:.2f} + {self.per_doubling:.2f}·log2({unit}): no ceiling in reach"


C_MIN = 1e-3  # the saturating fit's lower bound on c: a fit that ends there saw no ceiling


def saturating(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.power(t, -c)


def _points(t: np.ndarray | list[float], gain: np.ndarray | list[float], least: int,
            what: str) -> tuple[np.ndarray, np.ndarray]:
    """(t, gain) as float arrays: at least `least` points of t > 0, or a ValueError naming `what`."""
    t, gain = np.asarray(t, dtype=np.float64), np.asarray(gain, dtype=np.float64)
    if t.shape != gain.shape or t.ndim != 1 or len(t) < least:
        raise ValueError(f"{what} needs at least {least} points of (t, gain), got {t.shape} and {gain.shape}")
    if (t <= 0).any():
        raise ValueError(f"training time must be > 0, got {t.tolist()}")
    return t, gain


def _line(x: np.ndarray, gain: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Weighted least squares of gain ≈ a − b·x with b >= 0 (b < 0 would fall with training: flat instead)."""
    (a, b), *_ = np.linalg.lstsq(np.stack([w, -w * x], axis=1), w * gain, rcond=None)
    if b < 0:
        return float(np.sum(w**2 * gain) / np.sum(w**2)), 0.0
    return float(a), float(b)


def fit_saturating(t: np.ndarray | list[float], gain: np.ndarray | list[float],
                   sigma: np.ndarray | list[float] | None = None) -> SaturatingFit:
    """Least squares (weighted by `sigma`, e.g. the points' standard errors) of gain = a − b·t^(−c).

    For a given c the model is a line in x = t^(−c), so a and b are solved exactly and only c is
    searched (a grid over [C_MIN, 5], then Brent's method between the best point's neighbours): no
    starting guess, and points with no ceiling end quickly at c = C_MIN rather than after thousands of
    iterations chasing a ceiling that runs away."""
    t, gain = _points(t, gain, 3, "a saturating fit")
    w = np.ones_like(t) if sigma is None else 1.0 / np.asarray(sigma, dtype=np.float64)
    unit = float(t.min())  # x = (t / unit)^(−c) stays within (0, 1] at every c

    def cost(c: float) -> float:
        x = (t / unit) ** -c
        a, b = _line(x, gain, w)
        return float(np.sum((w * (a - b * x - gain)) ** 2))

    grid = np.geomspace(C_MIN, 5.0, 64)
    best = int(np.argmin([cost(c) for c in grid]))
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    c = float(minimize_scalar(cost, bounds=(low, high), method="bounded", options={"xatol": 1e-9}).x)
    if cost(grid[best]) < cost(c):
        c = float(grid[best])
    a, b_unit = _line((t / unit) ** -c, gain, w)
    b = b_unit * unit**c  # b_unit·(t / unit)^(−c) = b·t^(−c)
    rmse = float(np.sqrt(np.mean((saturating(t, a, b, c) - gain) ** 2)))
    return SaturatingFit(a, b, c, rmse)


def fit_log_linear(t: np.ndarray | list[float], gain: np.ndarray | list[float],
                   sigma: np.ndarray | list[float] | None = None) -> LogLinearFit:
    """Weighted least squares (by `sigma`) of gain = g1 + d·log2(t)."""
    t, gain = _points(t, gain, 2, "a log-linear fit")
    weights = None if sigma is None else 1.0 / np.asarray(sigma, dtype=np.float64)
    per_doubling, at_one = (float(v) for v in np.polyfit(np.log2(t), gain, 1, w=weights))
    line = LogLinearFit(at_one, per_doubling, 0.0)
    return LogLinearFit(at_one, per_doubling, float(np.sqrt(np.mean((line(t) - gain) ** 2))))


def fit_curve(t: np.ndarray | list[float], gain: np.ndarray | list[float],
              sigma: np.ndarray | list[float] | None = None) -> SaturatingFit | LogLinearFit:
    """The saturating fit, or the log-linear one when the points show no ceiling (c at its bound)."""
    fit = fit_saturating(t, gain, sigma)
    return fit_log_linear(t, gain, sigma) if fit.c <= 1.01 * C_MIN else fit
