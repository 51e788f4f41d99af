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
from typing import TYPE_CHECKING, Any

import numpy as np

from xmask3d.apps.bundled import checkpoint_file
from xmask3d.data.orientation import UNITS, UP_CHOICES, ScanFrame, detect_frame
from xmask3d.data.pointcloud import GREY, load_point_cloud, load_rgbd_frames
from xmask3d.data.processed import POINT_SUFFIX, atomic_write, torch_file_problem
from xmask3d.data.scene import Scene, View
from xmask3d.errors import ConfigError, DataError

# torch and the model code load only once the arguments and input files have been checked
# (`xmask3d segment --help` and every refusal of bad input answer in well under a second)
if TYPE_CHECKING:
    import torch

    from xmask3d.apps.inference import LoadedModel, PointScoreFn, ViewScoreFn

__all__ = ["MIN_VIEW_POINTS", "PATH_3D", "PATH_VIEWS", "PATH_VIRTUAL", "CommandMemory",
           "ScanScores", "add_model_arguments", "add_scan_arguments",
           "available_memory_bytes", "check_memory", "check_span", "find_views", "load_scan",
           "make_virtual_views",
           "open_inputs", "parse_names", "positive_int", "score_scan", "to_frame", "write_json"]

logger = logging.getLogger(__name__)

PATH_VIEWS = "views"                 # 2D branch on the user's RGB-D frames
PATH_VIRTUAL = "virtual-views"       # 2D branch on views rendered from the coloured points
PATH_3D = "3d-only"                  # --no-2d: the sparse 3D network alone


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model, the views and the scan's frame: shared by ``segment``, ``query`` and ``view``."""
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
    p.add_argument("--virtual-views", type=positive_int, default=8, metavar="N",
                   help="cameras on the eye-height ring of the virtual views (plus N/2 from "
                        "above and up to N/2 aimed at unseen parts)")
    p.add_argument("--up", default="auto", choices=UP_CHOICES,
                   help="the scan's up direction (default: detected; 'keep' runs the scan in "
                        "its own frame); the model runs with +z up, the floor at z = 0")
    p.add_argument("--units", default="auto", choices=("auto", *UNITS),
                   help="the scan's unit (default: detected from its size)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def add_scan_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments shared by ``segment`` and ``query`` (the scan is added by the caller): the
    model's (:func:`add_model_arguments`) and how the scan is processed."""
    add_model_arguments(p)
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="views per forward (default: 1 on CPU, where batching gains nothing and "
                        "memory grows with it; eval.batch_size on CUDA)")
    p.add_argument("--max-view-points", type=positive_int, default=None,
                   help="at most this many visible points per view (default data.max_visible)")
    p.add_argument("--chunk-points", type=positive_int, default=65000,
                   help="points per spatial chunk of the 3D-only path")
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


# A view is used only when it sees at least this many scan points (fewer give the 2D branch
# nothing to pool masks over), so a scan with fewer points can never be scored through views.
MIN_VIEW_POINTS = 10
# Memory of a run (docs/segment.md "Memory bound"): Python, torch, the text encoder, the tiny
# model and one view's activations (about 1.5 GiB measured), then per point the (N, K) float32
# score sums (4 K bytes) and the other per-point arrays (scan, counts, labels, PLY table). The
# measured peak at 10.08M points and K = 20 was 2.43 GiB; this estimate gives 2.73 GiB there.
BASE_MEMORY_BYTES = 1.6 * 2**30
PER_POINT_BYTES = 40


