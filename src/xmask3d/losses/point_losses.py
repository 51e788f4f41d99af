"""Per-point losses: classification against class text embeddings and the base/novel head.

Follows XMask3D method.md §3.4 and §3.7, with the fix of §8.7 (decisions.md §5): a batch whose
points are all ignored gives a zero loss instead of an invented label. Our addition: optional
class weights of the point CE from the training set's label frequencies (``loss.point_balance``,
the usual inverse-frequency weighting of semantic segmentation, e.g. the median-frequency
balancing of Eigen & Fergus 2015, here with a tunable exponent).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from xmask3d.data.scene import IGNORE_LABEL

__all__ = ["balanced_class_weights", "binary_loss", "point_cross_entropy"]


def balanced_class_weights(counts, exponent: float) -> tuple[float, ...]:
    """Per-class CE weights ``w_c ∝ f_c ** -exponent`` from label counts, normalised so that
    the frequency-weighted mean weight is 1 (the loss keeps its scale). ``exponent`` 0 gives all
    ones, 0.5 the inverse square root, 1 the inverse frequency. A class with no point gets the
    weight of a class at frequency 1e-4 (it cannot occur in a batch anyway)."""
    import numpy as np

    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size == 0 or (c < 0).any() or c.sum() <= 0:
        raise ValueError(f"balanced_class_weights: need non-negative counts with a positive sum, "
                         f"got {c.tolist()}")
    if exponent < 0:
        raise ValueError(f"balanced_class_weights: exponent must be >= 0, got {exponent}")
    f = np.maximum(c / c.sum(), 1e-4)
    w = f ** -float(exponent)
    w = w / float((w * (c / c.sum())).sum())
    return tuple(float(x) for x in w)


def point_cross_entropy(
    logits: Tensor, labels: Tensor, *, ignore_index: int = IGNORE_LABEL,
    class_weights: tuple[float, ...] | Tensor | None = None,
) -> Tensor:
    """Mean cross-entropy over the points whose label is not ``ignore_index``.

    Args:
        logits: (P, C) point class logits (extra distractor columns, e.g. a null class, allowed).
        labels: (P,) int64 class indices in ``[0, C)`` or ``ignore_index``.
        ignore_index: label of points without supervision.
        class_weights: optional weights of the first K <= C classes (:func:`balanced_class_weights`;
            extra columns weigh 1); the mean is then weighted, as ``F.cross_entropy`` does.

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
    weight = None
    if class_weights is not None and len(class_weights):
        weight = torch.ones(logits.shape[1], dtype=torch.float32, device=logits.device)
        k = min(len(class_weights), logits.shape[1])
        weight[:k] = torch.as_tensor(class_weights, dtype=torch.float32)[:k].to(logits.device)
    return F.cross_entropy(logits[valid].float(), target, weight=weight)


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
