"""``xmask3d query``: LERF relevance against a reference, refused inputs, end-to-end runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from xmask3d.apps.inference import load_inference_model, make_sample
from xmask3d.apps.other import BACKGROUND_WORDS
from xmask3d.apps.query import query_negatives, relevance
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


def test_each_query_uses_only_its_own_negatives():
    gen = torch.Generator().manual_seed(1)
    f, q, n = (torch.randn(s, 8, generator=gen) for s in (9, 2, 5))
    uses = torch.tensor([[True, True, True, False, False], [True, False, True, True, True]])
    rel = relevance(f, q, n, torch.tensor(12.0), uses)
    for k in range(2):
        torch.testing.assert_close(rel[:, k], _lerf_reference(f, q[k:k + 1], n[uses[k]],
                                                              12.0)[:, 0])
    with pytest.raises(ValueError, match="at least one negative"):
        relevance(f, q, n, torch.tensor(12.0), torch.zeros(2, 5, dtype=torch.bool))


def test_background_words_lower_relevance_only_where_they_fit_better():
    # the floor point is closer to "floor" than to the query: relative to the background its
    # relevance drops below 0.5; the seat point is closer to the query and stays above 0.5
    query, generic, floor = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.6, 0.8, 0.0]
    feats = torch.tensor([[0.5, 0.86, 0.0], [1.0, 0.1, 0.0]])          # floor-like, seat-like
    alone = relevance(feats, torch.tensor([query]), torch.tensor([generic]), torch.tensor(10.0))
    both = relevance(feats, torch.tensor([query]), torch.tensor([generic, floor]),
                     torch.tensor(10.0))
    assert alone[0, 0] > 0.9 and both[0, 0] < 0.5 < both[1, 0]
    names, uses = query_negatives(["something to sit on", "the floor"], ["object", "things"])
    assert names == ["object", "things", *BACKGROUND_WORDS]
    assert uses.tolist() == [[True] * 7, [True, True, True, False, True, True, True]]
    names, uses = query_negatives(["the floor"], ["object"], background=False)
    assert names == ["object"] and uses.tolist() == [[True]]


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
    assert summary["background_words"] == list(BACKGROUND_WORDS)
    assert summary["queries"][0]["negatives"] == ["object", "things", "stuff", "texture",
                                                  *BACKGROUND_WORDS]
    n = read_ply(room_ply).num_points
    for q in summary["queries"]:
        cloud = read_ply(q["ply"])
        rel = cloud.fields["relevance"]
        assert cloud.num_points == n and ((rel > 0) & (rel < 1)).all()
        assert q["mean"] == pytest.approx(float(rel.mean()), rel=1e-5)
        assert Path(q["png"]).parent == out and Path(q["png"]).stat().st_size > 10_000


@pytest.mark.parametrize("no_other", [False, True])
def test_query_3d_only_matches_the_3d_features(room_ply, micro_ckpt, tmp_path, no_other):
    out = tmp_path / "q3d"
    assert main(["query", str(room_ply), "a table", "--ckpt", str(micro_ckpt), "--no-2d",
                 "--no-progress", "--out", str(out), *(["--no-other"] if no_other else [])]) == 0
    summary = json.loads((out / "query.json").read_text())
    assert summary["path"] == "3d-only" and summary["feature"] == "3D"
    got = read_ply(summary["queries"][0]["ply"]).fields["relevance"]
    # by default "a table" is compared with LERF's phrases and the background words too
    negatives = ["object", "things", "stuff", "texture", *([] if no_other else BACKGROUND_WORDS)]
    assert summary["queries"][0]["negatives"] == negatives
    lm = load_inference_model(micro_ckpt)
    cloud = read_ply(room_ply)
    # the model runs in the scan's canonical frame (metres, +z up, floor at 0)
    scene = Scene("room", detect_frame(cloud.points).apply(cloud.points), cloud.colors)
    batch = collate_views([make_sample(scene, np.arange(scene.num_points),
                                       voxel_size=lm.cfg.data.voxel_size, class_names=("p",),
                                       height_channel=lm.cfg.data.height_channel)])
    with torch.no_grad():
        feats = lm.model.encode_3d(batch)[0]
        ref = relevance(feats, lm.text.encode_captions(["a table"]),
                        lm.text.encode_captions(negatives),
                        lm.model.mask_generator.mask_embed.logit_scale())
    np.testing.assert_allclose(got, ref[:, 0].numpy(), rtol=1e-5, atol=1e-6)
