"""Every backend's sparse convs equal dense F.conv3d / F.conv_transpose3d (float64, 2 threads).

Repeated with fresh data at 2 threads: this is the regression test of the spconv CPU race
(docs/dependencies.md §2, bug 2), which gave errors of 0.1-0.9 without the patch.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from xmask3d.sparse import (
    SparseTensor,
    make_backend,
    to_conv3d_weight,
    to_conv_transpose3d_weight,
)

HAS_SPCONV = importlib.util.find_spec("spconv") is not None
BACKENDS = [
    "torch",
    pytest.param("spconv", marks=pytest.mark.skipif(not HAS_SPCONV, reason="spconv missing")),
]
REPEATS = range(3)
TOL = dict(rtol=1e-10, atol=1e-10)
B, GRID = 2, 9


pytestmark = pytest.mark.usefixtures("two_threads")   # fixture in tests/conftest.py


def random_voxels(seed: int, channels: int, *, grid: int = GRID, density: float = 0.35):
    """Random shuffled active voxels of B scenes in a grid**3 box, with float64 features."""
    gen = torch.Generator().manual_seed(seed)
    coords = (torch.rand(B, grid, grid, grid, generator=gen) < density).nonzero()
    coords = coords[torch.randperm(coords.shape[0], generator=gen)].int()
    feats = torch.randn(coords.shape[0], channels, generator=gen, dtype=torch.float64)
    return coords, feats


def to_dense(feats: torch.Tensor, coords: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C) at coords -> (B, C, size, size, size), differentiable in feats."""
    dense = feats.new_zeros(B, feats.shape[1], size, size, size)
    c = coords.long()
    dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]] = feats
    return dense