def load_scan(path: str | Path, *, min_points: int = 1) -> Scene:
    """Load a PLY / NPY / processed ``.pth`` scan; refuse empty, tiny or non-finite ones.

    Raises:
        DataError: a missing or empty file, a ``.pth`` that is no torch file, what the reader
            refuses, no points, fewer than ``min_points`` points, or NaN/inf coordinates.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(path, "the file is empty (0 bytes)")
    if path.suffix.lower() == ".pth" and path.is_file():
        problem = torch_file_problem(path)    # before torch is imported to read it
        if problem:
            raise DataError(path, f"not a torch file, or a damaged one ({problem})")
    scene = load_point_cloud(path)
    n = scene.num_points
    if n == 0:
        raise DataError(path, "the scan has no points")
    if n < min_points:
        raise DataError(path, f"the scan has {n} point{'s' if n > 1 else ''}; at least "
                              f"{min_points} are needed (a view is used only when it sees "
                              f"{MIN_VIEW_POINTS} or more); --no-2d scores scans of any size")
    bad = ~np.isfinite(scene.points).all(axis=1)
    if bad.any():
        raise DataError(path, f"{int(bad.sum())} points have NaN/inf coordinates")
    return scene


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (``None`` where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(path: str | Path, num_points: int, width: int, *,
                 available: int | None = None) -> float:
    """Refuse a scan whose run would need more memory than the machine has free.

    Args:
        path: the scan (named in the message).
        num_points: N.
        width: K, scores per point (classes or queries).
        available: free bytes (default: :func:`available_memory_bytes`; no check if unknown).

    Returns:
        The estimated peak in bytes.

    Raises:
        DataError: the estimate exceeds the available memory; says by how much and what to do.
    """
    need = BASE_MEMORY_BYTES + num_points * (PER_POINT_BYTES + 4 * width)
    free = available_memory_bytes() if available is None else available
    if free is not None and need > free:
        gib = 2.0**30
        raise DataError(path, f"the scan has {num_points:,} points; scoring {width} classes on "
                              f"them needs about {need / gib:.1f} GiB of memory but "
                              f"{free / gib:.1f} GiB are available: subsample the scan (e.g. keep "
                              f"one point per 2 cm voxel), give fewer classes, or use a machine "
                              "with more memory")
    return need


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


def open_inputs(args: argparse.Namespace, *,
                width: int) -> tuple[Scene, list[View], str, LoadedModel]:
    """The scan, its views (and where they came from) and the model, as the arguments name them.

    The scan, the frames and the checkpoint path are checked before the model code (torch,
    diffusers, transformers) is imported, so that bad input is refused at once.

    Args:
        args: the parsed ``segment`` / ``query`` arguments.
        width: scores per point (classes or queries), for the memory check.
    """
    scene = load_scan(args.scan, min_points=1 if args.no_2d else MIN_VIEW_POINTS)
    check_memory(args.scan, scene.num_points, width)
    views, source = find_views(args)
    ckpt = checkpoint_file(args.ckpt)
    from xmask3d.apps.inference import load_inference_model

    lm = load_inference_model(ckpt, config=args.config, overrides=args.overrides,
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
    check_span(getattr(args, "scan", None), scene.points, lm.cfg.data.voxel_size, frame.unit)
    result = _score_in_frame(args, lm, scene, views, views_source=views_source,
                             class_embeds=class_embeds, view_fn=view_fn, point_fn=point_fn,
                             width=width, is_novel_class=is_novel_class)
    result.frame, result.points = frame.to_dict(), scene.points
    return result


def check_span(path: str | Path | None, points: np.ndarray, voxel_size: float, unit: str) -> None:
    """Refuse a scan too large for the voxel grid (a unit mistake, usually) with a clear message.

    Raises:
        DataError: the scan spans more than ``COORD_LIMIT`` voxels along an axis.
    """
    from xmask3d.sparse.base import COORD_LIMIT

    span = float(np.ptp(points, axis=0).max()) if len(points) else 0.0
    if span >= COORD_LIMIT * voxel_size:
        raise DataError(path, f"the scan spans {span:,.0f} m along one axis when read as {unit}; "
                              f"at {voxel_size} m voxels at most {COORD_LIMIT * voxel_size:,.0f} "
                              "m fit: is it in centimetres or millimetres? (--units)")


def to_frame(frame: ScanFrame, scene: Scene, views: list[View]) -> tuple[Scene, list[View]]:
    """The scene's points and the views' poses in ``frame`` (same point order, same images)."""
    if frame.is_identity:
        return scene, views
    return replace(scene, points=frame.apply(scene.points)), frame.apply_views(views)


def _score_in_frame(args: argparse.Namespace, lm: LoadedModel, scene: Scene, views: list[View],
                    *, views_source: str, class_embeds: torch.Tensor, view_fn: ViewScoreFn,
                    point_fn: PointScoreFn, width: int,
                    is_novel_class: torch.Tensor | None) -> ScanScores:
    from xmask3d.apps.inference import RENDERED_REL_THRESH, run_3d_chunks, run_views

    progress = not args.no_progress
    if args.no_2d:
        logger.info("path: 3d-only (sparse 3D network on spatial chunks)")
        acc = run_3d_chunks(lm, scene, score_fn=point_fn, width=width,
                            chunk_points=args.chunk_points, progress=progress)
        return ScanScores(acc.mean(scene.points), PATH_3D)
    path, notes = PATH_VIEWS, []
    if not views:
        path, views_source = PATH_VIRTUAL, "rendered"
        views, notes = make_virtual_views(args, lm, scene)
    logger.info("path: %s (%d views from %s)", path, len(views), views_source)
    acc, used = run_views(
        lm, scene, views, class_embeds=class_embeds, score_fn=view_fn, width=width,
        is_novel_class=is_novel_class,
        batch_size=args.batch_size or (lm.cfg.eval.batch_size if lm.device.type == "cuda"
                                       else 1),
        rel_thresh=RENDERED_REL_THRESH if path == PATH_VIRTUAL else None,
        max_view_points=args.max_view_points or lm.cfg.data.max_visible,
        min_points=MIN_VIEW_POINTS, progress=progress)
    seen = float(acc.seen.mean())
    if used == 0 or seen == 0.0:
        if path == PATH_VIRTUAL:     # the cameras were placed around the scan: it is too small
            raise DataError(args.scan, f"none of the {len(views)} virtual views sees "
                                       f"{MIN_VIEW_POINTS} points of the scan ({scene.num_points} "
                                       "points in all); use --no-2d for so small a scan")
        raise DataError(views_source, f"none of the {len(views)} views sees {MIN_VIEW_POINTS} "
                                      "points of the scan; check that the poses and the scan "
                                      "share one coordinate frame")
    return ScanScores(acc.mean(scene.points), path, views_source, len(views), used, seen, notes)


def make_virtual_views(args: argparse.Namespace, lm: LoadedModel,
                   scene: Scene) -> tuple[list[View], list[str]]:
    """Virtual views for ``--virtual-views N`` (and a note when the scan has no colour)."""
    from xmask3d.apps.virtual_views import render_virtual_views

    notes = []
    # the reader gives a scan without colour the grey GREY; one of a single colour (as any
    # one-point scan is) is coloured all the same
    if (scene.colors == GREY).all():
        notes.append("the scan has no colour: virtual views are flat grey; consider --no-2d")
        logger.warning(notes[-1])
    n = max(int(args.virtual_views), 1)
    logger.info("rendering up to %d virtual views of %d points", n + n // 2 + n // 2,
                scene.num_points)
    views = render_virtual_views(scene.points, scene.colors, hw=tuple(lm.cfg.data.image_hw),
                                 num_ring=n, num_top=max(n // 2, 1), num_extra=n // 2,
                                 border=lm.cfg.data.border)
    return views, notes


class CommandMemory:
    """Resident memory of this process while one command runs.

    ``ru_maxrss`` is the peak of the whole process, so in ``xmask3d demo`` (training, then
    ``segment`` in the same process) it would report the training's peak. On Linux the peak
    (``VmHWM``) is reset to the current RSS when the command starts (``echo 5 >
    /proc/self/clear_refs``), so :meth:`to_dict` reports the command's own peak; where that is not
    possible it reports the process peak under a key that says so.
    """

    def __init__(self) -> None:
        self.start_mb = _proc_status_mb("VmRSS")
        self.peak_is_own = _reset_peak_rss()

    def to_dict(self) -> dict[str, float | None]:
        """RSS at the command's start and the peak during it (or the process peak), in MiB."""
        start = None if self.start_mb is None else round(self.start_mb)
        if self.peak_is_own:
            peak = _proc_status_mb("VmHWM")
            return {"rss_at_command_start_mb": start,
                    "peak_rss_during_command_mb": None if peak is None else round(peak)}
        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = ru / 2**20 if sys.platform == "darwin" else ru / 1024
        return {"rss_at_command_start_mb": start, "peak_rss_of_process_mb": round(peak)}


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _proc_status_mb(key: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in MiB, or ``None``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    text = json.dumps(data, indent=2)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path
