"""SparseResUNet: preset sizes, output contract, init, and torch/spconv agreement."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from xmask3d.models.backbone3d import (
    MINKUNET34C,
    SparseResUNet,
    count_parameters,
    minkunet18a,
    preset_num_parameters,
)
from xmask3d.sparse import SparseConvLayer, SparseTensor
from xmask3d.sparse.base import pack_coords

HAS_SPCONV = importlib.util.find_spec("spconv") is not None
TINY = dict(stem_channels=8, stem_kernel=3, enc_channels=(8, 16, 16), enc_blocks=(1, 2, 1),
            dec_channels=(16, 8, 8), dec_blocks=(1, 1, 1))


pytestmark = pytest.mark.usefixtures("two_threads")   # fixture in tests/conftest.py


def surface_voxels(seed: int, *, channels: int = 3) -> SparseTensor:
    """Two small scenes: a floor, a wall and a box surface in a 20**3 grid, float64 features."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.arange(20)
    floor = torch.stack(torch.meshgrid(a, a, torch.zeros(1, dtype=torch.long), indexing="ij"), -1)
    wall = torch.stack(torch.meshgrid(torch.zeros(1, dtype=torch.long), a, a, indexing="ij"), -1)
    box = torch.stack(torch.meshgrid(torch.arange(6, 12), torch.arange(5, 9), torch.arange(0, 7),
                                     indexing="ij"), -1).reshape(-1, 3)
    scene = torch.unique(torch.cat([floor.reshape(-1, 3), wall.reshape(-1, 3), box]), dim=0)
    scenes = []
    for b in range(2):
        keep = scene[torch.rand(len(scene), generator=gen) < 0.6]
        scenes.append(torch.cat([torch.full((len(keep), 1), b), keep], 1))
    coords = torch.cat(scenes)
    coords = coords[torch.randperm(len(coords), generator=gen)]
    feats = torch.randn(len(coords), channels, generator=gen, dtype=torch.float64)
    return SparseTensor.from_voxels(feats, coords)


def tiny_unet(backend: str) -> SparseResUNet:
    torch.manual_seed(0)
    return SparseResUNet(3, 6, backend=backend, **TINY).double()


def test_minkunet34c_has_paper_parameter_count():
    n = preset_num_parameters("minkunet34c", in_channels=3, out_channels=256)
    assert abs(n - 37.9e6) / 37.9e6 < 0.05, n


def test_minkunet18a_with_binary_head_has_paper_parameter_count():
    head = torch.nn.Sequential(torch.nn.BatchNorm1d(256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
    n = count_parameters(minkunet18a(3, 256)) + count_parameters(head)
    assert abs(n - 15.5e6) / 15.5e6 < 0.05, n


def test_output_contract_and_voxel_order():
    x = surface_voxels(0)
    net = tiny_unet("torch").eval()
    out = net(x)
    assert out.features.shape == (x.num_voxels, 6)
    assert out.bottleneck.stride == 8 and out.bottleneck.num_channels == 16
    assert out.bottleneck.coord_key == (("down", 2, 2),) * 3
    want_coarse = torch.unique(torch.cat([x.coords[:, :1], x.coords[:, 1:] // 8], 1), dim=0)
    assert torch.equal(torch.sort(pack_coords(out.bottleneck.coords)).values,
                       torch.sort(pack_coords(want_coarse)).values)
    perm = torch.randperm(x.num_voxels, generator=torch.Generator().manual_seed(1))
    shuffled = SparseTensor.from_voxels(x.features[perm], x.coords[perm])
    torch.testing.assert_close(net(shuffled).features, out.features[perm], rtol=1e-10, atol=1e-10)


def test_every_parameter_gets_a_gradient():
    x = surface_voxels(1)
    net = tiny_unet("torch")
    out = net(x)
    loss = out.features.square().mean() + out.bottleneck.features.square().mean()
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_kaiming_fan_out_and_batch_norm_init():
    torch.manual_seed(0)
    net = SparseResUNet.from_arch(MINKUNET34C, 3, 256)
    conv = net.encoder[3][0].conv2  # (256, 3, 3, 3, 256)
    assert isinstance(conv, SparseConvLayer)
    want = math.sqrt(2.0 / (256 * 27))
    assert abs(conv.weight.std().item() - want) / want < 0.02
    assert abs(conv.weight.mean().item()) < 0.02 * want
    assert torch.equal(net.head.bias, torch.zeros(256))
    bn = net.decoder[0][0].norm1
    assert torch.equal(bn.weight, torch.ones(256)) and torch.equal(bn.bias, torch.zeros(256))


def test_rejects_mismatched_level_counts():
    with pytest.raises(ValueError, match="same length"):
        SparseResUNet(3, 4, stem_channels=8, stem_kernel=3, enc_channels=(8, 16),
                      enc_blocks=(1, 1), dec_channels=(8,), dec_blocks=(1,))


@pytest.mark.skipif(not HAS_SPCONV, reason="spconv missing")
@pytest.mark.parametrize("seed", [0, 1])
def test_torch_and_spconv_backends_agree_with_shared_weights(seed):
    x = surface_voxels(10 + seed)
    nets = {name: tiny_unet(name) for name in ("torch", "spconv")}
    nets["spconv"].load_state_dict(nets["torch"].state_dict())  # same keys and shapes
    results = {}
    for name, net in nets.items():
        feats = x.features.clone().requires_grad_(True)
        out = net(SparseTensor.from_voxels(feats, x.coords))
        order = torch.argsort(pack_coords(out.bottleneck.coords))
        bottleneck = out.bottleneck.features[order]
        loss = (out.features * torch.linspace(-1, 1, 6, dtype=torch.float64)).sum()
        loss = loss + bottleneck.square().sum()
        grads = torch.autograd.grad(loss, [feats, *net.parameters()])
        results[name] = (out.features, out.bottleneck.coords[order], bottleneck, grads)
    (f_t, c_t, b_t, g_t), (f_s, c_s, b_s, g_s) = results["torch"], results["spconv"]
    tol = dict(rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(f_s, f_t, **tol)
    assert torch.equal(c_s, c_t)
    torch.testing.assert_close(b_s, b_t, **tol)
    for name, a, b in zip(["input", *dict(nets["torch"].named_parameters())], g_s, g_t):
        torch.testing.assert_close(a, b, **tol, msg=lambda m, n=name: f"{n}: {m}")
    running = [(n, b) for n, b in nets["torch"].state_dict().items() if "running_mean" in n]
    for name, buf in running:
        torch.testing.assert_close(nets["spconv"].state_dict()[name], buf, **tol)
