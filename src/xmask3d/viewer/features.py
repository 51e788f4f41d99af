"""Per-point features of a scan, computed once, then scored against any words in milliseconds.

The viewer runs the model once over the views of a scan (the same view selection as
``segment``: the user's frames, else virtual views; the 3D network alone with ``--no-2d``) and
keeps, per point, the mean over the views that see it of the L2-normalised fused, 3D and 2D
point features (the 2D feature only over views where a final 2D mask covers the point), the mean
binary base/novel logit and the fraction of views in which a 2D mask covered it. This is the
multi-view feature averaging of OpenScene (Peng et al., CVPR 2023, §3.1) applied to XMask3D's
point features (method.md §4.1-§4.3). A class list or a free-text query is then only a text
encoding and an (N x E) @ (E x k) product.

Because the features are averaged before classification, a segmentation here can differ
slightly from ``xmask3d segment``, which averages the per-view probabilities; the final 2D masks
of each view are those chosen with the class list of the first run.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree

from xmask3d.apps.common import PATH_3D, PATH_VIEWS, PATH_VIRTUAL, find_views, make_virtual_views
from xmask3d.apps.inference import (
    RENDERED_REL_THRESH,
    LoadedModel,
    run_3d_chunks,
    run_views,
    spatial_chunks,
)
from xmask3d.apps.query import DEFAULT_NEGATIVES
from xmask3d.config import FusionCfg
from xmask3d.data.batch import ViewBatch
from xmask3d.data.orientation import ScanFrame
from xmask3d.data.scene import Scene, View
from xmask3d.errors import DataError
from xmask3d.models.fusion.mask_to_points import gather_point_mask_features
from xmask3d.models.fusion.routing import ensemble_log_scores, gate_base_novel
from xmask3d.models.outputs import XMask3DOutput

__all__ = ["MODES", "PointFeatures", "Vocabulary", "compute_point_features", "encode_negatives",
           "encode_query", "logit_scale_of", "make_vocabulary"]

logger = logging.getLogger(__name__)

MODES = ("fused", "3d", "2d")
ProgressFn = Callable[[int, int, str], None]      # (done, total, what)


@dataclass
class Vocabulary:
    """A class list ready to score: names (synonyms with ``|``), embeddings and the gate."""

    names: list[str]
    embeds: torch.Tensor              # (C, E) normalised
    is_novel: torch.Tensor            # (C,) bool; all True without base classes
    gating: bool                      # base classes were named: gate by the binary head


@dataclass
class PointFeatures:
    """Cached per-point features of one scan (N points, text width E).

    Attributes:
        fused, feat_3d, feat_2d: (N, E) float32 unit vectors (view means, re-normalised).
        clip: (N, E) CLIP mask embeddings (view means) or ``None`` without a CLIP tower.
        binary: (N,) float32 mean base-vs-novel logit (> 0: base).
        covered: (N,) float32 fraction of the views seeing the point where a 2D mask covers it.
        scale: the model's logit scale.
        fusion: ensemble ratios and binary threshold of the model's config.
        path: how the views were obtained (``views``, ``virtual-views``, ``3d-only``).
    """

    fused: torch.Tensor
    feat_3d: torch.Tensor
    feat_2d: torch.Tensor
    clip: torch.Tensor | None
    binary: torch.Tensor
    covered: torch.Tensor
    scale: float
    fusion: FusionCfg
    path: str

    @property
    def num_points(self) -> int:
        return int(self.fused.shape[0])

    def is_base(self) -> torch.Tensor:
        """(N,) bool: the binary head's base decision at the config's threshold."""
        t = min(max(self.fusion.binary_thresh, 1e-6), 1 - 1e-6)
        return self.binary > math.log(t / (1 - t))

    def log_scores(self, vocab: Vocabulary, mode: str,
                   index: torch.Tensor | None = None) -> torch.Tensor:
        """(N, C) (or (len(index), C)) log class scores of ``mode`` (fused, 3d or 2d)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        pick = (lambda t: t) if index is None else (lambda t: t[index])
        feats = {"fused": self.fused, "3d": self.feat_3d, "2d": self.feat_2d}[mode]
        classes = _unit(vocab.embeds).T
        # the cached features are unit vectors: the cosine logits are one product
        out = F.log_softmax(self.scale * (pick(feats) @ classes), dim=1)
        if mode == "fused" and self.clip is not None:
            log_clip = F.log_softmax(self.scale * (pick(self.clip) @ classes), dim=1)
            out = ensemble_log_scores(out, log_clip, pick(self.covered) > 0, vocab.is_novel,
                                      base_ratio=self.fusion.base_ratio,
                                      novel_ratio=self.fusion.novel_ratio)
        if vocab.gating:
            out = gate_base_novel(out, pick(self.is_base()), vocab.is_novel)
        return out

    def probabilities(self, vocab: Vocabulary, mode: str) -> np.ndarray:
        """(N, C) float32 class probabilities of ``mode``, in chunks of 200k points."""
        n = self.num_points
        return np.concatenate([
            self.log_scores(vocab, mode, torch.arange(lo, min(lo + 200_000, n))).exp().numpy()
            for lo in range(0, n, 200_000)]).astype(np.float32)

    def relevance(self, query: torch.Tensor, negatives: torch.Tensor) -> np.ndarray:
        """(N,) LERF relevance of the fused features to one (E,) query embedding: the formula
        of :func:`xmask3d.apps.query.relevance` as one (N, E) @ (E, 1 + M) product."""
        texts = _unit(torch.cat([query[None], negatives]))
        s = self.fused @ (self.scale * texts.T)
        return torch.sigmoid(s[:, 0] - s[:, 1:].max(dim=1).values).numpy()


