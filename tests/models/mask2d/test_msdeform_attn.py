"""Tests of the pure-PyTorch multi-scale deformable attention against an explicit reference."""

from __future__ import annotations

import math

import pytest
import torch

from xmask3d.models.mask2d.msdeform_attn import MSDeformAttn, ms_deform_attn, start_offsets

SHAPES = [(3, 4), (2, 5), (1, 1)]


def _bilinear_zero_pad(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Sample (D, h, w) at normalised (x, y), align_corners=False, zeros outside."""
    _, h, w = img.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(img.shape[0], dtype=img.dtype)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out = out + wy * wx * img[:, yy, xx]
    return out


def _naive(value, shapes, locations, weights):
    """Loop reference: value (B,S,H,D), locations (B,Lq,H,L,P,2), weights (B,Lq,H,L,P)."""
    bsz, _, n_heads, dim = value.shape
    _, n_query, _, n_levels, n_points, _ = locations.shape
    starts = start_offsets(shapes)
    out = torch.zeros(bsz, n_query, n_heads, dim, dtype=value.dtype)
    for b in range(bsz):
        for q in range(n_query):
            for hd in range(n_heads):
                for lvl, (h, w) in enumerate(shapes):
                    img = value[b, starts[lvl] : starts[lvl] + h * w, hd].T.reshape(dim, h, w)
                    for p in range(n_points):
                        x, y = locations[b, q, hd, lvl, p].tolist()
                        out[b, q, hd] += weights[b, q, hd, lvl, p] * _bilinear_zero_pad(img, x, y)
    return out.reshape(bsz, n_query, n_heads * dim)


def _random_inputs(gen: torch.Generator, *, n_query=3, n_heads=2, n_points=2, dim=3, bsz=2):
    n_tokens = sum(h * w for h, w in SHAPES)
    value = torch.randn(bsz, n_tokens, n_heads, dim, generator=gen, dtype=torch.float64)
    loc_shape = (bsz, n_query, n_heads, len(SHAPES), n_points, 2)
    # Range [-0.2, 1.2] covers interior, border and fully outside samples.
    locations = torch.rand(loc_shape, generator=gen, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(loc_shape[:-1], generator=gen, dtype=torch.float64)
    return value, locations, weights


def test_core_matches_naive_bilinear_loop():
    gen = torch.Generator().manual_seed(0)
    value, locations, weights = _random_inputs(gen)
    got = ms_deform_attn(value, torch.tensor(SHAPES), torch.tensor(start_offsets(SHAPES)),
                         locations, weights)
    torch.testing.assert_close(got, _naive(value, SHAPES, locations, weights), rtol=0, atol=1e-12)


def test_core_reads_pixel_centres_exactly_and_zero_outside():
    gen = torch.Generator().manual_seed(1)
    value, locations, weights = _random_inputs(gen, n_query=2, n_heads=1, n_points=1, bsz=1)
    weights = torch.zeros_like(weights)
    weights[0, :, 0, 0, 0] = 1.0  # only level 0 counts
    locations[0, 0, 0, 0, 0] = torch.tensor([(2 + 0.5) / 4, (1 + 0.5) / 3])  # pixel (row 1, col 2)
    locations[0, 1, 0, 0, 0] = torch.tensor([1.5, -0.6])  # far outside
    out = ms_deform_attn(value, SHAPES, start_offsets(SHAPES), locations, weights)
    torch.testing.assert_close(out[0, 0], value[0, 1 * 4 + 2, 0], rtol=0, atol=1e-12)
    assert torch.equal(out[0, 1], torch.zeros_like(out[0, 1]))


def test_core_gradcheck():
    gen = torch.Generator().manual_seed(2)
    value, locations, weights = _random_inputs(gen, n_query=2, n_heads=2, n_points=2, dim=2,
                                               bsz=1)
    locations = locations.clamp(0.05, 0.95)  # keep away from the kinks at the border
    inputs = tuple(t.clone().requires_grad_(True) for t in (value, locations, weights))

    def fn(v, loc, w):
        return ms_deform_attn(v, SHAPES, start_offsets(SHAPES), loc, w)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_core_rejects_inconsistent_shapes():
    gen = torch.Generator().manual_seed(3)
    value, locations, weights = _random_inputs(gen)
    with pytest.raises(ValueError, match="level_start_index"):
        ms_deform_attn(value, SHAPES, [0, 5, 22], locations, weights)
    with pytest.raises(ValueError, match="tokens"):
        ms_deform_attn(value[:, :-1], SHAPES, start_offsets(SHAPES), locations, weights)


def test_module_standard_init():
    attn = MSDeformAttn(d_model=8, n_levels=2, n_heads=8, n_points=3)
    bias = attn.sampling_offsets.bias.view(8, 2, 3, 2)
    radius = torch.tensor([1.0, 2.0, 3.0])[:, None]
    # Head k points at angle k*pi/4, scaled so the larger |component| is 1; point p at radius p+1.
    for lvl in range(2):
        torch.testing.assert_close(bias[0, lvl], radius * torch.tensor([1.0, 0.0]), atol=1e-6,
                                   rtol=0)
        torch.testing.assert_close(bias[1, lvl], radius * torch.tensor([1.0, 1.0]))
        torch.testing.assert_close(bias[2, lvl], radius * torch.tensor([0.0, 1.0]), atol=1e-6,
                                   rtol=0)
        torch.testing.assert_close(bias[5, lvl], radius * torch.tensor([-1.0, -1.0]))
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0
    assert torch.count_nonzero(attn.attention_weights.weight) == 0


def test_module_identity_projection_reads_reference_pixel_and_honours_padding():
    torch.manual_seed(0)
    d_model, h, w = 4, 3, 5
    attn = MSDeformAttn(d_model, n_levels=1, n_heads=2, n_points=3).double()
    with torch.no_grad():
        attn.sampling_offsets.bias.zero_()  # all points sit on the reference point
        for proj in (attn.value_proj, attn.output_proj):
            proj.weight.copy_(torch.eye(d_model))
            proj.bias.zero_()
    src = torch.randn(2, h * w, d_model, dtype=torch.float64)
    rows, cols = torch.meshgrid(torch.arange(h).double(), torch.arange(w).double(), indexing="ij")
    ref = torch.stack([(cols.flatten() + 0.5) / w, (rows.flatten() + 0.5) / h], -1)
    ref = ref[None, :, None, :].expand(2, -1, 1, -1)
    out = attn(torch.randn_like(src), ref, src, [(h, w)])
    torch.testing.assert_close(out, src, rtol=0, atol=1e-12)
    padding = torch.zeros(2, h * w, dtype=torch.bool)
    padding[1, 7] = True
    out = attn(torch.randn_like(src), ref, src, [(h, w)], padding_mask=padding)
    assert torch.equal(out[1, 7], torch.zeros(d_model, dtype=torch.float64))
    torch.testing.assert_close(out[0], src[0], rtol=0, atol=1e-12)


def test_module_offsets_are_in_pixels_of_each_level():
    torch.manual_seed(0)
    d_model, h, w = 4, 3, 5
    attn = MSDeformAttn(d_model, n_levels=1, n_heads=1, n_points=1).double()
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor([1.0, -1.0]))  # one pixel right and up
        for proj in (attn.value_proj, attn.output_proj):
            proj.weight.copy_(torch.eye(d_model))
            proj.bias.zero_()
    src = torch.randn(1, h * w, d_model, dtype=torch.float64)
    ref = torch.tensor([[(2 + 0.5) / w, (1 + 0.5) / h], [(4 + 0.5) / w, (2 + 0.5) / h]],
                       dtype=torch.float64)[None, :, None, :]  # pixels (1, 2) and (2, 4)
    out = attn(torch.zeros(1, 2, d_model, dtype=torch.float64), ref, src, [(h, w)])
    torch.testing.assert_close(out[0, 0], src[0, 0 * w + 3], rtol=0, atol=1e-12)
    # (1, 5) lies one column past the right border: zero padding.
    torch.testing.assert_close(out[0, 1], torch.zeros(d_model, dtype=torch.float64), rtol=0,
                               atol=1e-12)
