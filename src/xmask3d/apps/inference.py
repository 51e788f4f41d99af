"""Shared engine of ``segment`` and ``query``: model loading, per-view scoring, 3D-only chunks.

Per-point scores of every view that sees a point are averaged (the mean of per-view
probabilities or relevances, accumulated in float32 as an (N, K) sum and an (N,) count); points
that no view sees copy the mean of their nearest seen point (exact within 0.25 m, approximate
beyond). The 3D-only path runs the sparse 3D
network on spatial chunks (median splits into cores of at most ``chunk_points`` points, each
with a context margin) so that memory stays bounded for scans of millions of points.
Follows XMask3D inference (method.md §4.1-§4.3) for what one view predicts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor
from tqdm.auto import tqdm

from xmask3d.apps.bundled import checkpoint_file
from xmask3d.apps.virtual_views import point_spacing, render_points, visible_pixels
from xmask3d.config import XMask3DConfig
from xmask3d.data.batch import ViewBatch
from xmask3d.data.dataset import ViewSample, collate_views, make_view_sample
from xmask3d.data.projection import PointPixelMap, resize_view
from xmask3d.data.scene import Scene, View
from xmask3d.models.outputs import XMask3DOutput
from xmask3d.models.text.classifier import TextClassifier
from xmask3d.models.xmask3d import XMask3D

__all__ = [
    "RENDERED_REL_THRESH", "LoadedModel", "PointScores", "load_inference_model", "run_3d_chunks",
    "run_views", "spatial_chunks",
]

logger = logging.getLogger(__name__)

RENDERED_REL_THRESH = 0.05   # depth tolerance when the depth map is rendered from the scan itself
KD_QUERY_CHUNK = 1 << 18
FILL_EXACT_RADIUS = 0.25     # metres: nearest-seen-point fill is exact up to this distance

ViewScoreFn = Callable[[XMask3DOutput, ViewBatch], Tensor]       # -> (P, K)
PointScoreFn = Callable[[Tensor, Tensor, Tensor], Tensor]        # (P,E), (P,), () -> (P, K)


@dataclass
class LoadedModel:
    """A model ready for inference, with its configuration and text classifier."""

    model: XMask3D
    cfg: XMask3DConfig
    text: TextClassifier
    checkpoint: Path
    step: int
    device: torch.device

    def autocast(self):
        """bf16 autocast on CUDA when the config trains with AMP, else a no-op context."""
        if self.cfg.train.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()


def load_inference_model(ckpt: str | Path | None, *, config: str | None = None,
                         overrides: Sequence[str] = (), device: str = "auto") -> LoadedModel:
    """Load a checkpoint, its (or a compatible) config, the text encoder and the weights.

    Args:
        ckpt: checkpoint file; ``None`` for the bundled one.
        config: a config whose architecture must match the checkpoint's (default: its own).
        overrides: ``key=value`` overrides (non-architecture fields only).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Raises:
        CheckpointError: missing default checkpoint, unreadable file, or an architecture that
            does not fit the weights.
    """
    from xmask3d.engine.checkpoint import load_model_state
    from xmask3d.engine.eval_cli import resolve_config
    from xmask3d.models.build import build_model, build_text

    ckpt = checkpoint_file(ckpt)
    cfg, data = resolve_config(str(ckpt), config, list(overrides))
    text = build_text(cfg)
    model = build_model(cfg, text_dim=text.dim)
    load_model_state(model, data["model"], ckpt)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    model.to(dev).eval()
    return LoadedModel(model=model, cfg=cfg, text=text, checkpoint=Path(ckpt),
                       step=int(data["step"]), device=dev)


class PointScores:
    """Running per-point mean of (n, K) scores over views, float32 sums and int32 counts.

    Args:
        num_points: N.
        width: K, scores per point.
    """

    def __init__(self, num_points: int, width: int) -> None:
        self.sums = torch.zeros(num_points, width, dtype=torch.float32)
        self.counts = torch.zeros(num_points, dtype=torch.int32)

    def add(self, point_index: Tensor, scores: Tensor) -> None:
        """Add one view's ``scores`` (n, K) at ``point_index`` (n,), each index once."""
        point_index = point_index.long().cpu()
        self.sums.index_add_(0, point_index, scores.detach().float().cpu())
        self.counts.index_add_(0, point_index, torch.ones_like(point_index, dtype=torch.int32))

    @property
    def seen(self) -> np.ndarray:
        """(N,) bool: scored at least once."""
        return (self.counts > 0).numpy()

    def mean(self, points: np.ndarray) -> np.ndarray:
        """(N, K) float32 mean scores; unseen points copy their nearest seen point (in place).

        The nearest seen point is exact within ``FILL_EXACT_RADIUS``; farther away it is an
        approximate one (at most twice the true distance), because exact searches from deep
        inside large unseen regions are very slow.

        Raises:
            ValueError: when no point was scored.
        """
        seen = self.seen
        if not seen.any():
            raise ValueError("no point was scored")
        out = self.sums.numpy()
        np.divide(out, self.counts.numpy()[:, None], out=out, where=seen[:, None])
        unseen = np.flatnonzero(~seen)
        if len(unseen):
            seen_idx = np.flatnonzero(seen)
            tree = cKDTree(points[seen_idx])
            for lo in range(0, len(unseen), KD_QUERY_CHUNK):
                part = unseen[lo:lo + KD_QUERY_CHUNK]
                out[part] = out[seen_idx[_nearest(tree, points[part])]]
        return out


