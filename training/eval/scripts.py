"""Action scripts for evaluation: every single motion, mixes, out-and-back walks and a square loop.

A script is a per-transition relative motion (conventions.md §2: dx dy dz in metres, yaw pitch
roll in degrees, camera-t axes). Rates are the centre of a chosen action bin, so each script's
binned actions are what a user holding that key would send. Out-and-back scripts go out for half
the transitions and come back along the reversed poses, with the return motion recomputed from
those poses (the palindrome rule, conventions.md §4), so the last frame revisits the first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotate.actions import CHANNELS, STATIC, ActionSpec, encode_actions
from annotate.geometry import integrate, relative_motion
from capture.planner import AXIS

SINGLES = tuple(c for c in CHANNELS if c != "static")
MIXES = (("forward", "yaw_right"), ("forward", "yaw_left"), ("backward", "yaw_left"), ("left", "pitch_up"),
         ("right", "pitch_down"), ("forward", "up"))
OUT_AND_BACK = ("forward", "yaw_right", "left")
SQUARE = ("forward", "right", "backward", "left")  # a loop of four strafes: back where it began, same heading
ROTATIONS = frozenset(c for c in SINGLES if c.split("_")[0] in ("yaw", "pitch", "roll"))
#: motion groups of `script_group`, in report order
GROUPS = ("rotation", "translation", "mix", "out_and_back")


@dataclass(frozen=True, eq=False)
class ActionScript:
    name: str  # e.g. "forward", "forward+yaw_right", "forward~back"
    kind: str  # single | mix | out_and_back
    motion: np.ndarray  # (T-1, 6)

    def poses(self, start: np.ndarray) -> np.ndarray:
        """(T, 4, 4) camera-to-world poses integrated from `start`."""
        return integrate(start, self.motion)

    def actions(self, dt: float, spec: ActionSpec) -> np.ndarray:
        """(T-1, 13) binned actions, as the annotator computes them."""
        return encode_actions(self.motion, dt, spec)


def script_group(name: str) -> str:
    """The motion group of a script by name: a single rotation, a single translation, a mix of the two,
    or a walk that comes back (out-and-back or the square loop)."""
    if "~" in name or name == "square":
        return "out_and_back"
    if "+" in name:
        return "mix"
    if name not in SINGLES:
        raise ValueError(f"unknown action script {name!r}")
    return "rotation" if name in ROTATIONS else "translation"


def channel_rate(channel: str, spec: ActionSpec, level: int = 1) -> np.ndarray:
    """(6,) motion rate (per second) of one channel at the centre of bin `level`."""
    column, sign = AXIS[CHANNELS.index(channel)]
    bins = spec.group(column)
    rate = np.zeros(6)
    rate[column] = sign * bins.centers[level]
    return rate


def _constant(channels: tuple[str, ...], transitions: int, dt: float, spec: ActionSpec, level: int) -> np.ndarray:
    rate = sum((channel_rate(c, spec, level) for c in channels), np.zeros(6))
    return np.tile(rate * dt, (transitions, 1))


def out_and_back(channel: str, transitions: int, dt: float, spec: ActionSpec, level: int = 1) -> np.ndarray:
    """Out for ceil(T/2) transitions, back along the reversed poses: the last pose is the first."""
    if transitions % 2:
        raise ValueError(f"an out-and-back script needs an even number of transitions, got {transitions}")
    out = _constant((channel,), transitions // 2, dt, spec, level)
    poses = integrate(np.eye(4), out)
    return relative_motion(np.concatenate([poses, poses[-2::-1]]))


def square_loop(transitions: int, dt: float, spec: ActionSpec, level: int = 1) -> np.ndarray:
    """Four equal legs along SQUARE without turning: the last pose is the first."""
    if transitions % 4:
        raise ValueError(f"a square loop needs a multiple of 4 transitions, got {transitions}")
    return np.concatenate([_constant((c,), transitions // 4, dt, spec, level) for c in SQUARE])


def revisit_scripts(transitions: int, dt: float, spec: ActionSpec | None = None, level: int = 1
                    ) -> list[ActionScript]:
    """Scripts whose last frame is back at the first pose: the 3 out-and-back walks and the square."""
    spec = spec or ActionSpec()
    scripts = _out_and_back_scripts(transitions, dt, spec, level)
    return _moving(scripts + [ActionScript("square", "loop", square_loop(transitions, dt, spec, level))], dt, spec,
                   level)


def standard_scripts(transitions: int, dt: float, spec: ActionSpec | None = None, level: int = 1
                     ) -> list[ActionScript]:
    """12 single motions, 6 translation+rotation mixes and 3 out-and-back scripts."""
    spec = spec or ActionSpec()
    scripts = [ActionScript(c, "single", _constant((c,), transitions, dt, spec, level)) for c in SINGLES]
    scripts += [ActionScript("+".join(m), "mix", _constant(m, transitions, dt, spec, level)) for m in MIXES]
    return _moving(scripts + _out_and_back_scripts(transitions, dt, spec, level), dt, spec, level)


def _out_and_back_scripts(transitions: int, dt: float, spec: ActionSpec, level: int) -> list[ActionScript]:
    return [ActionScript(f"{c}~back", "out_and_back", out_and_back(c, transitions, dt, spec, level))
            for c in OUT_AND_BACK]


def _moving(scripts: list[ActionScript], dt: float, spec: ActionSpec, level: int) -> list[ActionScript]:
    """The scripts, checked: every transition must be a motion (none binned static)."""
    for script in scripts:
        if script.actions(dt, spec)[:, STATIC].any():
            raise ValueError(f"script {script.name}: bin level {level} is below the dead zone")
    return scripts
