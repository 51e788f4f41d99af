"""Backend-independent sparse voxel tensor, backend interface, and ops on features only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "COORD_LIMIT",
    "BATCH_LIMIT",
    "CoordStep",
    "SparseTensor",
    "SparseConvLayer",
    "SparseBackend",
    "SparseBatchNorm",
    "SparseReLU",
    "cat_features",
    "global_max_pool",
    "global_avg_pool",
    "to_conv3d_weight",
    "to_conv_transpose3d_weight",
    "coord_key_name",
    "pack_coords",
    "check_conv_args",
]

COORD_LIMIT = 1 << 16
"""Spatial voxel indices must lie in ``[0, COORD_LIMIT)`` (they are packed into 16 bits each)."""
BATCH_LIMIT = 1 << 15
"""Batch indices must lie in ``[0, BATCH_LIMIT)``."""

CoordStep = tuple[str, int, int]
"""One step of a coordinate set's history: ``("down" | "up", kernel_size, stride)``."""


@dataclass(frozen=True, eq=False)
class SparseTensor:
    """Active voxels of a batch of scenes with one feature vector each.

    Coordinates are integer grid indices *at this tensor's own resolution*: a k2 s2 down conv
    maps voxel ``c`` to ``c // 2`` (spconv convention, not MinkowskiEngine's stride-1 units).
    ``coord_key`` names the coordinate set by its history (``()`` for the input voxels,
    ``(("down", 2, 2),)`` after one k2 s2 down conv, ...). All tensors derived from one input
    share ``cache``, where backends keep neighbour maps per coordinate set so that layers at the
    same level reuse them.

    Attributes:
        features: (N, C) float features of the active voxels.
        coords: (N, 4) int32 contiguous ``[batch, x, y, z]``, each in ``[0, COORD_LIMIT)``.
        batch_size: number of scenes B (scenes may have no voxels at coarse levels).
        stride: voxel size of this level in input voxels (1, 2, 4, ...).
        coord_key: history of the coordinate set, see above.
        cache: backend-private maps shared by every tensor derived from the same input.
    """

    features: Tensor
    coords: Tensor
    batch_size: int
    stride: int = 1
    coord_key: tuple[CoordStep, ...] = ()
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_voxels(
        cls, features: Tensor, coords: Tensor, *, batch_size: int | None = None
    ) -> SparseTensor:
        """Validate input voxels and wrap them (stride 1, fresh cache).

        Args:
            features: (N, C) float voxel features.
            coords: (N, 4) integer ``[batch, x, y, z]``; unique rows, non-negative, < 2**16.
            batch_size: B; defaults to ``coords[:, 0].max() + 1``.

        Returns:
            A ``SparseTensor`` with int32 contiguous coords on the features' device.
        """
        if features.dim() != 2 or not features.is_floating_point():
            raise ValueError("features: expected a float (N, C) tensor, got "
                             f"{tuple(features.shape)} {features.dtype}")
        if coords.dim() != 2 or coords.shape[1] != 4 or coords.is_floating_point():
            raise ValueError(f"coords: expected an integer (N, 4) tensor, got "
                             f"{tuple(coords.shape)} {coords.dtype}")
        if coords.shape[0] != features.shape[0]:
            raise ValueError(f"coords has {coords.shape[0]} rows but features has "
                             f"{features.shape[0]}")
        if coords.shape[0] == 0:
            raise ValueError("coords: a sparse tensor needs at least one active voxel")
        lo, hi = coords.amin(0), coords.amax(0)
        if bool((lo < 0).any()) or bool((hi[1:] >= COORD_LIMIT).any()):
            raise ValueError(f"coords: spatial indices must lie in [0, {COORD_LIMIT}), got min "
                             f"{lo[1:].tolist()} max {hi[1:].tolist()}; shift the voxel grid")
        n_batch = int(hi[0]) + 1
        batch_size = n_batch if batch_size is None else int(batch_size)
        if batch_size < n_batch or batch_size > BATCH_LIMIT:
            raise ValueError(f"batch_size={batch_size} but coords hold batch index {n_batch - 1} "
                             f"(limit {BATCH_LIMIT})")
        keys = pack_coords(coords)
        if torch.unique(keys).numel() != keys.numel():
            raise ValueError("coords: duplicate voxels; merge points per voxel before building "
                             "a sparse tensor")
        coords = coords.to(device=features.device, dtype=torch.int32).contiguous()
        return cls(features, coords, batch_size)

    @property
    def num_voxels(self) -> int:
        """Number N of active voxels."""
        return self.features.shape[0]

    @property
    def num_channels(self) -> int:
        """Feature width C."""
        return self.features.shape[1]

    def replace_features(self, features: Tensor) -> SparseTensor:
        """Same voxels, new (N, C') features."""
        if features.dim() != 2 or features.shape[0] != self.coords.shape[0]:
            raise ValueError(f"features: expected ({self.coords.shape[0]}, C), got "
                             f"{tuple(features.shape)}")
        return SparseTensor(features, self.coords, self.batch_size, self.stride, self.coord_key,
                            self.cache)

    def derive(
        self, features: Tensor, coords: Tensor, *, stride: int, coord_key: tuple[CoordStep, ...]
    ) -> SparseTensor:
        """A tensor on another coordinate set of the same family (shares ``cache``)."""
        return SparseTensor(features, coords, self.batch_size, stride, coord_key, self.cache)


