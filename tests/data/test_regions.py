"""Tests of the region-caption format (reader, writer, box checks), box scaling and the
point-region association."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xmask3d.data.regions import (
    Region,
    associate_regions,
    check_region_boxes,
    read_region_captions,
    region_phrases,
    scale_regions,
    write_region_captions,
)
from xmask3d.errors import DataError


def test_missing_file_means_no_regions(tmp_path) -> None:
    assert read_region_captions(tmp_path / "region_captions.json") == {}


def test_write_then_read_round_trip_and_merge(tmp_path) -> None:
    write_region_captions(tmp_path, {"s0": {"0": [Region((1.0, 2.0, 30.5, 40.0), "a sofa")]}})
    write_region_captions(tmp_path, {"s0": {"20": [Region((0, 0, 5, 5), "two chairs")]},
                                     "s1": {"0": []}})
    data = read_region_captions(tmp_path / "region_captions.json")
    assert data == {"s0": {"0": [Region((1.0, 2.0, 30.5, 40.0), "a sofa")],
                           "20": [Region((0.0, 0.0, 5.0, 5.0), "two chairs")]},
                    "s1": {"0": []}}
    assert not list(tmp_path.glob("*.tmp"))


def test_extra_keys_are_ignored(tmp_path) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"s": {"0": [{"box": [0, 0, 4, 4], "caption": " a lamp ",
                                              "score": 0.9}]}}))
    assert read_region_captions(path) == {"s": {"0": [Region((0.0, 0.0, 4.0, 4.0), "a lamp")]}}


@pytest.mark.parametrize("content, problem", [
    ("{not json", "invalid JSON"),
    ('["a"]', "must be a JSON object"),
    ('{"s": ["a"]}', "scene 's'"),
    ('{"s": {"0": {"box": [0, 0, 1, 1]}}}', "expected a list of regions"),
    ('{"s": {"0": ["a sofa"]}}', "region 0: a region must be an object"),
    ('{"s": {"0": [{"box": [0, 0, 1, 1], "caption": 3}]}}', "'caption' must be a non-empty"),
    ('{"s": {"0": [{"box": [0, 0, 1, 1], "caption": "  "}]}}', "'caption' must be a non-empty"),
    ('{"s": {"0": [{"box": [0, 0, 1], "caption": "a"}]}}', "list of 4 numbers"),
    ('{"s": {"0": [{"box": [0, 0, 1, "2"], "caption": "a"}]}}', "list of 4 numbers"),
    ('{"s": {"0": [{"box": [0, true, 1, 2], "caption": "a"}]}}', "list of 4 numbers"),
    ('{"s": {"0": [{"box": [0, 0, 1, 1], "caption": "a"}, {"box": [5, 0, 2, 1], '
     '"caption": "b"}]}}', "region 1: malformed box"),
    ('{"s": {"0": [{"box": [-3, 0, 1, 1], "caption": "a"}]}}', "malformed box"),
    ('{"s": {"0": [{"box": [0, 0, 1e999, 1], "caption": "a"}]}}', "non-finite"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, content, problem) -> None:
    path = tmp_path / "region_captions.json"
    path.write_text(content)
    with pytest.raises(DataError) as err:
        read_region_captions(path)
    assert problem in str(err.value) and "region_captions.json" in str(err.value)


def test_boxes_outside_the_image_are_refused(tmp_path) -> None:
    ok = [Region((0, 0, 320, 240), "a wall"), Region((10, 10, 320.4, 20), "a rug")]
    check_region_boxes(ok, (240, 320), tmp_path / "r.json", "scene 's' frame '0'")
    with pytest.raises(DataError, match="frame '0' region 1: box .* out of range of the 320x240"):
        check_region_boxes([ok[0], Region((0, 0, 330, 20), "a rug")], (240, 320),
                           tmp_path / "r.json", "scene 's' frame '0'")


def test_scale_regions_follows_the_image() -> None:
    (r,) = scale_regions([Region((32.0, 24.0, 64.0, 240.0), "a door")], (240, 320), (120, 160))
    assert r.box == (16.0, 12.0, 32.0, 120.0) and r.caption == "a door"


def test_association_on_a_hand_built_view() -> None:
    """A table box (large) contains a cup box (small); a wall lies far behind the table."""
    regions = [Region((0.0, 0.0, 10.0, 10.0), "a table"), Region((2.0, 2.0, 4.0, 4.0), "a cup")]
    rc = np.array([[5, 5], [6, 6], [4, 5], [5, 4],     # table points near its centre, depth 2
                   [2, 2], [3, 3],                      # in both boxes: the cup (smaller) wins
                   [8, 1],                              # table box, but on the wall at depth 6
                   [12, 12],                            # outside every box
                   [3, 2]])                             # in the cup box, far behind: table? no
    depth = np.array([2.0, 2.1, 1.9, 2.0, 2.05, 1.95, 6.0, 2.0, 6.0])
    got = associate_regions(rc, depth, regions, focal=10.0, min_margin=0.2, depth_factor=0.5)
    # table: d = 2 (median of its core), size 10 px * 2 m / 10 px = 2 m, margin 1 m;
    # cup: d = median(2.05, 1.95, 6.0) = 2.05, margin max(0.2, 0.5 * 2 * 2.05 / 10) = 0.205
    assert got.tolist() == [0, 0, 0, 0, 1, 1, -1, -1, -1]
    assert associate_regions(rc, depth, [], focal=10.0).tolist() == [-1] * 9
    assert associate_regions(rc[:0], depth[:0], regions, focal=10.0).shape == (0,)


def test_association_prefers_the_smallest_box_whatever_the_order() -> None:
    regions = [Region((2.0, 2.0, 4.0, 4.0), "a cup"), Region((0.0, 0.0, 10.0, 10.0), "a table")]
    rc = np.array([[3, 3], [5, 5]])
    got = associate_regions(rc, np.array([2.0, 2.0]), regions, focal=10.0)
    assert got.tolist() == [0, 1]


def test_region_phrases_of_some_scenes(tmp_path) -> None:
    write_region_captions(tmp_path, {
        "a": {"0": [Region((0, 0, 1, 1), "a sofa"), Region((0, 0, 2, 2), "a lamp")],
              "20": [Region((0, 0, 1, 1), "a sofa")]},
        "b": {"0": [Region((0, 0, 1, 1), "a desk")]}})
    path = tmp_path / "region_captions.json"
    assert region_phrases(path, ["a"]) == ["a lamp", "a sofa"]
    assert region_phrases(path, ["a", "b", "c"]) == ["a desk", "a lamp", "a sofa"]
    assert region_phrases(tmp_path / "missing.json", ["a"]) == []
