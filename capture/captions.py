"""Captions per segment of a trajectory (RELIC captions 5-second segments), and the ones a clip spans.

A trajectory's timeline is cut into segments of `segment_s` seconds from its first frame. Each
segment's caption comes from, in this order:

- `ingest`: the footage's own meta.json `captions`, a list of {"start_s", "end_s", "text"} (seconds
  from the first frame), used as given;
- `standin`: for trajectories captured on the stand-in engine, a description of what is in view,
  written from the scene's own content: its kind, and the objects (by name) and materials that
  cover at least `min_share` of `views` object-index renders spread over the segment;
- `trajectory`: the trajectory's single `caption`, repeated for every segment;
- none: no caption at all (an empty list).

A clip carries every caption whose segment overlaps the time its frames span.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from capture.standin.render import Renderer
from capture.standin.scene import Scene, SceneKind
from capture.standin.textures import Material

@dataclass(frozen=True)
class CaptionConfig:
    segment_s: float = 5.0  # RELIC captions 5 s segments
    views: int = 3  # stand-in: frames per segment (first, last and evenly between) whose view is described
    min_share: float = 0.02  # stand-in: objects covering less of the views than this are left out
    max_items: int = 8  # stand-in: at most this many object groups named, largest first
    width: int = 64  # stand-in: size of the object-index views
    height: int = 36

    def __post_init__(self) -> None:
        if not self.segment_s > 0 or self.views < 1 or not 0 <= self.min_share < 1 or self.max_items < 1:
            raise ValueError("captions: segment_s > 0, views >= 1, 0 <= min_share < 1 and max_items >= 1 are required")
        if self.width < 4 or self.height < 4:
            raise ValueError(f"captions: views of at least 4x4 pixels, got {self.width}x{self.height}")


@dataclass(frozen=True)
class SegmentCaption:
    segment: int
    start_s: float  # from the trajectory's first frame
    end_s: float
    text: str
    source: str  # ingest | standin | trajectory (the module docstring)
    objects: tuple[dict[str, Any], ...] = ()  # stand-in: {"label", "material", "count", "share"} per group

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "objects": [dict(o) for o in self.objects]}


def parse_captions(raw: Any, where: str) -> list[SegmentCaption]:
    """meta.json `captions` -> segment captions; a ValueError naming `where` and the entry otherwise."""
    if not isinstance(raw, list):
        raise ValueError(f"{where}: key 'captions': expected a list of {{start_s, end_s, text}}, got {type(raw).__name__}")
    out: list[SegmentCaption] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or set(entry) - {"start_s", "end_s", "text"} or not {"start_s", "end_s", "text"} <= set(entry):
            raise ValueError(f"{where}: captions[{i}]: expected exactly the keys start_s, end_s, text, got {entry!r}")
        start, end, text = entry["start_s"], entry["end_s"], entry["text"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in (start, end)):
            raise ValueError(f"{where}: captions[{i}]: start_s and end_s must be finite numbers, got {start!r}, {end!r}")
        if not 0 <= start < end:
            raise ValueError(f"{where}: captions[{i}]: needs 0 <= start_s < end_s, got {start}, {end}")
        if not isinstance(text, str):
            raise ValueError(f"{where}: captions[{i}]: text must be a string, got {type(text).__name__}")
        if out and start < out[-1].end_s:
            raise ValueError(f"{where}: captions[{i}] starts at {start} s, before captions[{i - 1}] ends ({out[-1].end_s} s)")
        out.append(SegmentCaption(i, float(start), float(end), text, "ingest"))
    return out


def segment_frames(times: np.ndarray, segment_s: float) -> list[tuple[float, float, np.ndarray]]:
    """(start_s, end_s, frame indices) of each `segment_s` segment of the timeline that holds frames."""
    rel = np.asarray(times, dtype=np.float64) - float(times[0])
    index = np.floor(rel / segment_s + 1e-9).astype(np.int64)
    return [(k * segment_s, (k + 1) * segment_s, np.flatnonzero(index == k)) for k in np.unique(index)]


def trajectory_captions(meta: Mapping[str, Any], poses: np.ndarray | None, times: np.ndarray, config: CaptionConfig,
                        where: str, scene: Scene | None = None) -> list[SegmentCaption]:
    """The captions of one staged trajectory (see the module docstring for the order of sources).
    `scene`: the stand-in scene it was captured in (None: not captured on the stand-in; then
    `poses` are not needed, and footage without poses passes None)."""
    if "captions" in meta:
        return parse_captions(meta["captions"], where)
    segments = segment_frames(times, config.segment_s)
    if scene is not None and poses is not None:
        fov = float(meta["fov"])
        renderer = Renderer(scene, shadow_resolution=4)  # object indices only: the shadow map is not used
        out = []
        for k, (start, end, frames) in enumerate(segments):
            picks = frames[np.unique(np.linspace(0, len(frames) - 1, config.views).round().astype(int))]
            index = np.stack([renderer.object_index(poses[i], config.width, config.height, fov) for i in picks])
            text, objects = describe(scene, index, config)
            out.append(SegmentCaption(k, start, end, text, "standin", objects))
        return out
    caption = meta.get("caption") or ""
    if not caption:
        return []
    return [SegmentCaption(k, start, end, caption, "trajectory") for k, (start, end, _) in enumerate(segments)]


def clip_captions(captions: Sequence[SegmentCaption], start_s: float, end_s: float) -> list[dict[str, Any]]:
    """The captions whose segment overlaps [start_s, end_s] (seconds from the trajectory's first frame)."""
    return [c.to_json() for c in captions if c.start_s <= end_s and start_s < c.end_s]


_ADJECTIVE = {Material.PLASTER: "plaster", Material.BRICK: "brick", Material.WOOD: "wooden", Material.TILES: "tiled",
              Material.CONCRETE: "concrete", Material.ASPHALT: "asphalt", Material.GRASS: "grassy",
              Material.METAL: "metal", Material.PAINT: "painted"}
_KIND = {SceneKind.ROOM: "A room", SceneKind.CORRIDOR: "A corridor", SceneKind.COURTYARD: "A courtyard",
         SceneKind.STREET: "A street"}


def object_label(name: str) -> str:
    """What an object is from its name: 'crate_007' -> 'crate', 'SM_Street_Lamp3' -> 'street lamp'."""
    words = re.sub(r"^(SM|BP|S)_", "", name)
    words = re.sub(r"([a-z])([A-Z])", r"\1 \2", words)
    words = re.sub(r"[_\s]*\d+$", "", words).replace("_", " ").strip().lower()
    return words or "object"


def describe(scene: Scene, index: np.ndarray, config: CaptionConfig) -> tuple[str, tuple[dict[str, Any], ...]]:
    """A sentence for what views of `scene` show: (V, H, W) box indices, -1 for the sky."""
    flat = index.ravel()
    groups: dict[tuple[str, int], dict[str, Any]] = {}
    for box, n in zip(*np.unique(flat[flat >= 0], return_counts=True)):
        key = (object_label(scene.names[box]), int(scene.material[box]))
        group = groups.setdefault(key, {"label": key[0], "material": Material(key[1]).name.lower(), "count": 0, "pixels": 0})
        group["count"] += 1
        group["pixels"] += int(n)
    items = sorted(groups.values(), key=lambda g: (-g["pixels"], g["label"], g["material"]))
    objects = tuple({"label": g["label"], "material": g["material"], "count": g["count"],
                     "share": round(g["pixels"] / flat.size, 4)} for g in items
                    if g["pixels"] / flat.size >= config.min_share)[:config.max_items]
    phrases = [_phrase(o) for o in objects]
    if scene.sky and (flat < 0).mean() >= config.min_share:
        phrases.append("the sky")
    seen = ", ".join(phrases) if phrases else "nothing recognisable"
    return f"{_KIND[scene.kind]} ({scene.name}). In view: {seen}.", objects


def _phrase(group: Mapping[str, Any]) -> str:
    adjective = _ADJECTIVE[Material[group["material"].upper()]]
    if group["count"] == 1:
        return f"{'an' if adjective[0] in 'aeiou' else 'a'} {adjective} {group['label']}"
    return f"{group['count']} {adjective} {group['label']}s"
