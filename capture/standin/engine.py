"""The stand-in engine's state and its UnrealCV command set, with fault injection.

Cameras live in UE conventions (location cm, rotator degrees, FOV on the longer side), exactly as
a client sees them over the wire. Camera 0 is the pawn camera; `vset /cameras/spawn` adds
FusionCameraActor_N cameras with ids 1, 2, ... Image faults change only the lit image: depth and
object masks stay ground truth, so the filter stage can be scored against them.
"""

from __future__ import annotations

import collections
import json
import logging
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from annotate.ue import location_to_ue
from capture.standin.protocol import Command, command, dispatch, encode_bmp, encode_npy, encode_png
from capture.standin.game import HELP, GameState, sweep, view_image
from capture.standin.objects import World, fmt_vector
from capture.standin.render import Frame, Renderer
from capture.standin.scene import Scene, make_scene, parse_scene_spec

log = logging.getLogger(__name__)
VERSION = "1.1.0"  # dotted integers, as the plugin reports: clients split it on dots and parse each part
PROJECT = "RelicStandin"


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection, all off by default. Probabilities are per lit capture or per request."""

    seed: int = 0
    black_frame: float = 0.0  # lit capture returns an all-black image
    frozen_frame: float = 0.0  # lit capture returns the camera's previous lit image
    exposure_spike: float = 0.0  # lit capture is over-exposed by `exposure_gain`
    exposure_gain: float = 3.0
    streaming_blur_jump_cm: float | None = None  # a camera jump longer than this blurs the next frames
    streaming_blur_frames: int = 4
    streaming_blur_sigma: float = 3.0  # Gaussian sigma (px) of the first blurred frame, decaying to 0
    slow_reply: float = 0.0  # a request's reply is delayed by `slow_reply_seconds`
    slow_reply_seconds: float = 2.0
    drop_connection: float = 0.0  # a request gets no reply: the connection is closed instead
    crash_after: int | None = None  # the engine dies on request number crash_after + 1
    crash_outside_cm: float | None = None  # the engine dies when a camera is placed farther than this from the origin
    ignore_size: bool = False  # `vset /camera/N/size` answers ok but keeps the configured size
    flicker: float = 0.0  # lit capture's brightness is scaled by `flicker_gain` (lighting flicker)
    flicker_gain: float = 1.4
    glitch: float = 0.0  # a band of `glitch_area` of the lit image is replaced by garbage blocks
    glitch_area: float = 0.4
    blur: float = 0.0  # lit capture is Gaussian-blurred with `blur_sigma` (px)
    blur_sigma: float = 2.0
    pose_offset: float = 0.0  # lit capture is rendered `pose_offset_deg` of yaw away from the camera's pose
    pose_offset_deg: float = 4.0

    def __post_init__(self) -> None:
        for name in ("black_frame", "frozen_frame", "exposure_spike", "slow_reply", "drop_connection",
                     "flicker", "glitch", "blur", "pose_offset"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability, got {value}")
        if self.streaming_blur_frames < 1 or self.streaming_blur_sigma <= 0:
            raise ValueError("streaming_blur_frames must be >= 1 and streaming_blur_sigma > 0")
        if self.flicker_gain <= 0 or not 0 < self.glitch_area <= 1 or self.blur_sigma <= 0:
            raise ValueError("flicker_gain and blur_sigma must be > 0, glitch_area in (0, 1]")
        if self.crash_after is not None and self.crash_after < 0:
            raise ValueError(f"crash_after must be >= 0, got {self.crash_after}")


@dataclass(frozen=True)
class EngineConfig:
    scene: str = "0"
    width: int = 640
    height: int = 480
    fov: float = 90.0
    depth_fp16: bool = True  # depth passes through fp16, like UE's depth render target
    ue_bmp_quirk: bool = False  # BMP payloads carry UE's extra 4-byte count (unrealcv.md 2.4)
    shadow_resolution: int = 512
    # `vget /unrealcv/commands`: false (default) answers the "Can not find a handler" error that
    # UE 4.27 / 5.2 plugins give (the 1.3.2 client warns once and skips checks); true answers the
    # template list, as UnrealCV+ >= 2.0 does (the client then checks every request against it,
    # ~0.1 ms per request on its side).
    report_commands: bool = False
    output_dir: pathlib.Path = pathlib.Path(".")  # where `vget ... lit name.png` saves files (never outside it)
    idle_timeout_s: float | None = 300.0  # a client silent this long is disconnected (None: never)
    message_timeout_s: float | None = 10.0  # ... or one stalled this long inside a message
    # `vrun open` is asynchronous, as UE's map travel is: the old level stays, and `vget /level/name`
    # reports it, for this long after the command was answered `ok`
    level_load_s: float = 0.0
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        if not 0 < self.fov < 180:
            raise ValueError(f"fov must be in (0, 180), got {self.fov}")
        parse_scene_spec(self.scene)  # a clear error for an unknown scene, before anything starts
        if self.level_load_s < 0:
            raise ValueError(f"level_load_s must be >= 0, got {self.level_load_s}")
        for name in ("idle_timeout_s", "message_timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 (or null: no limit), got {value}")


class EngineCrash(Exception):
    """The injected crash: the engine must stop serving at once."""


@dataclass
class Camera:
    name: str
    location: np.ndarray  # UE cm
    rotation: np.ndarray  # UE pitch, yaw, roll, degrees
    fov: float
    width: int
    height: int
    last_lit: np.ndarray | None = None
    last_capture_location: np.ndarray | None = None
    blur_left: int = 0
    _frame_key: tuple | None = None
    _frame: Frame | None = None


class Engine:
    """Scene + renderer + cameras; `handle(command)` answers one UnrealCV command."""

    def __init__(self, config: EngineConfig, fault_log: pathlib.Path | None = None):
        self.config = config
        self.faults = config.faults
        self.rng = np.random.default_rng(config.faults.seed)
        self.requests = 0
        self.fault_log = fault_log
        # the most recent injected faults, for in-process callers (footage generators drain it)
        self.injected: collections.deque[dict] = collections.deque(maxlen=1024)
        self.client_connected = False
        self.port = 0
        self._last_tick = 0.0
        self._loading: tuple[str, float] | None = None  # a `vrun open` under way: level, when it is loaded
        self._open(config.scene)
        self.commands = self._command_table()

    def _open(self, spec: str) -> None:
        """Load a scene, as UE's `open <map>` does: spawned cameras and actors and every edit are
        gone, the pawn camera starts at the scene's start point, the game runs, the view is lit."""
        template = make_scene(spec)
        self.world = World(template)
        self.game = GameState(self.config.width, self.config.height)
        self._renderer: tuple[int, Renderer] | None = None
        start = template.sample_free(np.random.default_rng(template.seed), 1, height=1.7)[0]
        self.start_location = location_to_ue(start)
        self.cameras = [self._new_camera("PawnSensor")]

    @property
    def scene(self) -> Scene:
        """The open level as it is now, edits included."""
        return self.world.scene()

    @property
    def renderer(self) -> Renderer:
        """The renderer of the scene as it is now (rebuilt, shadow maps included, after an edit)."""
        if self._renderer is None or self._renderer[0] != self.world.version:
            self._renderer = (self.world.version, Renderer(self.scene, self.config.shadow_resolution))
        return self._renderer[1]

    def game_tick(self) -> None:
        """Start a game tick for requests that arrive while none is pending. UE runs queued requests
        on the game thread once per tick, so under `t.maxFPS N` a synchronous round trip costs at
        least 1/N s; requests that arrived together (a client's batch) share one tick."""
        fps = self.game.max_fps
        if fps:
            wait = self._last_tick + 1.0 / fps - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        self._last_tick = time.monotonic()

    # -- requests --------------------------------------------------------------------------------
    def before_request(self) -> str | None:
        """Draw the per-request faults: 'crash', 'drop', 'slow' or None."""
        self.requests += 1
        f = self.faults
        if f.crash_after is not None and self.requests > f.crash_after:
            self._log_fault("crash", None)
            return "crash"
        if f.drop_connection and self.rng.random() < f.drop_connection:
            self._log_fault("drop_connection", None)
            return "drop"
        if f.slow_reply and self.rng.random() < f.slow_reply:
            self._log_fault("slow_reply", None)
            return "slow"
        return None

    def handle(self, text: str) -> bytes | str:
        if self._loading is not None and time.monotonic() >= self._loading[1]:
            spec, self._loading = self._loading[0], None
            self._open(spec)
            self.commands = self._command_table()  # handlers bound to the new level's world and game state
        return dispatch(self.commands, text)

    def _command_table(self) -> list[Command]:
        table: list[tuple[str, Callable[..., bytes | str]]] = [
            ("vget /unrealcv/status", self._status),
            ("vget /unrealcv/version", lambda: VERSION),
            ("vget /unrealcv/commands", self._commands),
            ("vget /unrealcv/echo [str]", lambda s: s),
            ("vget /scene/name", lambda: self.scene.name),
            ("vget /level/name", lambda: self.scene.name),
            ("vget /unrealcv/help", self._help),
            ("vbatch [uint]", lambda n: "ok"),
            ("vrun open [str]", self._open_level),
            ("vset /action/game/level [str]", self._open_level),
            *self.game.table(),
            ("vget /cameras", lambda: "".join(f"{c.name} " for c in self.cameras)),
            ("vset /cameras/spawn", self._spawn),
            ("vget /camera/[uint]/location", lambda i: self._camera(i, lambda c: fmt_vector(c.location))),
            ("vset /camera/[uint]/location [float] [float] [float]", self._set_location),
            ("vget /camera/[uint]/rotation", lambda i: self._camera(i, lambda c: fmt_vector(_normalize(c.rotation)))),
            ("vset /camera/[uint]/rotation [float] [float] [float]", self._set_rotation),
            ("vget /camera/[uint]/fov", lambda i: self._camera(i, lambda c: f"{c.fov:f}", "error Argument Invalid")),
            ("vset /camera/[uint]/fov [float]", self._set_fov),
            ("vget /camera/[uint]/size", lambda i: self._camera(i, lambda c: f"{c.width} {c.height}", "error Argument Invalid")),
            ("vset /camera/[uint]/size [uint] [uint]", self._set_size),
            ("vget /camera/[uint]/lit [str]", lambda i, arg: self._image(i, arg, "lit")),
            ("vget /camera/[uint]/depth [str]", lambda i, arg: self._image(i, arg, "depth")),
            ("vget /camera/[uint]/object_mask [str]", lambda i, arg: self._image(i, arg, "object_mask")),
            ("vget /camera/[uint]/seg [str]", lambda i, arg: self._image(i, arg, "object_mask")),
            ("vget /camera/[uint]/normal [str]", lambda i, arg: self._image(i, arg, "normal")),
            ("vset /camera/[uint]/moveto [float] [float] [float]", self._move_to),
            ("vget /screenshot [str]", self._screenshot),
            *self.world.table(),
        ]
        return [command(template, handler) for template, handler in table]

    # -- handlers --------------------------------------------------------------------------------
    def _commands(self) -> str:
        if not self.config.report_commands:
            return "error Can not find a handler for URI 'vget /unrealcv/commands'"
        return "\n".join(c.template for c in self.commands)

    def _open_level(self, spec: str) -> str:
        try:
            parse_scene_spec(spec)
        except ValueError:
            return f"error Can not open level {spec}"
        if self.config.level_load_s > 0:
            self._loading = (spec, time.monotonic() + self.config.level_load_s)
            return "ok"
        self._open(spec)
        self.commands = self._command_table()  # handlers bound to the new level's world and game state
        return "ok"

    def _status(self) -> str:
        c = self.config
        return (
            f"Is Listening\n{'Client Connected' if self.client_connected else 'No Client Connected'}\n{self.port}\n"
            f"Configuration\nConfig file: standin\nPort: {self.port}\nWidth: {c.width}\nHeight: {c.height}\n"
            f"FOV: {c.fov:f}\nEnableInput: false\nEnableRightEye: false\nScene: {self.scene.name}\n"
        )

    def _new_camera(self, name: str) -> Camera:
        c = self.config
        return Camera(name, self.start_location.copy(), np.zeros(3), c.fov, c.width, c.height)

    def _spawn(self) -> str:
        camera = self._new_camera(f"FusionCameraActor_{len(self.cameras)}")
        self.cameras.append(camera)
        return camera.name

    def _camera(self, index: str, fn, invalid: str = "error Invalid sensor id"):
        if not index or int(index) >= len(self.cameras):
            return invalid
        return fn(self.cameras[int(index)])

    def _set_location(self, i, x, y, z):
        location = np.array([float(x), float(y), float(z)])
        limit = self.faults.crash_outside_cm
        if limit is not None and not np.linalg.norm(location) <= limit:  # as UE can at its world bounds
            self._log_fault("crash_outside", None, location=location.tolist())
            raise EngineCrash()
        return self._camera(i, lambda c: _assign(c, "location", location))

    def _set_rotation(self, i, p, y, r):
        return self._camera(i, lambda c: _assign(c, "rotation", np.array([float(p), float(y), float(r)])))

    def _set_fov(self, i, fov):
        value = float(fov)
        if not 0 < value < 180:
            return "error Argument Invalid"
        return self._camera(i, lambda c: _assign(c, "fov", value), "error Argument Invalid")

    def _set_size(self, i, w, h):
        if not w or not h or int(w) < 1 or int(h) < 1 or int(w) * int(h) > 16_000_000:
            return "error Argument Invalid"
        if self.faults.ignore_size:
            return self._camera(i, lambda c: "ok", "error Argument Invalid")
        return self._camera(i, lambda c: _assign(c, "size", (int(w), int(h))), "error Argument Invalid")

    def _image(self, index: str, arg: str, kind: str) -> bytes | str:
        return self._camera(index, lambda camera: self._capture(camera, arg, kind))

    def _capture(self, camera: Camera, arg: str, kind: str) -> bytes | str:
        if not arg:
            return "error Filename can not be empty"
        allowed = ("npy",) if kind == "depth" else ("png", "bmp")
        suffix = arg.rsplit(".", 1)[-1].lower() if "." in arg else arg
        if suffix not in allowed:
            return f"error Invalid filename type, filename {arg}"
        frame = self._render(camera)
        if kind == "lit":
            image = self._lit_with_faults(camera, self._offset_lit(camera, frame.lit))
        else:
            image = view_image(frame, kind)
        if suffix == "npy":
            data = encode_npy(image)
        elif suffix == "png":
            data = encode_png(image)
        else:
            data = encode_bmp(image, self.config.ue_bmp_quirk)
        if "." not in arg:
            return data
        path = self._output_path(arg)
        if path is None:
            return f"error Invalid filename {arg}: files are saved inside the engine's output folder only"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return arg

    def _output_path(self, name: str) -> pathlib.Path | None:
        """Where `vget ... lit NAME` saves: NAME relative to output_dir, as UE saves relative names
        under its own folder; None for an absolute name or one that leaves the folder (`..`, links)."""
        root = self.config.output_dir.resolve()
        if pathlib.PurePath(name).is_absolute():
            return None
        path = (root / name).resolve()
        return path if path.is_relative_to(root) and path != root else None

    def _render(self, camera: Camera) -> Frame:
        """Render once per pose/settings: lit, depth and mask of one pose come from one frame."""
        key = (camera.location.tobytes(), camera.rotation.tobytes(), camera.fov, camera.width, camera.height,
               self.world.version)
        if camera._frame_key != key or camera._frame is None:
            camera._frame = self.renderer.render_ue(
                camera.location, camera.rotation, camera.width, camera.height, camera.fov, self.config.depth_fp16
            )
            camera._frame_key = key
        return camera._frame

    def _offset_lit(self, camera: Camera, lit: np.ndarray) -> np.ndarray:
        """The pose-offset fault: the lit image comes from a pose turned by `pose_offset_deg` of yaw
        (either way), while the camera reports its own pose - image and pose disagree."""
        f = self.faults
        if not f.pose_offset or self.rng.random() >= f.pose_offset:
            return lit
        offset = f.pose_offset_deg * (1.0 if self.rng.random() < 0.5 else -1.0)
        rotation = camera.rotation + np.array([0.0, offset, 0.0])
        self._log_fault("pose_offset", camera, degrees=offset)
        return self.renderer.render_ue(camera.location, rotation, camera.width, camera.height, camera.fov,
                                       self.config.depth_fp16).lit

    def _lit_with_faults(self, camera: Camera, lit: np.ndarray) -> np.ndarray:
        f, out = self.faults, lit
        previous, camera.last_lit = camera.last_lit, lit
        if f.streaming_blur_jump_cm is not None:
            if camera.last_capture_location is not None and (
                np.linalg.norm(camera.location - camera.last_capture_location) > f.streaming_blur_jump_cm
            ):
                camera.blur_left = f.streaming_blur_frames
            camera.last_capture_location = camera.location.copy()
            if camera.blur_left > 0:
                sigma = f.streaming_blur_sigma * camera.blur_left / f.streaming_blur_frames
                out = cv2.GaussianBlur(out, (0, 0), sigma)
                camera.blur_left -= 1
                self._log_fault("streaming_blur", camera, sigma=round(sigma, 3))
        if f.frozen_frame and previous is not None and previous.shape == lit.shape and self.rng.random() < f.frozen_frame:
            camera.last_lit = previous  # stays frozen on the old image, as a stalled render would
            self._log_fault("frozen_frame", camera)
            return previous
        if f.black_frame and self.rng.random() < f.black_frame:
            self._log_fault("black_frame", camera)
            return np.zeros_like(lit)
        if f.exposure_spike and self.rng.random() < f.exposure_spike:
            self._log_fault("exposure_spike", camera, gain=f.exposure_gain)
            return _scale(out, f.exposure_gain)
        if f.flicker and self.rng.random() < f.flicker:
            self._log_fault("flicker", camera, gain=f.flicker_gain)
            return _scale(out, f.flicker_gain)
        if f.glitch and self.rng.random() < f.glitch:
            self._log_fault("glitch", camera, area=f.glitch_area)
            return _glitch(out, f.glitch_area, self.rng)
        if f.blur and self.rng.random() < f.blur:
            self._log_fault("blur", camera, sigma=f.blur_sigma)
            return cv2.GaussianBlur(out, (0, 0), f.blur_sigma)
        return out

    def _move_to(self, index: str, x: str, y: str, z: str) -> str:
        """`moveto`: the pawn sweeps toward the target and stops at the first contact (UE's
        SetActorLocation with sweep on the pawn's collision sphere); camera 0 only."""
        if index != "0":
            return "error MoveTo only supports the player camera with id 0"
        pawn = self.cameras[0]
        pawn.location = sweep(self.scene, pawn.location, np.array([float(x), float(y), float(z)]))
        return "ok"

    def _screenshot(self, arg: str) -> bytes | str:
        """`vget /screenshot`: the player's viewport (camera 0 at the `setres` size) in the view mode."""
        pawn = self.cameras[0]
        width, height = self.game.viewport
        viewport = Camera(pawn.name, pawn.location, pawn.rotation, pawn.fov, width, height)
        mode = self.game.viewmode
        return self._capture(viewport, arg, mode if mode in ("lit", "normal", "object_mask") else "lit")

    def _help(self) -> str:
        return "".join(f"{c.template}\n{HELP.get(c.template.split(' [')[0], '')}\n" for c in self.commands)

    def _log_fault(self, kind: str, camera: Camera | None, **extra) -> None:
        record = {"request": self.requests, "fault": kind, **extra}
        if camera is not None:
            record.update(camera=camera.name, location=camera.location.round(3).tolist(),
                          rotation=camera.rotation.round(3).tolist())
        log.info("fault %s", record)
        self.injected.append(record)
        if self.fault_log is not None:
            with open(self.fault_log, "a") as handle:
                handle.write(json.dumps(record) + "\n")


def _assign(camera: Camera, what: str, value) -> str:
    if what == "size":
        camera.width, camera.height = value
    else:
        setattr(camera, what, value)
    return "ok"


def _scale(image: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def _glitch(image: np.ndarray, area: float, rng: np.random.Generator) -> np.ndarray:
    """A horizontal band covering `area` of the image becomes blocks of random colour, as a
    corrupted frame buffer or a broken decode shows."""
    out = image.copy()
    h, w = image.shape[:2]
    rows = max(1, round(area * h))
    top = int(rng.integers(0, h - rows + 1))
    block = max(2, w // 16)
    colours = rng.integers(0, 256, size=(-(-rows // block), -(-w // block), 3), dtype=np.uint8)
    out[top:top + rows] = np.repeat(np.repeat(colours, block, axis=0), block, axis=1)[:rows, :w]
    return out


def _normalize(rotator: np.ndarray) -> np.ndarray:
    """Angles into (-180, 180], as UE's FRotator::GetNormalized reports them."""
    out = np.mod(rotator + 180.0, 360.0) - 180.0
    return np.where(out == -180.0, 180.0, out)
