"""Tests of the masked-attention transformer decoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xmask3d.models.mask2d.mask_decoder import (
    CrossAttentionLayer,
    MaskedAttentionDecoder,
    attention_mask,
)

HIDDEN, HEADS, QUERIES, MASK_DIM = 32, 4, 4, 16
LEVEL_SIZES = [(2, 2), (4, 4), (8, 8)]


def _decoder(n_layers: int = 2, **kwargs) -> MaskedAttentionDecoder:
    return MaskedAttentionDecoder(HIDDEN, HEADS, 64, n_layers, QUERIES, MASK_DIM, **kwargs)


def _inputs(seed: int = 0, bsz: int = 2, mask_hw=(16, 16)):
    gen = torch.Generator().manual_seed(seed)
    multi_scale = [torch.randn(bsz, HIDDEN, h, w, generator=gen) for h, w in LEVEL_SIZES]
    return multi_scale, torch.randn(bsz, MASK_DIM, *mask_hw, generator=gen)


def test_attention_mask_blocks_outside_and_unblocks_empty_rows():
    logits = torch.full((2, 3, 2, 2), -3.0)
    logits[0, 0, 1, 0] = 2.0  # query 0 covers one pixel (flat index 2)
    logits[0, 1] = 0.0  # sigmoid exactly 0.5 counts as inside
    logits[1, 1, 0, 1] = 4.0  # second image: query 1 covers flat index 1
    blocked = attention_mask(logits, (2, 2), n_heads=2)
    assert blocked.shape == (4, 3, 4) and blocked.dtype == torch.bool
    for head in range(2):  # rows are ordered image-major, then head
        assert blocked[head, 0].tolist() == [True, True, False, True]
        assert not blocked[head, 1].any()
        assert not blocked[head, 2].any()  # fully blocked row is unblocked
        assert blocked[2 + head, 1].tolist() == [True, False, True, True]
        assert not blocked[2 + head, 0].any()


def test_single_pixel_mask_equals_single_key_attention():
    torch.manual_seed(0)
    layer = CrossAttentionLayer(HIDDEN, HEADS).double()
    tgt, query_pos = torch.randn(2, 1, QUERIES, HIDDEN, dtype=torch.float64)
    memory, pos = torch.randn(2, 1, 9, HIDDEN, dtype=torch.float64)
    logits = torch.full((1, QUERIES, 3, 3), -1.0, dtype=torch.float64)
    logits[0, 1, 2, 1] = 1.0  # query 1 sees only pixel 7
    blocked = attention_mask(logits, (3, 3), n_heads=HEADS)
    out = layer(tgt, memory, attn_mask=blocked, pos=pos, query_pos=query_pos)
    # A softmax over one key is 1, so the attention output is out_proj(v_proj(memory[7])).
    w_v = layer.attn.in_proj_weight[2 * HIDDEN :]
    b_v = layer.attn.in_proj_bias[2 * HIDDEN :]
    attended = layer.attn.out_proj(memory[0, 7] @ w_v.T + b_v)
    expected = F.layer_norm(tgt[0, 1] + attended, (HIDDEN,), layer.norm.weight, layer.norm.bias)
    torch.testing.assert_close(out[0, 1], expected, rtol=0, atol=1e-12)
    # Other queries (fully blocked -> unblocked) attend everywhere, like an unmasked layer.
    free = layer(tgt, memory, attn_mask=None, pos=pos, query_pos=query_pos)
    torch.testing.assert_close(out[0, [0, 2, 3]], free[0, [0, 2, 3]], rtol=0, atol=1e-12)
    assert not torch.allclose(out[0, 1], free[0, 1])


def test_initial_prediction_matches_hand_computation_and_counts():
    torch.manual_seed(0)
    dec = _decoder(n_layers=3)
    multi_scale, mask_features = _inputs()
    out = dec(multi_scale, mask_features)
    assert len(out.query_outputs) == len(out.mask_logits) == 4
    q0 = F.layer_norm(dec.query_feat.weight, (HIDDEN,), dec.decoder_norm.weight,
                      dec.decoder_norm.bias)
    torch.testing.assert_close(out.query_outputs[0], q0[None].expand(2, -1, -1))
    expected = torch.einsum("qc,bchw->bqhw", dec.mask_embed(q0), mask_features)
    torch.testing.assert_close(out.mask_logits[0], expected)
    for q, m in zip(out.query_outputs, out.mask_logits, strict=True):
        assert q.shape == (2, QUERIES, HIDDEN) and m.shape == (2, QUERIES, 16, 16)


def test_layers_cycle_over_levels_coarse_to_fine():
    torch.manual_seed(0)
    dec = _decoder(n_layers=5)
    seen = []
    for layer in dec.cross_layers:
        layer.register_forward_hook(lambda _m, args, _o: seen.append(args[1].shape[1]))
    dec(*_inputs())
    assert seen == [4, 16, 64, 4, 16]


def test_masked_decoder_ignores_memory_outside_the_previous_mask():
    """Engineer initial masks covering one level-0 pixel; other pixels must not matter."""
    torch.manual_seed(0)
    dec = _decoder(n_layers=1).double()
    with torch.no_grad():
        last = dec.mask_embed.layers[-1]
        last.weight.zero_()
        last.bias.zero_()
        last.bias[0] = 1.0  # every query's mask logit = mask_features channel 0
    multi_scale, _ = _inputs()
    multi_scale = [m.double() for m in multi_scale]
    mask_features = torch.full((2, MASK_DIM, 2, 2), -1.0, dtype=torch.float64)
    mask_features[:, 0, 1, 0] = 1.0  # only level-0 pixel (1, 0) is inside every mask
    captured = []
    dec.cross_layers[0].register_forward_hook(lambda _m, _a, o: captured.append(o))
    dec(multi_scale, mask_features)
    perturbed = [m.clone() for m in multi_scale]
    perturbed[0][:, :, 0, :] += 5.0  # row 0: outside the masks
    perturbed[0][:, :, 1, 1] -= 5.0
    dec(perturbed, mask_features)
    torch.testing.assert_close(captured[1], captured[0], rtol=0, atol=1e-12)
    perturbed[0][:, :, 1, 0] += 5.0  # the attended pixel itself
    dec(perturbed, mask_features)
    assert (captured[2] - captured[0]).abs().max() > 1e-3


def test_all_blocked_masks_give_finite_outputs():
    torch.manual_seed(0)
    dec = _decoder()
    with torch.no_grad():
        dec.mask_embed.layers[-1].weight.zero_()
        dec.mask_embed.layers[-1].bias.fill_(-1.0)
    multi_scale, mask_features = _inputs()
    out = dec(multi_scale, mask_features.abs() + 0.1)  # all logits < 0: every pixel blocked
    assert (out.mask_logits[0] < 0).all()
    assert all(torch.isfinite(q).all() for q in out.query_outputs)


def test_input_projection_when_widths_differ_and_gradients_reach_all_parameters():
    torch.manual_seed(0)
    dec = _decoder(n_layers=3, in_channels=24)  # 3 layers: every level is attended
    gen = torch.Generator().manual_seed(1)
    multi_scale = [torch.randn(2, 24, h, w, generator=gen) for h, w in LEVEL_SIZES]
    mask_features = torch.randn(2, MASK_DIM, 16, 16, generator=gen)
    out = dec(multi_scale, mask_features)
    loss = sum(m.square().mean() + q.square().mean()
               for m, q in zip(out.mask_logits, out.query_outputs, strict=True))
    loss.backward()
    for name, p in dec.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_deterministic_under_seed_and_rejects_wrong_levels():
    results = []
    for _ in range(2):
        torch.manual_seed(3)
        results.append(_decoder()(*_inputs(seed=4)).mask_logits[-1])
    assert torch.equal(results[0], results[1])
    multi_scale, mask_features = _inputs()
    with pytest.raises(ValueError, match="n_levels"):
        _decoder()(multi_scale[:2], mask_features)
    with pytest.raises(ValueError, match="mask_features"):
        _decoder()(multi_scale, mask_features[:, :3])
