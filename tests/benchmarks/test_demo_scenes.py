"""Scoring of the demo's two pictures (benchmarks/demo_scenes.py)."""

import numpy as np

from benchmarks.demo_scenes import demo_scenes_table, own_name_figures

GT_NAMES = ["wall", "floor", "desk", "bookshelf", "lamp"]


def test_own_name_share_and_main_confusion_per_class():
    names = ["wall", "floor", "table", "desk", "bookshelf", "other"]    # no "lamp" word
    gt = np.array([0] * 10 + [1] * 4 + [2] * 5 + [3] * 3 + [255] * 2 + [4] * 5)
    labels = np.array([0] * 7 + [5] * 3          # wall: 70 %, the rest "other"
                      + [1] * 4                  # floor: all right
                      + [3] + [2] * 4            # desk: 1 of 5, "table" takes 4
                      + [0] * 2 + [5]            # bookshelf: none right, wall takes 2 of 3
                      + [2, 2]                   # unlabelled points are ignored
                      + [0] * 5)                 # lamp is not a word: not reported
    f = own_name_figures(labels, gt, names, GT_NAMES, min_points=3)
    assert list(f) == ["wall", "desk", "floor", "bookshelf"]   # most points first, no lamp
    assert f["wall"] == {"points": 10, "own_pct": 70.0, "most_as": "other", "most_as_pct": 30.0}
    assert f["floor"] == {"points": 4, "own_pct": 100.0, "most_as": None, "most_as_pct": 0.0}
    assert f["desk"]["own_pct"] == 20.0 and f["desk"]["most_as"] == "table"
    assert f["desk"]["most_as_pct"] == 80.0
    assert f["bookshelf"]["own_pct"] == 0.0 and f["bookshelf"]["most_as"] == "wall"
    # a class under the point floor is left out
    assert "bookshelf" not in own_name_figures(labels, gt, names, GT_NAMES, min_points=4)


def test_table_has_a_column_per_checkpoint_and_a_row_per_class():
    cls = {"desk": {"points": 1200, "own_pct": 20.0, "most_as": "table", "most_as_pct": 80.0}}
    section = {"A": {"scans": {"generated": {"classes": cls, "image": "a.png"}}, "note": "n"},
               "B": {"scans": {"generated": {"classes": {**cls, "desk": {
                   "points": 1200, "own_pct": 90.0, "most_as": None, "most_as_pct": 0.0}}}}}}
    lines = demo_scenes_table(section)
    assert "| class | points | A | B |" in lines
    assert "| desk | 1,200 | 20 % (table 80 %) | 90 % |" in lines
    assert "![A, generated](img/a.png)" in lines and "- **A**: n" in lines
    assert demo_scenes_table({}) == []
