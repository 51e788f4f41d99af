"""The region-association purity diagnostic: phrase matching, counts and its table."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.quality import Protocol, ensure_data
from benchmarks.region_purity import named_classes, purity_table, region_purity

NOVEL = ["sofa", "bookshelf", "desk", "toilet"]


@pytest.mark.parametrize(("phrase", "named"), [
    ("a grey couch", {"sofa"}), ("two couches", {"sofa"}), ("two bookshelves", {"bookshelf"}),
    ("a book shelf", {"bookshelf"}), ("a toilet bowl", {"toilet"}), ("a writing desk", {"desk"}),
    ("a desk chair", set()),                 # an office chair, not a desk
    ("a desk and a chair", {"desk"}), ("books", set()), ("a wooden chair", set()),
])
def test_a_phrase_names_a_class_by_the_captioners_words(phrase, named):
    assert named_classes(phrase, NOVEL) == named


def test_counts_match_the_ground_truth_of_the_views_read(tmp_path):
    from xmask3d.config import load_config
    from xmask3d.data.processed import ProcessedLayout
    from xmask3d.engine.data import view_dataset

    data = ensure_data(tmp_path / "d", Protocol(scenes=6, views=3, data_seed=2))
    out = region_purity(data, views=100)
    cfg = load_config("tiny/scannet_b15n4", overrides=[f"data.root={data}"])
    ds = view_dataset(cfg, ProcessedLayout(data), split="train", mode="train")
    names = list(ds.category_split.class_names)
    expected = dict.fromkeys(NOVEL, 0)
    for i in range(len(ds)):
        s = ds[i]
        gt = ds._scene(s.scene_name).labels[s.point_index]
        for c in NOVEL:
            expected[c] += int(np.sum(gt == names.index(c)))
    assert out["views"] == len(ds)
    assert {c: r["points"] for c, r in out["classes"].items()} == expected
    assert sum(expected.values()) > 0
    for r in out["classes"].values():
        for key in ("named", "purity", "purity_without_base"):
            assert r[key] is None or 0.0 <= r[key] <= 100.0
    table = purity_table(out)
    assert sum(line.startswith(("| sofa", "| bookshelf", "| desk", "| toilet"))
               for line in table) == 4
