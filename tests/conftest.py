"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

# A very small model with the tiny configuration's code paths (model, app and engine tests).
MICRO_OVERRIDES = (
    "data.image_hw=[48, 64]", "data.voxel_size=0.1", "mask2d.input_size=64",
    "backbone3d.enc_channels=[8, 16, 16, 16]", "backbone3d.dec_channels=[16, 16, 8, 8]",
    "backbone3d.stem_channels=8", "backbone3d.out_channels=16",
    "backbone3d.binary_enc_channels=[8, 8, 8, 8]", "backbone3d.binary_dec_channels=[8, 8, 8, 8]",
    "backbone3d.binary_out_channels=8", "backbone3d.global_dim=16",
    "mask2d.block_out_channels=[32, 32, 32]", "mask2d.cross_attention_dim=32",
    "mask2d.projection_dim=32", "mask2d.projection_mid=16", "mask2d.conv_dim=32",
    "mask2d.mask_dim=32", "mask2d.hidden_dim=32", "mask2d.pixel_ffn=64",
    "mask2d.decoder_ffn=64", "mask2d.num_queries=6", "loss.num_points=256",
)


@pytest.fixture(scope="session")
def micro_overrides() -> list[str]:
    """``--set`` overrides of the micro model (apply on top of ``tiny/scannet_b15n4``)."""
    return list(MICRO_OVERRIDES)


def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def two_threads():
    """Run a test at 2 torch threads (the spconv CPU race shows up only with several threads)."""
    yield from _torch_threads(2)


@pytest.fixture
def one_thread():
    """Run a test at 1 torch thread (bitwise-comparable reductions)."""
    yield from _torch_threads(1)