def at(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    c = coords.long()
    return dense[c[:, 0], :, c[:, 1], c[:, 2], c[:, 3]]


def keys(coords: torch.Tensor) -> list[tuple[int, ...]]:
    return sorted(map(tuple, coords.tolist()))


def check_against_dense(conv, x: SparseTensor, dense_fn, seed: int):
    """Compare output, d(input) and d(weight) of a sparse conv with its dense reference.

    ``dense_fn(feats, weight)`` returns the dense result at the sparse output's coords.
    """
    feats = x.features.clone().requires_grad_(True)
    out = conv(dataclasses.replace(x, features=feats))
    gen = torch.Generator().manual_seed(seed + 100)
    grad_out = torch.randn(out.features.shape, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad((out.features * grad_out).sum(), [feats, conv.weight])

    feats_ref = x.features.clone().requires_grad_(True)
    weight_ref = conv.weight.detach().clone().requires_grad_(True)
    ref = dense_fn(feats_ref, weight_ref, out.coords)
    grads_ref = torch.autograd.grad((ref * grad_out).sum(), [feats_ref, weight_ref])
    torch.testing.assert_close(out.features, ref, **TOL)
    torch.testing.assert_close(grads[0], grads_ref[0], **TOL)
    torch.testing.assert_close(grads[1], grads_ref[1], **TOL)
    return out


def make_conv(backend: str, kind: str, c_in: int, c_out: int, **kw):
    torch.manual_seed(0)
    return getattr(make_backend(backend), kind)(c_in, c_out, **kw).double()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rep", REPEATS)
@pytest.mark.parametrize("kernel_size", [3, 1])
def test_subm_conv_matches_dense(backend, rep, kernel_size):
    coords, feats = random_voxels(rep, 4)
    x = SparseTensor.from_voxels(feats, coords)
    conv = make_conv(backend, "subm_conv", 4, 5, kernel_size=kernel_size)

    def dense(f, w, out_coords):
        y = F.conv3d(to_dense(f, coords, GRID), to_conv3d_weight(w), padding=kernel_size // 2)
        return at(y, out_coords)

    out = check_against_dense(conv, x, dense, rep)
    assert torch.equal(out.coords, x.coords)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rep", REPEATS)
@pytest.mark.parametrize(("kernel_size", "stride"), [(2, 2), (3, 2)])
def test_down_conv_matches_dense(backend, rep, kernel_size, stride):
    coords, feats = random_voxels(10 + rep, 4)
    x = SparseTensor.from_voxels(feats, coords)
    conv = make_conv(backend, "down_conv", 4, 3, kernel_size=kernel_size, stride=stride)
    size = GRID + kernel_size  # room for every output window on the high side

    def dense(f, w, out_coords):
        return at(F.conv3d(to_dense(f, coords, size), to_conv3d_weight(w), stride=stride),
                  out_coords)

    out = check_against_dense(conv, x, dense, rep)
    occupancy = F.conv3d(to_dense(torch.ones(len(coords), 1, dtype=torch.float64), coords, size),
                         torch.ones(1, 1, kernel_size, kernel_size, kernel_size,
                                    dtype=torch.float64), stride=stride)
    assert keys(out.coords) == keys((occupancy[:, 0] > 0).nonzero())
    assert out.stride == stride and out.coord_key == (("down", kernel_size, stride),)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rep", REPEATS)
@pytest.mark.parametrize(("kernel_size", "stride"), [(2, 2), (3, 2)])
def test_inverse_conv_matches_dense(backend, rep, kernel_size, stride):
    coords, feats = random_voxels(20 + rep, 3)
    x = SparseTensor.from_voxels(feats, coords)
    down = make_conv(backend, "down_conv", 3, 4, kernel_size=kernel_size, stride=stride)
    coarse = down(x)
    gen = torch.Generator().manual_seed(rep)
    coarse = coarse.replace_features(
        torch.randn(coarse.features.shape, generator=gen, dtype=torch.float64))
    conv = make_conv(backend, "inverse_conv", 4, 2, kernel_size=kernel_size, stride=stride)
    size = int(coarse.coords[:, 1:].max()) + 1

    def dense(f, w, out_coords):
        y = F.conv_transpose3d(to_dense(f, coarse.coords, size), to_conv_transpose3d_weight(w),
                               stride=stride)
        return at(y, out_coords)

    out = check_against_dense(conv, coarse, dense, rep)
    assert torch.equal(out.coords, x.coords)  # back onto the parent voxels, in their order
    assert out.stride == 1 and out.coord_key == ()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rep", REPEATS)
@pytest.mark.parametrize(("kernel_size", "stride"), [(2, 2), (3, 2)])
def test_transposed_conv_matches_dense(backend, rep, kernel_size, stride):
    coords, feats = random_voxels(30 + rep, 3, grid=5)
    x = dataclasses.replace(SparseTensor.from_voxels(feats, coords), stride=stride)
    conv = make_conv(backend, "transposed_conv", 3, 4, kernel_size=kernel_size, stride=stride)

    def dense(f, w, out_coords):
        y = F.conv_transpose3d(to_dense(f, coords, 5), to_conv_transpose3d_weight(w),
                               stride=stride)
        return at(y, out_coords)

    out = check_against_dense(conv, x, dense, rep)
    ones = torch.ones(len(coords), 1, dtype=torch.float64)
    occupancy = F.conv_transpose3d(to_dense(ones, coords, 5),
                                   torch.ones(1, 1, kernel_size, kernel_size, kernel_size,
                                              dtype=torch.float64), stride=stride)
    assert keys(out.coords) == keys((occupancy[:, 0] > 0).nonzero())
    assert out.stride == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_is_added_per_channel(backend):
    coords, feats = random_voxels(40, 2)
    x = SparseTensor.from_voxels(feats, coords)
    conv = make_conv(backend, "subm_conv", 2, 3, kernel_size=3, bias=True)
    with torch.no_grad():
        conv.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
        with_bias = conv(x).features
        conv.bias.zero_()
        without = conv(x).features
    torch.testing.assert_close(with_bias - without, torch.tensor([1.0, -2.0, 0.5]).double()
                               .expand_as(without), **TOL)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inverse_conv_needs_matching_down_conv(backend):
    coords, feats = random_voxels(41, 2)
    x = SparseTensor.from_voxels(feats, coords)
    inverse = make_conv(backend, "inverse_conv", 2, 2)
    with pytest.raises(ValueError, match="needs a tensor made by a down conv"):
        inverse(x)
    coarse = make_conv(backend, "down_conv", 2, 2, kernel_size=3, stride=2)(x)
    with pytest.raises(ValueError, match="kernel 2|k=2"):
        inverse(coarse)


@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_kernel_arguments_raise(backend):
    be = make_backend(backend)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        be.subm_conv(2, 2, kernel_size=2)
    with pytest.raises(ValueError, match="kernel_size >= stride >= 2"):
        be.down_conv(2, 2, kernel_size=1, stride=2)
    with pytest.raises(ValueError, match="channels"):
        be.inverse_conv(0, 2)


def test_unknown_backend_name_raises():
    with pytest.raises(ValueError, match="unknown sparse backend 'minkowski'"):
        make_backend("minkowski")


@pytest.mark.parametrize("backend", BACKENDS)
def test_two_down_convs_from_one_level_share_the_coarse_voxels(backend):
    coords, feats = random_voxels(42, 2)
    x = SparseTensor.from_voxels(feats, coords)
    first = make_conv(backend, "down_conv", 2, 3)(x)
    second = make_conv(backend, "down_conv", 2, 3)(x)
    assert torch.equal(first.coords, second.coords) and first.coord_key == second.coord_key
    back = make_conv(backend, "inverse_conv", 3, 2)(second)
    assert torch.equal(back.coords, x.coords)


def test_torch_subm_conv_near_the_coordinate_limit_is_translation_invariant():
    """Voxels at the top of the packed key range take the exact (non-arithmetic) lookup path."""
    coords, feats = random_voxels(43, 2)
    shifted = coords.clone()
    shifted[:, 1:] += 65536 - GRID  # the largest index is now 65535
    conv = make_conv("torch", "subm_conv", 2, 3, kernel_size=3)
    near_origin = conv(SparseTensor.from_voxels(feats, coords)).features
    near_limit = conv(SparseTensor.from_voxels(feats, shifted)).features
    torch.testing.assert_close(near_limit, near_origin, rtol=0, atol=0)


def test_torch_subm_conv_does_not_wrap_across_packed_key_fields():
    """(5, 5, 65535) + (0, 0, 1) must not reach (5, 6, 0), though their packed keys differ by 1."""
    coords = torch.tensor([[0, 5, 5, 65535], [0, 5, 6, 0], [0, 5, 5, 65534]])
    feats = torch.tensor([[1.0], [10.0], [100.0]], dtype=torch.float64)
    conv = make_conv("torch", "subm_conv", 1, 1, kernel_size=3)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        out = conv(SparseTensor.from_voxels(feats, coords)).features
    torch.testing.assert_close(out, torch.tensor([[101.0], [10.0], [101.0]], dtype=torch.float64))
