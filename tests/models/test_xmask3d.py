"""The assembled XMask3D model: outputs, determinism, gradient flow, frozen parts, overfitting."""

from __future__ import annotations

import math

import pytest
import torch

from xmask3d.config import load_config
from xmask3d.data.splits import get_split
from xmask3d.eval.scoring import view_point_predictions
from xmask3d.losses.criterion import compute_losses
from xmask3d.models.build import build_matcher, build_model, build_text, loss_weights



def _model(cfg, seed=0):
    torch.manual_seed(seed)
    return build_model(cfg, text_dim=build_text(cfg).dim)


def _inputs(cfg, batch):
    text = build_text(cfg)
    return text.class_embeddings(batch.class_names), text.encode_captions(batch.captions)


def _open_gates(model, value=0.3):
    cond = model.mask_generator.diffusion.condition
    with torch.no_grad():
        cond.context_gate.fill_(value)
        cond.time_gate.fill_(value)
        for p in model.mask_generator.pixel_decoder.parameters():
            p.add_(0.01 * torch.randn_like(p))


def test_output_shapes_and_dtypes(micro_cfg, batch_factory):
    model = _model(micro_cfg)
    batch = batch_factory(micro_cfg)
    ce, cap = _inputs(micro_cfg, batch)
    out = model(batch, ce, caption_embeds=cap)
    p, c, q = batch.points.shape[0], len(batch.class_names), micro_cfg.mask2d.num_queries
    e = ce.shape[1]
    assert out.point_logits_fused.shape == (p, c) and out.point_logits_3d.shape == (p, c)
    assert out.point_feats_2d.shape == (p, e) and out.point_query_logits.shape == (p, q)
    assert out.binary_logits.shape == (p,) and out.point_mask_id.dtype == torch.int64
    assert out.global_feat.shape == (2, micro_cfg.backbone3d.global_dim)
    assert len(out.mask_logits) == micro_cfg.mask2d.decoder_layers + 1
    assert out.class_logits[-1].shape == (2, q, c + 1)
    assert out.alignment_target == "mask_embed" and out.mask_clip_embeds is None
    covered = out.point_covered
    assert torch.all(out.point_feats_2d[~covered] == 0)
    assert torch.equal(covered, out.point_mask_id >= 0)
    assert all(torch.isfinite(t).all() for t in (out.point_logits_fused, out.binary_logits))


def test_deterministic_under_seed(micro_cfg, batch_factory):
    batch = batch_factory(micro_cfg)
    ce, cap = _inputs(micro_cfg, batch)
    a = _model(micro_cfg, seed=3)(batch, ce, caption_embeds=cap)
    b = _model(micro_cfg, seed=3)(batch, ce, caption_embeds=cap)
    c = _model(micro_cfg, seed=4)(batch, ce, caption_embeds=cap)
    torch.testing.assert_close(a.point_logits_fused, b.point_logits_fused)
    torch.testing.assert_close(a.mask_logits[-1], b.mask_logits[-1])
    assert not torch.allclose(a.point_logits_fused, c.point_logits_fused)


def _total_loss(cfg, model, batch, alignment_on=True):
    ce, cap = _inputs(cfg, batch)
    out = model(batch, ce, caption_embeds=cap)
    losses = compute_losses(out, batch, weights=loss_weights(cfg), matcher=build_matcher(cfg),
                            caption_embeds=cap, alignment_on=alignment_on,
                            generator=torch.Generator().manual_seed(0))
    return losses


def test_every_trainable_parameter_gets_a_gradient(micro_cfg, batch_factory):
    model = _model(micro_cfg)
    _open_gates(model)
    losses = _total_loss(micro_cfg, model, batch_factory(micro_cfg))
    sum(losses.values()).backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
    assert missing == []


@pytest.mark.parametrize("height", [False, True])
def test_height_channel_widens_both_3d_inputs(height, micro_overrides, batch_factory):
    cfg = load_config("tiny/scannet_b15n4", [*micro_overrides, f"data.height_channel={height}"])
    model = _model(cfg)
    batch = batch_factory(cfg)
    assert batch.voxel_feats.shape[1] == (4 if height else 3)
    for net in (model.backbone3d, model.binary_net):       # stem weight: (C_out, k, k, k, C_in)
        assert net.stem[0].weight.shape[-1] == (4 if height else 3)
    losses = _total_loss(cfg, model, batch)
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


