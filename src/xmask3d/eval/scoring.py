"""Per-view point predictions from an ``XMask3DOutput``: fused, 3D-only and 2D-only.

Follows XMask3D inference (method.md §4.1-§4.3) with decisions.md §5: the fused scores are
ensembled with CLIP mask probabilities when a CLIP vision tower produced mask embeddings, and
every prediction is hard-gated to base or novel classes by the binary head, with masking (no NaN).
2D-only predictions of points outside every final mask copy the nearest covered point of the
same view.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import cKDTree
from torch import Tensor

from xmask3d.config import FusionCfg
from xmask3d.data.batch import ViewBatch
from xmask3d.models.fusion.mask_to_points import cosine_logits, gather_point_mask_features
from xmask3d.models.fusion.routing import ensemble_log_scores, gate_base_novel
from xmask3d.models.outputs import XMask3DOutput


def nearest_visible_fill(points: np.ndarray, labels: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Give every unseen point the label of its nearest seen point (1-NN on xyz).

    Args:
        points: (N, 3) coordinates.
        labels: (N,) labels, valid where ``seen``.
        seen: (N,) bool.

    Returns:
        (N,) labels; all -1 when no point is seen.
    """
    out = np.asarray(labels).copy()
    if not seen.any():
        return np.full(len(out), -1, dtype=np.int64)
    if seen.all():
        return out
    _, nn_idx = cKDTree(points[seen]).query(points[~seen], k=1)
    out[~seen] = out[seen][nn_idx]
    return out


def _fill_from_nearest(pred: Tensor, known: Tensor, points: Tensor, offsets: Tensor) -> Tensor:
    """Copy predictions of ``known`` points to the others, nearest known point of the same view
    (views without any known point keep their predictions)."""
    out = pred.clone()
    pts = points.detach().cpu().numpy()
    known_np = known.cpu().numpy()
    pred_np = pred.cpu().numpy()
    for b in range(len(offsets) - 1):
        lo, hi = int(offsets[b]), int(offsets[b + 1])
        if known_np[lo:hi].any():
            out[lo:hi] = torch.from_numpy(
                nearest_visible_fill(pts[lo:hi], pred_np[lo:hi], known_np[lo:hi])).to(out)
    return out


def view_point_scores(out: XMask3DOutput, batch: ViewBatch, *, is_novel_class: Tensor,
                      fusion_cfg: FusionCfg, use_clip: bool = True) -> dict[str, Tensor]:
    """(P, C) log scores of every visible point for the fused, 3D-only and 2D-only predictions.

    Args:
        out: model output for ``batch`` (called with the evaluation vocabulary).
        batch: the views.
        is_novel_class: (C,) bool over the vocabulary.
        fusion_cfg: ensemble ratios, binary threshold and whether gating is on.
        use_clip: ensemble with CLIP mask probabilities when ``out.mask_clip_embeds`` exists.
    """
    is_novel_class = is_novel_class.to(out.point_logits_fused.device)
    log_fused = F.log_softmax(out.point_logits_fused, dim=1)
    log_clip = None
    if use_clip and out.mask_clip_embeds is not None:
        clip_pts = gather_point_mask_features(out.mask_clip_embeds, out.point_mask_id,
                                              batch.point_batch)
        log_clip = F.log_softmax(cosine_logits(clip_pts, out.class_embeds, out.logit_scale), 1)
    scores = {
        "fused": ensemble_log_scores(log_fused, log_clip, out.point_covered, is_novel_class,
                                     base_ratio=fusion_cfg.base_ratio,
                                     novel_ratio=fusion_cfg.novel_ratio),
        "3d": F.log_softmax(out.point_logits_3d, dim=1),
        "2d": F.log_softmax(out.point_logits_2d, dim=1),
    }
    if fusion_cfg.gating:
        t = min(max(fusion_cfg.binary_thresh, 1e-6), 1 - 1e-6)
        is_base = out.binary_logits > math.log(t / (1 - t))
        scores = {k: gate_base_novel(v, is_base, is_novel_class) for k, v in scores.items()}
    return scores


def view_point_predictions(out: XMask3DOutput, batch: ViewBatch, *, is_novel_class: Tensor,
                           fusion_cfg: FusionCfg, use_clip: bool = True) -> dict[str, Tensor]:
    """(P,) int64 predicted class per visible point: keys ``"fused"``, ``"3d"``, ``"2d"``."""
    scores = view_point_scores(out, batch, is_novel_class=is_novel_class,
                               fusion_cfg=fusion_cfg, use_clip=use_clip)
    preds = {k: v.argmax(1) for k, v in scores.items()}
    preds["2d"] = _fill_from_nearest(preds["2d"], out.point_covered, batch.points,
                                     batch.point_offsets)
    return preds
