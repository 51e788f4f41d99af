"""BasicBlock and stage builders: hand-checked residual behaviour."""

from __future__ import annotations

import pytest
import torch

from xmask3d.models.backbone3d import BasicBlock, make_stage
from xmask3d.sparse import SparseTensor, make_backend


def voxels(channels: int) -> SparseTensor:
    gen = torch.Generator().manual_seed(0)
    coords = (torch.rand(1, 6, 6, 6, generator=gen) < 0.4).nonzero()
    feats = torch.randn(len(coords), channels, generator=gen, dtype=torch.float64)
    return SparseTensor.from_voxels(feats, coords)


def test_identity_shortcut_block_with_zero_convs_is_relu_of_input():
    x = voxels(4)
    block = BasicBlock(4, 4, backend=make_backend("torch")).double()
    assert block.shortcut is None
    with torch.no_grad():
        block.conv1.weight.zero_()
        block.conv2.weight.zero_()
    torch.testing.assert_close(block(x).features, x.features.clamp(min=0))


def test_width_changing_block_uses_normalised_1x1_shortcut():
    x = voxels(3)
    block = BasicBlock(3, 5, backend=make_backend("torch")).double()
    with torch.no_grad():
        block.conv2.weight.zero_()
    conv1x1, norm = block.shortcut
    weight = conv1x1.weight.view(5, 3)
    projected = x.features @ weight.t()
    mean, var = projected.mean(0), projected.var(0, unbiased=False)
    want = ((projected - mean) / torch.sqrt(var + norm.eps)).clamp(min=0)
    torch.testing.assert_close(block(x).features, want.detach())


def test_make_stage_counts_blocks_and_rejects_zero():
    stage = make_stage(3, 8, 3, backend=make_backend("torch"))
    assert len(stage) == 3 and stage[0].shortcut is not None and stage[1].shortcut is None
    with pytest.raises(ValueError, match="num_blocks must be >= 1"):
        make_stage(3, 8, 0, backend=make_backend("torch"))
