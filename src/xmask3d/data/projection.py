"""Point-to-pixel projection, visibility tests (depth map or z-buffer) and view resizing.

Follows the OpenScene/XMask3D point-to-pixel mapper (method.md §1.6): pinhole projection rounded
to the nearest pixel, a border cut, and a relative depth test against the frame's depth map. The
z-buffer test for frames without depth is ours (decisions.md §4). Every threshold is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from xmask3d.data.regions import scale_regions
from xmask3d.data.scene import View
from xmask3d.errors import DataError

__all__ = [
    "PointPixelMap",
    "in_image",
    "point_pixel_map",
    "project_points",
    "resize_view",
    "visible_from_depth",
    "visible_from_zbuffer",
]


@dataclass
class PointPixelMap:
    """The points of a scene that a view sees, and where.

    Attributes:
        point_idx: (M,) int64 indices of the visible points, increasing.
        rc: (M, 2) int64 (row, col) pixel of each visible point.
    """

    point_idx: np.ndarray
    rc: np.ndarray

    def __len__(self) -> int:
        return int(self.point_idx.shape[0])


def _check_camera(points: np.ndarray, pose: np.ndarray, K: np.ndarray) -> None:
    if points.ndim != 2 or points.shape[1] != 3:
        raise DataError(None, f"points must be (N, 3), got {points.shape}")
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        raise DataError(None, f"pose must be a finite 4x4 matrix, got shape {pose.shape}")
    if K.shape != (3, 3) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise DataError(None, f"intrinsics must be 3x3 with positive focal lengths, got {K}")


def project_points(points: np.ndarray, pose: np.ndarray, K: np.ndarray,
                   hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Project world points into a pinhole camera (method.md §1.6).

    Args:
        points: (N, 3) world coordinates.
        pose: (4, 4) camera-to-world matrix (OpenCV camera: x right, y down, z forward).
        K: (3, 3) intrinsics at the image resolution.
        hw: image (height, width). Pixels far outside the image (and those of points behind
            the camera) are clipped to the band ``[-1, H] x [-1, W]`` so they never overflow;
            such pixels always fail :func:`in_image`.

    Returns:
        rc: (N, 2) int64 (row, col) = (round(v), round(u)).
        z: (N,) float64 depth along the optical axis (<= 0 behind the camera).
    """
    u, v, z = _project(points, pose, K)
    h, w = int(hw[0]), int(hw[1])
    front = z > 0
    col = np.where(front, np.clip(np.round(u), -1, w), -1).astype(np.int64)
    row = np.where(front, np.clip(np.round(v), -1, h), -1).astype(np.int64)
    return np.stack([row, col], axis=1), z