def pack_coords(coords: Tensor) -> Tensor:
    """Pack (M, 4) ``[batch, x, y, z]`` into one sortable int64 key per row.

    Rows with a spatial index outside ``[0, COORD_LIMIT)`` get the key -1 (never a real voxel).

    Returns:
        (M,) int64 keys ``batch << 48 | x << 32 | y << 16 | z``.
    """
    c = coords.long()
    xyz = c[:, 1:]
    valid = ((xyz >= 0) & (xyz < COORD_LIMIT)).all(dim=1)
    keys = (c[:, 0] << 48) | (xyz[:, 0] << 32) | (xyz[:, 1] << 16) | xyz[:, 2]
    return torch.where(valid, keys, torch.full_like(keys, -1))


def coord_key_name(coord_key: tuple[CoordStep, ...]) -> str:
    """A short string naming a coordinate set, e.g. ``"in/down2s2/down2s2"``."""
    return "/".join(["in"] + [f"{kind}{k}s{s}" for kind, k, s in coord_key])


class SparseConvLayer:
    """Marker mixin of every sparse convolution module built by a backend.

    Every such module has ``weight`` of shape (C_out, k, k, k, C_in) (spconv's KRSC layout, axes
    x, y, z) and an optional ``bias`` (C_out,), with the same meaning in every backend, so state
    dicts move between backends unchanged. ``to_conv3d_weight`` / ``to_conv_transpose3d_weight``
    give the equivalent dense PyTorch weights.
    """

    in_channels: int
    out_channels: int
    weight: nn.Parameter
    bias: nn.Parameter | None


def check_conv_args(
    module: str, in_channels: int, out_channels: int, kernel_size: int, stride: int | None
) -> None:
    """Raise ``ValueError`` for invalid conv sizes (``stride=None``: submanifold, odd kernel).

    Strided convs need ``kernel_size >= stride >= 2`` so that every input voxel has an output
    (and the inverse conv can restore every input voxel).
    """
    if min(in_channels, out_channels) < 1:
        raise ValueError(f"{module}: channels must be >= 1, got {in_channels} -> {out_channels}")
    if stride is None:
        if kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"{module}: kernel_size must be odd and >= 1, got {kernel_size}")
    elif not kernel_size >= stride >= 2:
        raise ValueError(f"{module}: need kernel_size >= stride >= 2, got kernel_size="
                         f"{kernel_size}, stride={stride}")


def to_conv3d_weight(weight: Tensor) -> Tensor:
    """(C_out, k, k, k, C_in) sparse weight -> (C_out, C_in, k, k, k) for ``F.conv3d``.

    Used for submanifold and down convolutions.
    """
    return weight.permute(0, 4, 1, 2, 3)


