"""2D mask-classification targets built from per-pixel label maps.

Follows Mask2Former semantic-segmentation targets as used by XMask3D (method.md §3.1): one binary
mask per class present in the view. The published code also turns the unlabelled region into a
segment of the "no object" class; that is an option here (decisions.md §5, method.md §8.15).
"""

from __future__ import annotations

import torch
from torch import Tensor

from xmask3d.data.scene import IGNORE_LABEL

__all__ = ["mask_targets_from_label_map", "mask_targets_for_batch"]


def mask_targets_from_label_map(
    label_2d: Tensor,
    num_classes: int,
    *,
    unlabelled_as_no_object: bool = False,
) -> tuple[Tensor, Tensor]:
    """One binary target mask per class present in a label map.

    Args:
        label_2d: (H, W) int64 class indices in ``[0, num_classes)`` or ``IGNORE_LABEL``.
        num_classes: number of classes C of the vocabulary the labels index.
        unlabelled_as_no_object: also return the ``IGNORE_LABEL`` region (when non-empty) as one
            more segment of class C, the "no object" index (published behaviour).

    Returns:
        classes: (M,) int64 sorted class indices (C last when the no-object segment is present).
        masks: (M, H, W) bool, ``masks[m]`` = pixels of ``classes[m]``.

    Raises:
        ValueError: ``label_2d`` is not a 2D integer tensor, or holds values that are neither a
            class index nor ``IGNORE_LABEL``.
    """
    if label_2d.dim() != 2 or label_2d.dtype.is_floating_point or label_2d.dtype == torch.bool:
        raise ValueError(
            f"label_2d: expected an (H, W) integer tensor, got {tuple(label_2d.shape)} "
            f"of dtype {label_2d.dtype}"
        )
    if num_classes < 1:
        raise ValueError(f"num_classes: expected >= 1, got {num_classes}")
    present = torch.unique(label_2d)
    bad = present[((present < 0) | (present >= num_classes)) & (present != IGNORE_LABEL)]
    if bad.numel() > 0:
        raise ValueError(
            f"label_2d: values {bad.tolist()} are neither class indices in [0, {num_classes}) "
            f"nor IGNORE_LABEL ({IGNORE_LABEL})"
        )
    classes = present[present != IGNORE_LABEL].to(torch.int64)
    values = classes
    if unlabelled_as_no_object and bool((present == IGNORE_LABEL).any()):
        # The unlabelled pixels become one segment whose class is the no-object index C.
        values = torch.cat([classes, classes.new_full((1,), IGNORE_LABEL)])
        classes = torch.cat([classes, classes.new_full((1,), num_classes)])
    masks = label_2d.unsqueeze(0) == values[:, None, None].to(label_2d.dtype)
    return classes, masks


def mask_targets_for_batch(
    labels_2d: Tensor,
    num_classes: int,
    *,
    unlabelled_as_no_object: bool = False,
) -> list[tuple[Tensor, Tensor]]:
    """Targets of every view of a batch (see ``mask_targets_from_label_map``).

    Args:
        labels_2d: (B, H, W) int64 label maps.
        num_classes: number of classes C.
        unlabelled_as_no_object: see ``mask_targets_from_label_map``.

    Returns:
        B pairs ``(classes (M_b,), masks (M_b, H, W) bool)``.
    """
    if labels_2d.dim() != 3:
        raise ValueError(f"labels_2d: expected (B, H, W), got {tuple(labels_2d.shape)}")
    return [
        mask_targets_from_label_map(
            label, num_classes, unlabelled_as_no_object=unlabelled_as_no_object
        )
        for label in labels_2d
    ]
