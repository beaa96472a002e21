"""The stand-in renderer: lit RGB, planar depth (cm) and object masks from a UE camera. Pure numpy.

Every pixel is a ray through its centre, (u + 0.5, v + 0.5), with UE's pinhole intrinsics
(`annotate.ue.fov_to_intrinsics`: FOV on the longer side, square pixels, centred). Camera rays have
camera-space z = 1, so the hit distance is the planar depth UE's SceneDepth reports. The UE pose is
converted to the internal world once, by `annotate.ue.ue_to_pose`, the same conversion capture
uses. Shadows come from shadow maps built once per scene (orthographic for the sun, a cube map
for a point light), so a frame costs one batched ray cast plus shading.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from annotate.ue import fov_to_intrinsics, ue_to_pose
from capture.standin.raycast import cast
from capture.standin.scene import Scene
from capture.standin.textures import sample_clouds, shade_material

#: Planar depth reported for pixels that see nothing (UE's fp16 depth target saturates here), cm.
FAR_DEPTH_CM = 65504.0
_AXES = np.eye(3, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Frame:
    lit: np.ndarray  # (H, W, 3) uint8 RGB
    depth: np.ndarray  # (H, W) float32 planar depth, cm
    mask: np.ndarray  # (H, W, 3) uint8 object colours (0 = nothing)
    object_index: np.ndarray  # (H, W) int, box index, -1 for nothing
    normal: np.ndarray  # (H, W, 3) float32 unit surface normal, internal world axes (0 where nothing)

    def depth_m(self) -> np.ndarray:
        """(H, W) float32 planar depth in metres, +inf where the depth saturates (FAR_DEPTH_CM: the sky)."""
        return np.where(self.depth >= FAR_DEPTH_CM, np.inf, self.depth / 100.0).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Surface:
    """Where rays meet the scene: the nearest shown box, axis-aligned or oriented."""

    t: np.ndarray  # (N,) float32 ray parameter, inf for a miss
    box: np.ndarray  # (N,) int box index, -1 for a miss
    normal: np.ndarray  # (N, 3) float32 world normal of the face hit
    texture: np.ndarray  # (N, 3) float32 the hit point in the box's texture frame (world for aligned boxes)
    axis: np.ndarray  # (N,) int, the face's axis in that frame


class Renderer:
    """Renders one scene; holds its shadow map. Thread-compatible (no mutable state after init)."""

    def __init__(self, scene: Scene, shadow_resolution: int = 512):
        self.scene = scene
        self._corners = _box_corners(scene.box_min, scene.box_max)
        shown = scene.shown
        self._shown = np.flatnonzero(shown)
        self._oriented = shown & scene.rotated
        light = scene.light
        if light.direction is not None:
            self._shadow: _SunShadow | _PointShadow = _SunShadow(self, np.asarray(light.direction, np.float32),
                                                                 shadow_resolution)
        else:
            self._shadow = _PointShadow(self, np.asarray(light.position, np.float32), shadow_resolution // 2)

    def surface(self, origins: np.ndarray, dirs: np.ndarray, boxes: np.ndarray | None = None) -> Surface:
        """Nearest hit of each ray among `boxes` (indices; default every shown box): axis-aligned boxes in
        one batched slab test, each oriented box in its own axes (rays turned into them: t is unchanged)."""
        scene = self.scene
        boxes = self._shown if boxes is None else boxes
        aligned = boxes[~self._oriented[boxes]]
        hits = cast(origins, dirs, scene.box_min[aligned], scene.box_max[aligned])
        t, axis = hits.t, hits.axis
        box = np.where(hits.box >= 0, aligned[np.maximum(hits.box, 0)], -1) if len(aligned) else hits.box
        normal = _AXES[axis] * hits.sign[:, None]
        with np.errstate(invalid="ignore", over="ignore"):
            texture = np.broadcast_to(origins, dirs.shape) + np.where(np.isfinite(t), t, 0)[:, None] * dirs
        for i in boxes[self._oriented[boxes]]:
            assert scene.orientation is not None and scene.half_extent is not None
            rotation = scene.orientation[i].astype(np.float32)
            centre, half = scene.centre[i].astype(np.float32), scene.half_extent[i].astype(np.float32)
            local_o, local_d = (origins - centre) @ rotation, dirs @ rotation
            one = cast(local_o, local_d, -half[None], half[None])
            nearer = one.t < t
            if not nearer.any():
                continue
            t, box, axis = np.where(nearer, one.t, t), np.where(nearer, i, box), np.where(nearer, one.axis, axis)
            local_n = _AXES[one.axis[nearer]] * one.sign[nearer, None]
            normal = normal.copy()
            normal[nearer] = local_n @ rotation.T
            texture = texture.copy()
            texture[nearer] = np.broadcast_to(local_o, local_d.shape)[nearer] + one.t[nearer, None] * local_d[nearer] + centre
        return Surface(t, box, normal, texture, axis)

    def render_ue(self, location_cm, rotator, width: int, height: int, fov: float, depth_fp16: bool = True) -> Frame:
        """Render from a UE camera: location (cm) and rotator (pitch, yaw, roll in degrees)."""
        return self.render(ue_to_pose(location_cm, rotator), width, height, fov, depth_fp16)

    def view(self, pose: np.ndarray, width: int, height: int, fov: float) -> tuple[np.ndarray, np.ndarray, Surface]:
        """The camera's ray origin (3,), ray directions (H*W, 3, row-major) and what each ray hits."""
        cam_dirs = _camera_rays(width, height, float(fov))  # (N, 3), z = 1
        rotation = pose[:3, :3].astype(np.float32)
        with np.errstate(over="ignore"):  # an absurd coordinate becomes inf: the camera sees nothing
            origin = pose[:3, 3].astype(np.float32)
        dirs = cam_dirs @ rotation.T
        keep = np.intersect1d(self._visible_boxes(pose, width, height, fov), self._shown, assume_unique=True)
        return origin, dirs, self.surface(origin, dirs, keep)

    def object_index(self, pose: np.ndarray, width: int, height: int, fov: float) -> np.ndarray:
        """(H, W) index of the box each pixel sees (-1: the sky), as `render`'s `object_index`,
        without shading."""
        return self.view(pose, width, height, fov)[2].box.reshape(height, width)

    def render(self, pose: np.ndarray, width: int, height: int, fov: float, depth_fp16: bool = True) -> Frame:
        """Render from an internal camera-to-world pose (4x4, metres, OpenCV axes)."""
        scene = self.scene
        origin, dirs, hits = self.view(pose, width, height, fov)
        # a camera that sees no box (far outside the scene, or at an absurd coordinate) sees the sky
        box = hits.box
        hit = box >= 0

        rgb = np.empty((len(dirs), 3), dtype=np.float32)
        if hit.any():
            rgb[hit] = self._shade(origin + hits.t[hit, None] * dirs[hit], box[hit], hits.normal[hit],
                                   hits.texture[hit], hits.axis[hit])
        if (~hit).any():
            rgb[~hit] = self._background(dirs[~hit])
        lit = (np.clip(rgb, 0.0, 1.0) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8).reshape(height, width, 3)

        depth = np.where(hit, hits.t * 100.0, FAR_DEPTH_CM).astype(np.float32)
        if depth_fp16:
            depth = depth.astype(np.float16).astype(np.float32)
        colors = np.concatenate([scene.mask_colors, np.zeros((1, 3), np.uint8)])
        mask = colors[box].reshape(height, width, 3)
        normal = np.where(hit[:, None], hits.normal, np.float32(0)).astype(np.float32).reshape(height, width, 3)
        return Frame(lit=lit, depth=depth.reshape(height, width), mask=mask, object_index=box.reshape(height, width),
                     normal=normal)

    def _visible_boxes(self, pose: np.ndarray, width: int, height: int, fov: float) -> np.ndarray:
        """Indices of boxes that may intersect the view frustum (conservative)."""
        k = fov_to_intrinsics(fov, width, height)
        cam = (self._corners - pose[:3, 3]) @ pose[:3, :3]  # (B, 8, 3) in camera axes
        z = cam[..., 2]
        front = z > 1e-3
        all_front = front.all(axis=1)
        safe_z = np.where(front, z, 1.0)
        x, y = cam[..., 0] / safe_z, cam[..., 1] / safe_z
        half_x, half_y = (width / 2) / k[0, 0], (height / 2) / k[1, 1]
        outside = (
            (x.max(axis=1) < -half_x) | (x.min(axis=1) > half_x) | (y.max(axis=1) < -half_y) | (y.min(axis=1) > half_y)
        )
        return np.flatnonzero(front.any(axis=1) & ~(all_front & outside))

    def _shade(self, points: np.ndarray, box: np.ndarray, normal: np.ndarray, texture: np.ndarray,
               axis: np.ndarray) -> np.ndarray:
        scene = self.scene
        # Face coordinates: the two axes of the box's texture frame in the face's plane.
        u = np.where(axis == 0, texture[:, 1], texture[:, 0])
        v = np.where(axis == 2, texture[:, 1], texture[:, 2])
        albedo = scene.tint[box] * shade_material(scene.material[box], u, v, scene.surface_seed[box])
        light = scene.light
        if light.direction is not None:
            to_light = -np.asarray(light.direction, np.float32)[None]
            falloff = np.float32(1.0)
        else:
            offset = np.asarray(light.position, np.float32) - points
            distance = np.linalg.norm(offset, axis=1, keepdims=True)
            to_light = offset / distance
            falloff = 6.0 / (3.0 + distance**2)
        lambert = np.maximum((normal * to_light).sum(axis=1, keepdims=True), 0.0) * falloff
        lit_fraction = self._shadow.visibility(points + normal * 0.01)[:, None]
        ambient = scene.ambient * (0.75 + 0.25 * normal[:, 2:3])
        direct = np.asarray(light.color, np.float32) * light.intensity * lambert * lit_fraction
        return albedo * (ambient + direct)

    def _background(self, dirs: np.ndarray) -> np.ndarray:
        if not self.scene.sky:
            return np.zeros((len(dirs), 3), dtype=np.float32)
        unit = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
        up = np.clip(unit[:, 2], -1.0, 1.0)
        horizon, zenith = np.array([0.75, 0.82, 0.9], np.float32), np.array([0.25, 0.45, 0.85], np.float32)
        blend = np.clip(up, 0.0, 1.0)[:, None] ** 0.6
        sky = horizon * (1 - blend) + zenith * blend
        # Clouds on a plane above: visible detail so camera rotation shows in sky-only views.
        scale = 1.0 / np.maximum(up, 0.05)
        cover = sample_clouds(unit[:, 0] * scale * 2.0, unit[:, 1] * scale * 2.0)[:, None] * (up > 0.02)[:, None]
        return sky * (1 - cover) + np.float32(0.95) * cover


