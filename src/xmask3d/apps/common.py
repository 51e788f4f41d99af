"""What ``segment`` and ``query`` share: arguments, input checks, view selection, scoring paths."""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xmask3d.apps.inference import (
    RENDERED_REL_THRESH,
    LoadedModel,
    load_inference_model,
    PointScoreFn,
    ViewScoreFn,
    run_3d_chunks,
    run_views,
)
from xmask3d.apps.virtual_views import render_virtual_views
from xmask3d.data.orientation import UNITS, UP_CHOICES, ScanFrame, detect_frame
from xmask3d.data.pointcloud import load_point_cloud, load_rgbd_frames
from xmask3d.data.processed import POINT_SUFFIX, atomic_write
from xmask3d.data.scene import Scene, View
from xmask3d.errors import ConfigError, DataError

__all__ = ["PATH_3D", "PATH_VIEWS", "PATH_VIRTUAL", "ScanScores", "add_scan_arguments",
           "find_views", "load_scan", "open_inputs", "parse_names", "peak_rss_mb", "score_scan", "write_json"]

logger = logging.getLogger(__name__)

PATH_VIEWS = "views"                 # 2D branch on the user's RGB-D frames
PATH_VIRTUAL = "virtual-views"       # 2D branch on views rendered from the coloured points
PATH_3D = "3d-only"                  # --no-2d: the sparse 3D network alone


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_scan_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``segment`` and ``query`` (the scan is added by the caller)."""
    p.add_argument("--ckpt", default=None,
                   help="checkpoint (default: the bundled tiny checkpoint from `make checkpoint`)")
    p.add_argument("--config", default=None,
                   help="config whose architecture matches the checkpoint (default: its own)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a non-architecture config value (repeatable)")
    p.add_argument("--views", default=None, metavar="DIR",
                   help="RGB-D frames with poses: ScanNet export (color/ depth/ pose/ "
                        "intrinsics.txt) or 7-Scenes (frame-*.color.jpg/.depth.png/.pose.txt + "
                        "camera-intrinsics.txt); default: the processed layout's frames of a "
                        ".pth scan, else virtual views rendered from the coloured points")
    p.add_argument("--virtual", action="store_true",
                   help="use virtual views even when the scan's processed layout has frames")
    p.add_argument("--no-2d", dest="no_2d", action="store_true",
                   help="3D-only prediction (no 2D branch, no views)")
    p.add_argument("--virtual-views", type=_positive_int, default=8, metavar="N",
                   help="cameras on the eye-height ring of the virtual views (plus N/2 from "
                        "above and up to N/2 aimed at unseen parts)")
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="views per forward (default: 1 on CPU, where batching gains nothing and "
                        "memory grows with it; eval.batch_size on CUDA)")
    p.add_argument("--max-view-points", type=_positive_int, default=None,
                   help="at most this many visible points per view (default data.max_visible)")
    p.add_argument("--chunk-points", type=_positive_int, default=65000,
                   help="points per spatial chunk of the 3D-only path")
    p.add_argument("--up", default="auto", choices=UP_CHOICES,
                   help="the scan's up direction (default: detected; 'keep' runs the scan in "
                        "its own frame); the model runs with +z up, the floor at z = 0")
    p.add_argument("--units", default="auto", choices=("auto", *UNITS),
                   help="the scan's unit (default: detected from its size)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_names(text: str | Sequence[str], *, what: str) -> list[str]:
    """Split ``"chair, sofa|couch, lamp"`` (or take a list) into stripped, non-empty names.

    Raises:
        ConfigError: an empty list, an empty entry or a repeated name (naming ``what``).
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = [p.strip() for p in parts]
    if not any(names):
        raise ConfigError(f"{what}: the list is empty; give at least one name, e.g. "
                          f"{what} \"chair, sofa, lamp\"")
    if not all(names):
        raise ConfigError(f"{what}: entry {names.index('') + 1} of {text!r} is empty")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"{what}: repeated name(s) {', '.join(repeated)}")
    return names


def load_scan(path: str | Path) -> Scene:
    """Load a PLY / NPY / processed ``.pth`` scan and refuse empty or non-finite ones."""
    scene = load_point_cloud(path)
    if scene.num_points == 0:
        raise DataError(path, "the scan has no points")
    bad = ~np.isfinite(scene.points).all(axis=1)
    if bad.any():
        raise DataError(path, f"{int(bad.sum())} points have NaN/inf coordinates")
    return scene


def find_views(args: argparse.Namespace) -> tuple[list[View], str]:
    """The user's frames (``--views``, or the processed layout's frames of a ``.pth`` scan).

    Returns:
        The views (empty for ``--no-2d``, ``--virtual`` or when there are none) and where they
        came from.

    Raises:
        ConfigError: ``--views`` together with ``--virtual`` or ``--no-2d``.
    """
    if args.views is not None and (args.virtual or args.no_2d):
        raise ConfigError("--views cannot be combined with --virtual or --no-2d")
    if args.no_2d or args.virtual:
        return [], ""
    if args.views is not None:
        return load_rgbd_frames(args.views), str(args.views)
    scan_path = Path(args.scan)
    if scan_path.name.endswith(POINT_SUFFIX) and len(scan_path.parents) >= 3:
        folder = (scan_path.parents[2] / "scannet_2d"
                  / scan_path.name[: -len(POINT_SUFFIX)])
        if (folder / "color").is_dir():
            return load_rgbd_frames(folder), str(folder)
    return [], ""


