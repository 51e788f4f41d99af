"""PNG pictures of a segmented or heat-mapped scan: a perspective and a top-down view with a legend.

The points are rasterised with the z-buffer splatting of :mod:`xmask3d.apps.virtual_views`
(nearest point wins), so scans of millions of points draw in bounded time and memory; matplotlib
(Agg, no display) only lays out the two images, the legend and the colour bar. A ceiling (a dense
layer at the top of the scan) is cut away so that the room's inside shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xmask3d.apps.virtual_views import (
    CHUNK_POINTS,
    OBJECT_SCALE,
    fill_small_holes,
    look_at,
    point_spacing,
    render_points,
    splat_nearest,
)
from xmask3d.data.processed import atomic_write

__all__ = ["OTHER_COLOR", "ceiling_cut", "class_palette", "heat_colors", "render_panels",
           "save_heatmap_png", "save_segmentation_png"]

OTHER_COLOR = (160, 160, 160)
BACKGROUND = 255


def class_palette(num_classes: int) -> np.ndarray:
    """(C, 3) uint8 distinct colours: tab20 first, then evenly spaced hues."""
    import matplotlib

    tab = matplotlib.colormaps["tab20"]
    cols = [tab(i)[:3] for i in range(min(num_classes, 20))]
    hsv = matplotlib.colors.hsv_to_rgb
    for k in range(20, num_classes):
        cols.append(tuple(hsv([(k * 0.618034) % 1.0, 0.65 + 0.3 * (k % 2), 0.9 - 0.25 * (k % 3)])))
    return np.round(np.asarray(cols, np.float64).reshape(-1, 3) * 255).astype(np.uint8)


def heat_colors(values: np.ndarray, *, vmin: float, vmax: float,
                cmap: str = "turbo") -> np.ndarray:
    """(N,) values -> (N, 3) uint8 colours of ``cmap`` over ``[vmin, vmax]`` (clipped)."""
    import matplotlib

    t = np.clip((np.asarray(values, np.float64) - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
    return np.round(matplotlib.colormaps[cmap](t)[:, :3] * 255).astype(np.uint8)


def ceiling_cut(points: np.ndarray) -> float | None:
    """Height below which everything but a ceiling layer lies (a ceiling: > 15 % of the
    points in the top 5 % of a scan over 1.5 m high), or ``None`` without a ceiling."""
    z = points[:, 2]
    lo, hi = np.percentile(z[:: max(len(z) // 200_000, 1)], [0.5, 99.5])
    top = z > hi - 0.05 * (hi - lo)
    if top.mean() > 0.15 and hi - lo > 1.5:
        return float(hi - 0.08 * (hi - lo))
    return None


def _keep_below_ceiling(points: np.ndarray) -> np.ndarray:
    """(N,) bool: everything but a ceiling layer (see :func:`ceiling_cut`)."""
    cut = ceiling_cut(points)
    return np.ones(len(points), bool) if cut is None else points[:, 2] < cut


def _coarsen(radius: float) -> int:
    """Integer downscale that keeps a splat radius of ``radius`` pixels at most ~2.5 pixels."""
    return max(int(np.ceil(radius / 2.5)), 1) if radius > 3 else 1


def _upsample(winner: np.ndarray, factor: int, hw: tuple[int, int]) -> np.ndarray:
    """Nearest upsampling of a coarse index image to exactly ``hw`` (padding with -1)."""
    if factor == 1:
        return winner
    big = np.repeat(np.repeat(winner, factor, axis=0), factor, axis=1)[: hw[0], : hw[1]]
    out = np.full(hw, -1, np.int64)
    out[: big.shape[0], : big.shape[1]] = big
    return out


def _top_down(points: np.ndarray, hw: tuple[int, int], spacing: float) -> np.ndarray:
    """(H, W) winner index of an orthographic view from above (-1 = empty)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    size = max((hi[0] - lo[0]) / (hw[1] - 8), (hi[1] - lo[1]) / (hw[0] - 8), 1e-6)  # m / px
    factor = _coarsen(spacing / size)
    h, w, size = hw[0] // factor, hw[1] // factor, size * factor
    c0 = 0.5 * (w - (hi[0] - lo[0]) / size)
    r0 = 0.5 * (h - (hi[1] - lo[1]) / size)
    radius = int(np.clip(np.floor(spacing / size), 0, 3))
    zbuf = winner = None
    for s in range(0, len(points), CHUNK_POINTS):
        p = points[s:s + CHUNK_POINTS]
        rc = np.stack([np.round(r0 + (hi[1] - p[:, 1]) / size),
                       np.round(c0 + (p[:, 0] - lo[0]) / size)], axis=1).astype(np.int64)
        zbuf, winner = splat_nearest(rc, hi[2] - p[:, 2], (h, w), radius_px=radius,
                                     index=np.arange(s, s + len(p)), zbuf=zbuf, winner=winner)
    return _upsample(fill_small_holes(zbuf, winner, max_px=2)[1], factor, hw)


