"""Residual sparse U-Net (MinkUNet family) over any sparse backend, with the paper's presets.

Follows MinkowskiEngine's ``MinkUNetBase`` as used by OpenScene and XMask3D (method.md §2.1-§2.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from xmask3d.models.backbone3d.blocks import conv_norm_relu, init_kaiming_fan_out, make_stage
from xmask3d.sparse import SparseBackend, SparseTensor, cat_features, make_backend

__all__ = [
    "UNetArch",
    "MINKUNET34C",
    "MINKUNET18A",
    "PRESETS",
    "SparseUNetOutput",
    "SparseResUNet",
    "build_preset",
    "minkunet34c",
    "minkunet18a",
    "count_parameters",
    "preset_num_parameters",
]


@dataclass(frozen=True)
class UNetArch:
    """Sizes of a ``SparseResUNet`` (everything but the input/output widths).

    Attributes:
        stem_channels: width of the stride-1 stem conv (also the last skip's width).
        stem_kernel: odd kernel size of the stem conv.
        enc_channels: output width of each encoder level (strides 2, 4, 8, ...).
        enc_blocks: ``BasicBlock``s per encoder level.
        dec_channels: output width of each decoder level (coarse to fine).
        dec_blocks: ``BasicBlock``s per decoder level.
    """

    stem_channels: int
    stem_kernel: int
    enc_channels: tuple[int, ...]
    enc_blocks: tuple[int, ...]
    dec_channels: tuple[int, ...]
    dec_blocks: tuple[int, ...]


MINKUNET34C = UNetArch(32, 5, (32, 64, 128, 256), (2, 3, 4, 6), (256, 128, 96, 96), (2, 2, 2, 2))
"""XMask3D's 3D backbone: with in 3 / out 256, about 37.9 M parameters."""
MINKUNET18A = UNetArch(32, 5, (32, 64, 128, 256), (2, 2, 2, 2), (128, 128, 96, 96), (2, 2, 2, 2))
"""XMask3D's binary head backbone: with in 3 / out 256 (+ BN + Linear(256, 1)) about 15.5 M."""
PRESETS = {"minkunet34c": MINKUNET34C, "minkunet18a": MINKUNET18A}


@dataclass
class SparseUNetOutput:
    """What ``SparseResUNet`` returns.

    Attributes:
        features: (N, out_channels) stride-1 per-voxel features, in the input voxels' order.
        bottleneck: the last encoder level (stride 2**levels, ``enc_channels[-1]`` wide).
    """

    features: Tensor
    bottleneck: SparseTensor


class SparseResUNet(nn.Module):
    """Residual sparse U-Net with concatenation skips.

    A k-``stem_kernel`` stem; per encoder level a k2 s2 down conv then ``BasicBlock``s; per
    decoder level a k2 s2 inverse conv onto the skip's voxels, channel concat with the skip and
    ``BasicBlock``s; a final 1x1 conv (with a bias unless ``head_bias=False``). Every conv/BN is
    followed by ReLU except the last conv of each block and the head. Kaiming (fan_out) init,
    BN (1, 0).

    Args:
        in_channels: input feature width (3 for RGB).
        out_channels: width of the final 1x1 conv.
        stem_channels: width of the stride-1 stem.
        stem_kernel: odd kernel size of the stem.
        enc_channels: width per encoder level; each level starts with a k2 s2 down conv.
        enc_blocks: ``BasicBlock``s per encoder level.
        dec_channels: width per decoder level (as many levels as the encoder).
        dec_blocks: ``BasicBlock``s per decoder level.
        backend: sparse backend or its name (``"torch"``, ``"spconv"``).
        bn_momentum: momentum of every batch norm.
        head_bias: whether the final 1x1 conv has a bias (the published MinkUNet's has none).
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, stem_channels: int, stem_kernel: int,
        enc_channels: tuple[int, ...], enc_blocks: tuple[int, ...],
        dec_channels: tuple[int, ...], dec_blocks: tuple[int, ...],
        backend: SparseBackend | str = "torch", bn_momentum: float = 0.1, head_bias: bool = True,
    ) -> None:
        super().__init__()
        levels = len(enc_channels)
        if levels < 1 or {len(enc_blocks), len(dec_channels), len(dec_blocks)} != {levels}:
            raise ValueError("SparseResUNet: enc_channels, enc_blocks, dec_channels and dec_blocks "
                             f"need the same length >= 1, got {enc_channels}, {enc_blocks}, "
                             f"{dec_channels}, {dec_blocks}")
        be = make_backend(backend)
        self.backend_name = be.name
        self.out_channels = out_channels
        self.bottleneck_channels = enc_channels[-1]
        stem = be.subm_conv(in_channels, stem_channels, kernel_size=stem_kernel)
        self.stem = conv_norm_relu(stem, stem_channels, bn_momentum=bn_momentum)
        self.downs, self.encoder = nn.ModuleList(), nn.ModuleList()
        width = stem_channels
        for channels, blocks in zip(enc_channels, enc_blocks):
            self.downs.append(conv_norm_relu(be.down_conv(width, width), width,
                                             bn_momentum=bn_momentum))
            self.encoder.append(make_stage(width, channels, blocks, backend=be,
                                           bn_momentum=bn_momentum))
            width = channels
        skip_widths = [stem_channels, *enc_channels[:-1]][::-1]
        self.ups, self.decoder = nn.ModuleList(), nn.ModuleList()
        for channels, blocks, skip in zip(dec_channels, dec_blocks, skip_widths):
            self.ups.append(conv_norm_relu(be.inverse_conv(width, channels), channels,
                                           bn_momentum=bn_momentum))
            self.decoder.append(make_stage(channels + skip, channels, blocks, backend=be,
                                           bn_momentum=bn_momentum))
            width = channels
        self.head = be.subm_conv(width, out_channels, kernel_size=1, bias=head_bias)
        init_kaiming_fan_out(self)

    @classmethod
    def from_arch(
        cls, arch: UNetArch, in_channels: int, out_channels: int, *,
        backend: SparseBackend | str = "torch", bn_momentum: float = 0.1,
    ) -> SparseResUNet:
        """Build from a ``UNetArch`` (e.g. ``MINKUNET34C``)."""
        return cls(in_channels, out_channels, stem_channels=arch.stem_channels,
                   stem_kernel=arch.stem_kernel, enc_channels=arch.enc_channels,
                   enc_blocks=arch.enc_blocks, dec_channels=arch.dec_channels,
                   dec_blocks=arch.dec_blocks, backend=backend, bn_momentum=bn_momentum)

    def forward(self, x: SparseTensor) -> SparseUNetOutput:
        """Run the U-Net.

        Args:
            x: stride-1 input voxels with (N, in_channels) features.

        Returns:
            (N, out_channels) per-voxel features and the stride-2**levels bottleneck.
        """
        out = self.stem(x)
        skips = [out]
        for down, stage in zip(self.downs, self.encoder):
            out = stage(down(out))
            skips.append(out)
        bottleneck = skips.pop()
        for up, stage in zip(self.ups, self.decoder):
            out = stage(cat_features(up(out), skips.pop()))
        return SparseUNetOutput(features=self.head(out).features, bottleneck=bottleneck)


def build_preset(
    name: str, in_channels: int, out_channels: int, *, backend: SparseBackend | str = "torch"
) -> SparseResUNet:
    """Build a preset by name (``"minkunet34c"`` or ``"minkunet18a"``)."""
    if name not in PRESETS:
        raise ValueError(f"preset: unknown U-Net preset {name!r}; choose one of {sorted(PRESETS)}")
    return SparseResUNet.from_arch(PRESETS[name], in_channels, out_channels, backend=backend)


def minkunet34c(
    in_channels: int = 3, out_channels: int = 256, *, backend: SparseBackend | str = "torch"
) -> SparseResUNet:
    """MinkUNet34C: XMask3D's 3D backbone (method.md §2.1)."""
    return build_preset("minkunet34c", in_channels, out_channels, backend=backend)


def minkunet18a(
    in_channels: int = 3, out_channels: int = 256, *, backend: SparseBackend | str = "torch"
) -> SparseResUNet:
    """MinkUNet18A: the backbone of XMask3D's binary base/novel head (method.md §2.2)."""
    return build_preset("minkunet18a", in_channels, out_channels, backend=backend)


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters (trainable or not) of ``module``."""
    return sum(p.numel() for p in module.parameters())


def preset_num_parameters(name: str, *, in_channels: int = 3, out_channels: int = 256) -> int:
    """Parameter count of a full-size preset, by building it (torch backend, random init)."""
    return count_parameters(build_preset(name, in_channels, out_channels, backend="torch"))
