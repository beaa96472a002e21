"""The stand-in's game state as UnrealCV's action, view-mode and console commands see it, the
pawn's swept move, and the images of each view mode.

- `vset /viewmode lit|normal|depth|object_mask|unlit|base_color|...` (UE's list; unknown modes get
  `error Can not set ViewMode to <mode>`) sets what the player's viewport shows, which is what
  `vget /screenshot` returns; `vget /viewmode` answers the mode.
- `vrun <console command>` answers `ok`, as UE does for any console command. Those with a meaning
  here take effect: `setres WxH[w|f]` sets the viewport size; `t.maxFPS N` caps the game ticks, and
  as UE runs queued requests once per tick, a synchronous round trip then costs at least 1/N s
  (a batch shares one tick; the server thread waits, `Engine.game_tick`); `slomo X` sets the time
  dilation and `pause` toggles the pause (recorded: the stand-in has no actor that moves with game
  time, so neither changes an image; requests are served while paused, as UE's server ticks then too).
  Every console command is recorded in `console`.
- `vset /action/game/pause|resume`, `vget /action/game/is_paused` (`true`/`false`),
  `vset /action/input/enable|disable`, `vset /action/keyboard KEY SECONDS` (`ok`) and
  `vset /action/eyes_distance D`, which the 1.x plugin leaves unimplemented (`error Not Implemented`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from annotate.ue import S
from capture.standin.raycast import cast
from capture.standin.render import Frame
from capture.standin.scene import Scene

VIEWMODES = ("depth", "normal", "object_mask", "lit", "unlit", "base_color", "debug", "wireframe", "vertex_color",
             "no_transparency")
PAWN_RADIUS_CM = 35.0  # ADefaultPawn's collision sphere
SKIN_CM = 0.1  # how far short of the contact a swept move stops
_SETRES = re.compile(r"^(\d+)x(\d+)([wf]?)$", re.IGNORECASE)

#: descriptions for `vget /unrealcv/help` (template -> text), the plugin's wording where it has one
HELP = {
    "vget /unrealcv/status": "Get the status of UnrealCV plugin",
    "vget /unrealcv/version": "Get the version of UnrealCV, the format is v0.*.*",
    "vget /unrealcv/help": "List all available commands and their help message",
    "vget /objects": "Get the name of all objects",
    "vget /cameras": "List Camera sensors in the world",
    "vset /cameras/spawn": "Spawn a new camera actor",
    "vget /camera/[uint]/lit": "Get snapshot from camera, the second parameter is optional",
    "vget /camera/[uint]/depth": "Get depth from camera",
    "vget /camera/[uint]/normal": "Get surface normal from camera",
    "vget /camera/[uint]/object_mask": "Get object mask from camera sensor",
    "vset /camera/[uint]/moveto": "Move camera to location [x, y, z], will be blocked by objects",
    "vset /viewmode": "Set ViewMode to (lit, normal, depth, object_mask)",
    "vget /viewmode": "Get current ViewMode",
    "vset /action/game/pause": "Pause the game",
    "vset /action/game/resume": "Resume the game",
    "vget /action/game/is_paused": "Check whether the game is paused",
    "vrun": "Run UE4 built-in command",
}


@dataclass
class GameState:
    width: int  # the viewport's size (setres); camera images keep their own size
    height: int
    viewmode: str = "lit"
    paused: bool = False
    max_fps: float | None = None
    time_dilation: float = 1.0
    input_enabled: bool = True
    console: list[str] = field(default_factory=list)  # every console command run, in order

    @property
    def viewport(self) -> tuple[int, int]:
        return self.width, self.height

    def table(self) -> list[tuple[str, Callable[..., str]]]:
        runs = [(f"vrun {' '.join(['[str]'] * n)}", self._run) for n in range(1, 7)]
        return [
            ("vset /viewmode [str]", self._set_viewmode),
            ("vget /viewmode", lambda: self.viewmode),
            ("vset /action/game/pause", lambda: self._pause(True)),
            ("vset /action/game/resume", lambda: self._pause(False)),
            ("vget /action/game/is_paused", lambda: "true" if self.paused else "false"),
            ("vset /action/input/enable", lambda: self._input(True)),
            ("vset /action/input/disable", lambda: self._input(False)),
            ("vset /action/keyboard [str] [float]", lambda key, seconds: "ok"),
            ("vset /action/eyes_distance [float]", lambda distance: "error Not Implemented"),
            *runs,
        ]

    def _set_viewmode(self, mode: str) -> str:
        mode = mode.lower()
        if mode not in VIEWMODES:
            return f"error Can not set ViewMode to {mode}"
        self.viewmode = mode
        return "ok"

    def _pause(self, paused: bool) -> str:
        self.paused = paused
        return "ok"

    def _input(self, enabled: bool) -> str:
        self.input_enabled = enabled
        return "ok"

    def _run(self, *words: str) -> str:
        """A console command: `ok` whatever it is, as UE answers; the ones the stand-in has take effect."""
        self.console.append(" ".join(words))
        name, args = words[0].lower(), words[1:]
        try:
            if name in ("setres", "r.setres") and args and (size := _SETRES.match(args[0])):
                width, height = int(size.group(1)), int(size.group(2))
                if width > 0 and height > 0:
                    self.width, self.height = width, height
            elif name == "t.maxfps" and args:
                value = float(args[0])
                self.max_fps = value if value > 0 else None  # 0: no cap, as in UE
            elif name == "slomo" and args:
                value = float(args[0])
                if value > 0:
                    self.time_dilation = value
            elif name == "pause":
                self.paused = not self.paused
        except ValueError:
            pass  # UE's console ignores an argument it cannot parse and still answers ok
        return "ok"


def sweep(scene: Scene, start_cm: np.ndarray, target_cm: np.ndarray, radius_cm: float = PAWN_RADIUS_CM) -> np.ndarray:
    """Where a sphere moving from start to target (UE cm) stops: at the first contact with any
    actor's box (hidden ones too: they keep their collision), `SKIN_CM` short of it; the target
    itself when nothing is in the way. Boxes are grown by the radius (oriented boxes by their bounds)."""
    p0, p1 = S @ start_cm / 100.0, S @ target_cm / 100.0
    step = p1 - p0
    length = float(np.linalg.norm(step))
    if not length > 0.0:  # no move (or a target too far to sweep to: stay)
        return np.asarray(target_cm if length == 0.0 else start_cm, dtype=np.float64)
    r = radius_cm / 100.0
    hit = cast(p0[None], step[None], scene.box_min - r, scene.box_max + r)
    t = float(hit.t[0])
    if t >= 1.0:
        return np.asarray(target_cm, dtype=np.float64)
    t = max(0.0, t - SKIN_CM / 100.0 / length)
    return S @ (p0 + t * step) * 100.0


def view_image(frame: Frame, kind: str) -> np.ndarray:
    """A frame in a non-lit mode: the object mask, planar depth (cm), or surface normals as the
    plugin's WorldNormal material writes them: UE world axes, each component n mapped to
    round((n + 1) / 2 * 255); pixels that see nothing are 0."""
    if kind == "object_mask":
        return frame.mask
    if kind == "depth":
        return frame.depth
    if kind == "normal":
        ue = frame.normal @ S  # internal -> UE axes (S is its own inverse and symmetric)
        seen = np.any(frame.normal != 0, axis=-1, keepdims=True)
        return np.where(seen, np.clip(np.rint((ue + 1.0) / 2.0 * 255.0), 0, 255), 0).astype(np.uint8)
    raise ValueError(f"no image of kind {kind!r}")
