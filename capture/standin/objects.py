"""The stand-in's actors as UnrealCV's object commands see them, and the scene they make.

Every box of a generated scene is one actor (`crate_012`, `wall_003`, ...): its location is the
box centre (UE cm), its rotation a UE rotator, its scale 1 1 1 at its generated size. Object
commands edit these (move, turn, scale, recolour the mask, hide, show, spawn, destroy) and
`scene_of` turns them back into a `Scene` the renderer draws and `is_free` tests: an edit changes
lit, depth, normals and masks, the object list, bounds and the free space alike. A hidden actor is
not drawn but still collides, as `SetActorHiddenInGame` leaves collision on in UE.

Spawnable classes: the plugin's `CubeActor` (a 1 m cube) and the kinds the scenes are built from
(`Crate`, `Pillar`, `Prop`, `Car`, `Post`, `Planter`), each at a typical size; class names match
case-insensitively, as UE's class lookup does. A spawned actor starts at the world origin with the
name given, or `<Class>_<n>`, as `SpawnActor` names them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from annotate.ue import S, matrix_to_rotator, rotator_to_matrix
from capture.standin.scene import Scene, object_colors
from capture.standin.textures import Material

CM = 100.0
#: class -> (size in metres, material, tint)
SPAWNABLE: dict[str, tuple[tuple[float, float, float], Material, tuple[float, float, float]]] = {
    "CubeActor": ((1.0, 1.0, 1.0), Material.PAINT, (0.8, 0.8, 0.8)),
    "Crate": ((0.8, 0.8, 0.8), Material.WOOD, (0.8, 0.6, 0.4)),
    "Pillar": ((0.4, 0.4, 3.0), Material.CONCRETE, (0.8, 0.8, 0.8)),
    "Prop": ((0.3, 0.3, 0.3), Material.PAINT, (0.9, 0.3, 0.2)),
    "Car": ((4.2, 1.8, 1.4), Material.METAL, (0.5, 0.55, 0.7)),
    "Post": ((0.15, 0.15, 4.5), Material.METAL, (0.3, 0.3, 0.32)),
    "Planter": ((1.0, 1.0, 0.6), Material.GRASS, (0.9, 1.0, 0.9)),
}
MIN_HALF_M = 1e-4  # a zero scale keeps a sliver of a box (UE keeps the actor, with no visible extent)


@dataclass(frozen=True)
class Actor:
    name: str
    uclass: str
    centre: np.ndarray  # (3,) internal world, metres
    half: np.ndarray  # (3,) half size at scale 1, metres
    material: int
    tint: np.ndarray  # (3,) float32
    color: np.ndarray  # (3,) uint8 mask colour
    rotator: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))  # UE pitch, yaw, roll
    scale: np.ndarray = dataclasses.field(default_factory=lambda: np.ones(3))
    hidden: bool = False
    spawned: bool = False

    @property
    def location_cm(self) -> np.ndarray:
        return S @ self.centre * CM

    def world_from_local(self) -> np.ndarray:
        """(3, 3) internal-world rotation of the actor: UE's FRotationMatrix rows are its local axes
        in UE world, so the UE world-from-local matrix is its transpose; the Y flip takes both sides
        to the internal world."""
        return S @ rotator_to_matrix(self.rotator).T @ S

    def half_size(self) -> np.ndarray:
        return np.maximum(self.half * np.abs(self.scale), MIN_HALF_M)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The axis-aligned bounds (internal metres) of the oriented box."""
        extent = np.abs(self.world_from_local()) @ self.half_size()
        return self.centre - extent, self.centre + extent


def actors_of(scene: Scene) -> list[Actor]:
    """The generated scene's boxes as actors at rotation 0, scale 1."""
    return [Actor(name, "StaticMeshActor", (lo + hi) / 2.0, (hi - lo) / 2.0, int(material), tint, color)
            for name, lo, hi, material, tint, color in zip(
                scene.names, scene.box_min.astype(np.float64), scene.box_max.astype(np.float64), scene.material,
                scene.tint, scene.mask_colors)]


def scene_of(template: Scene, actors: list[Actor]) -> Scene:
    """The scene the actors make (the template gives the light, sky and free region)."""
    if not actors:  # a level with every actor destroyed: a sliver below the floor keeps the arrays valid
        actors = [Actor("_empty", "Actor", np.array([0.0, 0.0, -1e4]), np.full(3, MIN_HALF_M), 0,
                        np.ones(3, np.float32), np.zeros(3, np.uint8), hidden=True)]
    lows, highs = zip(*(a.bounds() for a in actors))
    rotations = np.stack([a.world_from_local() for a in actors])
    rotated = not np.allclose(rotations, np.eye(3), atol=1e-12)
    return dataclasses.replace(
        template, box_min=np.array(lows, np.float32), box_max=np.array(highs, np.float32),
        material=np.array([a.material for a in actors], np.int64), tint=np.array([a.tint for a in actors], np.float32),
        names=tuple(a.name for a in actors), orientation=rotations if rotated else None,
        half_extent=np.stack([a.half_size() for a in actors]) if rotated else None,
        visible=np.array([not a.hidden for a in actors]), colors=np.array([a.color for a in actors], np.uint8))


def spawnable(uclass: str) -> str | None:
    """The spawnable class a name means (matched case-insensitively, as UE's class lookup), or None."""
    return next((c for c in SPAWNABLE if c.lower() == uclass.lower()), None)