def _perspective(points: np.ndarray, hw: tuple[int, int], spacing: float) -> np.ndarray:
    """(H, W) winner index of a view from a high corner, framed to hold the whole scan."""
    h, w = hw
    lo, hi = np.percentile(points[:: max(len(points) // 200_000, 1)], [0.5, 99.5], axis=0)
    centre, ext = 0.5 * (lo + hi), hi - lo
    eye = centre + np.array([-0.55 * ext[0], -0.85 * ext[1], 0.0])
    eye[2] = hi[2] + 0.6 * max(ext[0], ext[1], 0.5)
    pose = look_at(eye, np.array([centre[0], centre[1], lo[2] + 0.3 * ext[2]]))
    sub = np.flatnonzero(_dollhouse_keep(points, lo, hi))
    points = points[sub]
    sample = points[:: max(len(points) // 100_000, 1)]
    cam = (sample - pose[:3, 3]) @ pose[:3, :3]
    z = np.maximum(cam[:, 2], 1e-3)
    fx = 0.46 * w / max(np.percentile(np.abs(cam[:, 0] / z), 99.5), 1e-3)
    fy = 0.46 * h / max(np.percentile(np.abs(cam[:, 1] / z), 99.5), 1e-3)
    factor = _coarsen(spacing * min(fx, fy) / float(np.median(z)))
    f, h, w = min(fx, fy) / factor, h // factor, w // factor
    K = np.array([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])
    winner = render_points(points, pose, K, (h, w), spacing=spacing, max_splat_px=3,
                           fill_px=2)[1]
    winner = np.where(winner >= 0, sub[np.maximum(winner, 0)], -1)
    return _upsample(winner, factor, hw)


def _dollhouse_keep(points: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(N,) bool: a room (wider than ``OBJECT_SCALE``) loses the two walls facing the eye of
    :func:`_perspective` (points within 0.2 m of the low-x and low-y faces, above 0.3 m)."""
    if max(hi[0] - lo[0], hi[1] - lo[1]) < OBJECT_SCALE:
        return np.ones(len(points), bool)
    near = (points[:, 0] < lo[0] + 0.2) | (points[:, 1] < lo[1] + 0.2)
    return ~(near & (points[:, 2] > lo[2] + 0.3))


def render_panels(points: np.ndarray, colors: np.ndarray, *,
                  hw: tuple[int, int] = (480, 640)) -> tuple[np.ndarray, np.ndarray]:
    """Perspective and top-down (H, W, 3) uint8 images of coloured points (white background)."""
    keep = np.flatnonzero(_keep_below_ceiling(points))
    pts = points[keep]
    spacing = point_spacing(pts)
    images = []
    for winner in (_perspective(pts, hw, spacing), _top_down(pts, hw, spacing)):
        img = np.full((*hw, 3), BACKGROUND, np.uint8)
        img[winner >= 0] = colors[keep[winner[winner >= 0]]]
        images.append(img)
    return images[0], images[1]


def _figure(points: np.ndarray, colors: np.ndarray, title: str):
    from matplotlib.figure import Figure

    persp, top = render_panels(points, colors)
    fig = Figure(figsize=(13.5, 5.6), dpi=100)
    axes = fig.subplots(1, 2, gridspec_kw={"left": 0.01, "right": 0.78, "wspace": 0.03,
                                           "top": 0.9, "bottom": 0.02})
    for ax, img, name in zip(axes, (persp, top), ("perspective", "top-down")):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    return fig


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def save_segmentation_png(path: str | Path, points: np.ndarray, colors: np.ndarray, *,
                          legend: Sequence[tuple[str, tuple[int, int, int], int]],
                          title: str) -> Path:
    """Save the segmented scan with a legend.

    Args:
        path: the PNG.
        points: (N, 3); colors: (N, 3) uint8 class colours.
        legend: (name, RGB, point count) per entry, in display order.
        title: figure title.
    """
    from matplotlib.patches import Patch

    fig = _figure(points, colors, title)
    handles = [Patch(color=np.asarray(rgb) / 255.0, label=f"{name} ({count:,})")
               for name, rgb, count in legend]
    if handles:
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.79, 0.5), fontsize=9,
                   frameon=False, title="class (points)")
    _save(fig, Path(path))
    return Path(path)


def save_heatmap_png(path: str | Path, points: np.ndarray, values: np.ndarray, *, title: str,
                     vmin: float, vmax: float, cmap: str = "turbo") -> Path:
    """Save a per-point heat map with a colour bar over ``[vmin, vmax]``."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig = _figure(points, heat_colors(values, vmin=vmin, vmax=vmax, cmap=cmap), title)
    cax = fig.add_axes((0.81, 0.12, 0.018, 0.7))
    fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), cax=cax, label="relevance")
    _save(fig, Path(path))
    return Path(path)
