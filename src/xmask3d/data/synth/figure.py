"""Pictures of synthetic scenes for the docs: point clouds by colour and label, and views."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xmask3d.data.labels import SCANNET20_NAMES, nyu40_to_scannet20
from xmask3d.data.scene import IGNORE_LABEL
from xmask3d.data.synth.camera import look_pose
from xmask3d.data.synth.reconstruct import ScanSettings
from xmask3d.data.synth.scan import K_320x240, SynthScan, generate_scan


def label_palette() -> np.ndarray:
    """(256, 3) float RGB per class index; ignore (255) is light grey."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    pal = np.full((256, 3), 0.82)
    pal[: len(SCANNET20_NAMES)] = [cmap(i)[:3] for i in range(len(SCANNET20_NAMES))]
    pal[IGNORE_LABEL] = (0.82, 0.82, 0.82)
    return pal


def _top_down(ax, scan: SynthScan, colors: np.ndarray) -> None:
    keep = scan.points[:, 2] < scan.room.height - 0.05  # drop the ceiling
    pts, col = scan.points[keep], colors[keep]
    order = np.argsort(pts[:, 2])  # higher surfaces drawn last
    ax.scatter(pts[order, 0], pts[order, 1], c=col[order], s=1.2, marker=".", linewidths=0)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _perspective(ax, scan: SynthScan, colors: np.ndarray, *, low: bool = False) -> None:
    """A "dollhouse" view: the two walls nearest to the eye and the ceiling are cut away.

    ``low``: a worm's-eye view instead, from 0.3 m above the floor looking up across the room
    with the ceiling kept, where ceilings and the undersides of furniture show.
    """
    room = scan.room
    p = scan.points
    near_wall = (scan.labels == 0) & ((p[:, 0] < 0.03) | (p[:, 1] < 0.03))
    keep = ~near_wall if low else (p[:, 2] < room.height - 0.05) & ~near_wall
    pts, col = p[keep], colors[keep]
    eye = np.array([-0.35 * room.width, -0.35 * room.depth, room.height + 1.5])
    center = np.array([room.width / 2, room.depth / 2, 0.4])
    if low:
        eye = np.array([-0.6, -0.6, 0.3])
        center = np.array([room.width, room.depth, 0.35 * room.height])
    d = center - eye
    pose = look_pose(eye, float(np.arctan2(d[1], d[0])), float(np.arctan2(d[2], np.hypot(*d[:2]))))
    cam = (pts - pose[:3, 3]) @ pose[:3, :3]
    u = K_320x240[0, 0] * cam[:, 0] / cam[:, 2]
    v = K_320x240[1, 1] * cam[:, 1] / cam[:, 2]
    order = np.argsort(-cam[:, 2])  # far to near
    ax.scatter(u[order], -v[order], c=col[order], s=1.5, marker=".", linewidths=0)
    ax.set_aspect("equal")
    ax.axis("off")


def plot_scenes(scans: list[SynthScan], path: str | Path) -> None:
    """Save a grid: per scene, a top-down view by RGB, by label, and a perspective by RGB."""
    import matplotlib.pyplot as plt

    pal = label_palette()
    fig, axes = plt.subplots(3, len(scans), figsize=(3.6 * len(scans), 10.5), squeeze=False)
    for j, scan in enumerate(scans):
        rgb = scan.colors / 255.0
        _top_down(axes[0, j], scan, rgb)
        room = scan.room
        axes[0, j].set_title(f"{scan.name}: {room.room_type}\n{room.width:.1f} x "
                             f"{room.depth:.1f} x {room.height:.1f} m, {len(scan.points):,} points",
                             fontsize=9)
        _top_down(axes[1, j], scan, pal[scan.labels])
        _perspective(axes[2, j], scan, rgb)
    axes[0, 0].set_ylabel("top-down, RGB")
    axes[1, 0].set_ylabel("top-down, ScanNet20 label")
    axes[2, 0].text(0.0, 1.0, "cut-away perspective, RGB", transform=axes[2, 0].transAxes,
                    fontsize=9)
    _legend(fig, pal)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _legend(fig, pal: np.ndarray) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=pal[i], label=n) for i, n in enumerate(SCANNET20_NAMES)]
    handles.append(Patch(color=pal[IGNORE_LABEL], label="ignore (ceiling, clutter)"))
    fig.legend(handles=handles, loc="lower center", ncol=7, fontsize=8, frameon=False)


