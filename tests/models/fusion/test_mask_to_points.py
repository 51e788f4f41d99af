"""2D-mask-to-point sampling, disjoint final masks and per-point mask features."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xmask3d.models.fusion.mask_to_points import (
    assign_final_masks,
    cosine_logits,
    gather_point_mask_features,
    query_scores,
    sample_masks_at_points,
)


def test_sampling_equals_upsample_then_index():
    g = torch.Generator().manual_seed(0)
    masks = torch.randn(2, 3, 6, 8, generator=g, dtype=torch.float64)
    hw = (24, 32)
    rc = torch.stack([torch.randint(0, 24, (50,), generator=g),
                      torch.randint(0, 32, (50,), generator=g)], 1)
    pb = torch.randint(0, 2, (50,), generator=g)
    got = sample_masks_at_points(masks, rc, pb, hw)
    up = F.interpolate(masks, size=hw, mode="bilinear", align_corners=False)
    want = up[pb, :, rc[:, 0], rc[:, 1]]
    torch.testing.assert_close(got, want)


def test_disjoint_assignment_hand_case():
    # 3 points of one view, 2 queries
    logits = torch.tensor([[3.0, 3.0], [3.0, -3.0], [-3.0, -3.0]])
    scores = torch.tensor([[0.4, 0.9]])
    pb = torch.zeros(3, dtype=torch.long)
    ids = assign_final_masks(logits, scores, pb)
    # p0: both masks on, query 1 has the higher score -> 1; p1: only q0 on -> 0; p2: none -> -1
    assert ids.tolist() == [1, 0, -1]


def test_winner_below_half_gives_uncovered():
    # the higher-scored query wins the pixel even where its mask is < 0.5 -> uncovered (method)
    logits = torch.tensor([[0.5, -0.2]])
    scores = torch.tensor([[0.1, 0.95]])
    assert assign_final_masks(logits, scores, torch.zeros(1, dtype=torch.long)).tolist() == [-1]


def test_query_scores_with_gating():
    cl = torch.tensor([[[2.0, 0.0, 1.0]]])
    s = query_scores(cl)
    torch.testing.assert_close(s, cl.softmax(-1).amax(-1))
    allowed = torch.tensor([[[False, True, True]]])
    s2 = query_scores(cl, allowed=allowed)
    torch.testing.assert_close(s2, torch.tensor([[torch.tensor([0.0, 1.0]).softmax(0)[1].item()]]))


def test_gather_point_features():
    emb = torch.arange(2 * 2 * 3, dtype=torch.float32).view(2, 2, 3)
    ids = torch.tensor([1, -1, 0])
    pb = torch.tensor([0, 0, 1])
    f = gather_point_mask_features(emb, ids, pb)
    assert f.tolist() == [[3, 4, 5], [0, 0, 0], [6, 7, 8]]


def test_cosine_logits():
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    out = cosine_logits(f, t, torch.tensor(10.0))
    torch.testing.assert_close(out, torch.tensor([[10.0, 0.0], [10 / 2**0.5, 10 / 2**0.5]]))


def test_cosine_logits_equal_normalised_features_times_classes_with_zero_rows():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(50, 24, generator=g, dtype=torch.float64) * 3
    feats[7] = 0.0                                   # an uncovered point's zero 2D feature
    classes = torch.randn(6, 24, generator=g, dtype=torch.float64)
    scale = torch.tensor(14.0, dtype=torch.float64)
    ref = scale * torch.nn.functional.normalize(feats, dim=-1) @ \
        torch.nn.functional.normalize(classes, dim=-1).t()
    got = cosine_logits(feats, classes, scale)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    assert torch.all(got[7] == 0)
    f1, f2 = feats.clone().requires_grad_(), feats.clone().requires_grad_()
    w = torch.randn(50, 6, generator=g, dtype=torch.float64)
    (cosine_logits(f1, classes, scale) * w).sum().backward()
    (scale * torch.nn.functional.normalize(f2, dim=-1)
     @ torch.nn.functional.normalize(classes, dim=-1).t() * w).sum().backward()
    torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-10, atol=1e-12)
