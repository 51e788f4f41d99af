"""Tests of the CLIP mask-token head on a tiny random CLIP ViT (32 px, patch 8, 4x4 patches)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

from xmask3d.errors import ConfigError
from xmask3d.models.text.clip_mask_head import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD, CLIPMaskTokenHead


def _clip(layers: int = 2, attn: str = "sdpa", seed: int = 0) -> CLIPVisionModelWithProjection:
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=2,
        patch_size=8, image_size=32, projection_dim=16, attn_implementation=attn,
    )  # fmt: skip
    torch.manual_seed(seed)
    return CLIPVisionModelWithProjection(config).eval()


def _inputs(batch: int = 2, queries: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(batch, 3, 48, 40, generator=generator)
    logits = torch.randn(batch, queries, 16, 16, generator=generator) * 4
    return images, logits


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_full_mask_token_equals_clip_image_embedding(attn: str) -> None:
    # A mask token covering every patch starts as CLS, reads the same keys as CLS and is
    # read by nobody, so layer by layer it stays equal to CLS: its output is CLIP's image
    # embedding. Image tokens never see mask tokens, so they match plain CLIP too.
    model = _clip(attn=attn)
    head = CLIPMaskTokenHead(model)
    images, logits = _inputs()
    logits[:, 0] = 10.0
    logits[:, 1] = -10.0
    logits[:, 1, :8, :8] = 10.0  # a quarter of the image
    out = head(images, logits)
    pixels = head.preprocess(images)
    reference = model(pixel_values=pixels)
    assert out.shape == (2, 3, 16) and head.embed_dim == 16
    torch.testing.assert_close(out[:, 0], reference.image_embeds, rtol=0, atol=1e-5)
    assert (out[:, 1] - reference.image_embeds).abs().max() > 1e-2
    hidden = head.encode_tokens(pixels, head.patch_masks(logits))
    torch.testing.assert_close(hidden[:, 3:], reference.last_hidden_state, rtol=0, atol=1e-5)


def test_one_layer_token_depends_only_on_its_patches() -> None:
    head = CLIPMaskTokenHead(_clip(layers=1))
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    logits = torch.full((1, 2, 32, 32), -10.0)
    logits[0, 0, :8, :16] = 10.0  # token 0: patches (0, 0) and (0, 1)
    logits[0, 1, 16:, 16:] = 10.0  # token 1: the bottom-right 2x2 patches
    base = head(images, logits)
    outside = images.clone()
    outside[0, :, 8:, :] = torch.rand(3, 24, 32, generator=torch.Generator().manual_seed(3))
    moved = head(outside, logits)
    torch.testing.assert_close(moved[0, 0], base[0, 0], rtol=0, atol=1e-6)
    assert (moved[0, 1] - base[0, 1]).abs().max() > 1e-3
    inside = images.clone()
    inside[0, :, :8, 8:16] = 1.0 - inside[0, :, :8, 8:16]
    assert (head(inside, logits)[0, 0] - base[0, 0]).abs().max() > 1e-3


def test_empty_mask_gives_finite_image_independent_token() -> None:
    # With one layer an empty-mask token reads only the CLS input, which has no pixels in it.
    head = CLIPMaskTokenHead(_clip(layers=1))
    images, logits = _inputs(batch=2, queries=2)
    logits[:, 1] = -50.0
    out = head(images, logits)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 1], out[1, 1], rtol=0, atol=1e-6)
    assert torch.isfinite(CLIPMaskTokenHead(_clip())(images, logits)).all()


def test_patch_masks_hand_computed() -> None:
    head = CLIPMaskTokenHead(_clip())
    logits = torch.full((1, 2, 32, 32), -3.0)
    logits[0, 0, 9, 30] = 0.0  # sigmoid 0.5 exactly: patch row 1, col 3 -> index 7
    logits[0, 1, :, :] = -0.01  # sigmoid just below 0.5 everywhere: empty
    masks = head.patch_masks(logits)
    assert masks.shape == (1, 2, 16) and masks.dtype == torch.bool
    assert masks[0, 0].nonzero().flatten().tolist() == [7]
    assert not masks[0, 1].any()
    half = head.patch_masks(torch.tensor([[[[5.0, -5.0]]]]).expand(1, 1, 4, 2))
    assert half.view(4, 4).tolist() == [[True, True, False, False]] * 4  # bilinear upsampling


def test_attention_bias_structure() -> None:
    head = CLIPMaskTokenHead(_clip())
    patch = torch.zeros(1, 2, 16, dtype=torch.bool)
    patch[0, 0, [1, 5]] = True
    bias = head.attention_bias(patch, dtype=torch.float32)[0, 0]
    allowed = bias == 0
    assert bias.shape == (19, 19) and not allowed[:, :2].any()  # nobody reads a mask token
    assert allowed[2:, 2:].all()  # image tokens as in plain CLIP
    assert allowed[0].nonzero().flatten().tolist() == [2, 4, 8]  # CLS + patches 1 and 5
    assert allowed[1].nonzero().flatten().tolist() == [2]  # empty mask: CLS only
    assert allowed.any(dim=1).all()
    assert (bias[~allowed] == torch.finfo(torch.float32).min).all()


def test_preprocess_normalisation() -> None:
    head = CLIPMaskTokenHead(_clip())
    out = head.preprocess(torch.full((1, 3, 64, 48), 0.25))
    expected = (0.25 - torch.tensor(CLIP_PIXEL_MEAN)) / torch.tensor(CLIP_PIXEL_STD)
    assert out.shape == (1, 3, 32, 32)
    torch.testing.assert_close(out, expected.view(1, 3, 1, 1).expand(1, 3, 32, 32))


def test_frozen_and_no_grad() -> None:
    head = CLIPMaskTokenHead(_clip())
    nn.ModuleDict({"head": head}).train()
    assert not head.tower.training and not any(p.requires_grad for p in head.parameters())
    images, logits = _inputs()
    images.requires_grad_(True)
    assert not head(images, logits).requires_grad


def test_bare_vision_model_with_projection_and_errors() -> None:
    with_proj = _clip()
    bare = CLIPVisionModel(with_proj.config).eval()
    bare.load_state_dict(with_proj.vision_model.state_dict())
    head = CLIPMaskTokenHead(bare, projection=with_proj.visual_projection)
    images, logits = _inputs()
    torch.testing.assert_close(head(images, logits), CLIPMaskTokenHead(with_proj)(images, logits))
    assert CLIPMaskTokenHead(CLIPVisionModel(with_proj.config)).embed_dim == 32
    with pytest.raises(ConfigError, match="image_size=224"):
        CLIPMaskTokenHead(with_proj, image_size=224)
    with pytest.raises(ConfigError, match="expected a transformers"):
        CLIPMaskTokenHead(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="batch"):
        head(images[:1], logits)
    with pytest.raises(ConfigError, match="images"):
        head(images[:, :1], logits)