def test_frozen_unet_gets_no_gradient_but_condition_does(micro_overrides, batch_factory):
    cfg = load_config("tiny/scannet_b15n4", [*micro_overrides, "mask2d.freeze_unet=true"])
    model = _model(cfg)
    _open_gates(model)
    sum(_total_loss(cfg, model, batch_factory(cfg)).values()).backward()
    unet = model.mask_generator.diffusion.unet
    assert all(p.grad is None and not p.requires_grad for p in unet.parameters())
    cond = model.mask_generator.diffusion.condition
    assert cond.context_proj.weight.grad is not None and cond.context_proj.weight.grad.abs().sum() > 0
    assert model.global_proj.weight.grad.abs().sum() > 0   # 3D global feature trained through UNet
    groups = model.param_groups(lr_3d=1e-3, lr=1e-4, weight_decay=0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and not any(id(p) in set(ids) for p in unet.parameters())


def test_zero_gates_make_condition_irrelevant_at_init(micro_cfg, batch_factory):
    model = _model(micro_cfg)
    batch = batch_factory(micro_cfg)
    ce, cap = _inputs(micro_cfg, batch)
    a = model(batch, ce, caption_embeds=cap).mask_logits[-1]
    with torch.no_grad():
        model.global_proj.weight.mul_(5.0)          # a different 3D condition
    b = model(batch, ce, caption_embeds=cap).mask_logits[-1]
    torch.testing.assert_close(a, b)
    _open_gates(model)
    c = model(batch, ce, caption_embeds=cap).mask_logits[-1]
    assert not torch.allclose(a, c)


def test_overfits_one_batch(micro_cfg, batch_factory):
    torch.manual_seed(0)
    cfg = micro_cfg
    model = _model(cfg)
    batch = batch_factory(cfg)
    opt = torch.optim.AdamW(model.param_groups(lr_3d=3e-3, lr=1e-3, weight_decay=0.0))
    first = {k: v.item() for k, v in _total_loss(cfg, model, batch).items()}
    for _ in range(14):
        opt.zero_grad()
        sum(_total_loss(cfg, model, batch).values()).backward()
        opt.step()
    last = {k: v.item() for k, v in _total_loss(cfg, model, batch).items()}
    main = [k for k in first if not k[-1].isdigit() and first[k] > 1e-6]
    worse = {k: (first[k], last[k]) for k in main if not last[k] < first[k]}
    assert worse == {}, worse


@pytest.mark.parametrize("condition", ["none", "text", "image"])
def test_condition_ablations_run(condition, micro_overrides, batch_factory):
    cfg = load_config("tiny/scannet_b15n4", [*micro_overrides, f"mask2d.condition={condition}"])
    model = _model(cfg)
    if condition != "none":
        _open_gates(model)
    batch = batch_factory(cfg)
    ce, cap = _inputs(cfg, batch)
    out = model(batch, ce, caption_embeds=cap)
    assert torch.isfinite(out.point_logits_fused).all()
    if condition != "none":
        assert model.mask_generator.diffusion.condition.cond_dim == (
            cap.shape[1] if condition == "text" else 2 * 3 * 8 * 8)


def test_evaluation_mode_gating_and_predictions(micro_cfg, batch_factory):
    model = _model(micro_cfg).eval()
    batch = batch_factory(micro_cfg, train=False)
    split = get_split(micro_cfg.data.split)
    ce, _ = _inputs(micro_cfg, batch)
    is_novel = torch.zeros(len(batch.class_names), dtype=torch.bool)
    is_novel[list(split.novel)] = True
    with torch.no_grad():
        out = model(batch, ce, is_novel_class=is_novel)
        preds = view_point_predictions(out, batch, is_novel_class=is_novel,
                                       fusion_cfg=micro_cfg.fusion)
    base_pt = out.binary_logits > 0
    for key, pred in preds.items():
        assert pred.shape == (batch.points.shape[0],) and pred.min() >= 0
        assert pred.max() < len(batch.class_names)
        if key != "2d":       # 2D fill copies neighbours' gated labels
            assert torch.all(is_novel[pred[base_pt]] == False)     # noqa: E712
            assert torch.all(is_novel[pred[~base_pt]])
    assert not math.isnan(out.logit_scale.item())


@pytest.mark.parametrize("init", [math.log(1 / 0.07), 3.0])
def test_logit_scale_init_is_configurable_and_shared(init, micro_overrides, batch_factory):
    cfg = load_config("tiny/scannet_b15n4", [*micro_overrides, f"mask2d.logit_scale_init={init}"])
    torch.manual_seed(0)
    model = build_model(cfg, text_dim=16).eval()
    assert model.mask_generator.mask_embed.logit_scale().item() == pytest.approx(math.exp(init))
    batch = batch_factory(cfg, batch_size=1)
    ce = torch.nn.functional.normalize(torch.randn(len(batch.class_names), 16), dim=1)
    with torch.no_grad():
        out = model(batch, ce)
    cos = torch.nn.functional.normalize(out.point_feats_3d, dim=1) @ ce.t()
    torch.testing.assert_close(out.point_logits_3d, math.exp(init) * cos)
