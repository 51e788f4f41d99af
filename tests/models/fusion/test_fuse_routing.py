"""Feature fusion layer and inference-time base/novel routing."""

from __future__ import annotations

import math

import torch

from xmask3d.models.fusion.fuse import MaskFeatureFusion
from xmask3d.models.fusion.routing import ensemble_log_scores, gate_base_novel, mask_class_allowed


def test_fusion_modes():
    torch.manual_seed(0)
    f2d, f3d = torch.randn(4, 5), torch.randn(4, 5)
    cov = torch.tensor([True, False, True, False])
    m = MaskFeatureFusion(5)
    want = m.linear(torch.cat([f2d, f3d], 1))
    torch.testing.assert_close(m(f2d, f3d, cov), want)
    m.uncovered = "copy3d"
    out = m(f2d, f3d, cov)
    torch.testing.assert_close(out[1], f3d[1])
    torch.testing.assert_close(out[0], want[0])
    off = MaskFeatureFusion(5, enabled=False)
    assert off(f2d, f3d, cov) is f3d and not list(off.parameters())


def test_gating_never_nan_and_masks_classes():
    scores = torch.tensor([[-1e30, 0.0, -math.inf], [0.0, -2.0, 1.0]])
    is_base = torch.tensor([True, False])
    is_novel = torch.tensor([False, False, True])
    out = gate_base_novel(scores, is_base, is_novel)
    assert not torch.isnan(out).any()
    assert out.argmax(1).tolist() == [1, 2]
    assert out[1, 0] == -math.inf and out[0, 2] == -math.inf


def test_gating_skipped_when_vocabulary_has_no_novel_class():
    scores = torch.tensor([[0.0, 1.0]])
    out = gate_base_novel(scores, torch.tensor([False]), torch.tensor([False, False]))
    torch.testing.assert_close(out, scores)


def test_ensemble_hand_computed():
    lp = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    lc = torch.log(torch.tensor([[0.2, 0.8], [0.5, 0.5]]))
    cov = torch.tensor([True, False])
    novel = torch.tensor([False, True])
    out = ensemble_log_scores(lp, lc, cov, novel, base_ratio=0.65, novel_ratio=0.35)
    want0 = torch.tensor([0.65 * math.log(0.5) + 0.35 * math.log(0.2),
                          0.35 * math.log(0.5) + 0.65 * math.log(0.8)])
    torch.testing.assert_close(out[0], want0)
    torch.testing.assert_close(out[1], lp[1])


def test_mask_class_allowed():
    allowed = mask_class_allowed(torch.tensor([[True, False]]), torch.tensor([False, True]))
    assert allowed[0, 0].tolist() == [True, False, True]
    assert allowed[0, 1].tolist() == [False, True, False]
