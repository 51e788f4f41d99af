"""Evaluator pieces on hand-made cases: votes, nearest-visible fill, sharding, plots."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from xmask3d.engine.evaluator import SceneVotes, nearest_visible_fill, shard_scenes, spread_views
from xmask3d.engine.plots import plot_confusion, plot_training_curves


def test_votes_and_nearest_fill_hand_made():
    points = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [10, 0, 0], [0.2, 0, 0]],
                      dtype=np.float32)
    votes = SceneVotes(6, 3, kinds=("fused",))
    votes.add("fused", torch.tensor([0, 1, 2]), torch.tensor([1, 1, 2]))
    votes.add("fused", torch.tensor([1, 2, 3]), torch.tensor([0, 2, 2]))
    votes.add("fused", torch.tensor([2, 4]), torch.tensor([-1, -1]))   # abstains
    assert votes.votes["fused"][2].tolist() == [0, 0, 2]
    pred = votes.predict(points)["fused"]
    # p1 ties 1:1 between classes 0 and 1 -> lowest index; p4 -> nearest seen p3; p5 -> p0
    assert pred.tolist() == [1, 0, 2, 2, 2, 1]


def test_nearest_fill_edge_cases():
    pts = np.array([[0.0, 0, 0], [5, 0, 0], [4, 0, 0]])
    assert nearest_visible_fill(pts, np.array([7, 0, 0]), np.array([True, False, False])
                                ).tolist() == [7, 7, 7]
    assert nearest_visible_fill(pts, np.array([1, 2, 3]), np.zeros(3, bool)).tolist() == [-1] * 3
    assert nearest_visible_fill(pts, np.array([1, 2, 3]), np.ones(3, bool)).tolist() == [1, 2, 3]


def test_shard_scenes_balances_views_deterministically():
    shards = shard_scenes({"a": 5, "b": 3, "c": 3, "d": 1}, 2)
    assert shards == [["a", "d"], ["b", "c"]]
    assert shard_scenes({"a": 1}, 3) == [["a"], [], []]
    assert spread_views(list(range(10, 20)), 3) == [10, 14, 19]
    assert spread_views([1, 2], 0) == [1, 2]


def test_plots_write_pngs(tmp_path):
    m = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    png = plot_confusion(m, ["wall", "chair", "sofa"], tmp_path / "c.png", novel={"sofa"})
    assert Image.open(png).format == "PNG"
    log = tmp_path / "log.jsonl"
    recs = [{"kind": "train", "step": s, "epoch": 0, "loss": 3.0 / s, "loss_ce": 1.0 / s,
             "lr_3d": 1e-3, "lr_2d": 1e-4} for s in (1, 2, 3)]
    recs.append({"kind": "select", "step": 3, "epoch": 1, "hIoU": 12.5, "mIoU_base": 20.0})
    log.write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"torn')
    out = plot_training_curves(log, tmp_path / "curves.png")
    assert out is not None and Image.open(out).size[0] > 500
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps(recs[-1]) + "\n")
    assert plot_training_curves(empty, tmp_path / "none.png") is None
