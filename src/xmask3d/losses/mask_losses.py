"""Point-sampled mask losses and the Mask2Former set criterion (classification, BCE, dice).

Follows Mask2Former (Cheng et al., CVPR 2022) as used by XMask3D, method.md §3.1-§3.3: per-layer
Hungarian matching, class cross-entropy with a down-weighted "no object" class, and sigmoid BCE /
dice losses on importance-sampled points, normalised by the number of target masks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from xmask3d.losses.matcher import HungarianMatcher

__all__ = [
    "point_sample",
    "pixel_centre_coords",
    "sigmoid_bce_loss",
    "dice_loss",
    "rand_coords",
    "uncertain_point_coords",
    "num_target_masks",
    "set_criterion",
]


def point_sample(inputs: Tensor, coords: Tensor) -> Tensor:
    """Bilinearly sample maps at normalised point coordinates.

    Args:
        inputs: (N, C, H, W) maps.
        coords: (N, P, 2) points as (x, y) in [0, 1] (x along W), pixel centres at (j + 0.5) / W.
            Values between the border pixel centres and the border are the edge values.

    Returns:
        (N, C, P) sampled values.
    """
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # (N, P, 1, 2)
    # Border padding: points in the outer half pixel take the edge value rather than blending
    # towards 0 (Mask2Former uses zero padding, which biases masks touching the image border).
    return F.grid_sample(
        inputs, grid, mode="bilinear", padding_mode="border", align_corners=False
    ).squeeze(3)


def pixel_centre_coords(height: int, width: int, *, device: torch.device | None = None) -> Tensor:
    """(H * W, 2) normalised (x, y) coordinates of every pixel centre, row-major."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1)


def sigmoid_bce_loss(logits: Tensor, targets: Tensor, num_masks: float | Tensor) -> Tensor:
    """Sigmoid BCE averaged over points, summed over masks, divided by ``num_masks``.

    Args:
        logits: (M, P) mask logits at P points.
        targets: (M, P) float targets in [0, 1].
        num_masks: normaliser (number of target masks).

    Returns:
        () loss.
    """
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def dice_loss(logits: Tensor, targets: Tensor, num_masks: float | Tensor) -> Tensor:
    """Soft dice loss ``1 - (2|p t| + 1) / (|p| + |t| + 1)`` summed over masks / ``num_masks``.

    Args:
        logits: (M, P) mask logits at P points.
        targets: (M, P) float targets in [0, 1].
        num_masks: normaliser (number of target masks).

    Returns:
        () loss.
    """
    probs = logits.sigmoid()
    numerator = 2.0 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1.0 - (numerator + 1.0) / (denominator + 1.0)).sum() / num_masks


def rand_coords(
    shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """Uniform numbers in [0, 1) drawn from ``generator`` (on its device), moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device).to(device)


@torch.no_grad()
def uncertain_point_coords(
    logits: Tensor,
    num_points: int,
    *,
    oversample_ratio: float = 3.0,
    importance_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Points biased towards uncertain mask logits (|logit| small), plus uniform ones.

    Draws ``oversample_ratio * num_points`` uniform candidates per mask, keeps the
    ``importance_ratio * num_points`` most uncertain and fills up with fresh uniform points.

    Args:
        logits: (M, 1, h, w) mask logits.
        num_points: points per mask.
        oversample_ratio: candidate multiplier (>= 1).
        importance_ratio: fraction of points chosen by uncertainty, in [0, 1].
        generator: random source.

    Returns:
        (M, num_points, 2) normalised (x, y) coordinates.
    """
    if oversample_ratio < 1 or not 0.0 <= importance_ratio <= 1.0:
        raise ValueError(
            f"oversample_ratio must be >= 1 and importance_ratio in [0, 1], "
            f"got {oversample_ratio} and {importance_ratio}"
        )
    num_masks, device = logits.shape[0], logits.device
    num_candidates = int(num_points * oversample_ratio)
    candidates = rand_coords((num_masks, num_candidates, 2), device, generator)
    uncertainty = -point_sample(logits.float(), candidates).abs().squeeze(1)  # (M, K)
    num_uncertain = int(importance_ratio * num_points)
    top = uncertainty.topk(num_uncertain, dim=1).indices
    chosen = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))
    fresh = rand_coords((num_masks, num_points - num_uncertain, 2), device, generator)
    return torch.cat([chosen, fresh], dim=1)


def num_target_masks(targets: list[tuple[Tensor, Tensor]], device: torch.device) -> Tensor:
    """Number of target masks, averaged over ranks when distributed, clamped to >= 1."""
    total = torch.tensor(
        float(sum(int(classes.numel()) for classes, _ in targets)), device=device
    )
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(total)
        total = total / dist.get_world_size()
    return total.clamp(min=1.0)