def plot_views(scans: list[SynthScan], path: str | Path, *, per_scene: int = 1) -> None:
    """Save a grid of views: RGB, depth and label image, with the caption as title."""
    import matplotlib.pyplot as plt

    pal = label_palette()
    views = [(s, v) for s in scans for v in s.views[:per_scene]]
    fig, axes = plt.subplots(len(views), 3, figsize=(10.5, 2.9 * len(views)), squeeze=False)
    for i, (scan, view) in enumerate(views):
        axes[i, 0].imshow(view.color)
        axes[i, 1].imshow(np.where(view.depth > 0, view.depth, np.nan), cmap="viridis")
        axes[i, 2].imshow(pal[nyu40_to_scannet20(view.nyu40)])
        axes[i, 0].set_title(f"{scan.name} frame {view.name}", fontsize=8, loc="left")
        axes[i, 1].set_title(f"depth {view.depth[view.depth > 0].min():.2f}-"
                             f"{view.depth.max():.2f} m", fontsize=8)
        axes[i, 2].set_title("label (nyu40 -> ScanNet20)", fontsize=8)
        fig.text(0.5, 1 - (i + 0.985) / len(views), f'"{view.caption}"', ha="center",
                 fontsize=9, style="italic")
        for ax in axes[i]:
            ax.axis("off")
    fig.tight_layout(h_pad=2.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reconstruction(pairs: list[tuple[SynthScan, SynthScan]], path: str | Path) -> None:
    """Save a grid: per scene, surface sampling against the fused depth frames of
    ``--scan-views``, from above (ceiling cut away) and from below (ceiling kept)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(pairs), 4, figsize=(15, 3.6 * len(pairs)), squeeze=False)
    for i, (sampled, fused) in enumerate(pairs):
        for j, (scan, what, low) in enumerate(((sampled, "surfaces sampled", False),
                                               (fused, "fused depth frames", False),
                                               (sampled, "surfaces sampled", True),
                                               (fused, "fused depth frames", True))):
            _perspective(axes[i, j], scan, scan.colors / 255.0, low=low)
            view = "from below, ceiling kept" if low else "from above"
            axes[i, j].set_title(f"{scan.name} ({scan.room.room_type}): {what}\n{view}, "
                                 f"{len(scan.points):,} points", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _n_classes(nyu40: np.ndarray) -> int:
    labels, counts = np.unique(nyu40_to_scannet20(nyu40), return_counts=True)
    return int(((labels != IGNORE_LABEL) & (counts >= nyu40.size // 100)).sum())


def make_figures(out_dir: str | Path, *, seed: int = 1, scenes: int = 5, views: int = 20,
                 density: float = 600.0) -> list[Path]:
    """Generate ``scenes`` scenes (one per room type for 5) and write the two doc pictures.

    Returns:
        The written paths (``synth_scenes.png``, ``synth_views.png``, and
        ``synth_reconstruction.png``: the first two scenes sampled and fused from 40 depth
        frames).
    """
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scans = [generate_scan(i, seed=seed, n_views=views, density=density) for i in range(scenes)]
    for s in scans:  # show the views with the most classes first
        s.views.sort(key=lambda v: -_n_classes(v.nyu40))
    paths = [out / "synth_scenes.png", out / "synth_views.png", out / "synth_reconstruction.png"]
    plot_scenes(scans, paths[0])
    plot_views(scans, paths[1])
    fused = [generate_scan(i, seed=seed, n_views=1, density=density,
                           scan=ScanSettings(views=40)) for i in range(2)]
    plot_reconstruction(list(zip(scans[:2], fused, strict=True)), paths[2])
    return paths
