"""Metric tests on hand-computed confusion matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xmask3d.data.scene import IGNORE_LABEL
from xmask3d.data.splits import CategorySplit, get_split
from xmask3d.eval.metrics import (
    ConfusionMatrix,
    format_metrics_table,
    harmonic_mean,
    open_vocab_metrics,
    per_class_iou,
)


@pytest.mark.parametrize(("b", "n", "h"), [(69.8, 70.2, 70.0), (70.2, 55.1, 61.7),
                                           (76.5, 43.8, 55.7), (27.8, 13.3, 18.0)])
def test_harmonic_mean_matches_published_rows(b, n, h):
    assert round(harmonic_mean(b, n), 1) == h


def test_harmonic_mean_edge_cases():
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(50.0, 0.0) == 0.0
    assert math.isnan(harmonic_mean(float("nan"), 10.0))


def test_confusion_matrix_accumulates_and_ignores():
    cm = ConfusionMatrix(3, ignore=(2,))
    gt = np.array([0, 0, 1, 1, 2, IGNORE_LABEL, 0])
    pred = np.array([0, 1, 1, 1, 0, 2, 0])
    cm.update(pred, gt)
    cm.update(torch.tensor([1]), torch.tensor([0]))
    # rows gt, cols pred: gt0 -> preds 0,1,0,1 ; gt1 -> 1,1 ; gt2 and 255 dropped
    assert cm.matrix.tolist() == [[2, 2, 0], [0, 2, 0], [0, 0, 0]]


def test_per_class_iou_hand_computed():
    m = np.array([[2, 2, 0], [0, 2, 0], [0, 1, 0]])
    iou = per_class_iou(m)
    assert iou[0] == pytest.approx(2 / 4)        # I=2, U=4+2-2
    assert iou[1] == pytest.approx(2 / (2 + 5 - 2))
    assert iou[2] == pytest.approx(0.0)          # has GT, never right
    m[2] = 0
    assert math.isnan(per_class_iou(m)[2])       # no GT -> reported as such


def test_open_vocab_metrics_base_novel_hiou():
    split = CategorySplit("toy", "s3dis", novel=(1, 2), ignore=(12,))
    k = split.num_classes
    m = np.zeros((k, k), dtype=np.int64)
    for c in range(12):
        m[c, c] = 10                               # perfect on every class ...
    m[1, 1], m[1, 0] = 5, 5                        # ... except novel 1: IoU 5/15
    m[2, 2], m[2, 1] = 0, 10                       # novel 2: IoU 0; novel 1 also gets FP 10
    m[12, 12] = 1000                               # ignore class: must not matter
    r = open_vocab_metrics(m, split)
    iou1 = 5 / (10 + 15 - 5)
    assert r.miou_novel == pytest.approx(100 * (iou1 + 0.0) / 2)
    iou0 = 10 / (10 + 15 - 10)
    base_expected = 100 * (iou0 + 9 * 1.0) / 10
    assert r.miou_base == pytest.approx(base_expected)
    assert r.hiou == pytest.approx(harmonic_mean(base_expected, r.miou_novel))
    assert r.per_class["floor"] == pytest.approx(100 * iou1)
    assert "clutter" not in r.per_class


def test_class_without_ground_truth_is_reported_not_zero():
    split = get_split("scannet_b15n4")
    m = np.eye(20, dtype=np.int64) * 10
    m[16, 16] = 0                                  # toilet (novel) has no GT at all
    m[0, 16] = 3                                   # but is predicted on some wall points
    r = open_vocab_metrics(m, split)
    assert r.per_class["toilet"] is None
    assert r.no_ground_truth == ["toilet"]
    assert r.miou_novel == pytest.approx(100.0)    # mean over sofa, bookshelf, desk only
    assert r.per_class["wall"] == pytest.approx(100 * 10 / 13)


def test_drop_trainonly_scannet200():
    split = get_split("scannet200_b170n30")
    m = np.eye(200, dtype=np.int64)
    m[98, 98] = 0
    m[98, 0] = 5                                   # bicycle (train-only, base) always wrong
    assert open_vocab_metrics(m, split).miou_base < 100.0
    r = open_vocab_metrics(m, split, drop_trainonly=True)
    # 159 base classes remain; wall (0) has 1 TP and 5 FP from the bicycle row -> IoU 1/6
    assert r.miou_base == pytest.approx(100.0 * (158 + 1 / 6) / 159)
    assert "bicycle" not in r.base


def test_rejects_out_of_range_predictions():
    cm = ConfusionMatrix(4)
    with pytest.raises(ValueError, match="predictions must lie"):
        cm.update(np.array([5]), np.array([1]))
    with pytest.raises(ValueError, match="points"):
        cm.update(np.array([1, 2]), np.array([1]))


def test_format_table_lists_rows():
    split = CategorySplit("toy", "s3dis", novel=(1,), ignore=(12,))
    r = open_vocab_metrics(np.eye(13, dtype=np.int64), split)
    text = format_metrics_table({"fused": r, "3d": r})
    assert "fused" in text and "100.0" in text
