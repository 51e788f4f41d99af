"""Procedural surface colour of synthetic scenes: named palettes, textures and shading.

Colour is a pure function of a surface point (its primitive's local coordinates and normal), so
the sampled point cloud and the rendered images agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEXTURES = ("plain", "wood", "planks", "fabric", "tile", "speckle", "stripes", "folds",
            "picture", "glass", "books", "panel", "metal")  # see _TEXTURE_FNS

# Named colour palettes (RGB in [0, 1]); a class draws from one or several, so colours overlap
# between classes (wood tables, desks, doors and cabinets; fabric beds, sofas and curtains).
PALETTES: dict[str, tuple[tuple[str, tuple[float, float, float]], ...]] = {
    "wood": (("light wood", (0.78, 0.62, 0.43)), ("oak", (0.66, 0.48, 0.30)),
             ("walnut", (0.45, 0.30, 0.19)), ("dark wood", (0.30, 0.20, 0.13)),
             ("pine", (0.85, 0.72, 0.52))),
    "painted": (("white", (0.90, 0.90, 0.88)), ("grey", (0.58, 0.59, 0.60)),
                ("black", (0.14, 0.14, 0.15)), ("cream", (0.90, 0.86, 0.74)),
                ("blue", (0.30, 0.42, 0.62)), ("green", (0.40, 0.52, 0.40))),
    "fabric": (("grey", (0.50, 0.51, 0.53)), ("blue", (0.22, 0.33, 0.58)),
               ("red", (0.62, 0.18, 0.17)), ("beige", (0.80, 0.72, 0.58)),
               ("green", (0.30, 0.48, 0.32)), ("brown", (0.45, 0.31, 0.22)),
               ("black", (0.13, 0.13, 0.14)), ("white", (0.88, 0.88, 0.86)),
               ("yellow", (0.85, 0.72, 0.30)), ("purple", (0.42, 0.30, 0.52))),
    "bedding": (("white", (0.92, 0.92, 0.90)), ("light blue", (0.66, 0.76, 0.88)),
                ("beige", (0.84, 0.78, 0.66)), ("grey", (0.62, 0.63, 0.65)),
                ("pink", (0.88, 0.66, 0.70)), ("green", (0.55, 0.70, 0.55))),
    "wall": (("white", (0.90, 0.89, 0.86)), ("off-white", (0.86, 0.84, 0.78)),
             ("light grey", (0.76, 0.77, 0.77)), ("pale yellow", (0.90, 0.86, 0.68)),
             ("pale blue", (0.74, 0.80, 0.86)), ("pale green", (0.76, 0.84, 0.74)),
             ("beige", (0.84, 0.78, 0.68))),
    "floor_wood": (("light wood", (0.72, 0.56, 0.38)), ("oak", (0.60, 0.43, 0.27)),
                   ("dark wood", (0.36, 0.24, 0.15))),
    "carpet": (("grey", (0.46, 0.46, 0.47)), ("beige", (0.70, 0.63, 0.52)),
               ("blue", (0.28, 0.34, 0.48)), ("brown", (0.42, 0.33, 0.26))),
    "tile": (("white", (0.88, 0.88, 0.87)), ("grey", (0.55, 0.56, 0.57)),
             ("beige", (0.80, 0.74, 0.64)), ("light blue", (0.68, 0.78, 0.84)),
             ("terracotta", (0.70, 0.42, 0.30))),
    "ceramic": (("white", (0.94, 0.94, 0.93)), ("ivory", (0.92, 0.89, 0.80)),
                ("light grey", (0.82, 0.83, 0.84))),
    "metal": (("stainless steel", (0.70, 0.71, 0.72)), ("white", (0.92, 0.92, 0.91)),
              ("black", (0.12, 0.12, 0.13)), ("silver", (0.78, 0.79, 0.80))),
    "stone": (("granite", (0.35, 0.33, 0.32)), ("white marble", (0.88, 0.87, 0.85)),
              ("black", (0.12, 0.12, 0.12)), ("beige stone", (0.76, 0.70, 0.60)),
              ("wood", (0.62, 0.46, 0.30))),
    "glass": (("sky blue", (0.72, 0.84, 0.95)), ("bright", (0.90, 0.93, 0.96)),
              ("blue grey", (0.60, 0.70, 0.78))),
    "plastic": (("white", (0.90, 0.90, 0.90)), ("black", (0.12, 0.12, 0.13)),
                ("red", (0.75, 0.18, 0.16)), ("blue", (0.20, 0.38, 0.72)),
                ("green", (0.25, 0.58, 0.30)), ("yellow", (0.90, 0.78, 0.20)),
                ("orange", (0.92, 0.52, 0.16)), ("grey", (0.50, 0.50, 0.52))),
    "plant": (("green", (0.22, 0.45, 0.18)), ("dark green", (0.14, 0.32, 0.14)),
              ("olive", (0.40, 0.48, 0.20))),
    "ceiling": (("white", (0.93, 0.93, 0.92)),),
}


@dataclass
class Material:
    """The colour recipe of one primitive.

    Attributes:
        base: (3,) base RGB in [0, 1].
        second: (3,) secondary RGB (grout, frame, stripe colour).
        texture: one of ``TEXTURES``.
        params: (8,) numbers in [0, 1) that vary the texture (frequencies, phases, seeds).
        color_name: the palette name of ``base`` (used by captions).
    """

    base: np.ndarray
    second: np.ndarray
    texture: str
    params: np.ndarray
    color_name: str


@dataclass
class Light:
    """Room lighting: a point light near the ceiling plus ambient light.

    Attributes:
        position: (3,) light position in world metres.
        color: (3,) light tint multiplying the albedo.
        ambient: ambient term.
        strength: diffuse strength of the point light.
    """

    position: np.ndarray
    color: np.ndarray
    ambient: float
    strength: float


def make_material(rng: np.random.Generator, palette: str, texture: str, *, jitter: float = 0.05,
                  second: tuple[float, float, float] | None = None) -> Material:
    """Draw a material: a palette colour with per-object jitter, and random texture parameters."""
    if texture not in TEXTURES:
        raise ValueError(f"unknown texture {texture!r}; choose one of {TEXTURES}")
    name, rgb = PALETTES[palette][int(rng.integers(len(PALETTES[palette])))]
    base = np.clip(np.asarray(rgb) * (1.0 + rng.normal(0.0, jitter, 3))
                   + rng.normal(0.0, jitter / 2), 0.02, 1.0)
    if second is None:
        second = np.clip(base * rng.uniform(0.45, 0.75), 0.0, 1.0)
    return Material(base=base, second=np.asarray(second, dtype=np.float64), texture=texture,
                    params=rng.random(8), color_name=name)


def hash01(*ints: np.ndarray, seed: float = 0.0) -> np.ndarray:
    """A cheap deterministic hash of integer lattice coordinates to [0, 1)."""
    acc = seed * 17.31 + 0.5
    for k, i in zip((127.1, 311.7, 74.7), ints):
        acc = acc + np.asarray(i, dtype=np.float64) * k
    return np.modf(np.abs(np.sin(acc) * 43758.5453))[0]


def _smooth(q: np.ndarray, p: np.ndarray, scale: float) -> np.ndarray:
    """Low-frequency variation in [-1, 1] from two random plane waves."""
    a = np.sin(2 * np.pi * (q @ (np.array([p[0], p[1], p[2]]) - 0.5) * scale) + 6.28 * p[3])
    b = np.sin(2 * np.pi * (q @ (np.array([p[4], p[5], p[6]]) - 0.5) * scale * 1.7) + 6.28 * p[7])
    return 0.5 * (a + b)


def _border(q: np.ndarray, half: np.ndarray, width: float) -> np.ndarray:
    """True where a point is within ``width`` of the x/z outline of a thin (y-normal) box."""
    return (np.abs(q[:, 0]) > half[0] - width) | (np.abs(q[:, 2]) > half[2] - width)


def _picture(q: np.ndarray, half: np.ndarray, m: Material) -> np.ndarray:
    """A smooth random 'image': a blend of coloured blobs, inside a frame of ``m.second``."""
    out = np.tile(m.base, (len(q), 1)) * 0.6
    for k in range(4):
        cx = (hash01(k, 1, seed=m.params[0]) - 0.5) * 2 * half[0]
        cz = (hash01(k, 2, seed=m.params[0]) - 0.5) * 2 * half[2]
        col = np.array([hash01(k, c + 3, seed=m.params[1]) for c in range(3)])
        rad = (0.3 + 0.5 * hash01(k, 7, seed=m.params[2])) * max(half[0], half[2])
        w = np.exp(-((q[:, 0] - cx) ** 2 + (q[:, 2] - cz) ** 2) / (2 * rad**2))
        out = out * (1 - w[:, None]) + col[None] * w[:, None]
    out[_border(q, half, 0.035)] = m.second
    return out


def _lattice_variation(q: np.ndarray, cell: float, seed: float) -> np.ndarray:
    idx = np.floor(q / cell).astype(np.int64)
    return hash01(idx[:, 0], idx[:, 1], idx[:, 2], seed=seed)


def _plain(m, base, q, half):
    return base * (1 + 0.04 * _smooth(q, m.params, 1.5))[:, None]


def _wood(m, base, q, half):
    p = m.params
    g = np.sin(2 * np.pi * (q[:, 1] + q[:, 2]) * (8 + 10 * p[0])
               + 2.5 * np.sin(2 * np.pi * q[:, 0] * (1.5 + p[1])))
    return base * (1 + 0.045 * g + 0.03 * _smooth(q, p, 2.0))[:, None]


def _planks(m, base, q, half):
    p = m.params
    width = 0.12 + 0.08 * p[0]
    row = np.floor(q[:, 1] / width)
    col = np.floor((q[:, 0] + hash01(row, seed=p[1]) * 1.5) / 1.2)
    var = 0.85 + 0.3 * hash01(row, col, seed=p[2])
    gap = np.abs(q[:, 1] / width - np.round(q[:, 1] / width)) * width < 0.004
    grain = 1 + 0.05 * np.sin(2 * np.pi * q[:, 1] * 40 + 3 * np.sin(q[:, 0] * 5))
    return base * (var * grain * np.where(gap, 0.6, 1.0))[:, None]


def _fabric(m, base, q, half):
    weave = np.sin(2 * np.pi * 45 * (q[:, 0] + q[:, 2])) * np.sin(2 * np.pi * 45 * q[:, 1])
    return base * (1 + 0.05 * weave + 0.06 * _smooth(q, m.params, 1.0))[:, None]


def _tile(m, base, q, half):
    size = 0.15 + 0.25 * m.params[0]
    frac = np.abs(q / size - np.round(q / size)) * size
    grout = np.sort(frac, axis=1)[:, 1] < 0.004  # near a grid line within the face plane
    var = 0.93 + 0.14 * _lattice_variation(q, size, m.params[1])
    return np.where(grout[:, None], m.second, base * var[:, None])


def _speckle(m, base, q, half):
    v = _lattice_variation(q, 0.008, m.params[0]) - 0.5
    return np.clip(base + 0.18 * v[:, None] + 0.04 * _smooth(q, m.params, 3.0)[:, None], 0, 1)


def _stripes(m, base, q, half):
    on = (np.floor(q[:, 0] / (0.06 + 0.2 * m.params[0])) % 2).astype(bool)
    return np.where(on[:, None], m.second, base)


def _folds(m, base, q, half):
    period = 0.08 + 0.08 * m.params[0]
    return base * (0.78 + 0.22 * (0.5 + 0.5 * np.sin(2 * np.pi * q[:, 0] / period)))[:, None]


def _glass(m, base, q, half):
    sky = base * (0.85 + 0.25 * (q[:, 2] / max(half[2], 1e-3) + 1) / 2)[:, None]
    return np.where(_border(q, half, 0.05)[:, None], m.second, np.clip(sky, 0, 1))


def _books(m, base, q, half):
    band = np.floor(q[:, 0] / (0.02 + 0.025 * m.params[0]))
    return 0.15 + 0.7 * np.stack([hash01(band, c, seed=m.params[1]) for c in range(3)], axis=1)


def _panel(m, base, q, half):
    inset = 0.06 + 0.06 * m.params[0]
    dx, dz = half[0] - np.abs(q[:, 0]), half[2] - np.abs(q[:, 2])
    line = np.abs(np.minimum(dx, dz) - inset) < 0.008
    return base * np.where(line, 0.75, 1.0)[:, None]


def _metal(m, base, q, half):
    return np.clip(base * (0.92 + 0.12 * np.sin(q[:, 2] * 4 + 6.28 * m.params[0]))[:, None], 0, 1)


_TEXTURE_FNS = {"plain": _plain, "wood": _wood, "planks": _planks, "fabric": _fabric,
                "tile": _tile, "speckle": _speckle, "stripes": _stripes, "folds": _folds,
                "picture": lambda m, base, q, half: _picture(q, half, m), "glass": _glass,
                "books": _books, "panel": _panel, "metal": _metal}


def albedo(m: Material, q: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Surface albedo at local coordinates ``q`` of a primitive with half extents ``half``.

    Args:
        m: the primitive's material.
        q: (M, 3) points in the primitive's local frame (metres, origin at its centre).
        half: (3,) half extents of the primitive.

    Returns:
        (M, 3) RGB in [0, 1] (before shading).
    """
    return _TEXTURE_FNS[m.texture](m, np.tile(m.base, (len(q), 1)), q, half)


def shade(points: np.ndarray, normals: np.ndarray, light: Light) -> np.ndarray:
    """Lambertian shading factor with ambient light, as a per-point RGB multiplier.

    Args:
        points: (M, 3) world points.
        normals: (M, 3) unit outward normals.
        light: the room light.

    Returns:
        (M, 3) multiplier for the albedo.
    """
    to_light = light.position[None] - points
    dist2 = np.einsum("ij,ij->i", to_light, to_light)
    cos = np.einsum("ij,ij->i", normals, to_light) / np.sqrt(np.maximum(dist2, 1e-9))
    lum = light.ambient + light.strength * np.clip(cos, 0.0, 1.0) / (1.0 + 0.06 * dist2)
    return lum[:, None] * light.color[None]
