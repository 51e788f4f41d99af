"""Tests of the mask-level 2D-to-3D regularisation and the caption alignment losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmask3d.losses.alignment import (
    caption_alignment,
    mask_region_alignment,
    select_alignment_masks,
)


def _selection_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Masks A..F, each on its own block of points, with per-block binary labels (1/0/-1).
    blocks = [
        [0] * 15 + [-1] * 5,  # A: mostly novel, a few unannotated
        [0] * 12 + [-1] * 8,  # B: novel + many unannotated
        [1] * 160,  # C: pure base
        [0] * 9,  # D: too small
        [1] * 190 + [-1] * 10,  # E: base but too impure for 20x
        [1] * 160 + [-1] * 1,  # F: base, lower confidence than C
    ]
    labels = torch.tensor([v for block in blocks for v in block])
    member = torch.zeros(labels.numel(), len(blocks), dtype=torch.bool)
    start = 0
    for q, block in enumerate(blocks):
        member[start : start + len(block), q] = True
        start += len(block)
    confidence = torch.tensor([0.6, 0.9, 0.8, 0.99, 0.99, 0.7])
    return member, labels, confidence


def test_published_selection_counts_unannotated_against() -> None:
    member, labels, confidence = _selection_case()
    chosen = select_alignment_masks(member, labels, confidence, selection="published")
    # A: 15 > 1.8 * 5 and > 10. B: 12 <= 1.8 * 8. C beats F on confidence (top-1 base).
    assert chosen.tolist() == [True, False, True, False, False, False]
    chosen = select_alignment_masks(member, labels, confidence, selection="published", top_base=2)
    assert chosen.tolist() == [True, False, True, False, False, True]


def test_our_selection_uses_base_labels_only() -> None:
    member, labels, confidence = _selection_case()
    chosen = select_alignment_masks(member, labels, confidence, selection="ours")
    # Every non-base point counts as "novel": A and B are both candidates.
    assert chosen.tolist() == [True, True, True, False, False, False]
    chosen = select_alignment_masks(member, labels, confidence, selection="ours", top_novel=1)
    assert chosen.tolist() == [False, True, True, False, False, False]  # B: higher confidence
    with pytest.raises(ValueError, match="selection"):
        select_alignment_masks(member, labels, confidence, selection="gt")


def _region_inputs() -> dict:
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(11, 3, generator=gen, requires_grad=True)
    logits = torch.full((11, 2), -3.0)
    logits[0:4, 0] = 1.0
    logits[3, 0] = 0.0  # sigmoid = 0.5 exactly: a member
    logits[4:6, 1] = 2.0
    logits[6:11, 0] = 1.0  # view 1: one mixed mask, never a candidate
    labels = torch.tensor([0, 0, -1, 0, 1, 1, 1, 1, 0, 0, 0])
    targets = torch.randn(2, 2, 3, generator=gen, requires_grad=True)
    return {
        "point_feats_3d": feats,
        "point_query_logits": logits,
        "point_offsets": torch.tensor([0, 6, 11]),
        "targets": targets,
        "mask_logits_2d": torch.ones(2, 2, 2, 2),
        "binary_labels": labels,
    }


def test_mask_region_alignment_hand_value_and_gradients() -> None:
    inputs = _region_inputs()
    loss = mask_region_alignment(
        **inputs, selection="ours", min_points=2, novel_min=1, base_min=1
    )
    feats, targets = inputs["point_feats_3d"].detach(), inputs["targets"].detach()
    expected = 0.5 * (
        (1 - F.cosine_similarity(feats[0:4].mean(0), targets[0, 0], dim=0))
        + (1 - F.cosine_similarity(feats[4:6].mean(0), targets[0, 1], dim=0))
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    grad = inputs["point_feats_3d"].grad
    assert grad[:6].abs().sum(1).gt(0).all() and grad[6:].abs().sum() == 0
    assert inputs["targets"].grad is None  # targets are detached


def test_published_selection_differs_on_unannotated_points() -> None:
    inputs = _region_inputs()
    # Published: point 2 (-1) counts against; 3 novel > 1.8 * 1 still holds, so both masks stay;
    # with novel_ratio 4 the novel mask drops out and only the base mask is aligned.
    loss = mask_region_alignment(
        **inputs, selection="published", min_points=2, novel_min=1, base_min=1, novel_ratio=4.0
    )
    feats, targets = inputs["point_feats_3d"].detach(), inputs["targets"].detach()
    expected = 1 - F.cosine_similarity(feats[4:6].mean(0), targets[0, 1], dim=0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_nothing_selected_is_connected_zero() -> None:
    inputs = _region_inputs()
    loss = mask_region_alignment(**inputs)  # default thresholds: no mask has 10 points
    assert loss.item() == 0.0
    loss.backward()
    assert inputs["point_feats_3d"].grad.abs().sum() == 0


def test_mask_region_alignment_bad_offsets() -> None:
    inputs = _region_inputs()
    inputs["point_offsets"] = torch.tensor([0, 6, 10])
    with pytest.raises(ValueError, match="point_offsets"):
        mask_region_alignment(**inputs)


def test_caption_alignment_hand_value_skips_empty() -> None:
    feats = torch.tensor(
        [[1.0, 0.0], [1.0, 2.0], [0.0, 4.0], [3.0, 3.0], [1.0, 1.0], [2.0, 0.0], [0.0, 1.0]],
        requires_grad=True,
    )
    offsets = torch.tensor([0, 3, 5, 7])
    captions = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 1.0]])  # view 1 has no caption
    loss = caption_alignment(feats, offsets, captions)
    mean0, mean2 = torch.tensor([2.0, 6.0]) / 3, torch.tensor([1.0, 0.5])
    cos0 = 6.0 / mean0.mul(3).norm().item()  # cos((2, 6), (0, 1)) = 6 / sqrt(40)
    cos2 = 1.5 / (mean2.norm().item() * 2**0.5)
    assert loss.item() == pytest.approx(1 - (cos0 + cos2) / 2, rel=1e-5)
    loss.backward()
    assert feats.grad[3:5].abs().sum() == 0 and feats.grad[:3].abs().sum() > 0


def test_caption_alignment_with_point_mask() -> None:
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [5.0, 0.0]], requires_grad=True)
    offsets = torch.tensor([0, 2, 4])
    captions = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([True, False, False, False])  # view 1 has no covered point: skipped
    loss = caption_alignment(feats, offsets, captions, point_mask=mask)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)  # (1, 0) vs caption (1, 0)
    none = caption_alignment(feats, offsets, captions, point_mask=torch.zeros(4, dtype=torch.bool))
    assert none.item() == 0.0 and none.requires_grad
    with pytest.raises(ValueError, match="caption_embeds"):
        caption_alignment(feats, offsets, torch.zeros(3, 2))
