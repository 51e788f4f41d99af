"""Tests of the Hungarian matcher: hand-computed costs and known optimal assignments."""

from __future__ import annotations

import math

import pytest
import torch

from xmask3d.losses.matcher import HungarianMatcher, pairwise_dice, pairwise_sigmoid_bce


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bce(x: float, t: float) -> float:
    p = _sig(x)
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def test_pairwise_costs_match_hand_values() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    bce = pairwise_sigmoid_bce(logits, targets)
    dice = pairwise_dice(logits, targets)
    for q in range(2):
        x = logits[q].tolist()
        p = [_sig(v) for v in x]
        for m in range(3):
            t = targets[m].tolist()
            exp_bce = sum(_bce(a, b) for a, b in zip(x, t)) / 2
            inter = sum(a * b for a, b in zip(p, t))
            exp_dice = 1 - (2 * inter + 1) / (sum(p) + sum(t) + 1)
            assert bce[q, m].item() == pytest.approx(exp_bce, rel=1e-5)
            assert dice[q, m].item() == pytest.approx(exp_dice, rel=1e-5)
    # Spot value: query 0 vs target 0 = (ln 2 + ln 4) / 2.
    assert bce[0, 0].item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)


def test_exact_cost_matrix_2x2() -> None:
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=None)
    class_logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]])  # C = 2 plus null
    mask_logits = torch.tensor([[[2.0, -2.0], [1.0, 0.0]], [[-1.0, 3.0], [0.5, -0.5]]])
    classes = torch.tensor([1, 0])
    masks = torch.tensor([[[1, 0], [1, 0]], [[0, 1], [1, 1]]], dtype=torch.bool)
    cost = matcher.cost_matrix(class_logits, mask_logits, classes, masks)
    probs = class_logits.softmax(-1)
    for q in range(2):
        x = mask_logits[q].flatten().tolist()
        p = [_sig(v) for v in x]
        for m in range(2):
            t = masks[m].flatten().float().tolist()
            bce = sum(_bce(a, b) for a, b in zip(x, t)) / 4
            dice = 1 - (2 * sum(a * b for a, b in zip(p, t)) + 1) / (sum(p) + sum(t) + 1)
            expected = 2 * -probs[q, classes[m]].item() + 5 * bce + 5 * dice
            assert cost[q, m].item() == pytest.approx(expected, rel=1e-5)


def test_hungarian_beats_greedy_on_class_cost() -> None:
    # Greedy takes (q0, t0) = 0.5 then (q1, t1) = 0.02; the optimum is q0->t1, q1->t0 (0.93).
    probs = torch.tensor([[0.5, 0.45, 0.05], [0.48, 0.02, 0.5]])
    class_logits = probs.log().unsqueeze(0)
    mask_logits = torch.zeros(1, 2, 2, 2)
    targets = [(torch.tensor([0, 1]), torch.ones(2, 2, 2, dtype=torch.bool))]
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=0.0, cost_dice=0.0, num_points=None)
    (rows, cols), = matcher(class_logits, mask_logits, targets)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]


def test_three_queries_two_targets_by_mask_shape() -> None:
    masks = torch.tensor(
        [[[1, 1], [0, 0]], [[0, 0], [1, 1]]], dtype=torch.bool
    )  # target 0 = top row, target 1 = bottom row
    mask_logits = torch.stack(
        [
            torch.where(masks[1], 6.0, -6.0),  # q0 looks like target 1
            torch.full((2, 2), -6.0),  # q1 is empty
            torch.where(masks[0], 6.0, -6.0),  # q2 looks like target 0
        ]
    ).unsqueeze(0)
    class_logits = torch.zeros(1, 3, 3)
    targets = [(torch.tensor([0, 1]), masks)]
    (rows, cols), = HungarianMatcher(num_points=None)(class_logits, mask_logits, targets)
    assert rows.tolist() == [0, 2] and cols.tolist() == [1, 0]


def test_sampled_points_any_resolution_and_empty_targets() -> None:
    # Predictions at 4x4, targets at 16x16 (left / right halves); one image has no targets.
    left = torch.zeros(16, 16, dtype=torch.bool)
    left[:, :8] = True
    masks = torch.stack([~left, left])
    pred = torch.full((2, 4, 4), -8.0)
    pred[0, :, :2] = 8.0  # q0 = left half
    pred[1, :, 2:] = 8.0  # q1 = right half
    mask_logits = torch.stack([pred, pred])
    class_logits = torch.zeros(2, 2, 3)
    targets = [
        (torch.tensor([0, 1]), masks),
        (torch.empty(0, dtype=torch.int64), torch.empty(0, 16, 16, dtype=torch.bool)),
    ]
    matcher = HungarianMatcher(num_points=256)
    gen = torch.Generator().manual_seed(0)
    out = matcher(class_logits, mask_logits, targets, generator=gen)
    assert out[0][0].tolist() == [0, 1] and out[0][1].tolist() == [1, 0]
    assert out[1][0].numel() == 0 and out[1][1].numel() == 0
    # Same seed, same sampled costs.
    c1 = matcher.cost_matrix(
        class_logits[0], pred, *targets[0], generator=torch.Generator().manual_seed(3)
    )
    c2 = matcher.cost_matrix(
        class_logits[0], pred, *targets[0], generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(c1, c2)


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match="all costs"):
        HungarianMatcher(0.0, 0.0, 0.0)
    matcher = HungarianMatcher(num_points=None)
    targets = [(torch.tensor([0]), torch.ones(1, 2, 2, dtype=torch.bool))]
    with pytest.raises(ValueError, match="do not agree"):
        matcher(torch.zeros(2, 2, 3), torch.zeros(2, 2, 2, 2), targets)
    with pytest.raises(ValueError, match="must be classes"):
        bad = [(torch.tensor([0]), torch.ones(2, 2))]
        matcher(torch.zeros(1, 2, 3), torch.zeros(1, 2, 2, 2), bad)
    with pytest.raises(ValueError, match="non-finite"):
        matcher(torch.full((1, 2, 3), float("nan")), torch.zeros(1, 2, 2, 2), targets)
