"""Cached point features: scoring against class lists and queries, and the first run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xmask3d.apps.common import load_scan
from xmask3d.apps.query import relevance
from xmask3d.config import FusionCfg
from xmask3d.viewer.features import (
    PointFeatures,
    Vocabulary,
    compute_point_features,
    make_vocabulary,
)

from .conftest import view_args


def _features(n_per_class: int = 4, *, clip: bool = False) -> tuple[PointFeatures, Vocabulary]:
    """Points whose features lie near one of three orthogonal class directions."""
    g = torch.Generator().manual_seed(0)
    e = 8
    embeds = torch.eye(3, e)
    truth = torch.arange(3).repeat_interleave(n_per_class)
    feats = F.normalize(embeds[truth] + 0.1 * torch.randn(len(truth), e, generator=g), dim=1)
    n = len(truth)
    binary = torch.where(truth < 2, 3.0, -3.0)           # classes 0, 1 look "base"
    pf = PointFeatures(fused=feats, feat_3d=feats.roll(1, dims=1), feat_2d=feats,
                       clip=feats if clip else None, binary=binary, covered=torch.ones(n),
                       scale=20.0, fusion=FusionCfg(), path="views")
    vocab = Vocabulary(names=["a", "b", "c"], embeds=embeds, is_novel=torch.ones(3, dtype=bool),
                       gating=False)
    return pf, vocab


def test_probabilities_follow_the_nearest_class_direction():
    pf, vocab = _features()
    probs = pf.probabilities(vocab, "fused")
    assert probs.shape == (12, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(1), np.repeat([0, 1, 2], 4))
    # the 3D features were rolled by one dimension: class k's points now point at class k+1
    p3 = pf.probabilities(vocab, "3d")
    np.testing.assert_array_equal(p3[:8].argmax(1), np.repeat([1, 2], 4))
    with pytest.raises(ValueError, match="mode"):
        pf.probabilities(vocab, "rgb")


def test_gate_restricts_base_points_to_base_classes():
    pf, vocab = _features()
    # declare class 2 base and 0, 1 novel: base points (truth 0, 1) may only take class 2
    gated = Vocabulary(vocab.names, vocab.embeds, torch.tensor([True, True, False]), True)
    labels = pf.probabilities(gated, "fused").argmax(1)
    np.testing.assert_array_equal(labels[:8], 2)
    assert set(labels[8:]) <= {0, 1}


def test_clip_ensemble_keeps_agreeing_predictions():
    pf, vocab = _features(clip=True)
    np.testing.assert_array_equal(pf.probabilities(vocab, "fused").argmax(1),
                                  np.repeat([0, 1, 2], 4))


def test_relevance_is_the_query_module_relevance():
    pf, vocab = _features()
    q, neg = vocab.embeds[1], vocab.embeds[[0, 2]]
    rel = pf.relevance(q, neg)
    expect = relevance(pf.fused, q[None], neg, torch.tensor(20.0))[:, 0].numpy()
    np.testing.assert_allclose(rel, expect, rtol=1e-4, atol=1e-7)
    assert rel[4:8].min() > 0.9 and rel[:4].max() < 0.1


@pytest.mark.parametrize("no_2d", [False, True])
def test_first_run_features_and_progress(room_ply, micro_ckpt, micro_lm, no_2d):
    scene = load_scan(room_ply)
    args = view_args(room_ply, micro_ckpt, no_2d=no_2d)
    seen = []
    pf = compute_point_features(args, micro_lm, scene,
                                make_vocabulary(micro_lm, ["floor", "wall", "table"]),
                                report=lambda d, t, w: seen.append((d, t, w)))
    n = scene.num_points
    assert pf.num_points == n and pf.path == ("3d-only" if no_2d else "virtual-views")
    for f in (pf.fused, pf.feat_3d, pf.feat_2d):
        assert f.shape[0] == n and torch.isfinite(f).all()
        np.testing.assert_allclose(f.norm(dim=1).numpy(), 1.0, atol=1e-4)
    assert ((pf.covered >= 0) & (pf.covered <= 1)).all()
    done, total = [s[0] for s in seen], seen[-1][1]
    assert done == sorted(done) and done[-1] == total and total >= 1
    if no_2d:
        assert torch.equal(pf.fused, pf.feat_3d) and not pf.covered.any()
    else:
        assert seen[-1][2] == "views" and pf.covered.max() > 0
