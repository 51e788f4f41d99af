"""Virtual RGB-D views rendered from a coloured point cloud, for scans that come without frames.

Cameras are placed to cover the scan (a ring at eye height looking at the centre, a few steep
views from above, then greedy views aimed at what is still unseen); each view is rendered by
z-buffer splatting of the points (nearest depth wins, splat radius from the point spacing, small
holes filled), so its depth map gives a real visibility test. The scan is assumed z-up (ScanNet,
S3DIS and the synthetic rooms are). Every pass over the points is chunked, so memory stays
bounded for scans of millions of points.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from xmask3d.data.processed import SCANNET_DEFAULT_INTRINSICS_320x240
from xmask3d.data.projection import PointPixelMap, point_pixel_map, project_points
from xmask3d.data.scene import View
from xmask3d.data.sens import scale_intrinsics
from xmask3d.errors import DataError

__all__ = [
    "CHUNK_POINTS", "fill_small_holes", "look_at", "point_spacing", "render_points",
    "render_view", "render_virtual_views", "splat_nearest", "virtual_cameras", "visible_pixels",
]

logger = logging.getLogger(__name__)

CHUNK_POINTS = 1 << 19          # points per projection/splatting pass (bounds transient memory)
OBJECT_SCALE = 2.5              # metres: a scan narrower than this is an object, not a room


def look_at(eye: np.ndarray, target: np.ndarray, *,
            up: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """(4, 4) camera-to-world pose of an OpenCV camera at ``eye`` looking at ``target``.

    The image's "down" follows ``-up``; a view along ``up`` uses the world y axis instead.
    """
    eye, target = np.asarray(eye, np.float64), np.asarray(target, np.float64)
    forward = target - eye
    if np.linalg.norm(forward) < 1e-9:
        raise DataError(None, "look_at: eye and target coincide")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, np.float64))
    if np.linalg.norm(right) < 1e-6:     # looking straight along `up`
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    return pose


def point_spacing(points: np.ndarray, *, cell: float = 0.1,
                  chunk: int = CHUNK_POINTS) -> float:
    """Typical distance between neighbouring surface points, in metres.

    Estimated as ``sqrt(area / N)`` with the surface area taken as the number of occupied
    ``cell``-sized voxels times ``cell**2`` (sorts of voxel keys, no neighbour search). The
    keys are made and deduplicated ``chunk`` points at a time, so the temporaries stay small.
    """
    points = np.asarray(points)
    if len(points) == 0:
        return 1e-4
    low = np.floor(points.min(axis=0).astype(np.float64) / cell).astype(np.int64)
    ext = np.floor(points.max(axis=0).astype(np.float64) / cell).astype(np.int64) - low + 1
    keys = []
    for lo in range(0, len(points), chunk):
        grid = np.floor(points[lo:lo + chunk].astype(np.float64) / cell).astype(np.int64) - low
        keys.append(np.unique((grid[:, 0] * ext[1] + grid[:, 1]) * ext[2] + grid[:, 2]))
    occupied = len(np.unique(np.concatenate(keys)))
    return float(max(cell * np.sqrt(occupied / len(points)), 1e-4))


def splat_nearest(rc: np.ndarray, depth: np.ndarray, hw: tuple[int, int], *,
                  radius_px: np.ndarray | int = 0, index: np.ndarray | None = None,
                  zbuf: np.ndarray | None = None,
                  winner: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer splatting: every pixel keeps the nearest point whose disc covers it.

    Args:
        rc: (n, 2) int64 pixel (row, col) of each point (any value; outside pixels are dropped).
        depth: (n,) depth of each point (smaller = nearer).
        hw: image (H, W).
        radius_px: (n,) or scalar integer disc radius in pixels (0 = the point's own pixel).
        index: (n,) int64 id written into ``winner`` (default ``arange(n)``).
        zbuf, winner: buffers of an earlier call to merge into (for chunked rendering).

    Returns:
        zbuf: (H, W) float64 nearest depth, ``inf`` where empty.
        winner: (H, W) int64 id of the nearest point, -1 where empty.
    """
    h, w = int(hw[0]), int(hw[1])
    zbuf = np.full((h, w), np.inf) if zbuf is None else zbuf
    winner = np.full((h, w), -1, np.int64) if winner is None else winner
    index = np.arange(len(depth), dtype=np.int64) if index is None else index
    radius = np.broadcast_to(np.asarray(radius_px, np.int64), depth.shape)
    local = np.full(h * w, np.inf)
    r_max = int(radius.max(initial=0))
    offsets = [(dr, dc) for dr in range(-r_max, r_max + 1) for dc in range(-r_max, r_max + 1)
               if dr * dr + dc * dc <= r_max * r_max]

    def covered(dr: int, dc: int) -> tuple[np.ndarray, np.ndarray]:
        sel = radius * radius >= dr * dr + dc * dc
        row, col = rc[:, 0] + dr, rc[:, 1] + dc
        sel &= (row >= 0) & (row < h) & (col >= 0) & (col < w)
        return sel, row[sel] * w + col[sel]

    for dr, dc in offsets:
        sel, pix = covered(dr, dc)
        np.minimum.at(local, pix, depth[sel])
    local_winner = np.full(h * w, -1, np.int64)
    for dr, dc in offsets:           # second pass (recomputed, not stored): who holds the minimum
        sel, pix = covered(dr, dc)
        hit = depth[sel] == local[pix]
        local_winner[pix[hit]] = index[sel][hit]
    better = (local < zbuf.reshape(-1)).reshape(h, w)
    zbuf[better] = local.reshape(h, w)[better]
    winner[better] = local_winner.reshape(h, w)[better]
    return zbuf, winner


