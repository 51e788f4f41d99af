"""The real-scan scoring of ``segment``'s labels (benchmarks/real.py)."""

import numpy as np
import pytest

from benchmarks.real import segment_scores
from xmask3d.data.splits import get_split


def test_segment_scores_per_class_and_split_means():
    split = get_split("scannet_b15n4")
    wall, floor, sofa = (split.class_names.index(n) for n in ("wall", "floor", "sofa"))
    gt = np.array([wall] * 4 + [floor] * 4 + [sofa] * 2 + [255] * 3)
    pred = np.array([wall] * 3 + [floor] + [floor] * 4 + [sofa, wall] + [sofa] * 3)
    s = segment_scores(pred, gt)
    # wall: 3 right, 1 missed, 1 false positive (a sofa point) -> 3 / 5
    assert s["per_class_IoU"]["wall"] == pytest.approx(60.0)
    assert s["per_class_IoU"]["floor"] == pytest.approx(80.0)      # 4 / (4 + 1)
    assert s["per_class_IoU"]["sofa"] == pytest.approx(50.0)       # 1 / 2; unlabelled ignored
    assert s["per_class_IoU"]["chair"] is None                      # no ground truth
    assert s["mIoU_base"] == pytest.approx(70.0)                    # wall, floor
    assert s["mIoU_novel"] == pytest.approx(50.0)                   # sofa only
    assert s["labelled_points"] == 10


def test_real_segment_table_lists_each_class_and_mode():
    from benchmarks.real import real_segment_tables

    per = {"wall": 60.0, "sofa": None}
    entry = {"note": "n", "modes": {
        "frames": {"per_class_IoU": per, "mIoU_base": 60.0, "mIoU_novel": None, "hIoU": None,
                   "seconds": 3.0, "image": "a.png"},
        "virtual": {"per_class_IoU": {"wall": 70.5, "sofa": 1.0}, "mIoU_base": 70.5,
                    "mIoU_novel": 1.0, "hIoU": 2.0, "seconds": 4.0, "image": "b.png"}}}
    lines = real_segment_tables({"ckpt A": entry})
    assert "| class | frames | virtual |" in lines
    assert "| wall | 60.0 | 70.5 |" in lines
    assert "| sofa | - | 1.0 |" in lines
    assert "| **mIoU base** | 60.0 | 70.5 |" in lines
    assert "![ckpt A, virtual](img/b.png)" in lines