def to_conv_transpose3d_weight(weight: Tensor) -> Tensor:
    """(C_out, k, k, k, C_in) sparse weight -> (C_in, C_out, k, k, k) for ``F.conv_transpose3d``.

    Used for inverse and transposed convolutions.
    """
    return weight.permute(4, 0, 1, 2, 3)


class SparseBackend:
    """Factory of sparse convolution modules for one implementation.

    Every module maps ``SparseTensor -> SparseTensor``. Kernel offsets follow ``F.conv3d``
    (cross-correlation); strided convs use padding 0, so output voxel ``o`` reads inputs
    ``o * stride + d`` for ``d`` in ``[0, k)^3``.
    """

    name: str
    # the module classes each backend provides (set by the subclass)
    subm_cls: type[nn.Module]
    down_cls: type[nn.Module]
    inverse_cls: type[nn.Module]
    transposed_cls: type[nn.Module]

    def subm_conv(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 3, bias: bool = False
    ) -> nn.Module:
        """Submanifold conv (odd ``kernel_size``): output sites = input sites, same order."""
        return self.subm_cls(in_channels, out_channels, kernel_size=kernel_size, bias=bias)

    def down_conv(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 2, stride: int = 2,
        bias: bool = False,
    ) -> nn.Module:
        """Strided conv: output sites = every ``o`` with an active input in its window."""
        return self.down_cls(in_channels, out_channels, kernel_size=kernel_size, stride=stride,
                             bias=bias)

    def inverse_conv(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 2, stride: int = 2,
        bias: bool = False,
    ) -> nn.Module:
        """Transposed conv back onto the input sites (and order) of the matching down conv.

        The input must come from a ``down_conv`` with the same ``kernel_size`` and ``stride``.
        """
        return self.inverse_cls(in_channels, out_channels, kernel_size=kernel_size,
                                stride=stride, bias=bias)

    def transposed_conv(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 2, stride: int = 2,
        bias: bool = False,
    ) -> nn.Module:
        """Generative transposed conv: output sites = every ``i * stride + d`` of active ``i``."""
        return self.transposed_cls(in_channels, out_channels, kernel_size=kernel_size,
                                   stride=stride, bias=bias)


class SparseBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` over the features of all active voxels of the batch."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        """Normalise (N, C) features; returns a tensor on the same voxels."""
        return x.replace_features(super().forward(x.features))


class SparseReLU(nn.Module):
    """ReLU on the features of the active voxels."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        """Apply ``relu`` to (N, C) features."""
        return x.replace_features(F.relu(x.features))


def cat_features(*tensors: SparseTensor) -> SparseTensor:
    """Concatenate the channels of tensors that live on the same coordinate set (U-Net skips).

    Returns:
        A tensor with (N, sum C_i) features on the first tensor's voxels.
    """
    first = tensors[0]
    for other in tensors[1:]:
        if other.coord_key != first.coord_key or other.num_voxels != first.num_voxels:
            raise ValueError(
                f"cat_features: coordinate sets differ ({coord_key_name(first.coord_key)} with "
                f"{first.num_voxels} voxels vs {coord_key_name(other.coord_key)} with "
                f"{other.num_voxels})")
    return first.replace_features(torch.cat([t.features for t in tensors], dim=1))


def global_max_pool(x: SparseTensor) -> Tensor:
    """Channel-wise max over the voxels of each scene.

    Returns:
        (B, C) per-scene maxima; a scene without voxels gets zeros.
    """
    index = x.coords[:, 0].long().unsqueeze(1).expand(-1, x.num_channels)
    out = x.features.new_zeros(x.batch_size, x.num_channels)
    return out.scatter_reduce(0, index, x.features, reduce="amax", include_self=False)


def global_avg_pool(x: SparseTensor) -> Tensor:
    """Channel-wise mean over the voxels of each scene.

    Returns:
        (B, C) per-scene means; a scene without voxels gets zeros.
    """
    batch = x.coords[:, 0].long()
    total = x.features.new_zeros(x.batch_size, x.num_channels).index_add(0, batch, x.features)
    count = torch.bincount(batch, minlength=x.batch_size).clamp_(min=1)
    return total / count.unsqueeze(1).to(total.dtype)
