"""Per-row computation (per voxel, per mask, per (voxel, mask) pair) equals the per-point one.

The model computes its wide per-point heads once per distinct row and gathers to points last
(issue 18). The straightforward per-point formulation is written out here from the model's own
modules and compared on a fixed batch: outputs, every loss term and every parameter gradient.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from xmask3d.losses.criterion import compute_losses
from xmask3d.models.build import build_matcher, build_model, build_text, loss_weights
from xmask3d.models.fusion.mask_to_points import cosine_logits, gather_point_mask_features
from xmask3d.models.outputs import PointRows


def _per_point_reference(model, out, batch, ce):
    """The outputs as the per-point formulation computes them (concat + Linear on every point)."""
    p3d = out.feats_3d.points()
    p2d = gather_point_mask_features(out.mask_embeds[-1], out.point_mask_id, batch.point_batch)
    fused = model.fusion(p2d, p3d, out.point_covered)         # the module's per-point forward
    scale = out.logit_scale
    cov = out.point_covered[:, None].to(p2d.dtype)
    return replace(out, feats_3d=PointRows.of_points(p3d), feats_2d=PointRows.of_points(p2d),
                   feats_fused=PointRows.of_points(fused),
                   point_logits_3d=cosine_logits(p3d, ce, scale),
                   point_logits_fused=cosine_logits(fused, ce, scale),
                   point_logits_2d=cosine_logits(p2d, ce, scale) * cov)


@pytest.mark.parametrize("uncovered", ["fuse", "copy3d"])
def test_rows_equal_per_point_outputs_losses_and_gradients(micro_overrides, batch_factory,
                                                           uncovered):
    from xmask3d.config import load_config

    cfg = load_config("tiny/scannet_b15n4", [*micro_overrides, f"fusion.uncovered={uncovered}"])
    torch.manual_seed(0)
    text = build_text(cfg)
    model = build_model(cfg, text_dim=text.dim).train()
    with torch.no_grad():                   # open the 2D branch so that masks cover points
        cond = model.mask_generator.diffusion.condition
        cond.context_gate.fill_(0.3)
        cond.time_gate.fill_(0.3)
        for p in model.mask_generator.parameters():
            p.add_(0.02 * torch.randn_like(p))
    batch = batch_factory(cfg, batch_size=3, points=500, seed=4)
    ce, cap = text.class_embeddings(batch.class_names), text.encode_captions(batch.captions)
    out = model(batch, ce, caption_embeds=cap)
    covered = out.point_covered
    assert covered.any() and (~covered).any(), "the check needs covered and uncovered points"
    assert out.feats_3d.rows.shape[0] == batch.voxel_coords.shape[0] < batch.points.shape[0]
    assert out.feats_fused.rows.shape[0] < batch.points.shape[0]
    ref = _per_point_reference(model, out, batch, ce)
    for name in ("point_logits_3d", "point_logits_fused", "point_logits_2d", "point_feats_3d",
                 "point_feats_fused", "point_feats_2d"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), rtol=1e-5, atol=1e-5,
                                   msg=name)
    kw = dict(weights=loss_weights(cfg), matcher=build_matcher(cfg), caption_embeds=cap,
              alignment_on=True)
    new = compute_losses(out, batch, generator=torch.Generator().manual_seed(1), **kw)
    old = compute_losses(ref, batch, generator=torch.Generator().manual_seed(1), **kw)
    assert new.keys() == old.keys() and "loss_mask_alignment" in new
    for k in new:
        torch.testing.assert_close(new[k], old[k], rtol=1e-5, atol=1e-6, msg=k)
    params = [p for p in model.parameters() if p.requires_grad]
    g_new = torch.autograd.grad(sum(new.values()), params, retain_graph=True, allow_unused=True)
    g_old = torch.autograd.grad(sum(old.values()), params, allow_unused=True)
    checked = 0
    total = float(torch.cat([b.flatten() for b in g_old if b is not None]).norm())
    for a, b in zip(g_new, g_old, strict=True):
        if a is None or b is None:
            assert a is None and b is None
            continue
        # float sums in another order: relative L2 error of each parameter's gradient, with a
        # floor from the whole gradient's norm for gradients that are float noise around 0
        assert float((a - b).norm()) <= 1e-3 * float(b.norm()) + 1e-6 * total
        checked += int(a.abs().sum() > 0)
    assert checked > 20                      # the gradients reach both branches and the fusion