@dataclass
class ScanScores:
    """Per-point mean scores of a scan and how they were obtained."""

    scores: np.ndarray               # (N, K) float32
    path: str                        # PATH_VIEWS, PATH_VIRTUAL or PATH_3D
    views_source: str = ""           # folder of the frames, "rendered", or ""
    views_total: int = 0
    views_used: int = 0
    seen_fraction: float = 1.0       # points scored directly (the rest copy the nearest one)
    notes: list[str] = field(default_factory=list)
    frame: dict[str, Any] = field(default_factory=dict)  # what ScanFrame.to_dict() says
    points: np.ndarray | None = None  # (N, 3) the scan in that frame (upright, for pictures)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "views_source": self.views_source,
                "views_total": self.views_total, "views_used": self.views_used,
                "seen_fraction": round(self.seen_fraction, 4),
                "unseen_points": "copy the mean scores of the nearest seen point",
                "notes": self.notes, "frame": self.frame}


def open_inputs(args: argparse.Namespace) -> tuple[Scene, list[View], str, LoadedModel]:
    """The scan, its views (and where they came from) and the model, as the arguments name them."""
    scene = load_scan(args.scan)
    views, source = find_views(args)
    lm = load_inference_model(args.ckpt, config=args.config, overrides=args.overrides,
                              device=args.device)
    return scene, views, source, lm


def score_scan(args: argparse.Namespace, lm: LoadedModel, scene: Scene, views: list[View], *,
               views_source: str, class_embeds: torch.Tensor, view_fn: ViewScoreFn,
               point_fn: PointScoreFn, width: int,
               is_novel_class: torch.Tensor | None = None) -> ScanScores:
    """Run the path the arguments ask for: 3D-only, the user's views, or virtual views, in the
    scan's canonical frame (metres, +z up, floor at 0: ``--up`` / ``--units``)."""
    frame = detect_frame(scene.points, up=getattr(args, "up", "auto"),
                         unit=getattr(args, "units", "auto"))
    logger.info("frame: unit %s, up %s%s", frame.unit, frame.up,
                "".join(f"; {n}" for n in frame.notes))
    scene, views = to_frame(frame, scene, views)
    result = _score_in_frame(args, lm, scene, views, views_source=views_source,
                             class_embeds=class_embeds, view_fn=view_fn, point_fn=point_fn,
                             width=width, is_novel_class=is_novel_class)
    result.frame, result.points = frame.to_dict(), scene.points
    return result


def to_frame(frame: ScanFrame, scene: Scene, views: list[View]) -> tuple[Scene, list[View]]:
    """The scene's points and the views' poses in ``frame`` (same point order, same images)."""
    if frame.is_identity:
        return scene, views
    return (replace(scene, points=frame.apply(scene.points)),
            [replace(v, pose=frame.apply_pose(v.pose)) for v in views])


def _score_in_frame(args: argparse.Namespace, lm: LoadedModel, scene: Scene, views: list[View],
                    *, views_source: str, class_embeds: torch.Tensor, view_fn: ViewScoreFn,
                    point_fn: PointScoreFn, width: int,
                    is_novel_class: torch.Tensor | None) -> ScanScores:
    progress = not args.no_progress
    if args.no_2d:
        logger.info("path: 3d-only (sparse 3D network on spatial chunks)")
        acc = run_3d_chunks(lm, scene, score_fn=point_fn, width=width,
                            chunk_points=args.chunk_points, progress=progress)
        return ScanScores(acc.mean(scene.points), PATH_3D)
    path, notes = PATH_VIEWS, []
    if not views:
        path, views_source = PATH_VIRTUAL, "rendered"
        views, notes = _virtual_views(args, lm, scene)
    logger.info("path: %s (%d views from %s)", path, len(views), views_source)
    acc, used = run_views(
        lm, scene, views, class_embeds=class_embeds, score_fn=view_fn, width=width,
        is_novel_class=is_novel_class,
        batch_size=args.batch_size or (lm.cfg.eval.batch_size if lm.device.type == "cuda"
                                       else 1),
        rel_thresh=RENDERED_REL_THRESH if path == PATH_VIRTUAL else None,
        max_view_points=args.max_view_points or lm.cfg.data.max_visible, progress=progress)
    seen = float(acc.seen.mean())
    if used == 0 or seen == 0.0:
        raise DataError(views_source if path == PATH_VIEWS else None,
                        f"none of the {len(views)} views sees a point of the scan; check that "
                        "the poses and the scan share one coordinate frame")
    return ScanScores(acc.mean(scene.points), path, views_source, len(views), used, seen, notes)


def _virtual_views(args: argparse.Namespace, lm: LoadedModel,
                   scene: Scene) -> tuple[list[View], list[str]]:
    """Virtual views for ``--virtual-views N`` (and a note when the scan has no colour)."""
    notes = []
    if len(np.unique(scene.colors[:: max(scene.num_points // 100_000, 1)], axis=0)) == 1:
        notes.append("the scan has no colour: virtual views are flat grey; consider --no-2d")
        logger.warning(notes[-1])
    n = max(int(args.virtual_views), 1)
    logger.info("rendering up to %d virtual views of %d points", n + n // 2 + n // 2,
                scene.num_points)
    views = render_virtual_views(scene.points, scene.colors, hw=tuple(lm.cfg.data.image_hw),
                                 num_ring=n, num_top=max(n // 2, 1), num_extra=n // 2,
                                 border=lm.cfg.data.border)
    return views, notes


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path
