"""Procedural surface textures in world space: value noise and patterned materials. Pure numpy.

Each material maps face coordinates (u, v) in metres to an RGB albedo multiplier, with enough
mid-frequency detail that camera motion is visible at 128x72. The patterns are baked once into
tiles of TEXELS x TEXELS covering PERIOD_M metres (1.6 cm texels: about one pixel at 1 m at 128x72)
and sampled per pixel, as an engine samples textures; a per-object offset keeps equal materials
from lining up.
"""

from __future__ import annotations

import enum
import functools

import numpy as np


class Material(enum.IntEnum):
    PLASTER = 0
    BRICK = 1
    WOOD = 2
    TILES = 3
    CONCRETE = 4
    ASPHALT = 5
    GRASS = 6
    METAL = 7
    PAINT = 8


def _hash2(i: np.ndarray, j: np.ndarray, seed: float) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer lattice point."""
    x = np.sin(i * 127.1 + j * 311.7 + seed * 74.7) * 43758.5453
    return x - np.floor(x)


def value_noise(u: np.ndarray, v: np.ndarray, seed: float = 0.0) -> np.ndarray:
    """Smooth value noise in [0, 1], one feature per unit."""
    i, j = np.floor(u), np.floor(v)
    fu, fv = u - i, v - j
    fu, fv = fu * fu * (3 - 2 * fu), fv * fv * (3 - 2 * fv)
    a, b = _hash2(i, j, seed), _hash2(i + 1, j, seed)
    c, d = _hash2(i, j + 1, seed), _hash2(i + 1, j + 1, seed)
    return (a + (b - a) * fu) * (1 - fv) + (c + (d - c) * fu) * fv


def fbm(u: np.ndarray, v: np.ndarray, octaves: int = 3, seed: float = 0.0) -> np.ndarray:
    """Fractal noise in [0, 1]: octaves of value noise, each twice the frequency, half the weight."""
    total, weight, norm = np.zeros_like(u), 1.0, 0.0
    for k in range(octaves):
        total += weight * value_noise(u * 2**k, v * 2**k, seed + 13.0 * k)
        norm += weight
        weight *= 0.5
    return total / norm


PERIOD_M = 4.0
TEXELS = 256


@functools.lru_cache(maxsize=1)
def material_tiles() -> np.ndarray:
    """(len(Material), TEXELS, TEXELS, 3) float32 baked patterns; row = v, column = u."""
    coords = (np.arange(TEXELS) + 0.5) * (PERIOD_M / TEXELS)
    u, v = np.meshgrid(coords, coords)
    u, v = u.ravel(), v.ravel()
    tiles = [_PATTERNS[m](u, v, np.zeros_like(u)).reshape(TEXELS, TEXELS, 3) for m in Material]
    out = np.stack(tiles).astype(np.float32)
    out.flags.writeable = False
    return out


def shade_material(material: np.ndarray, u: np.ndarray, v: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """(N,) material ids, face coordinates (metres) and per-object seeds -> (N, 3) albedo multipliers."""
    scale = TEXELS / PERIOD_M
    iu = np.floor((u + seed * 1.37) * scale).astype(np.int64) % TEXELS
    iv = np.floor((v + seed * 2.11) * scale).astype(np.int64) % TEXELS
    return material_tiles()[material, iv, iu]


@functools.lru_cache(maxsize=1)
def cloud_tile() -> np.ndarray:
    """(TEXELS, TEXELS) float32 cloud cover in [0, 1], periodic over 8 units of the cloud plane."""
    coords = (np.arange(TEXELS) + 0.5) * (8.0 / TEXELS)
    u, v = np.meshgrid(coords, coords)
    noise = fbm(u.ravel() + 3.1, v.ravel(), 4, 1.0).reshape(TEXELS, TEXELS)
    out = np.clip((noise - 0.45) * 2.5, 0.0, 1.0).astype(np.float32)
    out.flags.writeable = False
    return out


def sample_clouds(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cloud cover at cloud-plane coordinates (x, y)."""
    scale = TEXELS / 8.0
    ix = np.floor(x * scale).astype(np.int64) % TEXELS
    iy = np.floor(y * scale).astype(np.int64) % TEXELS
    return cloud_tile()[iy, ix]