def _nearest(tree: cKDTree, query: np.ndarray) -> np.ndarray:
    """Index of the nearest tree point: exact within ``FILL_EXACT_RADIUS``, else approximate."""
    dist, idx = tree.query(query, k=1, distance_upper_bound=FILL_EXACT_RADIUS)
    far = ~np.isfinite(dist)
    if far.any():
        idx[far] = tree.query(query[far], k=1, eps=1.0)[1]
    return idx


def _even_subset(n: int, k: int) -> np.ndarray:
    """``k`` evenly spaced indices of ``range(n)`` (all when ``n <= k``)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def make_sample(scene: Scene, point_idx: np.ndarray, *, voxel_size: float,
                class_names: Sequence[str], image: np.ndarray | None = None,
                pixel_rc: np.ndarray | None = None, view_name: str = "",
                height_channel: bool = False) -> ViewSample:
    """A ``ViewSample`` of the scene points ``point_idx`` (labels all ignore).

    ``image`` is (H, W, 3) uint8; without one (3D-only) a 1x1 black image stands in.
    """
    n = len(point_idx)
    color = np.zeros((1, 1, 3), np.uint8) if image is None else image
    view = View(name=view_name, color=color, pose=np.eye(4), intrinsics=np.eye(3))
    pmap = PointPixelMap(np.asarray(point_idx, np.int64),
                         np.zeros((n, 2), np.int64) if pixel_rc is None else pixel_rc)
    return make_view_sample(scene, view, pmap, voxel_size=voxel_size,
                            binary_labels=np.zeros(n, np.int64), class_names=tuple(class_names),
                            height_channel=height_channel)


def prepare_view(scene: Scene, view: View, *, hw: tuple[int, int], rel_thresh: float,
                 border: int, spacing: float) -> tuple[View, PointPixelMap]:
    """Resize a view to ``hw`` and find the scan points it sees.

    Frames with a depth map use it (tolerance ``rel_thresh``); frames without one get a depth
    map rendered from the scan's own points (a z-buffer), tested at ``RENDERED_REL_THRESH``.
    """
    view = resize_view(view, hw)
    if view.depth is None:
        depth, _ = render_points(scene.points, view.pose, view.intrinsics, view.hw,
                                 spacing=spacing, fill_px=0)
        view, rel_thresh = replace(view, depth=depth), RENDERED_REL_THRESH
    return view, visible_pixels(scene.points, view, rel_thresh=rel_thresh, border=border)


def _view_samples(lm: LoadedModel, scene: Scene, views: Sequence[View], *,
                  class_names: Sequence[str], rel_thresh: float | None,
                  max_view_points: int, min_points: int) -> Iterator[ViewSample | None]:
    cfg = lm.cfg.data
    hw = (int(cfg.image_hw[0]), int(cfg.image_hw[1]))
    spacing = point_spacing(scene.points)
    for view in views:
        rel = cfg.rel_thresh if rel_thresh is None else rel_thresh
        view, pmap = prepare_view(scene, view, hw=hw, rel_thresh=rel, border=cfg.border,
                                  spacing=spacing)
        if len(pmap) < min_points:
            logger.info("view %s sees %d points: skipped", view.name, len(pmap))
            yield None
            continue
        keep = _even_subset(len(pmap), max_view_points)
        yield make_sample(scene, pmap.point_idx[keep], voxel_size=cfg.voxel_size,
                          class_names=class_names, image=view.color, pixel_rc=pmap.rc[keep],
                          view_name=view.name, height_channel=cfg.height_channel)


@torch.no_grad()
def run_views(lm: LoadedModel, scene: Scene, views: Sequence[View], *, class_embeds: Tensor,
              score_fn: ViewScoreFn, width: int, is_novel_class: Tensor | None = None,
              batch_size: int = 4, max_view_points: int = 65000, min_points: int = 10,
              rel_thresh: float | None = None, progress: bool = True) -> tuple[PointScores, int]:
    """Score every view with the full model and average per point.

    Args:
        lm: the loaded model.
        scene: the scan (N points).
        views: posed frames (any size; resized to ``data.image_hw``).
        class_embeds: (C, E) vocabulary the model classifies masks with.
        score_fn: (output, batch) -> (P, K) per-point scores of one batch.
        width: K.
        is_novel_class: (C,) bool for mask-level base/novel gating, or ``None`` for none.
        batch_size: views per forward.
        max_view_points: at most this many visible points per view (evenly subsampled).
        min_points: views that see fewer points are skipped.
        rel_thresh: depth tolerance of frames with depth (default ``data.rel_thresh``).
        progress: show a progress bar.

    Returns:
        The accumulated scores and the number of views used.
    """
    scores = PointScores(scene.num_points, width)
    embeds = class_embeds.to(lm.device)
    novel = None if is_novel_class is None else is_novel_class.to(lm.device)
    names = [f"c{i}" for i in range(len(class_embeds))]
    samples = _view_samples(lm, scene, views, class_names=names, rel_thresh=rel_thresh,
                            max_view_points=max_view_points, min_points=min_points)
    used, pending = 0, []
    bar = tqdm(total=len(views), unit="view", desc="views", disable=not progress)
    for i, sample in enumerate(samples):
        bar.update(1)
        if sample is not None:
            pending.append(sample)
        if pending and (len(pending) == batch_size or i == len(views) - 1):
            batch = collate_views(pending).to(lm.device)
            with lm.autocast():
                out = lm.model(batch, embeds, is_novel_class=novel)
            scores.add(batch.point_index, score_fn(out, batch))
            used, pending = used + len(pending), []
    bar.close()
    return scores, used


def spatial_chunks(points: np.ndarray, *, max_points: int) -> list[np.ndarray]:
    """Split point indices by repeated median cuts along the longest axis.

    Returns:
        Disjoint index arrays covering ``range(N)``, each of at most ``max_points`` points.
    """
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    todo, out = [np.arange(len(points))], []
    while todo:
        idx = todo.pop()
        if len(idx) <= max_points:
            out.append(idx)
            continue
        sub = points[idx]
        axis = int(np.argmax(sub.max(axis=0) - sub.min(axis=0)))
        half = len(idx) // 2
        order = np.argpartition(sub[:, axis], half)
        todo += [idx[order[half:]], idx[order[:half]]]
    return out


def _with_context(points: np.ndarray, core: np.ndarray, *, margin: float,
                  max_extra: int) -> np.ndarray:
    """``core`` followed by (at most ``max_extra``, evenly spaced) points within ``margin``."""
    lo, hi = points[core].min(axis=0) - margin, points[core].max(axis=0) + margin
    inside = np.all((points >= lo) & (points <= hi), axis=1)
    inside[core] = False
    extra = np.flatnonzero(inside)
    return np.concatenate([core, extra[_even_subset(len(extra), max_extra)]])


@torch.no_grad()
def run_3d_chunks(lm: LoadedModel, scene: Scene, *, score_fn: PointScoreFn, width: int,
                  chunk_points: int = 65000, margin: float = 0.5,
                  progress: bool = True) -> PointScores:
    """The 3D-only path: per-point scores from the sparse 3D network, chunk by chunk.

    Args:
        lm: the loaded model.
        scene: the scan.
        score_fn: (features (P, E), binary logits (P,), logit scale ()) -> (P, K).
        width: K.
        chunk_points: points per chunk core (each chunk adds at most as many context points).
        margin: context margin in metres around each core.
        progress: show a progress bar.
    """
    scores = PointScores(scene.num_points, width)
    scale = lm.model.mask_generator.mask_embed.logit_scale()
    chunks = spatial_chunks(scene.points, max_points=chunk_points)
    for core in tqdm(chunks, unit="chunk", desc="3D chunks", disable=not progress):
        idx = _with_context(scene.points, core, margin=margin, max_extra=chunk_points)
        batch = collate_views([make_sample(scene, idx, voxel_size=lm.cfg.data.voxel_size,
                                           class_names=("point",),
                                           height_channel=lm.cfg.data.height_channel)
                               ]).to(lm.device)
        with lm.autocast():
            feats, _, binary = lm.model.encode_3d(batch)
            out = score_fn(feats[: len(core)], binary[: len(core)], scale)
        scores.add(torch.from_numpy(core), out)
    return scores
