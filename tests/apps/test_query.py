"""``xmask3d query``: LERF relevance against a reference, refused inputs, end-to-end runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from xmask3d.apps.inference import load_inference_model, make_sample
from xmask3d.apps.query import relevance
from xmask3d.cli import main
from xmask3d.data.dataset import collate_views
from xmask3d.data.orientation import detect_frame
from xmask3d.data.ply import read_ply
from xmask3d.data.scene import Scene


def _lerf_reference(feats, queries, negatives, scale):
    """LERF as written: pairwise softmax with each canonical phrase, minimum over phrases."""
    f = torch.nn.functional.normalize(feats, dim=-1)
    q = torch.nn.functional.normalize(queries, dim=-1)
    n = torch.nn.functional.normalize(negatives, dim=-1)
    out = torch.empty(len(f), len(q))
    for i in range(len(f)):
        for j in range(len(q)):
            pairs = [torch.softmax(scale * torch.stack([f[i] @ q[j], f[i] @ n[k]]), 0)[0]
                     for k in range(len(n))]
            out[i, j] = torch.stack(pairs).min()
    return out


def test_relevance_hand_values_and_reference():
    feats = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    queries = torch.tensor([[1.0, 0.0]])
    negatives = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    rel = relevance(feats, queries, negatives, torch.tensor(10.0))
    # point 0: s_q = 10, negatives 0 and 10/sqrt(2) -> sigmoid(10 - 7.071)
    assert rel[0, 0].item() == pytest.approx(1 / (1 + math.exp(-(10 - 10 / math.sqrt(2)))))
    # point 1: s_q = 0, best negative 10 -> sigmoid(-10)
    assert rel[1, 0].item() == pytest.approx(1 / (1 + math.exp(10)), rel=1e-5)
    gen = torch.Generator().manual_seed(0)
    f, q, n = (torch.randn(s, 8, generator=gen) for s in (7, 3, 4))
    torch.testing.assert_close(relevance(f, q, n, torch.tensor(14.3)),
                               _lerf_reference(f, q, n, 14.3))


def test_empty_query_is_refused(room_ply, tmp_path, capsys):
    assert main(["query", str(room_ply), "chair", "  ", "--out", str(tmp_path)]) == 1
    assert "query 2 is empty" in capsys.readouterr().err
    assert main(["query", str(tmp_path / "none.ply"), "chair", "--out", str(tmp_path)]) == 1
    assert "none.ply: point cloud file not found" in capsys.readouterr().err


def test_query_end_to_end(room_ply, micro_ckpt, tmp_path):
    out = tmp_path / "q"
    queries = ["something to sit on", "metal"]
    assert main(["query", str(room_ply), *queries, "--ckpt", str(micro_ckpt),
                 "--virtual-views", "1", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "query.json").read_text())
    assert summary["path"] == "virtual-views" and summary["feature"] == "fused 3D-2D"
    assert [q["query"] for q in summary["queries"]] == queries
    n = read_ply(room_ply).num_points
    for q in summary["queries"]:
        cloud = read_ply(q["ply"])
        rel = cloud.fields["relevance"]
        assert cloud.num_points == n and ((rel > 0) & (rel < 1)).all()
        assert q["mean"] == pytest.approx(float(rel.mean()), rel=1e-5)
        assert Path(q["png"]).parent == out and Path(q["png"]).stat().st_size > 10_000


def test_query_3d_only_matches_the_3d_features(room_ply, micro_ckpt, tmp_path):
    out = tmp_path / "q3d"
    assert main(["query", str(room_ply), "a table", "--ckpt", str(micro_ckpt), "--no-2d",
                 "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "query.json").read_text())
    assert summary["path"] == "3d-only" and summary["feature"] == "3D"
    got = read_ply(summary["queries"][0]["ply"]).fields["relevance"]
    lm = load_inference_model(micro_ckpt)
    cloud = read_ply(room_ply)
    # the model runs in the scan's canonical frame (metres, +z up, floor at 0)
    scene = Scene("room", detect_frame(cloud.points).apply(cloud.points), cloud.colors)
    batch = collate_views([make_sample(scene, np.arange(scene.num_points),
                                       voxel_size=lm.cfg.data.voxel_size, class_names=("p",))])
    with torch.no_grad():
        feats = lm.model.encode_3d(batch)[0]
        ref = relevance(feats, lm.text.encode_captions(["a table"]),
                        lm.text.encode_captions(["object", "things", "stuff", "texture"]),
                        lm.model.mask_generator.mask_embed.logit_scale())
    np.testing.assert_allclose(got, ref[:, 0].numpy(), rtol=1e-5, atol=1e-6)
