"""What the page shows: colours, legend, query heat map, click inspection, PLY export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmask3d.apps.common import load_scan
from xmask3d.apps.other import BACKGROUND_WORDS, DEFAULT_OTHER_BELOW, OTHER
from xmask3d.apps.render import OTHER_COLOR, class_palette
from xmask3d.cli import main
from xmask3d.data.ply import read_ply
from xmask3d.errors import ConfigError, DataError
from xmask3d.viewer.features import (
    compute_point_features,
    encode_negatives,
    encode_query,
    make_vocabulary,
)
from xmask3d.viewer.state import ModelScorer, ViewState, load_segment_result

from .conftest import view_args


@pytest.fixture(scope="module")
def scorer(room_ply, micro_ckpt, micro_lm):
    scene = load_scan(room_ply)
    feats = compute_point_features(view_args(room_ply, micro_ckpt), micro_lm, scene,
                                   make_vocabulary(micro_lm, ["floor", "wall", "table"]))
    return scene, ModelScorer(feats, micro_lm)


@pytest.fixture
def state(scorer):
    scene, sc = scorer
    return ViewState(scene.points, scene.colors, sc)


def test_actions_before_the_features_are_ready(scorer):
    early = ViewState(scorer[0].points, scorer[0].colors)
    assert "still being computed" in early.query("a chair")
    with pytest.raises(ConfigError, match="still being computed"):
        early.segment("chair, table")
    assert "still being computed" in early.inspect(0)


def test_input_colours_before_any_segmentation(state, scorer):
    np.testing.assert_array_equal(state.colors(), scorer[0].colors)
    assert state.available_modes() == ["input"] and state.legend().entries == []
    assert "Segment the scan first" in state.inspect(0)


def test_segment_colours_legend_and_modes(state):
    state.segment("floor, wall|partition, table")
    assert state.mode == "fused" and state.available_modes() == ["input", "fused", "3d", "2d"]
    # the background words the list does not name make "other" (grey, last)
    assert state.names == ["floor", "wall|partition", "table", OTHER]
    palette = class_palette(4)
    palette[-1] = OTHER_COLOR
    for mode in ("fused", "3d", "2d"):
        state.set_mode(mode)
        labels = state.labels[mode]
        np.testing.assert_array_equal(state.colors(), palette[labels])
        legend = state.legend().entries
        assert sum(c for _, _, c in legend) == state.num_points
        assert {n: c for n, _, c in legend} == {
            n: int((labels == i).sum()) for i, n in enumerate(state.names) if (labels == i).any()}
        assert all(rgb == tuple(int(v) for v in palette[state.names.index(n)])
                   for n, rgb, _ in legend)
        html = state.legend().html()
        assert all(f"{name} <span" in html for name, _, _ in legend)
    state.set_mode("input")
    np.testing.assert_array_equal(state.colors(), state.input_colors)
    with pytest.raises(ConfigError, match="colour mode"):
        state.set_mode("rainbow")


def test_segment_labels_background_word_points_other_as_segment_does(state, scorer):
    scene, sc = scorer
    state.segment("floor, table")
    assert state.names == ["floor", "table", OTHER]
    words = ["floor", "table", *[w for w in BACKGROUND_WORDS if w != "floor"]]
    for mode in ("fused", "3d", "2d"):
        probs = sc.features.probabilities(make_vocabulary(sc.lm, words), mode)
        np.testing.assert_array_equal(state.labels[mode], np.where(
            probs.max(1) < DEFAULT_OTHER_BELOW, 2, np.minimum(probs.argmax(1), 2)))
    # without the background words (`view --no-other`): every point takes one of the words
    plain = ViewState(scene.points, scene.colors, ModelScorer(sc.features, sc.lm, other=False))
    plain.segment("floor, table")
    assert plain.names == ["floor", "table"]
    probs = sc.features.probabilities(make_vocabulary(sc.lm, ["floor", "table"]), "fused")
    np.testing.assert_array_equal(plain.labels["fused"], probs.argmax(1))


def test_query_is_relative_to_the_background_words_it_does_not_name(state, scorer):
    _, sc = scorer
    state.query("the floor")
    words = [w for w in BACKGROUND_WORDS if w != "floor"]
    negatives = encode_negatives(sc.lm)
    expected = sc.features.relevance(
        encode_query(sc.lm, "the floor"),
        torch.cat([negatives, encode_negatives(sc.lm, words)]))
    np.testing.assert_allclose(state.query_rel, expected, rtol=1e-4, atol=1e-5)
    plain = ModelScorer(sc.features, sc.lm, other=False).relevance("the floor")
    np.testing.assert_allclose(plain, sc.features.relevance(encode_query(sc.lm, "the floor"),
                                                            negatives), rtol=1e-4, atol=1e-5)
    assert not np.allclose(plain, state.query_rel)


def test_segment_refuses_bad_class_lists(state):
    with pytest.raises(ConfigError, match="empty"):
        state.segment(" , ")
    with pytest.raises(ConfigError, match="repeated"):
        state.segment("chair, chair")
    with pytest.raises(ConfigError, match="not in the class list"):
        state.segment("chair, table", base="sofa")


def test_query_heat_map_threshold_and_messages(state):
    assert "Type a query" in state.query("   ") and state.query_rel is None
    msg = state.query("a wooden table")
    assert state.mode == "query" and "table" in msg
    rel = state.query_rel
    assert rel.shape == (state.num_points,) and ((rel > 0) & (rel < 1)).all()
    heat = state.colors()
    assert not np.array_equal(heat, state.input_colors)
    state.threshold = float(np.median(rel))
    state.matches_only = True
    dimmed = state.colors()
    below = rel <= state.threshold
    np.testing.assert_array_equal(dimmed[~below], heat[~below])
    assert (dimmed[below].astype(int).max(axis=1) <= 0.25 * 255 + 70 + 1).all()
    other = state.query("a wall")
    assert "wall" in other and not np.array_equal(state.query_rel, rel)


def test_pick_finds_the_point_a_ray_passes_first(state):
    target = state.points[123].astype(np.float64)
    origin = target + np.array([0.3, -8.0, 2.0])
    index = state.pick(origin, target - origin)
    hit = state.points[index]
    # the chosen point lies on the ray within the cone and no nearer than the target
    d = (target - origin) / np.linalg.norm(target - origin)
    t = float((hit - origin) @ d)
    assert np.linalg.norm(hit - origin - t * d) <= 0.01 * t + 0.02
    assert t <= float((target - origin) @ d) + 1e-5
    assert state.pick(origin, origin - target) is None       # pointing away from the scan


def test_inspect_lists_top_classes_and_gate(state):
    state.segment("floor, wall, table, chair, lamp, sofa", base="floor, wall")
    text = state.inspect(7)
    for title in ("fused 3D-2D", "3D only", "2D only"):
        line = next(ln for ln in text.splitlines() if title in ln)
        assert line.count(",") == 4                           # five classes
    assert "gate: " in text and "applied" in text and "not applied" not in text
    info = state.scorer.inspect(7)
    scores = [s for _, s in info["fused"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-5


def test_export_ply_writes_current_colours(state, tmp_path):
    state.segment("floor, wall, table")
    path = state.export_ply(tmp_path / "out" / "seg.ply")
    cloud = read_ply(path)
    np.testing.assert_array_equal(cloud.colors, state.colors())
    np.testing.assert_array_equal(cloud.fields["class_id"], state.labels["fused"])
    state.query("floor")
    cloud = read_ply(state.export_ply(tmp_path / "q.ply"))
    np.testing.assert_allclose(cloud.fields["relevance"], state.query_rel, rtol=1e-6)
    assert [p.name for p in tmp_path.rglob("*.tmp")] == []


def test_segment_output_folder_opens_without_model(room_ply, micro_ckpt, tmp_path):
    out = tmp_path / "seg"
    assert main(["segment", str(room_ply), "--classes", "floor, wall, table", "--ckpt",
                 str(micro_ckpt), "--device", "cpu", "--virtual-views", "4", "--no-progress",
                 "--out", str(out)]) == 0
    points, colors, scorer, name = load_segment_result(out)
    saved = read_ply(out / "segmentation.ply")
    np.testing.assert_array_equal(points, saved.points)
    np.testing.assert_array_equal(colors, load_scan(room_ply).colors)    # the scan's own
    state = ViewState(points, colors, scorer)
    assert state.mode == "fused" and name == "room.ply"
    np.testing.assert_array_equal(state.colors(), saved.colors)
    assert "Queries need the model" in state.query("chair")
    with pytest.raises(ConfigError, match="no model"):
        state.segment("chair")
    assert "fused 3D-2D" in state.inspect(0) and "gate" not in state.inspect(0)
    (out / "segment.json").unlink()
    with pytest.raises(DataError, match="segment.json missing"):
        load_segment_result(out)
