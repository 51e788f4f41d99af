"""Deterministic voxelisation of a point set, and the random rigid + scale point augmentation.

Follows the MinkowskiEngine-style ``Voxelizer`` used by OpenScene/XMask3D (method.md §1.9): grid
indices ``floor(xyz / voxel_size)`` shifted to a zero minimum, one voxel per occupied cell whose
features come from its first point. The augmentation (rotation about x, y, z in random order and
an isotropic scale) is applied only when the caller asks for it, never at evaluation (§8.5), and
draws from an explicit ``np.random.Generator``.
"""

from __future__ import annotations

import math

import numpy as np

from xmask3d.errors import DataError

__all__ = ["augment_colors", "augment_points", "random_augmentation_matrix", "voxelize"]


def voxelize(points: np.ndarray, voxel_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantise points to a voxel grid.

    Voxels are ordered by their packed (x, y, z) key, so the result depends only on the input.

    Args:
        points: (N, 3) coordinates in metres, N >= 1.
        voxel_size: voxel edge length in metres (> 0).

    Returns:
        coords: (V, 3) int32 grid indices, shifted so that each axis' minimum is 0.
        point2voxel: (N,) int64 voxel index of every point (``coords[point2voxel]`` = its cell).
        first_point: (V,) int64 lowest index of the points in each voxel (the voxel's colour
            source).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise DataError(None, f"voxelize needs a non-empty (N, 3) array, got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise DataError(None, "voxelize: points contain NaN or infinite values")
    if not voxel_size > 0:
        raise DataError(None, f"voxel_size must be positive, got {voxel_size}")
    grid = np.floor(points / voxel_size).astype(np.int64)
    grid -= grid.min(axis=0)
    extent = grid.max(axis=0) + 1
    if float(np.prod(extent.astype(np.float64))) >= 2.0**62:
        raise DataError(None, f"voxel grid {extent.tolist()} too large for voxel_size {voxel_size}")
    keys = (grid[:, 0] * extent[1] + grid[:, 1]) * extent[2] + grid[:, 2]
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    first_point = order[starts].astype(np.int64)  # stable sort: lowest index of each run
    point2voxel = np.empty(len(points), dtype=np.int64)
    point2voxel[order] = np.cumsum(np.r_[False, sorted_keys[1:] != sorted_keys[:-1]])
    return grid[first_point].astype(np.int32), point2voxel, first_point


def _axis_rotation(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def random_augmentation_matrix(rng: np.random.Generator, *, rotate_z: float = math.pi,
                               rotate_xy: float = math.pi / 64,
                               scale: tuple[float, float] = (0.9, 1.1)) -> np.ndarray:
    """Draw a (3, 3) rotation-times-scale matrix.

    Angles are uniform in ``[-rotate_xy, rotate_xy]`` about x and y and ``[-rotate_z, rotate_z]``
    about z; the three rotations are composed in a random order; the isotropic scale is uniform
    in ``scale``.
    """
    if scale[0] <= 0 or scale[1] < scale[0]:
        raise DataError(None, f"scale range must satisfy 0 < low <= high, got {scale}")
    bounds = (rotate_xy, rotate_xy, rotate_z)
    angles = [rng.uniform(-b, b) for b in bounds]
    matrix = np.eye(3)
    for axis in rng.permutation(3):
        matrix = _axis_rotation(int(axis), angles[axis]) @ matrix
    return matrix * rng.uniform(scale[0], scale[1])


def augment_points(points: np.ndarray, rng: np.random.Generator, *, rotate_z: float = math.pi,
                   rotate_xy: float = math.pi / 64, scale: tuple[float, float] = (0.9, 1.1),
                   jitter: float = 0.0) -> np.ndarray:
    """Randomly rotate (about the origin), scale and optionally jitter points.

    Args:
        points: (N, 3) coordinates.
        rng: the generator every random draw comes from (no global RNG state is used).
        rotate_z: maximum absolute rotation about z in radians.
        rotate_xy: maximum absolute rotation about x and about y in radians.
        scale: (low, high) range of the isotropic scale factor.
        jitter: standard deviation in metres of Gaussian noise added per coordinate (0 = none).

    Returns:
        (N, 3) float32 transformed points.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise DataError(None, f"augment_points needs an (N, 3) array, got {points.shape}")
    matrix = random_augmentation_matrix(rng, rotate_z=rotate_z, rotate_xy=rotate_xy, scale=scale)
    out = points @ matrix.T
    if jitter > 0:
        out = out + rng.normal(0.0, jitter, size=out.shape)
    return out.astype(np.float32)


def augment_colors(colors: np.ndarray, rng: np.random.Generator, *, contrast: float = 0.0,
                   shift: float = 0.0, jitter: float = 0.0) -> np.ndarray:
    """Chromatic augmentation of one view's colours (in the spirit of the chromatic
    auto-contrast / translation / jitter transforms of MinkowskiEngine's ScanNet example; written
    fresh). Off in the published XMask3D configs (method.md §1.9); used to train models meant to
    transfer from synthetic to real colours.

    Args:
        colors: (N, 3) colours in [-1, 1].
        rng: the generator every random draw comes from.
        contrast: the view's colours are scaled about their mean by a factor drawn from
            [1 - contrast, 1 + contrast].
        shift: one offset per channel drawn from [-shift, shift] (a colour cast / brightness).
        jitter: standard deviation of per-point Gaussian noise.

    Returns:
        (N, 3) float32 colours clipped to [-1, 1]; the input when every range is 0.
    """
    colors = np.asarray(colors, dtype=np.float32)
    if colors.ndim != 2 or colors.shape[1] != 3:
        raise DataError(None, f"augment_colors needs an (N, 3) array, got {colors.shape}")
    if min(contrast, shift, jitter) < 0 or contrast >= 1:
        raise DataError(None, f"colour augmentation needs 0 <= contrast < 1, shift >= 0, "
                              f"jitter >= 0 (got {contrast}, {shift}, {jitter})")
    if contrast == shift == jitter == 0 or len(colors) == 0:
        return colors
    out = colors.astype(np.float64)
    mean = out.mean(0, keepdims=True)
    out = (out - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    out = out + rng.uniform(-shift, shift, size=(1, 3))
    if jitter > 0:
        out = out + rng.normal(0.0, jitter, size=out.shape)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
