"""Exact rendering of synthetic rooms: camera path at eye height and per-pixel ray casting.

Every pixel ray is intersected analytically with the primitives (vectorised over the pixels of
each primitive's screen-space bounding box), which gives depth, the visible primitive, its normal
and hence colour, label and instance. Poses are camera-to-world in the OpenCV convention
(x right, y down, z forward), world z up, as in ScanNet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmask3d.data.synth.layout import Room
from xmask3d.data.synth.materials import Light, albedo, shade
from xmask3d.data.synth.primitives import Primitive

NEAR = 0.02  # metres; primitives entirely closer than this are not drawn


@dataclass
class RenderedView:
    """Buffers of one rendered view.

    Attributes:
        color: (H, W, 3) uint8 RGB with exposure, vignetting and sensor noise.
        depth: (H, W) float32 metres (z along the optical axis), 0 where nothing was hit.
        prim: (H, W) int32 index of the visible primitive, -1 where nothing was hit.
    """

    color: np.ndarray
    depth: np.ndarray
    prim: np.ndarray


def camera_dirs(K: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) camera-frame ray directions through pixel centres, with unit z component."""
    h, w = hw
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    return np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)


_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def _screen_box(p: Primitive, pose: np.ndarray, K: np.ndarray,
                hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Pixel rows/cols (v0, v1, u0, u1) that can see ``p``; ``None`` if it is behind the camera.

    The primitive's bounding box is clipped against the near plane (its 12 edges), so a wall
    that passes behind the camera only claims the part of the image it can cover.
    """
    cam = (p.corners() - pose[:3, 3]) @ pose[:3, :3]
    z = cam[:, 2]
    if z.max() < NEAR:
        return None
    pts = [cam[z >= NEAR]]
    for i, j in _EDGES:
        if (z[i] < NEAR) != (z[j] < NEAR):
            f = (NEAR - z[i]) / (z[j] - z[i])
            pts.append((cam[i] + f * (cam[j] - cam[i]))[None])
    cam = np.concatenate(pts)
    h, w = hw
    u = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]
    v = K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
    u0, u1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 2, w)
    v0, v1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 2, h)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def raycast(prims: list[Primitive], pose: np.ndarray, K: np.ndarray,
            hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest primitive hit for every pixel.

    Args:
        prims: the scene's primitives.
        pose: (4, 4) camera-to-world matrix (OpenCV camera).
        K: (3, 3) intrinsics.
        hw: image (height, width).

    Returns:
        depth: (H, W) float64 z-depth in metres (``inf`` where nothing is hit).
        prim: (H, W) int32 primitive index (-1 where nothing is hit).
    """
    # world ray directions with unit camera z, so that the ray parameter is the depth
    rot_t = np.ascontiguousarray(pose[:3, :3].T)  # contiguous: keeps matmul on the BLAS path
    dirs = np.moveaxis(camera_dirs(K, hw) @ rot_t, -1, 0).copy()  # (3, H, W)
    origin = pose[:3, 3]
    depth = np.full(hw, np.inf)
    prim = np.full(hw, -1, dtype=np.int32)
    for i, p in enumerate(prims):
        box = _screen_box(p, pose, K, hw)
        if box is None:
            continue
        v0, v1, u0, u1 = box
        t = p.intersect(origin, dirs[:, v0:v1, u0:u1].reshape(3, -1)).reshape(v1 - v0, u1 - u0)
        closer = t < depth[v0:v1, u0:u1]
        if closer.any():
            depth[v0:v1, u0:u1][closer] = t[closer]
            prim[v0:v1, u0:u1][closer] = i
    return depth, prim


def surface_normals(prims: list[Primitive], prim_idx: np.ndarray,
                    points: np.ndarray) -> np.ndarray:
    """(M, 3) world normals of surface points lying on ``prims[prim_idx]``."""
    out = np.zeros_like(points)
    for i, sel in _groups(prim_idx, len(prims)):
        out[sel] = prims[i].normal_at(points[sel])
    return out


def _groups(prim_idx: np.ndarray, n: int):
    """Yield (primitive index, indices of its entries) for the non-empty groups."""
    order = np.argsort(prim_idx, kind="stable")
    bounds = np.searchsorted(prim_idx[order], np.arange(n + 1))
    for i in range(n):
        if bounds[i + 1] > bounds[i]:
            yield i, order[bounds[i]:bounds[i + 1]]


def surface_colors(prims: list[Primitive], prim_idx: np.ndarray, points: np.ndarray,
                   normals: np.ndarray, light: Light) -> np.ndarray:
    """Shaded colour of surface points (shared by the point cloud and the images).

    Args:
        prims: the scene's primitives.
        prim_idx: (M,) index of the primitive each point lies on.
        points: (M, 3) world points on the surfaces (noise-free).
        normals: (M, 3) world unit normals.
        light: the room light.

    Returns:
        (M, 3) float RGB in [0, 1].
    """
    out = np.zeros((len(points), 3))
    for i, sel in _groups(prim_idx, len(prims)):
        p = prims[i]
        out[sel] = albedo(p.material, p.to_local(points[sel]), p.half)
    return np.clip(out * shade(points, normals, light), 0.0, 1.0)


def render_view(room: Room, pose: np.ndarray, K: np.ndarray, hw: tuple[int, int],
                rng: np.random.Generator, *, noise: float = 0.01) -> RenderedView:
    """Render one RGB-D view of ``room``.

    Args:
        room: the scene.
        pose: (4, 4) camera-to-world pose.
        K: (3, 3) intrinsics at resolution ``hw``.
        hw: (height, width).
        rng: draws the exposure and the sensor noise of this view.
        noise: standard deviation of the per-pixel colour noise (fraction of full scale).
    """
    depth, prim = raycast(room.primitives, pose, K, hw)
    hit = prim >= 0
    dirs = camera_dirs(K, hw)[hit] @ np.ascontiguousarray(pose[:3, :3].T)
    points = pose[:3, 3] + dirs * depth[hit][:, None]
    normals = surface_normals(room.primitives, prim[hit], points)
    rgb = np.zeros((*hw, 3))
    rgb[hit] = surface_colors(room.primitives, prim[hit], points, normals, room.light)
    h, w = hw
    v, u = np.mgrid[0:h, 0:w]
    r2 = ((u - K[0, 2]) / (w / 2)) ** 2 + ((v - K[1, 2]) / (h / 2)) ** 2
    gain = rng.uniform(0.9, 1.1) * (1.0 - 0.12 * r2)
    rgb = rgb * gain[..., None] + rng.normal(0.0, noise, rgb.shape)
    color = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
    return RenderedView(color=color, depth=np.where(hit, depth, 0.0).astype(np.float32),
                        prim=prim)
