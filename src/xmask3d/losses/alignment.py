"""Cosine alignment losses: mask-level 2D-to-3D regularisation and caption alignment.

Follows XMask3D method.md §3.5-§3.6. Fixes (decisions.md §5, method.md §8.8, §8.17): nothing is
forced to cover all points when no mask qualifies, and the default ("ours") mask selection uses
only base-class labels (1 = labelled base, 0 = anything else), never ground-truth novel locations.
The published selection stays available as ``selection="published"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xmask3d.models.outputs import PointRows

__all__ = ["select_alignment_masks", "mask_region_alignment", "caption_alignment"]

_SELECTIONS = ("ours", "published")


def _check_offsets(point_offsets: Tensor, num_points: int, name: str) -> None:
    if point_offsets.dim() != 1 or point_offsets.numel() < 2:
        raise ValueError(
            f"{name}: point_offsets must be (B + 1,), got {tuple(point_offsets.shape)}"
        )
    if int(point_offsets[0]) != 0 or int(point_offsets[-1]) != num_points:
        raise ValueError(
            f"{name}: point_offsets must start at 0 and end at P={num_points}, got "
            f"{int(point_offsets[0])}..{int(point_offsets[-1])}"
        )


def select_alignment_masks(
    member: Tensor,
    binary_labels: Tensor,
    confidence: Tensor,
    *,
    selection: str = "ours",
    min_points: int = 10,
    top_novel: int = 4,
    top_base: int = 1,
    novel_ratio: float = 1.8,
    novel_min: int = 10,
    base_ratio: float = 20.0,
    base_min: int = 150,
) -> Tensor:
    """Queries of one view whose masks get the alignment loss.

    A mask with at least ``min_points`` points is a *novel candidate* when its "novel" points
    ``n`` satisfy ``n > novel_ratio * (count - n)`` and ``n > novel_min``; otherwise it is a *base
    candidate* when its base points ``b`` satisfy ``b > base_ratio * (count - b)`` and
    ``b > base_min``. The ``top_novel`` novel and ``top_base`` base candidates of highest
    confidence are kept. "Novel" points are label 0 for ``"published"`` (label -1 points count
    against both kinds) and every point not labelled 1 for ``"ours"``.

    Args:
        member: (n, Q) bool, point i lies in query mask q.
        binary_labels: (n,) int64 in {1, 0, -1}.
        confidence: (Q,) mask confidence.
        selection: ``"ours"`` or ``"published"``.
        min_points, top_novel, top_base, novel_ratio, novel_min, base_ratio, base_min: see above.

    Returns:
        (Q,) bool selected queries.
    """
    if selection not in _SELECTIONS:
        raise ValueError(f"selection: expected one of {_SELECTIONS}, got {selection!r}")
    is_base = binary_labels == 1
    is_novel = binary_labels == 0 if selection == "published" else ~is_base
    member_f = member.float()
    count = member_f.sum(0)
    n_novel = member_f.T @ is_novel.float()
    n_base = member_f.T @ is_base.float()
    kept = count >= min_points
    novel = kept & (n_novel > novel_ratio * (count - n_novel)) & (n_novel > novel_min)
    base = kept & ~novel & (n_base > base_ratio * (count - n_base)) & (n_base > base_min)
    selected = torch.zeros_like(kept)
    for candidates, top in ((novel, top_novel), (base, top_base)):
        k = min(top, int(candidates.sum()))
        if k > 0:
            scores = confidence.masked_fill(~candidates, float("-inf"))
            selected[scores.topk(k).indices] = True
    return selected


def _mask_confidence(mask_logits: Tensor) -> Tensor:
    """(Q,) mean sigmoid over the pixels where it exceeds 0.5 (0 for an empty mask)."""
    probs = mask_logits.detach().float().sigmoid().flatten(1)
    fg = probs > 0.5
    return (probs * fg).sum(1) / fg.sum(1).clamp(min=1)


def mask_region_alignment(
    point_feats_3d: Tensor | PointRows,
    point_query_logits: Tensor,
    point_offsets: Tensor,
    targets: Tensor,
    mask_logits_2d: Tensor,
    binary_labels: Tensor,
    *,
    selection: str = "ours",
    min_points: int = 10,
    top_novel: int = 4,
    top_base: int = 1,
    novel_ratio: float = 1.8,
    novel_min: int = 10,
    base_ratio: float = 20.0,
    base_min: int = 150,
) -> Tensor:
    """Mean ``1 - cos(mean 3D feature inside a selected mask, that mask's target embedding)``.

    Point i belongs to query q when ``sigmoid(point_query_logits[i, q]) >= 0.5``; masks are
    chosen per view by ``select_alignment_masks``.

    Args:
        point_feats_3d: (P, E) pure 3D point features, or the same as ``PointRows`` (per voxel).
        point_query_logits: (P, Q) final-layer query mask logits at each point's pixel.
        point_offsets: (B + 1,) int64 point offsets of the views.
        targets: (B, Q, E) target embeddings (CLIP mask tokens or mask embeddings); detached here.
        mask_logits_2d: (B, Q, h, w) final-layer mask logits, for the confidences.
        binary_labels: (P,) int64 in {1, 0, -1}.
        selection, min_points, top_novel, top_base, novel_ratio, novel_min, base_ratio, base_min:
            see ``select_alignment_masks``.

    Returns:
        () mean loss over all selected masks of the batch; a zero connected to
        ``point_feats_3d``' graph when no mask is selected.
    """
    feats = as_rows(point_feats_3d)
    num_points = feats.num_points
    _check_offsets(point_offsets, num_points, "mask_region_alignment")
    if point_query_logits.shape[0] != num_points or binary_labels.shape != (num_points,):
        raise ValueError(
            f"mask_region_alignment: point_query_logits {tuple(point_query_logits.shape)} and "
            f"binary_labels {tuple(binary_labels.shape)} must have P={num_points} rows"
        )
    thresholds = dict(
        selection=selection, min_points=min_points, top_novel=top_novel, top_base=top_base,
        novel_ratio=novel_ratio, novel_min=novel_min, base_ratio=base_ratio, base_min=base_min,
    )  # fmt: skip
    member_all = point_query_logits.detach().sigmoid() >= 0.5
    losses = []
    for b in range(point_offsets.numel() - 1):
        start, end = int(point_offsets[b]), int(point_offsets[b + 1])
        member = member_all[start:end]
        confidence = _mask_confidence(mask_logits_2d[b])
        chosen = select_alignment_masks(member, binary_labels[start:end], confidence, **thresholds)
        if not bool(chosen.any()):
            continue
        weights = member[:, chosen].to(feats.rows.dtype)  # (n, k)
        k = weights.shape[1]
        row_w = feats.rows.new_zeros(feats.rows.shape[0], k).index_add_(
            0, feats.index[start:end], weights)                            # (R, k) per row
        means = row_w.T @ feats.rows / weights.sum(0)[:, None]
        target = targets[b, chosen].detach().to(means.dtype)
        losses.append(1.0 - F.cosine_similarity(means, target, dim=1))
    if not losses:
        return feats.rows.sum() * 0.0
    return torch.cat(losses).mean()


def caption_alignment(
    point_feats: Tensor | PointRows,
    point_offsets: Tensor,
    caption_embeds: Tensor,
    *,
    point_mask: Tensor | None = None,
) -> Tensor:
    """Mean over views of ``1 - cos(mean point feature of the view, caption embedding)``.

    Views without any (masked) point or with an all-zero caption embedding (no caption) are
    skipped.

    Args:
        point_feats: (P, E) point features, or the same as ``PointRows``.
        point_offsets: (B + 1,) int64 point offsets of the views.
        caption_embeds: (B, E) caption text embeddings (zero rows = no caption).
        point_mask: (P,) bool points to average (e.g. those covered by a 2D mask), or all.

    Returns:
        () loss; a zero connected to ``point_feats``' graph when no view qualifies.
    """
    feats = as_rows(point_feats)
    num_points, dim = feats.num_points, feats.rows.shape[1]
    _check_offsets(point_offsets, num_points, "caption_alignment")
    num_views = point_offsets.numel() - 1
    if caption_embeds.shape != (num_views, dim):
        raise ValueError(
            f"caption_alignment: caption_embeds must be ({num_views}, {dim}), "
            f"got {tuple(caption_embeds.shape)}"
        )
    if point_mask is not None and point_mask.shape != (num_points,):
        raise ValueError(f"caption_alignment: point_mask must be ({num_points},)")
    device = feats.rows.device
    counts = (point_offsets[1:] - point_offsets[:-1]).to(device)
    view = torch.repeat_interleave(torch.arange(num_views, device=device), counts)
    weight = None if point_mask is None else point_mask.to(device)
    group_w = feats.group_weights(view, num_views, weight)                 # (B, R)
    n = group_w.sum(1)
    valid = (n > 0) & (caption_embeds.detach().abs().sum(1) > 0)
    if not bool(valid.any()):
        return feats.rows.sum() * 0.0
    means = (group_w[valid] @ feats.rows) / n[valid, None]
    cos = F.cosine_similarity(means, caption_embeds[valid].detach().to(means.dtype), dim=1)
    return (1.0 - cos).mean()


def as_rows(feats: Tensor | PointRows) -> PointRows:
    """``feats`` as ``PointRows`` (a (P, E) tensor becomes one row per point)."""
    return feats if isinstance(feats, PointRows) else PointRows.of_points(feats)
