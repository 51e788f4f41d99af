"""Training losses of XMask3D: 2D set losses, point losses, alignment terms and the criterion."""

from __future__ import annotations

from xmask3d.losses.alignment import caption_alignment, mask_region_alignment
from xmask3d.losses.criterion import LossWeights, compute_losses
from xmask3d.losses.mask_losses import dice_loss, set_criterion, sigmoid_bce_loss
from xmask3d.losses.matcher import HungarianMatcher
from xmask3d.losses.point_losses import binary_loss, point_cross_entropy

__all__ = [
    "HungarianMatcher",
    "LossWeights",
    "binary_loss",
    "caption_alignment",
    "compute_losses",
    "dice_loss",
    "mask_region_alignment",
    "point_cross_entropy",
    "set_criterion",
    "sigmoid_bce_loss",
]
