"""Seeded procedural 3D scenes for the stand-in engine: rooms, corridors, courtyards, streets.

A scene is a set of named axis-aligned boxes (floors, walls, crates, pillars, props), each with a
material and a colour tint, plus a light and a free-space region. Coordinates are the internal
world (right-handed, Z up, metres; conventions.md section 1); the server converts UE poses once.
`make_scene(spec)` is deterministic: the same spec always gives the same scene.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

import numpy as np

from capture.standin.textures import Material

M = Material


class SceneKind(str, enum.Enum):
    ROOM = "room"
    CORRIDOR = "corridor"
    COURTYARD = "courtyard"
    STREET = "street"


@dataclass(frozen=True)
class Light:
    """A sun (direction set: light travels along it) or a point light (position set)."""

    direction: tuple[float, float, float] | None = None
    position: tuple[float, float, float] | None = None
    color: tuple[float, float, float] = (1.0, 0.96, 0.88)
    intensity: float = 1.0


@dataclass(frozen=True, eq=False)
class Scene:
    """Boxes (B,) with min/max corners (B, 3) in metres, materials, tints and names."""

    name: str
    kind: SceneKind
    seed: int
    box_min: np.ndarray
    box_max: np.ndarray
    material: np.ndarray  # (B,) int Material
    tint: np.ndarray  # (B, 3) float32 albedo tint
    names: tuple[str, ...]  # (B,) object names: [A-Za-z0-9_], unique
    light: Light
    sky: bool  # True: rays that miss see the sky
    free_min: np.ndarray  # (3,) the region a camera may occupy (minus obstacles)
    free_max: np.ndarray
    ambient: float = 0.35
    # Edits the engine makes (capture/standin/objects.py); a generated scene has none of them.
    orientation: np.ndarray | None = None  # (B, 3, 3) world-from-local rotation per box; None: all axis-aligned
    half_extent: np.ndarray | None = None  # (B, 3) half sizes along the local axes (with orientation)
    visible: np.ndarray | None = None  # (B,) bool; a hidden box is not rendered (it still collides, as in UE)
    colors: np.ndarray | None = None  # (B, 3) uint8 mask colours; None: object_colors(names)
    mask_colors: np.ndarray = field(init=False)  # (B, 3) uint8 object mask colour per box

    def __post_init__(self) -> None:
        b = len(self.names)
        for name, arr, shape in (("box_min", self.box_min, (b, 3)), ("box_max", self.box_max, (b, 3)),
                                 ("material", self.material, (b,)), ("tint", self.tint, (b, 3))):
            if arr.shape != shape:
                raise ValueError(f"scene {self.name}: {name} has shape {arr.shape}, expected {shape}")
        if (self.box_max <= self.box_min).any():
            raise ValueError(f"scene {self.name}: a box has max <= min")
        if len(set(self.names)) != b:
            raise ValueError(f"scene {self.name}: object names are not unique")
        if (self.orientation is None) != (self.half_extent is None):
            raise ValueError(f"scene {self.name}: orientation and half_extent go together")
        object.__setattr__(self, "mask_colors", object_colors(self.names) if self.colors is None else
                           np.asarray(self.colors, dtype=np.uint8))

    @property
    def centre(self) -> np.ndarray:
        """(B, 3) box centres (of the oriented box and of its bounds alike)."""
        return (self.box_min.astype(np.float64) + self.box_max) / 2.0

    @property
    def rotated(self) -> np.ndarray:
        """(B,) bool: boxes whose orientation is not the identity (rendered and tested as oriented boxes)."""
        if self.orientation is None:
            return np.zeros(len(self.names), dtype=bool)
        return ~np.isclose(self.orientation, np.eye(3), atol=1e-9).all(axis=(1, 2))

    @property
    def shown(self) -> np.ndarray:
        """(B,) bool: the boxes rendered."""
        return np.ones(len(self.names), dtype=bool) if self.visible is None else np.asarray(self.visible, bool)

    @property
    def surface_seed(self) -> np.ndarray:
        """(B,) per-box texture seed, so equal materials still differ between objects."""
        return (np.arange(len(self.names)) * 7.31 + self.seed % 1000) % 97.0

    def is_free(self, points: np.ndarray, radius: float = 0.25) -> np.ndarray:
        """(N, 3) points -> (N,) bool: inside the free region and at least `radius` from every box."""
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        inside = ((points >= self.free_min + radius) & (points <= self.free_max - radius)).all(axis=1)
        gap = np.maximum(self.box_min[None] - points[:, None], points[:, None] - self.box_max[None])
        distance = np.linalg.norm(np.maximum(gap, 0.0), axis=2)  # (N, B) point-to-box distance
        rotated = np.flatnonzero(self.rotated)
        if len(rotated):  # oriented boxes: the distance in the box's own axes (their bounds are larger)
            assert self.orientation is not None and self.half_extent is not None
            local = np.einsum("nbk,bkj->nbj", points[:, None] - self.centre[rotated][None], self.orientation[rotated])
            gap = np.abs(local) - self.half_extent[rotated][None]
            distance[:, rotated] = np.linalg.norm(np.maximum(gap, 0.0), axis=2)
        return inside & (distance > radius).all(axis=1)

    def sample_free(self, rng: np.random.Generator, n: int, radius: float = 0.25, height: float | None = None) -> np.ndarray:
        """n random free points (metres); `height` fixes z (e.g. eye height) when given."""
        out = np.empty((0, 3))
        for _ in range(200):
            p = rng.uniform(self.free_min + radius, self.free_max - radius, size=(max(4 * n, 64), 3))
            if height is not None:
                p[:, 2] = height
            out = np.concatenate([out, p[self.is_free(p, radius)]])
            if len(out) >= n:
                return out[:n]
        raise RuntimeError(f"scene {self.name}: could not find {n} free points of radius {radius}")


def object_colors(names: tuple[str, ...]) -> np.ndarray:
    """A distinct, deterministic mask colour per object (never black: black is the sky/nothing)."""
    out = np.empty((len(names), 3), dtype=np.uint8)
    for i, name in enumerate(names):
        h = 2166136261
        for ch in name.encode():
            h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
        out[i] = (32 + (h & 0xFF) % 224, 32 + ((h >> 8) & 0xFF) % 224, 32 + ((h >> 16) & 0xFF) % 224)
    return out


_SPEC = re.compile(r"^(?:(room|corridor|courtyard|street)[-_:])?(\d{1,9})$")


def parse_scene_spec(spec: str | int) -> tuple[SceneKind, int]:
    """'street-7' / 'room_3' / '12' (kind chosen by seed) -> (kind, seed)."""
    match = _SPEC.match(str(spec).strip())
    if not match:
        raise ValueError(f"scene {spec!r}: expected <seed> or <kind>-<seed>, kind one of {[k.value for k in SceneKind]}")
    seed = int(match.group(2))
    kind = SceneKind(match.group(1)) if match.group(1) else list(SceneKind)[seed % len(SceneKind)]
    return kind, seed


def level_name(spec: str | int) -> str:
    """The name a scene reports as its level (`vget /level/name`): 'street-7' -> 'street_0007'."""
    kind, seed = parse_scene_spec(spec)
    return f"{kind.value}_{seed:04d}"


def make_scene(spec: str | int) -> Scene:
    kind, seed = parse_scene_spec(spec)
    builder = _Builder(level_name(spec), kind, seed)
    {SceneKind.ROOM: _room, SceneKind.CORRIDOR: _corridor, SceneKind.COURTYARD: _courtyard,
     SceneKind.STREET: _street}[kind](builder, builder.rng)
    return builder.build()


class _Builder:
    def __init__(self, name: str, kind: SceneKind, seed: int):
        self.name, self.kind, self.seed = name, kind, seed
        self.rng = np.random.default_rng([seed, list(SceneKind).index(kind)])
        self.boxes: list[tuple[np.ndarray, np.ndarray, int, np.ndarray, str]] = []
        self.light = Light(direction=(0.0, 0.0, -1.0))
        self.sky = True
        self.free = (np.zeros(3), np.ones(3))
        self.ambient = 0.35
        self._structure_count = 0  # boxes before this index are structure (floors, walls)

    def box(self, lo, hi, material: Material, tint, label: str) -> None:
        name = f"{label}_{len(self.boxes):03d}"
        self.boxes.append((np.asarray(lo, float), np.asarray(hi, float), int(material), np.asarray(tint, np.float32), name))

    def tint(self, base, spread: float = 0.12) -> np.ndarray:
        return np.clip(np.asarray(base) * (1 + self.rng.uniform(-spread, spread, 3)), 0.05, 1.0)

    def sun(self) -> Light:
        azimuth = self.rng.uniform(0, 2 * np.pi)
        elevation = self.rng.uniform(np.radians(30), np.radians(65))
        d = -np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
        return Light(direction=(float(d[0]), float(d[1]), float(d[2])), intensity=1.1)

    def scatter(self, lo, hi, count: int, size_range: tuple[float, float], materials, tints, label: str,
                keep_clear=None) -> None:
        """Boxes standing on the floor (z = lo[2]) at random spots inside [lo, hi] (x, y)."""
        placed = 0
        for _ in range(count * 20):
            if placed == count:
                break
            sx, sy, sz = self.rng.uniform(*size_range, size=3)
            x = self.rng.uniform(lo[0], hi[0] - sx)
            y = self.rng.uniform(lo[1], hi[1] - sy)
            a, b = np.array([x, y, lo[2]]), np.array([x + sx, y + sy, lo[2] + sz])
            if keep_clear is not None and _overlaps(a, b, *keep_clear):
                continue
            if any(_overlaps(a - 0.6, b + 0.6, blo, bhi) for blo, bhi, *_ in self.boxes[self._structure_count:]):
                continue
            k = self.rng.integers(len(materials))
            self.box(a, b, materials[k], self.tint(tints[k]), label)
            if self.rng.random() < 0.35:  # a prop on top
                px, py, pz = self.rng.uniform(0.15, min(sx, sy, 0.5), size=3)
                ox, oy = self.rng.uniform(0, sx - px), self.rng.uniform(0, sy - py)
                self.box([x + ox, y + oy, b[2]], [x + ox + px, y + oy + py, b[2] + pz], M.PAINT,
                         self.tint(self.rng.uniform(0.3, 1.0, 3), 0.0), "prop")
            placed += 1

    def mark_structure(self) -> None:
        """Boxes added so far are structure (floors, walls): scatter may touch them."""
        self._structure_count = len(self.boxes)

    def build(self) -> Scene:
        lo, hi, mat, tint, names = zip(*self.boxes)
        return Scene(
            name=self.name, kind=self.kind, seed=self.seed,
            box_min=np.array(lo, dtype=np.float32), box_max=np.array(hi, dtype=np.float32),
            material=np.array(mat, dtype=np.int64), tint=np.array(tint, dtype=np.float32), names=tuple(names),
            light=self.light, sky=self.sky, free_min=self.free[0], free_max=self.free[1], ambient=self.ambient,
        )


def _overlaps(alo, ahi, blo, bhi) -> bool:
    return bool(np.all(alo < bhi) and np.all(blo < ahi))


def _walls(b: _Builder, x0, y0, x1, y1, height, material, tint, thickness=0.25, label="wall") -> None:
    t = thickness
    b.box([x0 - t, y0 - t, 0], [x1 + t, y0, height], material, b.tint(tint), label)
    b.box([x0 - t, y1, 0], [x1 + t, y1 + t, height], material, b.tint(tint), label)
    b.box([x0 - t, y0, 0], [x0, y1, height], material, b.tint(tint), label)
    b.box([x1, y0, 0], [x1 + t, y1, height], material, b.tint(tint), label)


def _room(b: _Builder, rng: np.random.Generator) -> None:
    w, d, h = rng.uniform(6, 12), rng.uniform(6, 12), rng.uniform(2.8, 4.0)
    b.box([-w / 2 - 0.3, -d / 2 - 0.3, -0.2], [w / 2 + 0.3, d / 2 + 0.3, 0], [M.WOOD, M.TILES][rng.integers(2)],
          b.tint([0.9, 0.85, 0.8]), "floor")
    b.box([-w / 2 - 0.3, -d / 2 - 0.3, h], [w / 2 + 0.3, d / 2 + 0.3, h + 0.2], M.PLASTER, b.tint([0.95, 0.95, 0.92]), "ceiling")
    wall_mat = [M.PLASTER, M.BRICK, M.PAINT][rng.integers(3)]
    _walls(b, -w / 2, -d / 2, w / 2, d / 2, h, wall_mat, rng.uniform(0.5, 1.0, 3))
    b.mark_structure()
    for _ in range(rng.integers(1, 4)):
        x, y = rng.uniform(-w / 2 + 1, w / 2 - 1.4), rng.uniform(-d / 2 + 1, d / 2 - 1.4)
        b.box([x, y, 0], [x + 0.4, y + 0.4, h], M.CONCRETE, b.tint([0.8, 0.8, 0.8]), "pillar")
    b.scatter([-w / 2 + 0.3, -d / 2 + 0.3, 0], [w / 2 - 0.3, d / 2 - 0.3], int(rng.integers(4, 9)), (0.4, 1.3),
              [M.WOOD, M.METAL, M.PAINT], [[0.8, 0.6, 0.4], [0.7, 0.75, 0.8], rng.uniform(0.3, 1, 3)], "crate")
    b.light = Light(position=(rng.uniform(-w / 4, w / 4), rng.uniform(-d / 4, d / 4), h - 0.3), intensity=1.2)
    b.sky, b.ambient = False, 0.3
    b.free = (np.array([-w / 2, -d / 2, 0.0]), np.array([w / 2, d / 2, h]))


def _corridor(b: _Builder, rng: np.random.Generator) -> None:
    length, width, h = rng.uniform(20, 36), rng.uniform(2.5, 4.0), rng.uniform(4.0, 7.0)
    b.box([-length / 2 - 2, -width / 2 - 2, -0.2], [length / 2 + 2, width / 2 + 2, 0], [M.TILES, M.CONCRETE][rng.integers(2)],
          b.tint([0.85, 0.85, 0.85]), "floor")
    wall = [M.BRICK, M.PLASTER][rng.integers(2)]
    _walls(b, -length / 2, -width / 2, length / 2, width / 2, h, wall, rng.uniform(0.5, 1.0, 3), 0.4)
    b.mark_structure()
    spacing = rng.uniform(3.0, 5.0)
    for x in np.arange(-length / 2 + spacing / 2, length / 2, spacing):  # pilasters along both walls
        for side in (-1, 1):
            y0 = side * width / 2 - (0.35 if side > 0 else 0.0)
            b.box([x, y0, 0], [x + 0.45, y0 + 0.35, h], M.CONCRETE, b.tint([0.75, 0.72, 0.7]), "pilaster")
    b.scatter([-length / 2 + 0.5, -width / 2 + 0.5, 0], [length / 2 - 0.5, width / 2 - 0.5], int(rng.integers(2, 6)),
              (0.3, 0.8), [M.WOOD, M.METAL], [[0.8, 0.6, 0.4], [0.6, 0.65, 0.7]], "crate")
    b.light = b.sun()
    b.free = (np.array([-length / 2, -width / 2 + 0.35, 0.0]), np.array([length / 2, width / 2 - 0.35, h]))


def _courtyard(b: _Builder, rng: np.random.Generator) -> None:
    w, d = rng.uniform(18, 30), rng.uniform(18, 30)
    b.box([-w / 2 - 12, -d / 2 - 12, -0.2], [w / 2 + 12, d / 2 + 12, 0], [M.CONCRETE, M.TILES][rng.integers(2)],
          b.tint([0.8, 0.78, 0.72]), "ground")
    for side in range(4):  # buildings around the yard, several per side, varied heights
        along = w if side < 2 else d
        edges = np.sort(rng.uniform(-along / 2, along / 2, size=int(rng.integers(1, 4))))
        cuts = np.concatenate([[-along / 2 - 8], edges, [along / 2 + 8]])
        for a0, a1 in zip(cuts[:-1], cuts[1:]):
            height = rng.uniform(6, 16)
            mat = [M.BRICK, M.PLASTER, M.CONCRETE][rng.integers(3)]
            depth = 6.0
            if side == 0:
                lo, hi = [a0, -d / 2 - depth, 0], [a1, -d / 2, height]
            elif side == 1:
                lo, hi = [a0, d / 2, 0], [a1, d / 2 + depth, height]
            elif side == 2:
                lo, hi = [-w / 2 - depth, a0, 0], [-w / 2, a1, height]
            else:
                lo, hi = [w / 2, a0, 0], [w / 2 + depth, a1, height]
            b.box(np.minimum(lo, hi), np.maximum(lo, hi), mat, b.tint(rng.uniform(0.5, 1.0, 3)), "building")
    b.mark_structure()
    for _ in range(int(rng.integers(2, 6))):  # a colonnade
        x, y = rng.uniform(-w / 2 + 2, w / 2 - 2), rng.uniform(-d / 2 + 2, d / 2 - 2)
        b.box([x, y, 0], [x + 0.5, y + 0.5, rng.uniform(3, 5)], M.CONCRETE, b.tint([0.85, 0.83, 0.8]), "pillar")
    cx, cy = rng.uniform(-2, 2, 2)  # fountain: stacked basins
    b.box([cx - 1.5, cy - 1.5, 0], [cx + 1.5, cy + 1.5, 0.5], M.CONCRETE, b.tint([0.7, 0.7, 0.72]), "fountain")
    b.box([cx - 0.4, cy - 0.4, 0.5], [cx + 0.4, cy + 0.4, 1.6], M.METAL, b.tint([0.6, 0.65, 0.7]), "fountain")
    b.scatter([-w / 2 + 1, -d / 2 + 1, 0], [w / 2 - 1, d / 2 - 1], int(rng.integers(4, 9)), (0.4, 1.4),
              [M.GRASS, M.WOOD, M.METAL], [[0.9, 1.0, 0.9], [0.8, 0.6, 0.4], [0.6, 0.6, 0.65]], "planter",
              keep_clear=(np.array([cx - 2.5, cy - 2.5, -1]), np.array([cx + 2.5, cy + 2.5, 5])))
    b.light = b.sun()
    b.free = (np.array([-w / 2, -d / 2, 0.0]), np.array([w / 2, d / 2, 6.0]))


def _street(b: _Builder, rng: np.random.Generator) -> None:
    length, road = rng.uniform(40, 60), rng.uniform(6, 9)
    walk = rng.uniform(2, 3.5)
    b.box([-length / 2 - 10, -road / 2, -0.2], [length / 2 + 10, road / 2, 0], M.ASPHALT, b.tint([1, 1, 1], 0.05), "road")
    for side in (-1, 1):
        y0, y1 = sorted([side * road / 2, side * (road / 2 + walk)])
        b.box([-length / 2 - 10, y0, -0.2], [length / 2 + 10, y1, 0.15], M.TILES, b.tint([0.75, 0.72, 0.7]), "sidewalk")
        x = -length / 2 - 10
        while x < length / 2 + 10:  # a row of buildings
            width = rng.uniform(5, 12)
            yb0, yb1 = sorted([side * (road / 2 + walk), side * (road / 2 + walk + rng.uniform(6, 10))])
            b.box([x, yb0, 0], [x + width, yb1, rng.uniform(5, 18)], [M.BRICK, M.PLASTER, M.CONCRETE][rng.integers(3)],
                  b.tint(rng.uniform(0.45, 1.0, 3)), "building")
            x += width + rng.uniform(0, 1.5)
    b.mark_structure()
    for _ in range(int(rng.integers(2, 6))):  # parked cars: a body and a cabin
        side = rng.choice([-1, 1])
        x = rng.uniform(-length / 2, length / 2 - 4.5)
        y = side * (road / 2 - 1.1) - 0.9
        colour = rng.uniform(0.2, 1.0, 3)
        b.box([x, y, 0], [x + 4.2, y + 1.8, 0.8], M.METAL, colour, "car")
        b.box([x + 1.0, y + 0.1, 0.8], [x + 3.2, y + 1.7, 1.4], M.METAL, colour * 0.6, "car")
    for x in np.arange(-length / 2, length / 2, rng.uniform(6, 10)):  # lamp posts on the sidewalks
        for side in (-1, 1):
            y = side * (road / 2 + 0.4) - 0.075
            b.box([x, y, 0.15], [x + 0.15, y + 0.15, 4.5], M.METAL, b.tint([0.3, 0.3, 0.32]), "post")
    b.light = b.sun()
    b.free = (np.array([-length / 2, -road / 2 - walk, 0.0]), np.array([length / 2, road / 2 + walk, 6.0]))
