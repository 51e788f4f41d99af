"""Per-point losses: classification against class text embeddings and the base/novel head.

Follows XMask3D method.md §3.4 and §3.7, with the fix of §8.7 (decisions.md §5): a batch whose
points are all ignored gives a zero loss instead of an invented label.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xmask3d.data.scene import IGNORE_LABEL

__all__ = ["point_cross_entropy", "binary_loss"]


def point_cross_entropy(
    logits: Tensor, labels: Tensor, *, ignore_index: int = IGNORE_LABEL
) -> Tensor:
    """Mean cross-entropy over the points whose label is not ``ignore_index``.

    Args:
        logits: (P, C) point class logits (extra distractor columns, e.g. a null class, allowed).
        labels: (P,) int64 class indices in ``[0, C)`` or ``ignore_index``.
        ignore_index: label of points without supervision.

    Returns:
        () loss; a zero connected to ``logits``' graph when every point is ignored.
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"point_cross_entropy: expected logits (P, C) and labels (P,), got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    valid = labels != ignore_index
    if not bool(valid.any()):
        return logits.sum() * 0.0
    target = labels[valid]
    if bool((target < 0).any()) or bool((target >= logits.shape[1]).any()):
        raise ValueError(
            f"point_cross_entropy: labels must lie in [0, {logits.shape[1]}) or equal "
            f"{ignore_index}, got values {torch.unique(target).tolist()}"
        )
    return F.cross_entropy(logits[valid].float(), target)


def binary_loss(
    logits: Tensor, binary_labels: Tensor, *, pos_weight: float | Tensor = 1.0
) -> Tensor:
    """Base-vs-novel BCE on the points labelled 1 (base) or 0 (not base); -1 points are skipped.

    Args:
        logits: (P,) binary-head logits (> 0 means base).
        binary_labels: (P,) int64 in {1, 0, -1}.
        pos_weight: weight of the positive (base) class, the published ``data_ratio``.

    Returns:
        () mean loss; a zero connected to ``logits``' graph when no point is labelled 0 or 1.
    """
    if logits.dim() != 1 or binary_labels.shape != logits.shape:
        raise ValueError(
            f"binary_loss: expected logits (P,) and binary_labels (P,), got "
            f"{tuple(logits.shape)} and {tuple(binary_labels.shape)}"
        )
    valid = (binary_labels == 0) | (binary_labels == 1)
    if not bool(valid.any()):
        return logits.sum() * 0.0
    weight = torch.as_tensor(pos_weight, dtype=torch.float32, device=logits.device)
    return F.binary_cross_entropy_with_logits(
        logits[valid].float(), binary_labels[valid].float(), pos_weight=weight
    )
