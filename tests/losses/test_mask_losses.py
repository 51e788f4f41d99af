"""Tests of the point-sampled mask losses and the Mask2Former set criterion."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from xmask3d.losses.mask_losses import (
    dice_loss,
    num_target_masks,
    pixel_centre_coords,
    point_sample,
    set_criterion,
    sigmoid_bce_loss,
    uncertain_point_coords,
)
from xmask3d.losses.matcher import HungarianMatcher


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_bce_and_dice_hand_values() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # mask 0: (ln 2 + ln 4) / 2; mask 1: ln 2; summed, divided by num_masks = 4.
    assert sigmoid_bce_loss(logits, targets, 4).item() == pytest.approx(
        (1.5 * math.log(2) + math.log(2)) / 4, rel=1e-6
    )
    # mask 0: p = (.5, .75): 1 - (1 + 1) / (1.25 + 1 + 1); mask 1: 1 - (2 + 1) / (1 + 2 + 1).
    expected = ((1 - 2 / 3.25) + (1 - 3 / 4)) / 4
    assert dice_loss(logits, targets, 4).item() == pytest.approx(expected, rel=1e-6)


def test_point_sample_at_pixel_centres_is_exact() -> None:
    maps = torch.arange(12.0).reshape(1, 1, 3, 4)
    coords = pixel_centre_coords(3, 4).unsqueeze(0)
    assert torch.allclose(point_sample(maps, coords).reshape(3, 4), maps[0, 0], atol=1e-5)
    # Halfway between two pixel centres of a row: bilinear mean.
    mid = torch.tensor([[[2.0 / 4, 0.5 / 3]]])
    assert point_sample(maps, mid).item() == pytest.approx(1.5)


def test_importance_sampling_prefers_uncertain_region() -> None:
    logits = torch.full((1, 1, 8, 8), 20.0)
    logits[..., :, :4] = 0.0  # left half uncertain
    gen = torch.Generator().manual_seed(0)
    coords = uncertain_point_coords(logits, 100, generator=gen)
    assert coords.shape == (1, 100, 2)
    assert (coords[0, :75, 0] < 0.5 + 1e-6).all()  # the 75 importance points are on the left
    uniform = uncertain_point_coords(logits, 400, importance_ratio=0.0, generator=gen)
    assert 0.35 < (uniform[0, :, 0] < 0.5).float().mean().item() < 0.65
    with pytest.raises(ValueError, match="importance_ratio"):
        uncertain_point_coords(logits, 4, importance_ratio=1.5)


def _toy_layers() -> tuple[list[torch.Tensor], list[torch.Tensor], list]:
    target = torch.zeros(4, 4, dtype=torch.bool)
    target[1:3, :] = True
    good = torch.where(target, 2.0, -1.0)
    bad = torch.where(target, -1.0, 1.5)
    # Final layer: q0 is the good mask; layer 0: q1 is.
    masks_final = torch.stack([good, bad]).unsqueeze(0).requires_grad_()
    masks_first = torch.stack([bad, good]).unsqueeze(0).requires_grad_()
    cls_final = torch.tensor([[[1.0, 0.2, -0.5], [0.1, 0.3, 0.8]]], requires_grad=True)
    cls_first = torch.tensor([[[0.0, 0.0, 0.0], [0.5, -0.5, 0.0]]], requires_grad=True)
    targets = [(torch.tensor([0]), target.unsqueeze(0))]
    return [cls_first, cls_final], [masks_first, masks_final], targets


def _expected(cls: torch.Tensor, masks: torch.Tensor, target: torch.Tensor, q: int) -> list:
    logp = cls[0].detach().log_softmax(-1)
    other = 1 - q
    ce = (-logp[q, 0] + 0.1 * -logp[other, 2]) / 1.1  # matched -> class 0, other -> no object
    x, t = masks[0, q].detach().flatten(), target.flatten().float()
    bce = sum(
        -(ti * math.log(_sig(xi)) + (1 - ti) * math.log(1 - _sig(xi)))
        for xi, ti in zip(x.tolist(), t.tolist())
    ) / 16
    p = torch.sigmoid(x)
    dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
    return [ce.item(), float(bce), dice.item()]


def test_set_criterion_exact_hand_values_per_layer() -> None:
    cls_layers, mask_layers, targets = _toy_layers()
    matcher = HungarianMatcher(num_points=None)
    losses = set_criterion(
        cls_layers, mask_layers, targets, matcher, num_classes=2, num_points=None
    )
    assert set(losses) == {
        "loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_mask_0", "loss_dice_0"
    }  # fmt: skip
    final = _expected(cls_layers[1], mask_layers[1], targets[0][1][0], q=0)
    first = _expected(cls_layers[0], mask_layers[0], targets[0][1][0], q=1)
    got_final = [losses[k].item() for k in ("loss_ce", "loss_mask", "loss_dice")]
    got_first = [losses[k].item() for k in ("loss_ce_0", "loss_mask_0", "loss_dice_0")]
    assert got_final == pytest.approx(final, rel=1e-5)
    assert got_first == pytest.approx(first, rel=1e-5)
    sum(losses.values()).backward()
    # Only the matched query's mask gets a mask gradient; every class logit gets one.
    assert mask_layers[1].grad[0, 0].abs().sum() > 0 and mask_layers[1].grad[0, 1].abs().sum() == 0
    assert mask_layers[0].grad[0, 1].abs().sum() > 0 and mask_layers[0].grad[0, 0].abs().sum() == 0
    assert (cls_layers[1].grad != 0).all()


def test_set_criterion_sampled_matches_bilinear_integral() -> None:
    cls_layers, mask_layers, targets = _toy_layers()
    matcher = HungarianMatcher(num_points=None)
    gen = torch.Generator().manual_seed(0)
    sampled = set_criterion(
        cls_layers, mask_layers, targets, matcher, num_classes=2, num_points=20000,
        importance_ratio=0.0, generator=gen,
    )  # fmt: skip
    # Uniform points on bilinear fields = the mean over a fine bilinear upsampling of them.
    def up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x.detach().float(), size=(64, 64), mode="bilinear")

    fine_masks = [up(m) for m in mask_layers]
    fine_targets = [(targets[0][0], up(targets[0][1].unsqueeze(0))[0])]
    exact = set_criterion(
        cls_layers, fine_masks, fine_targets, matcher, num_classes=2, num_points=None
    )
    for key in ("loss_ce", "loss_mask", "loss_dice", "loss_mask_0", "loss_dice_0"):
        assert sampled[key].item() == pytest.approx(exact[key].item(), rel=0.03), key


def test_no_targets_gives_no_object_ce_and_connected_zero() -> None:
    cls = torch.randn(2, 3, 3, generator=torch.Generator().manual_seed(1), requires_grad=True)
    masks = torch.zeros(2, 3, 4, 4, requires_grad=True)
    empty = (torch.empty(0, dtype=torch.int64), torch.empty(0, 8, 8, dtype=torch.bool))
    losses = set_criterion(
        [cls], [masks], [empty, empty], HungarianMatcher(), num_classes=2, num_points=16
    )
    expected_ce = F.cross_entropy(cls.detach().reshape(-1, 3), torch.full((6,), 2))
    assert losses["loss_ce"].item() == pytest.approx(expected_ce.item(), rel=1e-6)
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    (losses["loss_mask"] + losses["loss_ce"]).backward()
    assert masks.grad is not None and masks.grad.abs().sum() == 0


def test_num_masks_normaliser_clamped_and_all_reduced(tmp_path) -> None:
    empty = (torch.empty(0, dtype=torch.int64), torch.empty(0, 2, 2))
    assert num_target_masks([empty], torch.device("cpu")).item() == 1.0
    two = (torch.tensor([0, 1]), torch.zeros(2, 2, 2))
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        assert num_target_masks([two, two, empty], torch.device("cpu")).item() == 4.0
    finally:
        dist.destroy_process_group()


def test_set_criterion_rejects_bad_shapes() -> None:
    cls_layers, mask_layers, targets = _toy_layers()
    with pytest.raises(ValueError, match="columns"):
        set_criterion(cls_layers, mask_layers, targets, HungarianMatcher(), num_classes=3)
    with pytest.raises(ValueError, match="same non-zero number"):
        set_criterion(cls_layers, mask_layers[:1], targets, HungarianMatcher(), num_classes=2)
