"""Residual building blocks of the sparse 3D U-Nets, built through a sparse backend.

Follows MinkowskiEngine's ``BasicBlock`` as used in OpenScene/XMask3D's MinkUNets (method.md §2.1).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import nn

from xmask3d.sparse import (
    SparseBackend,
    SparseBatchNorm,
    SparseConvLayer,
    SparseReLU,
    SparseTensor,
)

__all__ = ["BasicBlock", "conv_norm_relu", "make_stage", "init_kaiming_fan_out"]


def conv_norm_relu(conv: nn.Module, channels: int, *, bn_momentum: float = 0.1) -> nn.Sequential:
    """``conv -> BatchNorm -> ReLU`` over sparse tensors (``channels`` = conv output width)."""
    return nn.Sequential(conv, SparseBatchNorm(channels, momentum=bn_momentum), SparseReLU())


class BasicBlock(nn.Module):
    """Two submanifold convs with batch norm and an identity (or 1x1 conv) shortcut.

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; the shortcut is a 1x1 conv with
    batch norm when the width changes.

    Args:
        in_channels: input width C_in.
        out_channels: output width C_out.
        backend: builds the convolutions.
        kernel_size: odd kernel of the two convs.
        bn_momentum: momentum of the batch norms.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, backend: SparseBackend,
        kernel_size: int = 3, bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.conv1 = backend.subm_conv(in_channels, out_channels, kernel_size=kernel_size)
        self.norm1 = SparseBatchNorm(out_channels, momentum=bn_momentum)
        self.conv2 = backend.subm_conv(out_channels, out_channels, kernel_size=kernel_size)
        self.norm2 = SparseBatchNorm(out_channels, momentum=bn_momentum)
        self.relu = SparseReLU()
        self.shortcut: nn.Module | None = None
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                backend.subm_conv(in_channels, out_channels, kernel_size=1),
                SparseBatchNorm(out_channels, momentum=bn_momentum),
            )

    def forward(self, x: SparseTensor) -> SparseTensor:
        """(N, C_in) -> (N, C_out) on the same voxels."""
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = x if self.shortcut is None else self.shortcut(x)
        return out.replace_features(F.relu(out.features + residual.features))


def make_stage(
    in_channels: int, out_channels: int, num_blocks: int, *, backend: SparseBackend,
    bn_momentum: float = 0.1,
) -> nn.Sequential:
    """``num_blocks`` >= 1 ``BasicBlock``s; the first changes the width to ``out_channels``."""
    if num_blocks < 1:
        raise ValueError(f"make_stage: num_blocks must be >= 1, got {num_blocks}")
    blocks = [BasicBlock(in_channels, out_channels, backend=backend, bn_momentum=bn_momentum)]
    blocks += [
        BasicBlock(out_channels, out_channels, backend=backend, bn_momentum=bn_momentum)
        for _ in range(num_blocks - 1)
    ]
    return nn.Sequential(*blocks)


def init_kaiming_fan_out(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) sparse conv kernels, zero biases, BatchNorm (1, 0).

    For a (C_out, k, k, k, C_in) kernel fan_out = C_out * k**3, as MinkowskiEngine's
    ``kaiming_normal_(kernel, mode="fan_out", nonlinearity="relu")``.
    """
    for m in module.modules():
        if isinstance(m, SparseConvLayer):
            fan_out = m.weight.shape[0] * math.prod(m.weight.shape[1:4])
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
