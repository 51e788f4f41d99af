"""README's five words: the counts, the calibration and the candidates table
(benchmarks/other_words.py)."""

import numpy as np

from benchmarks.other_words import (
    FLOOR,
    WALL,
    calibrate,
    candidates_table,
    counts,
    figures,
    labels_of,
)

CHAIR, SOFA = 4, 5                       # ScanNet20 ids; the words are chair, sofa, table, ...


def test_counts_and_figures_of_one_labelling():
    gt = np.array([WALL] * 4 + [FLOOR] * 2 + [CHAIR] * 2 + [SOFA] * 2)
    labels = np.array([5, 5, 5, 0] + [5, 5] + [0, 5] + [1, 1])   # 5 = "other"
    f = figures(counts(labels, gt))
    assert f["wall_points_taking_a_word_pct"] == 25.0
    assert f["floor_points_taking_a_word_pct"] == 0.0
    assert f["chair_points_with_their_word_pct"] == 50.0
    assert f["sofa_points_with_their_word_pct"] == 100.0
    assert f["chair_sofa_table_points_with_their_word_pct"] == 75.0
    # walls and floor are "other" classes: 5 of their 6 points became "other"
    assert f["other_labelled_points_becoming_other_pct"] == round(100 * 5 / 6, 1)


def test_the_cut_separates_confident_words_from_the_rest():
    # two chair points with a confident "chair", two wall points with a weak "chair"
    alone = np.array([[0.9, 0.1, 0, 0, 0], [0.8, 0.2, 0, 0, 0],
                      [0.28, 0.2, 0.2, 0.2, 0.12], [0.22, 0.2, 0.2, 0.2, 0.18]], np.float32)
    gt = np.array([CHAIR, CHAIR, WALL, WALL])
    scored = [({"alone": alone}, gt)]
    cut, curve = calibrate(scored, "threshold")
    assert 0.28 < cut <= 0.8           # any such cut keeps both chairs and drops both walls
    assert dict(curve)[cut] == 1.0
    assert list(labels_of({"alone": alone}, "threshold", cut)) == [0, 0, 5, 5]


def test_candidates_table_one_row_per_checkpoint():
    both = {"wall_points_taking_a_word_pct": 6.5, "floor_points_taking_a_word_pct": 5.4,
            "chair_sofa_table_points_with_their_word_pct": 30.0,
            "chair_points_with_their_word_pct": None}
    section = {"cand": {"calibration": {"cuts": {"both": 0.35}},
                        "scene0000_00": {"both": both}, "generated_rooms": {"both": both}}}
    lines = candidates_table(section)
    assert "| cand | 0.35 | 6.5 | 5.4 | 30.0 | 30.0 | - |" in lines
    rows = [ln for ln in candidates_table(section, bundled=section["cand"]) if ln[:3] == "| b"]
    assert rows == ["| bundled checkpoint | 0.35 | 6.5 | 5.4 | 30.0 | 30.0 | - |"]
    assert candidates_table({}) == []
