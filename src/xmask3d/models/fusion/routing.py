"""Inference-time scoring: CLIP-mask ensemble and hard base/novel gating by the binary head.

Follows XMask3D inference (method.md §4.1-§4.2) with our fixes (decisions.md §5): gating masks
classes out with ``masked_fill`` instead of multiplying log-probabilities (no ``0 * -inf = NaN``),
and the ensemble is computed as ``a * log p + (1 - a) * log q`` rather than ``log(p^a q^(1-a))``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def ensemble_log_scores(log_p_fused: Tensor, log_p_clip: Tensor | None, covered: Tensor,
                        is_novel_class: Tensor, *, base_ratio: float,
                        novel_ratio: float) -> Tensor:
    """Geometric ensemble of fused and CLIP-mask class probabilities (in log space).

    Args:
        log_p_fused: (P, C) log-softmax of the fused point logits.
        log_p_clip: (P, C) log-softmax of the CLIP logits of each point's mask, or ``None``.
        covered: (P,) bool, the point has a final mask (only those get the CLIP term).
        is_novel_class: (C,) bool.
        base_ratio, novel_ratio: weight of the fused term for base / novel classes.

    Returns:
        (P, C) log scores.
    """
    if log_p_clip is None:
        return log_p_fused
    a = torch.where(is_novel_class, torch.tensor(novel_ratio, dtype=log_p_fused.dtype,
                                                 device=log_p_fused.device),
                    torch.tensor(base_ratio, dtype=log_p_fused.dtype, device=log_p_fused.device))
    mixed = a * log_p_fused + (1 - a) * log_p_clip
    return torch.where(covered.unsqueeze(1), mixed, log_p_fused)


def gate_base_novel(scores: Tensor, is_base_point: Tensor, is_novel_class: Tensor) -> Tensor:
    """Hard gating: base points may only take base classes, the others only novel classes.

    Args:
        scores: (P, C) scores (logits or log-probabilities).
        is_base_point: (P,) bool from the binary head.
        is_novel_class: (C,) bool.

    Returns:
        (P, C) scores with the excluded classes set to -inf (never NaN). When the vocabulary has
        no novel (or no base) class, gating is skipped for the points it would empty.
    """
    allowed = torch.where(is_base_point.unsqueeze(1), ~is_novel_class.unsqueeze(0),
                          is_novel_class.unsqueeze(0))
    empty = ~allowed.any(1, keepdim=True)
    allowed = allowed | empty
    return scores.masked_fill(~allowed, float("-inf"))


def mask_class_allowed(mask_is_base: Tensor, is_novel_class: Tensor) -> Tensor:
    """Allowed (B, Q, C + 1) classes per query for mask-level gating (method §4.1 step 6).

    Base masks may take base classes and "no object"; novel masks only novel classes.
    """
    novel = torch.cat([is_novel_class, is_novel_class.new_zeros(1)])          # null is not novel
    base_ok = ~novel
    allowed = torch.where(mask_is_base.unsqueeze(-1), base_ok, novel)
    empty = ~allowed.any(-1, keepdim=True)
    return allowed | empty