def _class_loss(
    class_logits: Tensor,
    targets: list[tuple[Tensor, Tensor]],
    indices: list[tuple[Tensor, Tensor]],
    num_classes: int,
    eos_coef: float,
) -> Tensor:
    """Weighted CE over C + 1 classes; unmatched queries are trained towards "no object"."""
    batch, queries, _ = class_logits.shape
    target_classes = torch.full(
        (batch, queries), num_classes, dtype=torch.int64, device=class_logits.device
    )
    for b, ((classes, _), (query_idx, target_idx)) in enumerate(zip(targets, indices)):
        target_classes[b, query_idx] = classes.to(class_logits.device)[target_idx]
    weight = torch.ones(num_classes + 1, device=class_logits.device)
    weight[num_classes] = eos_coef
    return F.cross_entropy(class_logits.float().transpose(1, 2), target_classes, weight=weight)


def _mask_losses(
    mask_logits: Tensor,
    targets: list[tuple[Tensor, Tensor]],
    indices: list[tuple[Tensor, Tensor]],
    num_masks: Tensor,
    num_points: int | None,
    sampling: dict,
) -> tuple[Tensor, Tensor]:
    """BCE and dice of the matched (prediction, target) mask pairs."""
    pred = torch.cat([mask_logits[b, q] for b, (q, _) in enumerate(indices)])  # (M, h, w)
    if pred.shape[0] == 0:
        zero = mask_logits.sum() * 0.0
        return zero, zero
    gt = torch.cat([masks[t] for (_, masks), (_, t) in zip(targets, indices)])
    gt = gt.to(device=pred.device, dtype=torch.float32).unsqueeze(1)
    pred = pred.float().unsqueeze(1)
    if num_points is None:
        coords = pixel_centre_coords(gt.shape[-2], gt.shape[-1], device=pred.device)
        coords = coords.unsqueeze(0).expand(pred.shape[0], -1, -1)
    else:
        coords = uncertain_point_coords(pred, num_points, **sampling)
    point_gt = point_sample(gt, coords).squeeze(1)
    point_pred = point_sample(pred, coords).squeeze(1)
    return (
        sigmoid_bce_loss(point_pred, point_gt, num_masks),
        dice_loss(point_pred, point_gt, num_masks),
    )


def set_criterion(
    class_logits_per_layer: list[Tensor],
    mask_logits_per_layer: list[Tensor],
    targets: list[tuple[Tensor, Tensor]],
    matcher: HungarianMatcher,
    *,
    num_classes: int,
    eos_coef: float = 0.1,
    num_points: int | None = 12544,
    oversample_ratio: float = 3.0,
    importance_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Unweighted Mask2Former losses of every decoder layer, each with its own matching.

    Args:
        class_logits_per_layer: per layer (B, Q, C + 1) class logits (last column = no object).
        mask_logits_per_layer: per layer (B, Q, h, w) mask logits; the last layer is the final one.
        targets: B pairs ``(classes (M_b,), masks (M_b, H, W))`` at any resolution.
        matcher: the Hungarian matcher.
        num_classes: C.
        eos_coef: CE weight of the no-object class.
        num_points: points per mask for BCE/dice; ``None`` uses every target pixel centre
            (exact, no sampling).
        oversample_ratio: importance-sampling candidate multiplier.
        importance_ratio: fraction of points chosen by uncertainty.
        generator: random source of the matcher and the point sampling.

    Returns:
        ``loss_ce``, ``loss_mask``, ``loss_dice`` of the final layer and ``loss_ce_i``,
        ``loss_mask_i``, ``loss_dice_i`` for every earlier layer i.
    """
    if len(class_logits_per_layer) != len(mask_logits_per_layer) or not class_logits_per_layer:
        raise ValueError(
            f"class_logits_per_layer and mask_logits_per_layer: expected the same non-zero number"
            f" of layers, got {len(class_logits_per_layer)} and {len(mask_logits_per_layer)}"
        )
    if class_logits_per_layer[-1].shape[-1] != num_classes + 1:
        raise ValueError(
            f"class_logits_per_layer: expected {num_classes + 1} columns (C + no object), "
            f"got {class_logits_per_layer[-1].shape[-1]}"
        )
    num_masks = num_target_masks(targets, class_logits_per_layer[-1].device)
    sampling = {
        "oversample_ratio": oversample_ratio,
        "importance_ratio": importance_ratio,
        "generator": generator,
    }
    losses: dict[str, Tensor] = {}
    last = len(class_logits_per_layer) - 1
    for layer, (cls, msk) in enumerate(zip(class_logits_per_layer, mask_logits_per_layer)):
        indices = matcher(cls, msk, targets, generator=generator)
        suffix = "" if layer == last else f"_{layer}"
        losses[f"loss_ce{suffix}"] = _class_loss(cls, targets, indices, num_classes, eos_coef)
        bce, dice = _mask_losses(msk, targets, indices, num_masks, num_points, sampling)
        losses[f"loss_mask{suffix}"] = bce
        losses[f"loss_dice{suffix}"] = dice
    return losses
