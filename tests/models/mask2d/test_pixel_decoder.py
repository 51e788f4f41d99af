"""Tests of the sine position encoding and the multi-scale deformable pixel decoder."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xmask3d.errors import ConfigError
from xmask3d.models.mask2d.pixel_decoder import (
    DeformableEncoderLayer,
    MultiScaleDeformablePixelDecoder,
    encoder_reference_points,
)
from xmask3d.models.mask2d.position import SinePositionEncoding

STRIDES = {"s2": 4, "s3": 8, "s4": 16, "s5": 32}
CHANNELS = {"s2": 6, "s3": 8, "s4": 10, "s5": 12}


def _decoder(**overrides) -> MultiScaleDeformablePixelDecoder:
    kwargs = dict(transformer_in_features=["s3", "s4", "s5"], conv_dim=32, mask_dim=16,
                  n_heads=4, ffn_dim=64, enc_layers=2, common_stride=4, n_points=2,
                  norm_groups=8)
    kwargs.update(overrides)
    return MultiScaleDeformablePixelDecoder(CHANNELS, STRIDES, **kwargs)


def _features(sizes: dict[str, tuple[int, int]], bsz: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.randn(bsz, CHANNELS[n], *sizes[n], generator=gen) for n in sizes}


SIZES_64 = {"s2": (16, 16), "s3": (8, 8), "s4": (4, 4), "s5": (2, 2)}
SIZES_240x320 = {"s2": (60, 80), "s3": (30, 40), "s4": (15, 20), "s5": (8, 10)}


def test_sine_position_matches_formula():
    pos = SinePositionEncoding(4)(torch.zeros(2, 3, 3, 5))
    assert pos.shape == (2, 8, 3, 5)
    i, j = 2, 3
    y, x = (i + 0.5) / 3 * 2 * math.pi, (j + 0.5) / 5 * 2 * math.pi
    # Channel pairs (0, 1) use frequency 1, (2, 3) use 10000^(-2/4); y half first, then x.
    expected = [math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100),
                math.sin(x), math.cos(x), math.sin(x / 100), math.cos(x / 100)]
    torch.testing.assert_close(pos[1, :, i, j], torch.tensor(expected))


def test_encoder_reference_points_are_pixel_centres():
    ref = encoder_reference_points([(2, 3), (1, 1)], dtype=torch.float64)
    expected = [[1 / 6, 1 / 4], [3 / 6, 1 / 4], [5 / 6, 1 / 4],
                [1 / 6, 3 / 4], [3 / 6, 3 / 4], [5 / 6, 3 / 4], [0.5, 0.5]]
    torch.testing.assert_close(ref, torch.tensor(expected, dtype=torch.float64))


def test_encoder_layer_with_centre_sampling_equals_hand_formula():
    torch.manual_seed(0)
    d_model, h, w = 8, 5, 7
    layer = DeformableEncoderLayer(d_model, 16, n_levels=1, n_heads=2, n_points=2).double()
    attn = layer.self_attn
    with torch.no_grad():
        attn.sampling_offsets.bias.zero_()
        for proj in (attn.value_proj, attn.output_proj):
            proj.weight.copy_(torch.eye(d_model))
            proj.bias.zero_()
    src = torch.randn(1, h * w, d_model, dtype=torch.float64)
    pos = torch.randn_like(src)
    ref = encoder_reference_points([(h, w)], dtype=torch.float64)[None, :, None, :]
    out = layer(src, pos, ref, [(h, w)])
    # Every point samples its own pixel centre, so attention returns src itself.
    mid = F.layer_norm(2 * src, (d_model,), layer.norm1.weight, layer.norm1.bias)
    ffn = layer.linear2(F.relu(layer.linear1(mid)))
    expected = F.layer_norm(mid + ffn, (d_model,), layer.norm2.weight, layer.norm2.bias)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)


def test_output_shapes_for_odd_sizes_and_coarse_to_fine_order():
    torch.manual_seed(0)
    mask_features, multi_scale = _decoder()(_features(SIZES_240x320, bsz=1))
    assert mask_features.shape == (1, 16, 60, 80)
    assert [tuple(m.shape) for m in multi_scale] == [(1, 32, 8, 10), (1, 32, 15, 20),
                                                     (1, 32, 30, 40)]
    assert torch.isfinite(mask_features).all()


@pytest.mark.parametrize(
    ("tr_features", "common_stride", "n_ms", "mask_hw"),
    [
        (["s5"], 4, 3, (16, 16)),
        (["s4", "s5"], 8, 3, (8, 8)),
        (["s2", "s3", "s4", "s5"], 4, 3, (16, 16)),
        (["s2"], 4, 1, (16, 16)),
    ],
)
def test_any_number_of_levels(tr_features, common_stride, n_ms, mask_hw):
    torch.manual_seed(0)
    dec = _decoder(transformer_in_features=tr_features, common_stride=common_stride)
    mask_features, multi_scale = dec(_features(SIZES_64))
    assert mask_features.shape == (2, 16, *mask_hw)
    assert len(multi_scale) == n_ms == dec.num_multiscale
    sides = [m.shape[-1] for m in multi_scale]
    assert sides == sorted(sides)  # coarse to fine


def test_projection_fpn_and_mask_features_match_hand_computation():
    """With no encoder layers every output is a composition of convs computable with F ops."""
    torch.manual_seed(0)
    dec = _decoder(enc_layers=0)
    feats = _features(SIZES_240x320)
    mask_features, multi_scale = dec(feats)
    for name, proj, out in zip(["s5", "s4", "s3"], dec.input_proj, multi_scale, strict=True):
        conv, gn = proj
        expected = F.group_norm(F.conv2d(feats[name], conv.weight, conv.bias), 8, gn.weight,
                                gn.bias)
        torch.testing.assert_close(out, expected)
    lat_conv, lat_gn = dec.lateral_convs[0]
    lateral = F.group_norm(F.conv2d(feats["s2"], lat_conv.weight), 8, lat_gn.weight, lat_gn.bias)
    up = F.interpolate(multi_scale[-1], size=(60, 80), mode="bilinear", align_corners=False)
    out_conv, out_gn, _ = dec.output_convs[0]
    fpn = F.relu(F.group_norm(F.conv2d(lateral + up, out_conv.weight, padding=1), 8,
                              out_gn.weight, out_gn.bias))
    expected = F.conv2d(fpn, dec.mask_features.weight, dec.mask_features.bias)
    torch.testing.assert_close(mask_features, expected)


def test_without_fpn_mask_features_is_1x1_conv_of_finest_encoder_output():
    torch.manual_seed(0)
    dec = _decoder(common_stride=8)
    assert dec.fpn_features == []
    mask_features, multi_scale = dec(_features(SIZES_240x320))
    expected = F.conv2d(multi_scale[-1], dec.mask_features.weight, dec.mask_features.bias)
    torch.testing.assert_close(mask_features, expected)


def test_encoder_mixes_levels():
    """Changing only the coarsest input changes the finest encoder output (cross-level)."""
    torch.manual_seed(0)
    dec = _decoder().eval()
    feats = _features(SIZES_64)
    _, base = dec(feats)
    feats["s5"] = feats["s5"] + 1.0
    _, moved = dec(feats)
    assert (moved[-1] - base[-1]).abs().max() > 1e-4


def test_deterministic_under_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        dec = _decoder()
        outs.append(dec(_features(SIZES_64, seed=3))[0])
    assert torch.equal(outs[0], outs[1])


def test_bad_configuration_and_inputs_raise():
    with pytest.raises(ConfigError, match="common_stride"):
        _decoder(common_stride=2)
    with pytest.raises(ConfigError, match="transformer_in_features"):
        _decoder(transformer_in_features=["s6"])
    with pytest.raises(ConfigError, match="norm_groups"):
        _decoder(norm_groups=5)
    dec = _decoder()
    feats = _features(SIZES_64)
    del feats["s2"]
    with pytest.raises(ValueError, match="'s2'"):
        dec(feats)
    feats = _features(SIZES_64)
    feats["s3"] = feats["s3"][:, :3]
    with pytest.raises(ValueError, match="'s3'"):
        dec(feats)