class _ReportingViews(list):
    """A list of views that calls ``report(done, total, "views")`` as it is iterated."""

    def __init__(self, views: Sequence[View], report: ProgressFn) -> None:
        super().__init__(views)
        self._report = report

    def __iter__(self) -> Iterator[View]:
        for i, view in enumerate(super().__iter__()):
            self._report(i, len(self), "views")
            yield view
        self._report(len(self), len(self), "views")


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def _fill_uncovered(points: np.ndarray, feats: np.ndarray, covered: np.ndarray) -> None:
    """Give points without any 2D mask the 2D feature of their nearest covered point."""
    if covered.all() or not covered.any():
        return
    idx = np.flatnonzero(covered)
    _, nn = cKDTree(points[idx]).query(points[~covered], k=1)
    feats[~covered] = feats[idx[nn]]


def compute_point_features(args, lm: LoadedModel, scene: Scene, vocab: Vocabulary, *,
                           report: ProgressFn | None = None,
                           frame: ScanFrame | None = None) -> PointFeatures:
    """Run the model once over the scan and keep per-point mean features.

    Args:
        args: the view-selection arguments of ``segment`` (``views``, ``virtual``, ``no_2d``,
            ``virtual_views``, ``batch_size``, ``max_view_points``, ``chunk_points``, ``scan``).
        lm: the loaded model.
        scene: the scan.
        vocab: the class list the model chooses its final 2D masks with.
        report: called with (done, total, what) as views or chunks are processed.
        frame: the canonical frame ``scene`` is already in; the user's views are moved into it.

    Raises:
        DataError: no view sees a point of the scan.
    """
    report = report or (lambda done, total, what: None)
    e = int(vocab.embeds.shape[1])
    fusion = replace(lm.cfg.fusion, gating=vocab.gating)
    if args.no_2d:
        chunks = len(spatial_chunks(scene.points, max_points=args.chunk_points))
        done = [0]

        def point_fn(feats, binary, scale):
            report(done[0], chunks, "3D chunks")
            done[0] += 1
            return torch.cat([_unit(feats), binary.float()[:, None]], dim=1)

        acc = run_3d_chunks(lm, scene, score_fn=point_fn, width=e + 1,
                            chunk_points=args.chunk_points, progress=False)
        report(chunks, chunks, "3D chunks")
        mean = torch.from_numpy(acc.mean(scene.points))
        f3 = _unit(mean[:, :e])
        n = scene.num_points
        return PointFeatures(fused=f3, feat_3d=f3, feat_2d=f3, clip=None, binary=mean[:, e],
                             covered=torch.zeros(n), scale=logit_scale_of(lm), fusion=fusion,
                             path=PATH_3D)
    views, source = find_views(args)
    if frame is not None:
        views = frame.apply_views(views)
    path = PATH_VIEWS
    if not views:
        path = PATH_VIRTUAL
        views, _ = make_virtual_views(args, lm, scene)
    has_clip = lm.model.clip_head is not None      # CLIP mask embeddings: one more block

    def view_fn(out: XMask3DOutput, batch: ViewBatch) -> torch.Tensor:
        cov = out.point_covered.float()[:, None]
        parts = [_unit(out.point_feats_fused), _unit(out.point_feats_3d),
                 _unit(out.point_feats_2d) * cov, cov, out.binary_logits.float()[:, None]]
        if has_clip:
            clip = gather_point_mask_features(out.mask_clip_embeds, out.point_mask_id,
                                              batch.point_batch)
            parts.append(_unit(clip) * cov)
        return torch.cat(parts, dim=1)

    acc, used = run_views(
        lm, scene, _ReportingViews(views, report), class_embeds=vocab.embeds, score_fn=view_fn,
        width=(4 if has_clip else 3) * e + 2,
        is_novel_class=vocab.is_novel if vocab.gating else None,
        batch_size=args.batch_size or (lm.cfg.eval.batch_size if lm.device.type == "cuda"
                                       else 1),
        rel_thresh=RENDERED_REL_THRESH if path == PATH_VIRTUAL else None,
        max_view_points=args.max_view_points or lm.cfg.data.max_visible, progress=False)
    if used == 0 or not acc.seen.any():
        raise DataError(source or None, f"none of the {len(views)} views sees a point of the "
                        "scan; check that the poses and the scan share one coordinate frame")
    mean = acc.mean(scene.points)                  # (N, width), unseen points filled
    covered = mean[:, 3 * e].copy()
    for block in (slice(2 * e, 3 * e), slice(3 * e + 2, 4 * e + 2) if has_clip else None):
        if block is not None:                      # 2D (and CLIP) features of uncovered points
            _fill_uncovered(scene.points, mean[:, block], covered > 0)
    t = torch.from_numpy(mean)
    return PointFeatures(
        fused=_unit(t[:, :e]), feat_3d=_unit(t[:, e:2 * e]), feat_2d=_unit(t[:, 2 * e:3 * e]),
        clip=_unit(t[:, 3 * e + 2:]) if has_clip else None, binary=t[:, 3 * e + 1].clone(),
        covered=torch.from_numpy(covered), scale=logit_scale_of(lm), fusion=fusion, path=path)


def logit_scale_of(lm: LoadedModel) -> float:
    """The model's learned logit scale as a float."""
    with torch.no_grad():
        return float(lm.model.mask_generator.mask_embed.logit_scale())


def make_vocabulary(lm: LoadedModel, names: list[str], base: Sequence[str] = ()) -> Vocabulary:
    """Embed a class list (synonyms with ``|`` averaged by the text classifier)."""
    gating = bool(base)
    novel = torch.tensor([n not in base for n in names]) if gating else torch.ones(
        len(names), dtype=torch.bool)
    with torch.no_grad():
        embeds = lm.text.class_embeddings(names).float().cpu()
    return Vocabulary(names=list(names), embeds=embeds, is_novel=novel, gating=gating)


def encode_query(lm: LoadedModel, text: str) -> torch.Tensor:
    """(E,) embedding of a free-text query (as it is, no templates)."""
    with torch.no_grad():
        return lm.text.encode_captions([text])[0].float().cpu()


def encode_negatives(lm: LoadedModel, negatives: Sequence[str] = DEFAULT_NEGATIVES
                     ) -> torch.Tensor:
    """(M, E) embeddings of LERF's generic phrases."""
    with torch.no_grad():
        return lm.text.encode_captions(list(negatives)).float().cpu()
