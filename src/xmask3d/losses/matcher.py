"""Hungarian matching of predicted query masks to target segments.

Follows Mask2Former's point-sampled matcher as used by XMask3D (method.md §3.2): cost =
``cost_class * (-p[class]) + cost_mask * BCE + cost_dice * dice`` on points shared by all masks of
an image, solved with ``scipy.optimize.linear_sum_assignment``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from xmask3d.losses.mask_losses import (
    pixel_centre_coords,
    point_sample,
    rand_coords,
)

__all__ = ["HungarianMatcher", "pairwise_sigmoid_bce", "pairwise_dice"]


def pairwise_sigmoid_bce(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean sigmoid BCE of every (prediction, target) pair.

    Args:
        logits: (Q, P) predicted mask logits at P points.
        targets: (M, P) float targets in [0, 1] at the same points.

    Returns:
        (Q, M) costs.
    """
    num_points = logits.shape[1]
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1.0 - targets).T) / num_points


def pairwise_dice(logits: Tensor, targets: Tensor) -> Tensor:
    """Soft dice loss ``1 - (2|p t| + 1) / (|p| + |t| + 1)`` of every pair.

    Args:
        logits: (Q, P) predicted mask logits at P points.
        targets: (M, P) float targets in [0, 1].

    Returns:
        (Q, M) costs.
    """
    probs = logits.sigmoid()
    numerator = 2.0 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1.0 - (numerator + 1.0) / (denominator + 1.0)


class HungarianMatcher:
    """One-to-one assignment of queries to target segments per image (no learnable state).

    Args:
        cost_class: weight of the negative class probability.
        cost_mask: weight of the point-sampled sigmoid BCE.
        cost_dice: weight of the point-sampled dice loss.
        num_points: uniformly random points per image shared by all its masks; ``None`` uses every
            pixel centre of the target masks (exact costs, for tests and small images).
    """

    def __init__(
        self,
        cost_class: float = 2.0,
        cost_mask: float = 5.0,
        cost_dice: float = 5.0,
        num_points: int | None = 12544,
    ) -> None:
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("HungarianMatcher: all costs are 0")
        if num_points is not None and num_points < 1:
            raise ValueError(f"HungarianMatcher: num_points must be >= 1 or None, got {num_points}")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    @torch.no_grad()
    def cost_matrix(
        self,
        class_logits: Tensor,
        mask_logits: Tensor,
        classes: Tensor,
        masks: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Matching cost of one image.

        Args:
            class_logits: (Q, C + 1) class logits.
            mask_logits: (Q, h, w) mask logits.
            classes: (M,) int64 target classes.
            masks: (M, H, W) target masks (bool or float), any resolution.
            generator: random source of the sampled points.

        Returns:
            (Q, M) float32 costs.
        """
        device = mask_logits.device
        if self.num_points is None:
            coords = pixel_centre_coords(masks.shape[-2], masks.shape[-1], device=device)
        else:
            coords = rand_coords((self.num_points, 2), device, generator)
        coords = coords.unsqueeze(0)
        gt = masks.to(device=device, dtype=torch.float32).unsqueeze(1)
        point_gt = point_sample(gt, coords.expand(gt.shape[0], -1, -1)).squeeze(1)
        pred = mask_logits.float().unsqueeze(1)
        point_pred = point_sample(pred, coords.expand(pred.shape[0], -1, -1)).squeeze(1)
        prob = class_logits.float().softmax(-1)[:, classes.to(device)]
        return (
            self.cost_class * -prob
            + self.cost_mask * pairwise_sigmoid_bce(point_pred, point_gt)
            + self.cost_dice * pairwise_dice(point_pred, point_gt)
        )

    @torch.no_grad()
    def __call__(
        self,
        class_logits: Tensor,
        mask_logits: Tensor,
        targets: list[tuple[Tensor, Tensor]],
        *,
        generator: torch.Generator | None = None,
    ) -> list[tuple[Tensor, Tensor]]:
        """Match every image of a batch.

        Args:
            class_logits: (B, Q, C + 1) class logits.
            mask_logits: (B, Q, h, w) mask logits.
            targets: B pairs ``(classes (M_b,), masks (M_b, H, W))``.
            generator: random source of the sampled points.

        Returns:
            B pairs ``(query_idx, target_idx)`` of int64 CPU tensors of length min(Q, M_b),
            sorted by query index.
        """
        if len(targets) != class_logits.shape[0] or mask_logits.shape[:2] != class_logits.shape[:2]:
            raise ValueError(
                f"HungarianMatcher: class_logits {tuple(class_logits.shape)}, mask_logits "
                f"{tuple(mask_logits.shape)} and {len(targets)} targets do not agree on B and Q"
            )
        indices = []
        for b, (classes, masks) in enumerate(targets):
            if masks.dim() != 3 or classes.shape != masks.shape[:1]:
                raise ValueError(
                    f"HungarianMatcher: target {b} must be classes (M,) and masks (M, H, W), got "
                    f"{tuple(classes.shape)} and {tuple(masks.shape)}"
                )
            if classes.numel() == 0:
                empty = torch.empty(0, dtype=torch.int64)
                indices.append((empty, empty.clone()))
                continue
            cost = self.cost_matrix(
                class_logits[b], mask_logits[b], classes, masks, generator=generator
            ).cpu()
            if not bool(torch.isfinite(cost).all()):
                raise ValueError(
                    f"HungarianMatcher: non-finite matching cost for image {b} (NaN/inf logits?)"
                )
            rows, cols = linear_sum_assignment(cost.numpy())
            indices.append(
                (torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64))
            )
        return indices
