"""Tests of the per-point classification and binary losses."""

from __future__ import annotations

import math

import pytest
import torch

from xmask3d.losses.point_losses import binary_loss, point_cross_entropy


def test_point_ce_hand_value_skips_ignored() -> None:
    logits = torch.tensor([[math.log(3.0), 0.0, -50.0], [0.0, 0.0, 0.0], [9.0, -9.0, 0.0]])
    labels = torch.tensor([0, 1, 255])
    # Row 0: -log(3 / (4 + e^-50)) ~ ln(4/3); row 1: ln 3; row 2 ignored.
    expected = (math.log(4.0 / 3.0) + math.log(3.0)) / 2
    assert point_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_point_ce_all_ignored_is_connected_zero() -> None:
    logits = torch.randn(5, 4, requires_grad=True)
    loss = point_cross_entropy(logits, torch.full((5,), 255))
    assert loss.item() == 0.0
    loss.backward()  # graph-connected: backward works and gives zero gradient
    assert logits.grad is not None and logits.grad.abs().sum() == 0


def test_point_ce_custom_ignore_and_errors() -> None:
    logits = torch.zeros(2, 2)
    assert point_cross_entropy(logits, torch.tensor([1, 2]), ignore_index=2).item() == (
        pytest.approx(math.log(2.0))
    )
    with pytest.raises(ValueError, match="labels must lie"):
        point_cross_entropy(logits, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="expected logits"):
        point_cross_entropy(logits, torch.tensor([0]))


def test_binary_loss_hand_value_with_pos_weight() -> None:
    logits = torch.tensor([0.0, math.log(3.0), 2.0])
    labels = torch.tensor([1, 0, -1])
    # base point: 0.5 * ln 2; not-base point at p = 0.75: ln 4; the -1 point is excluded.
    expected = (0.5 * math.log(2.0) + math.log(4.0)) / 2
    assert binary_loss(logits, labels, pos_weight=0.5).item() == pytest.approx(expected, rel=1e-6)
    assert binary_loss(logits, labels).item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)


def test_binary_loss_none_labelled_is_connected_zero() -> None:
    logits = torch.randn(3, requires_grad=True)
    loss = binary_loss(logits, torch.full((3,), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="binary_loss"):
        binary_loss(logits, torch.zeros(2, dtype=torch.int64))


def test_balanced_class_weights_hand_values() -> None:
    from xmask3d.losses.point_losses import balanced_class_weights

    assert balanced_class_weights([30, 10], 0.0) == pytest.approx((1.0, 1.0))
    # f = (0.9, 0.1); w ∝ 1/f = (1.11, 10); sum(w f) = 2 -> (0.556, 5.0)
    assert balanced_class_weights([90, 10], 1.0) == pytest.approx((1 / 1.8, 5.0))
    w = balanced_class_weights([90, 10, 0], 0.5)          # an absent class: frequency 1e-4
    assert w[2] > w[1] > w[0]
    with pytest.raises(ValueError, match="counts"):
        balanced_class_weights([0, 0], 0.5)
    with pytest.raises(ValueError, match="exponent"):
        balanced_class_weights([1, 1], -0.5)


def test_point_ce_class_weights_give_the_weighted_mean() -> None:
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 1.0, 0.5], [0.3, 0.2, 0.1], [1.0, 1.0, 1.0]])
    labels = torch.tensor([0, 1, 1, -100])
    per = [-torch.log_softmax(logits[i], 0)[labels[i]] for i in range(3)]
    w = (0.5, 3.0)                                        # the third column (a distractor) weighs 1
    want = (w[0] * per[0] + w[1] * per[1] + w[1] * per[2]) / (w[0] + 2 * w[1])
    got = point_cross_entropy(logits, labels, ignore_index=-100, class_weights=w)
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    plain = point_cross_entropy(logits, labels, ignore_index=-100, class_weights=())
    assert float(plain) == pytest.approx(float(sum(per) / 3), rel=1e-6)
