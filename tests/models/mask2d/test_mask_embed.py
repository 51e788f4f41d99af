"""Tests of hard-mask pooling, PooledMaskEmbed, its classifier, and the whole 2D mask head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmask3d.models.mask2d.mask_decoder import MaskedAttentionDecoder
from xmask3d.models.mask2d.mask_embed import PooledMaskEmbed, hard_mask_pool
from xmask3d.models.mask2d.msdeform_attn import MSDeformAttn
from xmask3d.models.mask2d.pixel_decoder import MultiScaleDeformablePixelDecoder

HIDDEN, MASK_DIM, EMBED = 32, 16, 24


def test_hard_mask_pool_equals_hand_loop_and_empty_mask_is_zero():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 4, 6, generator=gen)
    logits = torch.randn(2, 3, 4, 6, generator=gen)
    logits[1, 2] = -1.0  # empty mask
    pooled = hard_mask_pool(feats, logits)
    for b in range(2):
        for q in range(3):
            picked = [feats[b, :, i, j] for i in range(4) for j in range(6)
                      if 1 / (1 + math.exp(-logits[b, q, i, j].item())) > 0.5]
            expected = torch.stack(picked).mean(0) if picked else torch.zeros(5)
            torch.testing.assert_close(pooled[b, q], expected)
    assert torch.equal(pooled[1, 2], torch.zeros(5))


def test_hard_mask_pool_resizes_masks_and_blocks_mask_gradient():
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(1, 3, 8, 8, generator=gen, requires_grad=True)
    logits = torch.randn(1, 2, 4, 4, generator=gen, requires_grad=True)
    pooled = hard_mask_pool(feats, logits)
    up = F.interpolate(logits.detach(), size=(8, 8), mode="bilinear", align_corners=False)
    hard = (up > 0).float()
    expected = (feats[:, None] * hard[:, :, None]).sum((-1, -2)) / hard.sum((-1, -2))[..., None]
    torch.testing.assert_close(pooled, expected)
    pooled.sum().backward()
    assert logits.grad is None and feats.grad is not None


def test_forward_equals_hand_composition():
    torch.manual_seed(0)
    head = PooledMaskEmbed(HIDDEN, MASK_DIM, EMBED)
    query = torch.randn(2, 3, HIDDEN)
    feats, logits = torch.randn(2, MASK_DIM, 5, 5), torch.randn(2, 3, 5, 5)
    ln1, lin = head.pool_proj
    ln2, mlp = head.embed
    pooled = hard_mask_pool(feats, logits)
    x = lin(F.layer_norm(pooled, (MASK_DIM,), ln1.weight, ln1.bias)) + query
    x = F.layer_norm(x, (HIDDEN,), ln2.weight, ln2.bias)
    l1, l2, l3 = mlp.layers
    expected = l3(F.relu(l2(F.relu(l1(x)))))
    torch.testing.assert_close(head(query, feats, logits), expected)


def test_classify_equals_scaled_cosine_with_null_column():
    torch.manual_seed(0)
    head = PooledMaskEmbed(HIDDEN, MASK_DIM, EMBED)
    null = torch.randn(EMBED)
    head.set_null_init(null)
    mask_embed, classes = torch.randn(2, 3, EMBED), torch.randn(5, EMBED)
    mask_embed[0, 1] = 2.5 * null  # parallel to the null embedding
    logits = head.classify(mask_embed, classes)
    assert logits.shape == (2, 3, 6)
    scale = 1 / 0.07
    for b in range(2):
        for q in range(3):
            for c, t in enumerate([*classes, null]):
                cos = torch.dot(mask_embed[b, q], t) / (mask_embed[b, q].norm() * t.norm())
                torch.testing.assert_close(logits[b, q, c], scale * cos)
    torch.testing.assert_close(logits[0, 1, -1], torch.tensor(scale))


def test_logit_scale_init_clamp_and_gradient():
    assert math.isclose(PooledMaskEmbed(8, 8, 8).logit_scale().item(), 1 / 0.07, rel_tol=1e-6)
    head = PooledMaskEmbed(8, 8, 8, logit_scale_init=math.log(1000.0), logit_scale_max=100.0)
    assert head.logit_scale().item() == pytest.approx(100.0)
    logits = head.classify(torch.randn(1, 2, 8), torch.randn(3, 8))
    assert logits.abs().max() <= 100.0 + 1e-4


def test_set_null_init_and_bad_shapes():
    head = PooledMaskEmbed(8, 8, 8)
    head.set_null_init(torch.arange(8.0)[None])
    assert torch.equal(head.null_embed.data, torch.arange(8.0)[None])
    with pytest.raises(ValueError, match="set_null_init"):
        head.set_null_init(torch.zeros(7))
    with pytest.raises(ValueError, match="class_embeds"):
        head.classify(torch.randn(1, 2, 8), torch.randn(3, 6))


def _build_pipeline():
    channels = {"s2": 8, "s3": 8, "s4": 8, "s5": 8}
    strides = {"s2": 4, "s3": 8, "s4": 16, "s5": 32}
    pixel = MultiScaleDeformablePixelDecoder(
        channels, strides, transformer_in_features=["s3", "s4", "s5"], conv_dim=HIDDEN,
        mask_dim=MASK_DIM, n_heads=4, ffn_dim=64, enc_layers=2, common_stride=4, n_points=2,
        norm_groups=8)
    decoder = MaskedAttentionDecoder(HIDDEN, 4, 64, 3, 4, MASK_DIM, n_levels=3)
    head = PooledMaskEmbed(HIDDEN, MASK_DIM, EMBED)
    return pixel, decoder, head


def _run_pipeline(pixel, decoder, head, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    sizes = {"s2": 16, "s3": 8, "s4": 4, "s5": 2}  # a 64x64 image
    feats = {n: torch.randn(2, 8, s, s, generator=gen) for n, s in sizes.items()}
    classes = torch.randn(5, EMBED, generator=gen)
    mask_features, multi_scale = pixel(feats)
    out = decoder(multi_scale, mask_features)
    embeds = head.embed_layers(out.query_outputs, out.mask_logits, mask_features)
    return out, [head.classify(e, classes) for e in embeds]


def test_pipeline_deterministic_under_seed():
    results = []
    for _ in range(2):
        torch.manual_seed(11)
        results.append(_run_pipeline(*_build_pipeline())[1][-1])
    assert torch.equal(results[0], results[1])


def test_every_parameter_gets_gradient_from_main_plus_aux_losses():
    torch.manual_seed(0)
    modules = _build_pipeline()
    # The standard init zeroes the query->offset/weight maps, so at step 0 the encoder queries
    # (and hence the pixel decoder's level embedding) get no gradient; emulate a trained state.
    with torch.no_grad():
        for m in modules[0].modules():
            if isinstance(m, MSDeformAttn):
                m.sampling_offsets.weight.normal_(std=0.01)
                m.attention_weights.weight.normal_(std=0.01)
    out, class_logits = _run_pipeline(*modules)
    assert len(class_logits) == 4 and class_logits[-1].shape == (2, 4, 6)
    target = torch.tensor([0, 1, 2, 5]).repeat(2)
    loss = sum(F.cross_entropy(c.flatten(0, 1), target) + m.sigmoid().mean()
               for c, m in zip(class_logits, out.mask_logits, strict=True))
    assert torch.isfinite(loss)
    loss.backward()
    for module in modules:
        for name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name
