"""The category split table against the published configs (benchmarks-and-data.md, method §1.3)."""

from __future__ import annotations

import pytest

from xmask3d.data.splits import SPLITS, format_split_table, get_split

EXPECTED_NOVEL_NAMES = {
    "scannet_b15n4": ["sofa", "bookshelf", "desk", "toilet"],
    "scannet_b12n7": ["bed", "chair", "table", "bookshelf", "picture", "sink", "bathtub"],
    "scannet_b10n9": ["bookshelf", "picture", "counter", "desk", "refrigerator", "shower curtain",
                      "toilet", "sink", "bathtub"],
    "scannet200_b170n30": [
        "pillow", "box", "clothes", "counter", "dresser", "keyboard", "backpack", "printer",
        "shower curtain", "bin", "copier", "sofa chair", "recycling bin", "clock", "guitar", "seat",
        "ladder", "cup", "toaster", "ironing board", "toilet seat cover dispenser", "furniture",
        "cart", "projector", "shower floor", "laundry detergent", "bathroom stall door",
        "dumbbell", "folded chair", "mattress"],
    "s3dis_b8n4": ["window", "table", "sofa", "bookcase"],
    "s3dis_b6n6": ["floor", "window", "door", "table", "bookcase", "board"],
}
EXPECTED_COUNTS = {"scannet_b15n4": (15, 4), "scannet_b12n7": (12, 7), "scannet_b10n9": (10, 9),
                   "scannet200_b170n30": (170, 30), "scannet200_b150n50": (150, 50),
                   "s3dis_b8n4": (8, 4), "s3dis_b6n6": (6, 6)}


@pytest.mark.parametrize("name", sorted(EXPECTED_COUNTS))
def test_counts_and_disjointness(name):
    s = get_split(name)
    assert (len(s.base), len(s.novel)) == EXPECTED_COUNTS[name]
    assert not set(s.base) & set(s.novel)
    assert not (set(s.base) | set(s.novel)) & set(s.ignore)
    assert len(s.base) + len(s.novel) + len(s.ignore) == s.num_classes


@pytest.mark.parametrize("name", sorted(EXPECTED_NOVEL_NAMES))
def test_novel_names(name):
    assert list(get_split(name).novel_names) == EXPECTED_NOVEL_NAMES[name]


def test_b150n50_names_and_ignores():
    s = get_split("scannet200_b150n50")
    assert s.novel_names[:5] == ("couch", "window", "bookshelf", "coffee table", "kitchen cabinet")
    assert s.novel_names[-3:] == ("coat rack", "calendar", "poster")
    assert get_split("scannet_b15n4").ignore == (19,)
    assert get_split("scannet_b15n4").class_names[19] == "otherfurniture"
    assert get_split("s3dis_b8n4").class_names[12] == "clutter"
    assert get_split("s3dis_b6n6").base_names == ("ceiling", "wall", "beam", "column", "chair", "sofa")


def test_trainonly_indices():
    assert get_split("scannet200_b170n30").trainonly() == (98, 136, 147, 153, 159, 166, 167, 183,
                                                          186, 191, 198)
    assert get_split("scannet_b15n4").trainonly() == ()


def test_unknown_split_and_table():
    with pytest.raises(KeyError, match="known"):
        get_split("scannet_b1n1")
    table = format_split_table()
    assert table.count("\n") == len(SPLITS) + 1 and "16: toilet" in table
