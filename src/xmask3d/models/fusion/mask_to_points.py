"""Sample 2D query masks at the pixels of the 3D points and pick each point's final mask.

Follows XMask3D (method.md §2.10, §4.1): masks are upsampled to the view resolution and read at
each point's pixel; the final masks are the disjoint panoptic-style assignment
``argmax_q s_q * sigmoid(m_q)`` kept where ``sigmoid(m_k) >= 0.5``. Only the pixels that points
project to are ever needed, so the assignment is evaluated there (identical results, no full-size
upsampling of every mask).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xmask3d.models.outputs import PointRows


def sample_masks_at_points(mask_logits: Tensor, pixel_rc: Tensor, point_batch: Tensor,
                           image_hw: tuple[int, int]) -> Tensor:
    """Bilinearly read (B, Q, h, w) mask logits at point pixels of an (H, W) view.

    Equals ``F.interpolate(mask_logits, image_hw, mode="bilinear", align_corners=False)``
    indexed at ``pixel_rc`` (pixel centres), without materialising the upsampled masks.

    Args:
        mask_logits: (B, Q, h, w) query mask logits.
        pixel_rc: (P, 2) int64 (row, col) of every point at the view resolution.
        point_batch: (P,) int64 batch index of every point.
        image_hw: (H, W) view resolution.

    Returns:
        (P, Q) mask logits at the points.
    """
    b, q, h, w = mask_logits.shape
    big_h, big_w = image_hw
    # pixel centre of the big image in the small image's align_corners=False coordinates
    y = (pixel_rc[:, 0].to(mask_logits.dtype) + 0.5) * (h / big_h) - 0.5
    x = (pixel_rc[:, 1].to(mask_logits.dtype) + 0.5) * (w / big_w) - 0.5
    y = y.clamp(0, h - 1)
    x = x.clamp(0, w - 1)
    y0, x0 = y.floor().long(), x.floor().long()
    y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
    wy, wx = (y - y0).unsqueeze(1), (x - x0).unsqueeze(1)
    flat = mask_logits.permute(0, 2, 3, 1).reshape(b * h * w, q)
    base = point_batch * (h * w)
    v00, v01 = flat[base + y0 * w + x0], flat[base + y0 * w + x1]
    v10, v11 = flat[base + y1 * w + x0], flat[base + y1 * w + x1]
    return (v00 * (1 - wx) + v01 * wx) * (1 - wy) + (v10 * (1 - wx) + v11 * wx) * wy


def query_scores(class_logits: Tensor, *, allowed: Tensor | None = None) -> Tensor:
    """Per-query confidence ``s_q``: the max class probability of softmax over classes + null.

    Args:
        class_logits: (B, Q, C + 1) logits, last column = "no object".
        allowed: optional (B, Q, C + 1) bool; disallowed entries are masked out (set to -inf)
            before the softmax (base/novel gating at inference, method §4.1 step 6).

    Returns:
        (B, Q) scores in [0, 1].
    """
    if allowed is not None:
        class_logits = class_logits.masked_fill(~allowed, float("-inf"))
    return class_logits.softmax(-1).amax(-1)


def assign_final_masks(point_query_logits: Tensor, scores: Tensor, point_batch: Tensor) -> Tensor:
    """The query index of the final disjoint mask covering each point, or -1.

    Args:
        point_query_logits: (P, Q) mask logits at the points.
        scores: (B, Q) query confidences ``s_q``.
        point_batch: (P,) batch index of every point.

    Returns:
        (P,) int64 query index, -1 where the winning query's mask is below 0.5 at the point.
    """
    prob = point_query_logits.sigmoid()
    winner = (scores[point_batch] * prob).argmax(1)
    covered = prob.gather(1, winner[:, None]).squeeze(1) >= 0.5
    return torch.where(covered, winner, torch.full_like(winner, -1))


def gather_point_mask_features(mask_embeds: Tensor, point_mask_id: Tensor,
                               point_batch: Tensor) -> Tensor:
    """(P, E) embedding of each point's final mask, zeros for uncovered points."""
    return mask_feature_rows(mask_embeds, point_mask_id, point_batch).points()


def mask_feature_rows(mask_embeds: Tensor, point_mask_id: Tensor,
                      point_batch: Tensor) -> PointRows:
    """``gather_point_mask_features`` as rows: the B * Q mask embeddings and a last zero row
    (uncovered points)."""
    b, q, e = mask_embeds.shape
    rows = torch.cat([mask_embeds.reshape(b * q, e), mask_embeds.new_zeros(1, e)])
    index = torch.where(point_mask_id >= 0, point_batch * q + point_mask_id,
                        torch.full_like(point_mask_id, b * q))
    return PointRows(rows, index)


def cosine_logits(feats: Tensor, class_embeds: Tensor, logit_scale: Tensor) -> Tensor:
    """``logit_scale * cos(feats, class_embeds)``: (N, E) x (C, E) -> (N, C).

    Equals ``F.normalize(feats) @ F.normalize(class_embeds).T`` (a zero row gives zeros); the
    row norms divide the (N, C) products instead of the (N, E) features, so no normalised copy
    of the wide features is made and its backward is (N, C)-sized too (issue 18).
    """
    norms = torch.linalg.vector_norm(feats, dim=-1, keepdim=True).clamp_min(1e-12)
    return logit_scale * (feats @ F.normalize(class_embeds, dim=-1).t()) / norms