@functools.lru_cache(maxsize=32)
def _camera_rays(width: int, height: int, fov: float) -> np.ndarray:
    """(H*W, 3) float32 camera-space rays through pixel centres, z = 1 (row-major)."""
    k = fov_to_intrinsics(fov, width, height)
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], axis=-1)
    rays = rays.reshape(-1, 3).astype(np.float32)
    rays.flags.writeable = False
    return rays


def _box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(B, 3), (B, 3) -> (B, 8, 3) corners."""
    pick = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    stacked = np.stack([lo, hi], axis=1)  # (B, 2, 3)
    return stacked[:, pick, np.arange(3)].astype(np.float64)


class _SunShadow:
    """Orthographic shadow map along the sun direction, covering every box."""

    def __init__(self, renderer: Renderer, direction: np.ndarray, resolution: int):
        scene = renderer.scene
        self.dir = direction / np.linalg.norm(direction)
        helper = np.array([1.0, 0.0, 0.0], np.float32) if abs(self.dir[0]) < 0.9 else np.array([0.0, 1.0, 0.0], np.float32)
        self.a = np.cross(self.dir, helper)
        self.a /= np.linalg.norm(self.a)
        self.b = np.cross(self.dir, self.a)
        corners = _box_corners(scene.box_min, scene.box_max).reshape(-1, 3).astype(np.float32)
        pa, pb, ps = corners @ self.a, corners @ self.b, corners @ self.dir
        self.lo = np.array([pa.min() - 1, pb.min() - 1], np.float32)
        self.texel = float(max(pa.max() - pa.min() + 2, pb.max() - pb.min() + 2) / resolution)
        self.s0 = float(ps.min() - 1)
        self.res = resolution
        ia, ib = np.meshgrid((np.arange(resolution) + 0.5) * self.texel + self.lo[0],
                             (np.arange(resolution) + 0.5) * self.texel + self.lo[1], indexing="ij")
        origins = ia.reshape(-1, 1) * self.a + ib.reshape(-1, 1) * self.b + self.s0 * self.dir
        hits = renderer.surface(origins.astype(np.float32), np.ascontiguousarray(np.broadcast_to(self.dir, origins.shape)))
        self.depth = hits.t.reshape(resolution, resolution)

    def visibility(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) -> (N,) in [0, 1]: fraction of a 2x2 neighbourhood that sees the sun."""
        fa = (points @ self.a - self.lo[0]) / self.texel - 0.5
        fb = (points @ self.b - self.lo[1]) / self.texel - 0.5
        s = points @ self.dir - self.s0
        bias = 1.5 * self.texel + 0.02
        ia, ib = np.floor(fa).astype(np.int64), np.floor(fb).astype(np.int64)
        wa, wb = fa - ia, fb - ib
        total = np.zeros(len(points), dtype=np.float32)
        for da, db, w in ((0, 0, (1 - wa) * (1 - wb)), (1, 0, wa * (1 - wb)), (0, 1, (1 - wa) * wb), (1, 1, wa * wb)):
            x, y = np.clip(ia + da, 0, self.res - 1), np.clip(ib + db, 0, self.res - 1)
            total += w * (s <= self.depth[x, y] + bias)
        return total