def _gray(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[:, None], 3, axis=1)


def _plaster(u, v, s):
    return _gray(0.82 + 0.18 * fbm(u * 3, v * 3, 3, s))


def _brick(u, v, s):
    row = np.floor(v / 0.09)
    shifted = u + 0.12 * (row % 2)
    col = np.floor(shifted / 0.24)
    mortar = (v / 0.09 - row < 0.14) | (shifted / 0.24 - col < 0.06)
    tone = 0.65 + 0.35 * _hash2(col, row, s)
    rgb = np.stack([tone, tone * 0.82, tone * 0.72], axis=1) * (0.85 + 0.15 * value_noise(u * 40, v * 40, s))[:, None]
    return np.where(mortar[:, None], 0.45, rgb)


def _wood(u, v, s):
    grain = 0.5 + 0.5 * np.sin(u * 60 + 8 * fbm(u * 2, v * 8, 2, s))
    plank = np.floor(v / 0.18)
    tone = 0.7 + 0.3 * _hash2(plank, plank * 0.0, s)
    seam = (v / 0.18 - plank) < 0.05
    x = tone * (0.75 + 0.25 * grain) * np.where(seam, 0.55, 1.0)
    return np.stack([x, x * 0.78, x * 0.55], axis=1)


def _tiles(u, v, s):
    iu, iv = np.floor(u / 0.5), np.floor(v / 0.5)
    grout = ((u / 0.5 - iu) < 0.04) | ((v / 0.5 - iv) < 0.04)
    checker = ((iu + iv) % 2) * 0.35 + 0.6
    x = np.where(grout, 0.3, checker * (0.9 + 0.1 * value_noise(u * 10, v * 10, s)))
    return _gray(x)


def _concrete(u, v, s):
    x = 0.55 + 0.35 * fbm(u * 2, v * 2, 4, s)
    cracks = np.abs(value_noise(u * 0.7, v * 0.7, s + 5) - 0.5) < 0.01
    return _gray(np.where(cracks, x * 0.6, x))


def _asphalt(u, v, s):
    x = 0.25 + 0.2 * fbm(u * 6, v * 6, 3, s)
    lane = (np.abs(np.mod(v, 7.0) - 3.5) < 0.08) & (np.mod(u, 3.0) < 1.8)
    return np.where(lane[:, None], 0.95, _gray(x))


def _grass(u, v, s):
    n = fbm(u * 5, v * 5, 3, s)
    blades = value_noise(u * 50, v * 50, s + 3)
    return np.stack([0.25 + 0.2 * n, 0.45 + 0.35 * n * (0.7 + 0.3 * blades), 0.15 + 0.1 * n], axis=1)


def _metal(u, v, s):
    brushed = 0.75 + 0.15 * value_noise(u * 2, v * 80, s) + 0.1 * np.sin(v * 25)
    rivet = ((np.mod(u, 0.4) - 0.2) ** 2 + (np.mod(v, 0.4) - 0.2) ** 2) < 0.0009
    return _gray(np.where(rivet, 0.4, brushed))


def _paint(u, v, s):
    stripe = (np.floor(u / 0.3) % 2) * 0.2 + 0.8
    return _gray(stripe * (0.9 + 0.1 * fbm(u * 4, v * 4, 2, s)))


_PATTERNS = {
    Material.PLASTER: _plaster,
    Material.BRICK: _brick,
    Material.WOOD: _wood,
    Material.TILES: _tiles,
    Material.CONCRETE: _concrete,
    Material.ASPHALT: _asphalt,
    Material.GRASS: _grass,
    Material.METAL: _metal,
    Material.PAINT: _paint,
}