def fill_small_holes(zbuf: np.ndarray, winner: np.ndarray, *,
                     max_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Copy the nearest covered pixel into empty pixels at most ``max_px`` pixels away.

    No point projects into an empty pixel, so filling never changes which points are visible.
    """
    empty = winner < 0
    if max_px <= 0 or not empty.any() or empty.all():
        return zbuf, winner
    dist, (ri, ci) = ndimage.distance_transform_edt(empty, return_indices=True)
    fill = empty & (dist <= max_px)
    zbuf, winner = zbuf.copy(), winner.copy()
    zbuf[fill], winner[fill] = zbuf[ri[fill], ci[fill]], winner[ri[fill], ci[fill]]
    return zbuf, winner


def render_points(points: np.ndarray, pose: np.ndarray, K: np.ndarray, hw: tuple[int, int], *,
                  spacing: float, max_splat_px: int = 3, fill_px: int = 2,
                  chunk: int = CHUNK_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Perspective z-buffer of a point cloud.

    Args:
        points: (N, 3) world coordinates.
        pose, K, hw: camera-to-world pose, intrinsics at ``hw`` and image (H, W).
        spacing: point spacing in metres; a point covers ``floor(spacing * f / z)`` pixels of
            radius (at most ``max_splat_px``), so surfaces look closed from any distance.
        fill_px: empty pixels up to this far from a covered one are filled.
        chunk: points per pass.

    Returns:
        depth: (H, W) float32 metres, 0 where empty; winner: (H, W) int64 point index, -1 empty.
    """
    focal = 0.5 * (float(K[0, 0]) + float(K[1, 1]))
    zbuf = winner = None
    for lo in range(0, len(points), chunk):
        rc, z = project_points(points[lo:lo + chunk], pose, K, hw)
        keep = np.flatnonzero(z > 1e-3)
        radius = np.clip(np.floor(spacing * focal / z[keep]), 0, max_splat_px).astype(np.int64)
        zbuf, winner = splat_nearest(rc[keep], z[keep], hw, radius_px=radius,
                                     index=keep + lo, zbuf=zbuf, winner=winner)
    if zbuf is None:
        raise DataError(None, "render_points: no points to render")
    zbuf, winner = fill_small_holes(zbuf, winner, max_px=fill_px)
    return np.where(np.isfinite(zbuf), zbuf, 0.0).astype(np.float32), winner


def render_view(points: np.ndarray, colors: np.ndarray, pose: np.ndarray, K: np.ndarray,
                hw: tuple[int, int], *, name: str, spacing: float, max_splat_px: int = 3,
                fill_px: int = 2, background: int = 0) -> View:
    """An RGB-D ``View`` of the coloured points seen from ``pose`` (empty pixels: background)."""
    depth, winner = render_points(points, pose, K, hw, spacing=spacing,
                                  max_splat_px=max_splat_px, fill_px=fill_px)
    color = np.full((*winner.shape, 3), background, np.uint8)
    color[winner >= 0] = colors[winner[winner >= 0]]
    return View(name=name, color=color, pose=pose, intrinsics=np.asarray(K, np.float64).copy(),
                depth=depth)


def visible_pixels(points: np.ndarray, view: View, *, rel_thresh: float, border: int,
                   chunk: int = CHUNK_POINTS) -> PointPixelMap:
    """``point_pixel_map`` with the view's depth map, in chunks of points (bounded memory)."""
    if view.depth is None:
        raise DataError(None, f"view {view.name!r} has no depth map")
    idx, rcs = [], []
    for lo in range(0, len(points), chunk):
        pmap = point_pixel_map(points[lo:lo + chunk], view, rel_thresh=rel_thresh, border=border)
        idx.append(pmap.point_idx + lo)
        rcs.append(pmap.rc)
    return PointPixelMap(point_idx=np.concatenate(idx), rc=np.concatenate(rcs))


def _robust_box(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    step = max(len(points) // 200_000, 1)          # percentiles of a strided sample
    sample = points[::step]
    return np.percentile(sample, 1, axis=0), np.percentile(sample, 99, axis=0)


def virtual_cameras(points: np.ndarray, *, num_ring: int = 8,
                    num_top: int = 4) -> list[np.ndarray]:
    """Camera poses covering a z-up scan: a ring at eye height and steep views from above.

    Rooms (wider than ``OBJECT_SCALE`` m) get a ring inside the bounding box at 80 % of its
    half-extent, at ``min(1.5 m, 60 % of the height)`` above the floor, each camera looking
    across the centre at the far side (0.4 m lower, as a hand-held camera would); objects get a
    ring outside, at 1.5 times the half-diagonal plus 0.5 m, looking at the centre.
    The top views sit near the top of the box, offset towards its four corners, and look down
    at the opposite side of the floor.
    """
    lo, hi = _robust_box(points)
    centre, ext = 0.5 * (lo + hi), np.maximum(hi - lo, 0.05)
    room = max(ext[0], ext[1]) >= OBJECT_SCALE
    eye_z = lo[2] + (min(1.5, 0.6 * ext[2]) if room else 0.8 * ext[2] + 0.3)
    target = np.array([centre[0], centre[1], lo[2] + 0.35 * ext[2]])
    poses = []
    for k in range(num_ring):
        a = 2 * np.pi * k / max(num_ring, 1)
        if room:    # look across the room, slightly down, at the far side
            off = np.array([0.4 * ext[0] * np.cos(a), 0.4 * ext[1] * np.sin(a)])
            target = np.array([centre[0] - off[0], centre[1] - off[1], eye_z - 0.4])
        else:
            off = (0.75 * np.hypot(ext[0], ext[1]) + 0.5) * np.array([np.cos(a), np.sin(a)])
        poses.append(look_at([centre[0] + off[0], centre[1] + off[1], eye_z], target))
    top_z = lo[2] + 0.95 * ext[2] + (0.0 if room else 1.0 + ext[2])
    for k in range(num_top):
        a = np.pi / 4 + 2 * np.pi * k / max(num_top, 1)
        off = np.array([0.3 * ext[0] * np.cos(a), 0.3 * ext[1] * np.sin(a)])
        eye = [centre[0] + off[0], centre[1] + off[1], top_z]
        poses.append(look_at(eye, [centre[0] - off[0], centre[1] - off[1], lo[2]]))
    return poses


def _aim_at_unseen(points: np.ndarray, unseen: np.ndarray, centre_eye: np.ndarray,
                   cell: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(pose, target): a camera looking at the densest cell of unseen points from the centre."""
    idx = np.flatnonzero(unseen)
    if len(idx) == 0:
        return None
    idx = idx[:: max(len(idx) // 200_000, 1)]
    keys = np.floor(points[idx] / cell).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    target = points[idx[inverse.reshape(-1) == int(np.argmax(counts))]].mean(axis=0)
    towards = centre_eye - target
    dist = float(np.linalg.norm(towards))
    if dist < 0.2:
        return None
    eye = target + towards / dist * min(dist, max(1.0, 1.5 * cell))
    return look_at(eye, target), target


def _coverage_views(points: np.ndarray, colors: np.ndarray, seen: np.ndarray, K: np.ndarray,
                    hw: tuple[int, int], *, count: int, rel_thresh: float, border: int,
                    **render_kw) -> list[View]:
    """Up to ``count`` greedy views aimed at unseen points (``seen`` is updated in place)."""
    lo, hi = _robust_box(points)
    centre_eye = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2,
                           lo[2] + min(1.5, 0.6 * (hi[2] - lo[2]))])
    cell = max(float(np.max(hi - lo)) / 6.0, 0.25)
    aimed = np.zeros(len(points), bool)          # cells already aimed at are not aimed at again
    views = []
    for k in range(count):
        if (~seen).mean() < 0.01:
            break
        aim = _aim_at_unseen(points, ~seen & ~aimed, centre_eye, cell)
        if aim is None:
            break
        pose, target = aim
        view = render_view(points, colors, pose, K, hw, name=f"virtual_extra_{k:02d}",
                           **render_kw)
        new = visible_pixels(points, view, rel_thresh=rel_thresh, border=border).point_idx
        aimed |= ((points - target) ** 2).sum(axis=1) < cell * cell
        if (~seen[new]).any():
            seen[new] = True
            views.append(view)
    return views


def render_virtual_views(points: np.ndarray, colors: np.ndarray, *, hw: tuple[int, int],
                         num_ring: int = 8, num_top: int = 4, num_extra: int = 4,
                         intrinsics: np.ndarray | None = None, max_splat_px: int = 3,
                         fill_px: int = 2, rel_thresh: float = 0.05,
                         border: int = 4) -> list[View]:
    """Render covering virtual RGB-D views of a coloured scan.

    After the ring and top views, up to ``num_extra`` greedy views are aimed at the densest
    group of points that no view sees yet (skipped once fewer than 1 % remain unseen).

    Args:
        points: (N, 3) z-up world coordinates; colors: (N, 3) uint8.
        hw: image (H, W) of the views.
        num_ring, num_top, num_extra: camera counts (see :func:`virtual_cameras`).
        intrinsics: (3, 3) at ``hw``; default the ScanNet colour camera scaled to ``hw``.
        max_splat_px, fill_px: splatting (see :func:`render_points`).
        rel_thresh, border: visibility test used to measure coverage.

    Returns:
        The views, each with colour, depth, pose and intrinsics.
    """
    if len(points) == 0:
        raise DataError(None, "cannot render virtual views of an empty scan")
    h, w = int(hw[0]), int(hw[1])
    K = intrinsics if intrinsics is not None else scale_intrinsics(
        SCANNET_DEFAULT_INTRINSICS_320x240, (320, 240), (w, h))
    spacing = point_spacing(points)
    kw = dict(spacing=spacing, max_splat_px=max_splat_px, fill_px=fill_px)
    views = [render_view(points, colors, pose, K, (h, w), name=f"virtual_{i:02d}", **kw)
             for i, pose in enumerate(virtual_cameras(points, num_ring=num_ring,
                                                      num_top=num_top))]
    seen = np.zeros(len(points), bool)
    for v in views:
        seen[visible_pixels(points, v, rel_thresh=rel_thresh, border=border).point_idx] = True
    views += _coverage_views(points, colors, seen, K, (h, w), count=num_extra,
                             rel_thresh=rel_thresh, border=border, **kw)
    logger.info("virtual views: %d cameras see %.1f%% of %d points (spacing %.3f m)",
                len(views), 100.0 * seen.mean(), len(points), spacing)
    return views