class _PointShadow:
    """Cube shadow map around a point light: distance to the nearest surface per direction."""

    def __init__(self, renderer: Renderer, position: np.ndarray, resolution: int):
        self.pos, self.res = position, resolution
        grid = (np.arange(resolution) + 0.5) / resolution * 2 - 1
        a, b = np.meshgrid(grid, grid, indexing="ij")  # a -> column index, b -> row index
        maps = []
        for axis in range(3):
            i, j = [k for k in range(3) if k != axis]
            for s in (-1.0, 1.0):
                grid_dirs = np.zeros((resolution, resolution, 3), np.float32)
                grid_dirs[..., axis], grid_dirs[..., i], grid_dirs[..., j] = s, a, b
                dirs = grid_dirs.reshape(-1, 3)
                dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
                maps.append(renderer.surface(position, dirs).t.reshape(resolution, resolution))
        self.maps = np.stack(maps)  # (6, R, R), face = 2 * axis + (sign > 0)

    def visibility(self, points: np.ndarray) -> np.ndarray:
        v = points - self.pos
        distance = np.linalg.norm(v, axis=1)
        axis = np.abs(v).argmax(axis=1)
        major = np.take_along_axis(v, axis[:, None], axis=1)[:, 0]
        others = np.array([[1, 2], [0, 2], [0, 1]])[axis]
        a = np.take_along_axis(v, others[:, :1], axis=1)[:, 0] / np.abs(major)
        b = np.take_along_axis(v, others[:, 1:], axis=1)[:, 0] / np.abs(major)
        col = np.clip(((a + 1) / 2 * self.res).astype(np.int64), 0, self.res - 1)
        row = np.clip(((b + 1) / 2 * self.res).astype(np.int64), 0, self.res - 1)
        face = 2 * axis + (major > 0)
        bias = 0.05 + distance * 4.0 / self.res
        return (distance <= self.maps[face, col, row] + bias).astype(np.float32)
