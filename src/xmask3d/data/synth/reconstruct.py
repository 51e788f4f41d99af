"""A synthetic scan made the way a real one is: depth frames from a walk through the room, fused.

Surface sampling (``scan.sample_surface``) puts points on every face of every solid: the whole
ceiling, the undersides of tables and beds, the tops of tall cabinets, the backs of sofas. A
reconstruction from a handheld RGB-D sensor (ScanNet's ``vh_clean_2`` meshes, BundleFusion /
VoxelHashing TSDF fusion) holds only what the camera saw: the ceiling is mostly missing, surfaces
far from the camera path are sparse or absent, undersides and occluded sides leave holes, and the
depth error grows with distance. This module renders ``n_views`` depth frames along the
synthetic camera loop (at a low resolution), back-projects every pixel with depth noise, and fuses
the points in a voxel grid (mean position and colour, majority label), as TSDF fusion averages
repeated observations of a surface.

Depth noise: the axial noise model of a structured-light sensor (Nguyen, Izadi and Lovell,
"Modeling Kinect Sensor Noise for Improved 3D Reconstruction and Tracking", 3DIMPVT 2012),
sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2 metres, applied along each pixel's ray and scaled by
``depth_noise``. Written fresh for this project.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmask3d.data.sens import scale_intrinsics
from xmask3d.data.synth.camera import camera_path
from xmask3d.data.synth.layout import Room
from xmask3d.data.synth.render import camera_dirs, raycast, surface_colors, surface_normals


@dataclass(frozen=True)
class ScanSettings:
    """How the reconstruction is made.

    Attributes:
        views: depth frames along the camera loop (0: sample the surfaces instead).
        hw: (height, width) of the depth frames.
        max_depth: pixels farther than this (metres) are dropped, as fusion truncates range.
        depth_noise: scale of the distance-dependent axial depth noise (1 = the sensor model).
        fuse_voxel: edge of the fusion voxel (metres); one point per occupied voxel.
    """

    views: int = 0
    hw: tuple[int, int] = (120, 160)
    max_depth: float = 4.0
    depth_noise: float = 1.0
    fuse_voxel: float = 0.045


def axial_sigma(depth: np.ndarray) -> np.ndarray:
    """Standard deviation (metres) of the sensor's depth error at ``depth`` metres."""
    return 0.0012 + 0.0019 * (depth - 0.4) ** 2


def reconstruct(room: Room, settings: ScanSettings, K: np.ndarray, K_hw: tuple[int, int],
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fused points of ``settings.views`` noisy depth frames of ``room``.

    Args:
        room: the scene.
        settings: see :class:`ScanSettings` (``views`` >= 1).
        K: (3, 3) intrinsics of the camera at resolution ``K_hw``; scaled to ``settings.hw``.
        K_hw: (height, width) that ``K`` belongs to.
        rng: draws the camera loop and the depth noise.

    Returns:
        points (N, 3) float64 fused positions, colours (N, 3) float64 in [0, 1] (the
        renderer's shaded surface colour, averaged) and (N,) int64 primitive index (the
        majority of the voxel's observations).
    """
    if settings.views < 1:
        raise ValueError(f"reconstruct needs at least one view, got {settings.views}")
    Ks = scale_intrinsics(K, K_hw[::-1], settings.hw[::-1])
    dirs_cam = camera_dirs(Ks, settings.hw)
    pts, cols, prims = [], [], []
    for pose in camera_path(room, settings.views, rng):
        depth, prim = raycast(room.primitives, pose, Ks, settings.hw)
        hit = (prim >= 0) & (depth <= settings.max_depth)
        if not hit.any():
            continue
        d = depth[hit]
        rays = dirs_cam[hit] @ np.ascontiguousarray(pose[:3, :3].T)
        clean = pose[:3, 3] + rays * d[:, None]
        p = prim[hit].astype(np.int64)
        normals = surface_normals(room.primitives, p, clean)
        cols.append(surface_colors(room.primitives, p, clean, normals, room.light))
        noisy = d + rng.normal(0.0, 1.0, d.shape) * settings.depth_noise * axial_sigma(d)
        pts.append(pose[:3, 3] + rays * noisy[:, None])
        prims.append(p)
    if not pts:
        raise ValueError("no depth frame of the camera loop sees any surface")
    return fuse(np.concatenate(pts), np.concatenate(cols), np.concatenate(prims),
                settings.fuse_voxel)


def fuse(points: np.ndarray, colors: np.ndarray, prim: np.ndarray,
         voxel: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One point per occupied voxel: mean position, mean colour, most frequent primitive.

    Ties between primitives go to the smaller index, so the result does not depend on the
    order of the observations.
    """
    keys = np.floor(points / voxel).astype(np.int64)
    _, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inv = inv.reshape(-1)
    n = len(counts)
    mean_p = np.stack([np.bincount(inv, points[:, k], n) for k in range(3)], 1) / counts[:, None]
    mean_c = np.stack([np.bincount(inv, colors[:, k], n) for k in range(3)], 1) / counts[:, None]
    # majority primitive per voxel: count (voxel, primitive) pairs, keep the largest count
    n_prim = int(prim.max()) + 1
    upair, pair_count = np.unique(inv * n_prim + prim, return_counts=True)
    vox_of_pair, prim_of_pair = np.divmod(upair, n_prim)
    order = np.lexsort((prim_of_pair, -pair_count, vox_of_pair))  # per voxel: most, then smallest
    first = np.ones(len(order), dtype=bool)
    first[1:] = vox_of_pair[order][1:] != vox_of_pair[order][:-1]
    major = np.empty(n, dtype=np.int64)
    major[vox_of_pair[order][first]] = prim_of_pair[order][first]
    return mean_p, mean_c, major