def _project(points: np.ndarray, pose: np.ndarray,
             K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continuous pixel coordinates (u, v) and depth z; u = v = 0 for points with z <= 0."""
    points = np.asarray(points, dtype=np.float64)
    pose = np.asarray(pose, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    _check_camera(points, pose, K)
    m = np.linalg.inv(pose)
    # row-wise products instead of an (N, 3) @ (3, 3) BLAS call: faster and thread-free here
    x, y, z = (m[i, 0] * points[:, 0] + m[i, 1] * points[:, 1] + m[i, 2] * points[:, 2] + m[i, 3]
               for i in range(3))
    front = z > 0
    safe_z = np.where(front, z, 1.0)
    u = np.where(front, (K[0, 0] * x + K[0, 1] * y) / safe_z + K[0, 2], 0.0)
    v = np.where(front, K[1, 1] * y / safe_z + K[1, 2], 0.0)
    return u, v, z


def in_image(rc: np.ndarray, z: np.ndarray, hw: tuple[int, int], *, border: int = 10) -> np.ndarray:
    """(N,) bool: in front of the camera and inside the image minus a ``border``-pixel frame."""
    h, w = int(hw[0]), int(hw[1])
    return ((z > 0) & (rc[:, 0] >= border) & (rc[:, 0] < h - border)
            & (rc[:, 1] >= border) & (rc[:, 1] < w - border))


def visible_from_depth(points: np.ndarray, view: View, *, rel_thresh: float = 0.25,
                       border: int = 10) -> np.ndarray:
    """Visibility by comparison with the view's depth map (method.md §1.6).

    A point is visible when it projects inside the image minus ``border`` pixels, lies in front
    of the camera, the depth D at its pixel is valid (> 0) and ``|D - z| <= rel_thresh * D``.

    Args:
        points: (N, 3) world coordinates.
        view: a view with ``depth`` (H, W) metres at the colour resolution.
        rel_thresh: relative depth tolerance (0.25 in the published code).
        border: pixels cut at each image edge (10 in the published code).

    Returns:
        (N,) bool visibility.
    """
    return _depth_test(points, view, rel_thresh=rel_thresh, border=border)[0]


def _depth_test(points: np.ndarray, view: View, *, rel_thresh: float,
                border: int) -> tuple[np.ndarray, np.ndarray]:
    if view.depth is None:
        raise DataError(None, f"view {view.name!r} has no depth map; use visible_from_zbuffer")
    if view.depth.shape != view.hw:
        raise DataError(None, f"view {view.name!r}: depth {view.depth.shape} != colour {view.hw}")
    rc, z = project_points(points, view.pose, view.intrinsics, view.hw)
    ok = in_image(rc, z, view.hw, border=border)
    depth = np.zeros(len(z), dtype=np.float64)
    depth[ok] = view.depth[rc[ok, 0], rc[ok, 1]]
    return ok & (depth > 0) & (np.abs(depth - z) <= rel_thresh * depth), rc


def _splat_zbuffer(rc: np.ndarray, z: np.ndarray, radius_px: np.ndarray,
                   hw: tuple[int, int]) -> np.ndarray:
    """Min-depth image where point i covers the disc of integer radius ``radius_px[i]``."""
    h, w = hw
    zbuf = np.full(h * w, np.inf)
    r_max = int(radius_px.max(initial=0))
    r2 = radius_px.astype(np.int64) ** 2
    for dr in range(-r_max, r_max + 1):
        for dc in range(-r_max, r_max + 1):
            sel = r2 >= dr * dr + dc * dc
            row, col = rc[sel, 0] + dr, rc[sel, 1] + dc
            inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
            np.minimum.at(zbuf, row[inside] * w + col[inside], z[sel][inside])
    return zbuf.reshape(h, w)


def visible_from_zbuffer(points: np.ndarray, pose: np.ndarray, K: np.ndarray,
                         hw: tuple[int, int], *, border: int = 10, abs_tol: float = 0.1,
                         rel_tol: float = 0.1, splat_radius: float = 0.02,
                         max_splat_px: int = 4) -> np.ndarray:
    """Visibility for a frame without depth, from a z-buffer of the projected points themselves.

    Each point in front of the camera is splatted as a disc of ``splat_radius`` metres, i.e.
    ``floor(splat_radius * f / z)`` pixels (at most ``max_splat_px``), so that background points
    do not leak through the gaps between sparse foreground points. A point is visible when it
    projects inside the image minus ``border`` pixels and ``z <= zbuf + abs_tol + rel_tol * z``.

    Args:
        points: (N, 3) world coordinates.
        pose: (4, 4) camera-to-world matrix.
        K: (3, 3) intrinsics at resolution ``hw``.
        hw: image (height, width).
        border: pixels cut at each image edge.
        abs_tol: absolute depth tolerance in metres.
        rel_tol: depth tolerance relative to the point depth.
        splat_radius: world radius of a point's footprint in metres (0 = one pixel).
        max_splat_px: upper bound on the footprint radius in pixels.

    Returns:
        (N,) bool visibility.
    """
    return _zbuffer_test(points, pose, K, hw, border=border, abs_tol=abs_tol, rel_tol=rel_tol,
                         splat_radius=splat_radius, max_splat_px=max_splat_px)[0]


def _zbuffer_test(points: np.ndarray, pose: np.ndarray, K: np.ndarray, hw: tuple[int, int], *,
                  border: int, abs_tol: float, rel_tol: float, splat_radius: float,
                  max_splat_px: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = int(hw[0]), int(hw[1])
    rc, z = project_points(points, pose, K, (h, w))
    u, v, _ = _project(points, pose, K)
    focal = 0.5 * (float(K[0, 0]) + float(K[1, 1]))
    radius = np.floor(splat_radius * focal / np.where(z > 0, z, np.inf))
    radius = np.clip(radius, 0, max(int(max_splat_px), 0)).astype(np.int64)
    # points up to `radius` pixels outside the image can still cover pixels inside it; their
    # unclipped pixels are needed (the clipped band of project_points would misplace them)
    near = ((z > 0) & (v >= -radius - 0.5) & (v < h + radius + 0.5)
            & (u >= -radius - 0.5) & (u < w + radius + 0.5))
    near_rc = np.stack([np.round(v[near]), np.round(u[near])], axis=1).astype(np.int64)
    zbuf = _splat_zbuffer(near_rc, z[near], radius[near], (h, w))
    ok = in_image(rc, z, (h, w), border=border)
    front = np.full(len(z), np.inf)
    front[ok] = zbuf[rc[ok, 0], rc[ok, 1]]
    return ok & (z <= front + abs_tol + rel_tol * z), rc


def point_pixel_map(points: np.ndarray, view: View, *, rel_thresh: float = 0.25,
                    border: int = 10, zbuf_abs_tol: float = 0.1, zbuf_rel_tol: float = 0.1,
                    splat_radius: float = 0.02, max_splat_px: int = 4) -> PointPixelMap:
    """The visible points of ``view`` and their pixels: depth test when the view has depth,
    z-buffer test otherwise (arguments as in :func:`visible_from_depth` and
    :func:`visible_from_zbuffer`)."""
    if view.depth is not None:
        visible, rc = _depth_test(points, view, rel_thresh=rel_thresh, border=border)
    else:
        visible, rc = _zbuffer_test(points, view.pose, view.intrinsics, view.hw, border=border,
                                    abs_tol=zbuf_abs_tol, rel_tol=zbuf_rel_tol,
                                    splat_radius=splat_radius, max_splat_px=max_splat_px)
    idx = np.flatnonzero(visible).astype(np.int64)
    return PointPixelMap(point_idx=idx, rc=rc[idx])


def _nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index of each destination pixel centre under nearest-neighbour resampling."""
    return np.minimum(((np.arange(dst) + 0.5) * src / dst).astype(np.int64), src - 1)


def resize_view(view: View, hw: tuple[int, int]) -> View:
    """Resample a view to ``hw`` = (H, W): colour bilinear, depth and labels nearest, K and
    region boxes rescaled.

    Intrinsics follow the pixel-centre convention: ``f' = f * s`` and ``c' = (c + 0.5) * s - 0.5``
    per axis (ScanNet's 640x480 default maps exactly to the 320x240 one of method.md §1.6).
    """
    h, w = int(hw[0]), int(hw[1])
    if h <= 0 or w <= 0:
        raise DataError(None, f"resize target must be positive, got {hw}")
    src_h, src_w = view.hw
    if (src_h, src_w) == (h, w):
        return view
    color = np.asarray(Image.fromarray(view.color).resize((w, h), Image.BILINEAR))
    rows, cols = _nearest_index(src_h, h), _nearest_index(src_w, w)
    depth = None if view.depth is None else view.depth[rows[:, None], cols[None, :]]
    label = None if view.label is None else view.label[rows[:, None], cols[None, :]]
    sx, sy = w / src_w, h / src_h
    K = np.array(view.intrinsics, dtype=np.float64, copy=True)
    K[0, 0], K[0, 1], K[0, 2] = K[0, 0] * sx, K[0, 1] * sx, (K[0, 2] + 0.5) * sx - 0.5
    K[1, 1], K[1, 2] = K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5
    return replace(view, color=color, depth=depth, label=label, intrinsics=K,
                   regions=scale_regions(view.regions, (src_h, src_w), (h, w)))
