"""SparseTensor validation, batch norm, ReLU, pooling, skip concat and torch-backend caching."""

from __future__ import annotations

import pytest
import torch

from xmask3d.sparse import (
    SparseBatchNorm,
    SparseReLU,
    SparseTensor,
    cat_features,
    global_avg_pool,
    global_max_pool,
    make_backend,
)
from xmask3d.sparse.base import pack_coords
from xmask3d.sparse.torch_backend import KernelMap


def scene_voxels(seed: int = 0, channels: int = 3) -> SparseTensor:
    """Three scenes; scene 1 has no voxels (batch_size=3)."""
    gen = torch.Generator().manual_seed(seed)
    occupied = (torch.rand(3, 6, 6, 6, generator=gen) < 0.3).nonzero()
    occupied = occupied[occupied[:, 0] != 1]
    feats = torch.randn(occupied.shape[0], channels, generator=gen, dtype=torch.float64)
    return SparseTensor.from_voxels(feats, occupied, batch_size=3)


def test_from_voxels_makes_contiguous_int32_coords():
    coords = torch.tensor([[0, 1, 2, 3], [0, 4, 5, 6]], dtype=torch.int64).t().contiguous().t()
    assert not coords.is_contiguous()
    x = SparseTensor.from_voxels(torch.zeros(2, 1), coords)
    assert x.coords.dtype == torch.int32 and x.coords.is_contiguous()
    assert x.coords.tolist() == [[0, 1, 2, 3], [0, 4, 5, 6]]
    assert x.batch_size == 1 and x.stride == 1 and x.coord_key == ()


@pytest.mark.parametrize(
    ("coords", "kwargs", "message"),
    [
        ([[0, -1, 0, 0]], {}, "must lie in"),
        ([[0, 70000, 0, 0]], {}, "must lie in"),
        ([[0, 1, 1, 1], [0, 1, 1, 1]], {}, "duplicate voxels"),
        ([[2, 1, 1, 1]], {"batch_size": 2}, "batch_size=2"),
    ],
)
def test_from_voxels_rejects_bad_coords(coords, kwargs, message):
    coords = torch.tensor(coords)
    with pytest.raises(ValueError, match=message):
        SparseTensor.from_voxels(torch.zeros(len(coords), 2), coords, **kwargs)


def test_from_voxels_rejects_bad_shapes():
    with pytest.raises(ValueError, match="coords has 2 rows but features has 3"):
        SparseTensor.from_voxels(torch.zeros(3, 2), torch.zeros(2, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"integer \(N, 4\)"):
        SparseTensor.from_voxels(torch.zeros(2, 2), torch.zeros(2, 3, dtype=torch.int32))


def test_pack_coords_orders_batch_then_xyz_and_flags_out_of_range():
    coords = torch.tensor([[1, 0, 0, 0], [0, 5, 0, 0], [0, 0, 7, 1], [0, 0, 7, 0], [0, -1, 0, 0]])
    keys = pack_coords(coords)
    assert keys[4] == -1
    assert torch.argsort(keys[:4]).tolist() == [3, 2, 1, 0]


def test_batch_norm_equals_batchnorm1d_on_features():
    x = scene_voxels(1, channels=4)
    torch.manual_seed(0)
    sparse_bn = SparseBatchNorm(4, momentum=0.1).double()
    dense_bn = torch.nn.BatchNorm1d(4, momentum=0.1).double()
    with torch.no_grad():
        sparse_bn.weight.uniform_(0.5, 1.5)
        sparse_bn.bias.uniform_(-1, 1)
    dense_bn.load_state_dict(sparse_bn.state_dict())
    out = sparse_bn(x)
    ref = dense_bn(x.features)
    torch.testing.assert_close(out.features, ref)
    torch.testing.assert_close(sparse_bn.running_mean, dense_bn.running_mean)
    torch.testing.assert_close(sparse_bn.running_var, dense_bn.running_var)
    # Hand check: training-mode output has per-channel mean = bias.
    torch.testing.assert_close(out.features.mean(0), sparse_bn.bias.detach())
    assert out.coords is x.coords


def test_relu_only_touches_features():
    x = scene_voxels(2)
    out = SparseReLU()(x)
    assert torch.equal(out.features, x.features.clamp(min=0)) and out.coords is x.coords


def test_global_pooling_equals_hand_loop_and_empty_scene_is_zero():
    x = scene_voxels(3, channels=5)
    feats = x.features.clone().requires_grad_(True)
    x = x.replace_features(feats)
    max_pool, avg_pool = global_max_pool(x), global_avg_pool(x)
    assert max_pool.shape == (3, 5)
    for b in range(3):
        rows = feats[x.coords[:, 0] == b]
        want_max = rows.max(0).values if len(rows) else torch.zeros(5, dtype=feats.dtype)
        want_avg = rows.mean(0) if len(rows) else torch.zeros(5, dtype=feats.dtype)
        torch.testing.assert_close(max_pool[b], want_max)
        torch.testing.assert_close(avg_pool[b], want_avg)
    (grad,) = torch.autograd.grad(max_pool.sum(), feats)
    assert grad.sum() == 2 * 5  # one arg-max voxel per channel of the two non-empty scenes
    (grad,) = torch.autograd.grad(avg_pool.sum(), feats)
    counts = torch.bincount(x.coords[:, 0].long(), minlength=3).double()
    torch.testing.assert_close(grad[:, 0], 1.0 / counts[x.coords[:, 0].long()])


def test_cat_features_checks_coordinate_sets():
    x = scene_voxels(4, channels=2)
    both = cat_features(x, x.replace_features(x.features * 2))
    assert torch.equal(both.features[:, 2:], 2 * x.features)
    coarse = make_backend("torch").down_conv(2, 2).double()(x)
    with pytest.raises(ValueError, match="coordinate sets differ"):
        cat_features(x, coarse)


def test_torch_backend_caches_maps_per_coordinate_set():
    x = scene_voxels(5, channels=2)
    be = make_backend("torch")
    conv_a, conv_b = be.subm_conv(2, 2).double(), be.subm_conv(2, 2).double()
    y = conv_b(conv_a(x))
    maps = [v for v in x.cache.values() if isinstance(v, KernelMap)]
    assert len(maps) == 1 and y.cache is x.cache
    down = be.down_conv(2, 2).double()
    coarse = down(y)
    coarse_again = down(x)
    assert coarse_again.coords is coarse.coords  # reused, not rebuilt


def test_torch_backend_is_deterministic():
    x = scene_voxels(6, channels=3)
    be = make_backend("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(be.subm_conv(3, 4), be.down_conv(4, 4)).double()
    runs = []
    for _ in range(2):
        fresh = SparseTensor.from_voxels(x.features, x.coords, batch_size=3)
        out = net(fresh).features
        grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
        runs.append((out, grads))
    assert torch.equal(runs[0][0], runs[1][0])
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