def spawn(uclass: str, name: str) -> Actor:
    """A new actor of a spawnable class at the world origin, with its name's mask colour."""
    size, material, tint = SPAWNABLE[uclass]
    return Actor(name, uclass, np.zeros(3), np.array(size) / 2.0, int(material), np.array(tint, np.float32),
                 object_colors((name,))[0], spawned=True)


def fmt_vector(v: np.ndarray, digits: int = 3) -> str:
    """A vector as the plugin's FStrFormatter prints it: `%.3f` values separated by spaces."""
    return " ".join(f"{x:.{digits}f}" for x in v)


class World:
    """The actors of the open level and the commands that read and edit them (UE's replies and
    errors, `ObjectHandler.cpp` of the 4.27 and 5.x plugin). `scene()` is the scene they make now;
    `version` counts edits, so renders cached before an edit are not reused after it."""

    def __init__(self, template: Scene):
        self.template = template
        self.actors: dict[str, Actor] = {a.name: a for a in actors_of(template)}
        self.version = 0
        self._scene: Scene | None = template
        self._spawned = 0

    def scene(self) -> Scene:
        if self._scene is None:
            self._scene = scene_of(self.template, list(self.actors.values()))
        return self._scene

    def _edit(self, name: str, **changes) -> str:
        actor = self.actors.get(name)
        if actor is None:
            return "error Can not find object"
        self.actors[name] = dataclasses.replace(actor, **changes)
        self._changed()
        return "ok"

    def _changed(self) -> None:
        self.version += 1
        self._scene = None

    def _read(self, name: str, fn) -> str:
        actor = self.actors.get(name)
        return "error Can not find object" if actor is None else fn(actor)

    def table(self) -> list[tuple[str, Callable[..., str]]]:
        """(template, handler) pairs for the engine's command table."""
        number = float
        return [
            ("vget /objects", lambda: "".join(f"{n} " for n in self.actors)),
            ("vset /objects/spawn_cube", lambda: self._spawn_cube()),
            ("vset /objects/spawn_cube [str]", lambda _name: self._spawn_cube()),  # the plugin ignores the name
            ("vset /objects/spawn [str]", lambda uclass: self._spawn(uclass, "")),
            ("vset /objects/spawn [str] [str]", self._spawn),
            ("vget /object/[str]/location", lambda n: self._read(n, lambda a: fmt_vector(a.location_cm))),
            ("vset /object/[str]/location [float] [float] [float]",
             lambda n, x, y, z: self._edit(n, centre=S @ np.array([number(x), number(y), number(z)]) / CM)),
            ("vget /object/[str]/rotation", lambda n: self._read(n, lambda a: fmt_vector(_canonical(a.rotator)))),
            ("vset /object/[str]/rotation [float] [float] [float]",
             lambda n, p, y, r: self._edit(n, rotator=np.array([number(p), number(y), number(r)]))),
            ("vget /object/[str]/scale", lambda n: self._read(n, lambda a: fmt_vector(a.scale))),
            ("vset /object/[str]/scale [float] [float] [float]",
             lambda n, x, y, z: self._edit(n, scale=np.array([number(x), number(y), number(z)]))),
            ("vget /object/[str]/color", lambda n: self._read(n, _color)),
            ("vset /object/[str]/color [uint] [uint] [uint]",  # FColor keeps the low byte of each value
             lambda n, r, g, b: self._edit(n, color=np.array([int(v or 0) % 256 for v in (r, g, b)], np.uint8))),
            ("vget /object/[str]/bounds", lambda n: self._read(n, _bounds)),
            ("vset /object/[str]/show", lambda n: self._edit(n, hidden=False)),
            ("vset /object/[str]/hide", lambda n: self._edit(n, hidden=True)),
            ("vset /object/[str]/destroy", self._destroy),
            ("vget /object/[str]/mobility", lambda n: self._read(n, lambda a: "Movable" if a.spawned else "Static")),
            ("vget /object/[str]/uclass_name", lambda n: self._read(n, lambda a: a.uclass)),
        ]

    def _spawn(self, uclass: str, name: str) -> str:
        if name and name in self.actors:
            return f"error Failed to spawn {name}, object exsit."  # sic: the plugin's spelling
        match = spawnable(uclass)
        if match is None:
            return f"error Can not find a class with name '{uclass}'"
        if not name:
            name = f"{match}_{self._spawned}"
            while name in self.actors:
                self._spawned += 1
                name = f"{match}_{self._spawned}"
        self._spawned += 1
        self.actors[name] = spawn(match, name)
        self._changed()
        return name

    def _spawn_cube(self) -> str:
        self._spawn("CubeActor", "")  # the plugin answers ok, not the name
        return "ok"

    def _destroy(self, name: str) -> str:
        if name not in self.actors:
            return "error Can not find object"
        del self.actors[name]
        self._changed()
        return "ok"


def _canonical(rotator: np.ndarray) -> np.ndarray:
    """The rotator as UE reports it after storing the rotation as a quaternion."""
    out = matrix_to_rotator(rotator_to_matrix(rotator))
    return np.where(np.abs(out) < 5e-4, 0.0, out)  # no "-0.000"


def _color(actor: Actor) -> str:
    r, g, b = (int(v) for v in actor.color)
    return f"(R={r},G={g},B={b},A=255)"


def _bounds(actor: Actor) -> str:
    """`%.2f` x 6, min then max corner in UE cm (GetActorBounds: the axis-aligned box)."""
    lo, hi = actor.bounds()
    ue_lo, ue_hi = S @ lo * CM, S @ hi * CM  # the flip swaps which corner has the smaller y
    return fmt_vector(np.minimum(ue_lo, ue_hi), 2) + " " + fmt_vector(np.maximum(ue_lo, ue_hi), 2)
