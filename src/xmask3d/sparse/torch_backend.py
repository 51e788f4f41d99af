"""Pure-PyTorch sparse convolutions: sorted-key neighbour maps and gather-matmul-``index_add``.

Follows the gather-GEMM-scatter scheme of spconv / MinkowskiEngine (docs/dependencies.md §3).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xmask3d.sparse.base import (
    COORD_LIMIT,
    CoordStep,
    SparseBackend,
    SparseConvLayer,
    SparseTensor,
    check_conv_args,
    coord_key_name,
    pack_coords,
)

__all__ = [
    "KernelMap",
    "TorchBackend",
    "TorchSubMConv3d",
    "TorchDownConv3d",
    "TorchInverseConv3d",
    "TorchTransposedConv3d",
    "sparse_conv_features",
]


@dataclass(frozen=True)
class KernelMap:
    """Input/output voxel pairs of one sparse convolution, grouped by kernel offset.

    Attributes:
        pairs: ``(offset, in_idx, out_idx)`` per non-empty kernel offset; ``offset`` indexes the
            flattened k**3 kernel (x slowest), ``in_idx``/``out_idx`` are (M,) int64.
        identity: kernel offset whose pairs are ``i -> i`` for every voxel (SubM centre), or None.
        num_out: number of output voxels.
    """

    pairs: list[tuple[int, Tensor, Tensor]]
    identity: int | None
    num_out: int

    def reversed(self, num_out: int) -> KernelMap:
        """The same pairs with inputs and outputs swapped (an inverse conv of a down conv)."""
        return KernelMap([(k, o, i) for k, i, o in self.pairs], None, num_out)


def _kernel_offsets(kernel_size: int, *, centred: bool, device: torch.device) -> Tensor:
    """(k**3, 3) int64 offsets, x slowest; ``-(k//2)..k//2`` if centred else ``0..k-1``."""
    start = -(kernel_size // 2) if centred else 0
    rng = range(start, start + kernel_size)
    return torch.tensor(list(itertools.product(rng, rng, rng)), dtype=torch.long, device=device)


def _shifted_keys(coords: Tensor, keys: Tensor, offset: Tensor, *, fast: bool) -> Tensor:
    """Packed keys of ``coords + offset`` (-1 where a shifted index leaves the valid range).

    With ``fast`` the offset is added to the packed keys directly; the caller guarantees that
    every coordinate is far enough from ``COORD_LIMIT`` that the borrow/carry of an out-of-range
    shift can only produce keys of no real voxel (an index field >= max index + 1, or < 0).
    """
    if fast:
        dx, dy, dz = (int(v) for v in offset)
        return keys + ((dx << 32) + (dy << 16) + dz)
    shifted = coords.clone()
    shifted[:, 1:] += offset
    return pack_coords(shifted)


def _subm_map(x: SparseTensor, kernel_size: int) -> KernelMap:
    """Neighbour pairs of a submanifold conv on ``x``'s voxels (cached per coordinate set).

    Offsets ``d`` and ``-d`` have mirrored pairs, so only half of them are searched.
    """
    cache_key = ("torch", "subm", x.coord_key, kernel_size)
    if cache_key in x.cache:
        return x.cache[cache_key]
    coords = x.coords.long()
    keys = pack_coords(coords)
    sorted_keys, perm = torch.sort(keys)
    last = sorted_keys.numel() - 1
    offsets = _kernel_offsets(kernel_size, centred=True, device=coords.device)
    centre = offsets.shape[0] // 2  # offsets[K - 1 - k] == -offsets[k]
    fast = int(coords[:, 1:].max()) < COORD_LIMIT - 2 * kernel_size
    pairs = []
    for k in range(centre):
        query = _shifted_keys(coords, keys, offsets[k], fast=fast)
        pos = torch.searchsorted(sorted_keys, query).clamp_(max=last)
        out_idx = (sorted_keys[pos] == query).nonzero().squeeze(1)
        if out_idx.numel():
            in_idx = perm[pos[out_idx]]
            pairs.append((k, in_idx, out_idx))
            pairs.append((offsets.shape[0] - 1 - k, out_idx, in_idx))
    kmap = KernelMap(pairs, centre, coords.shape[0])
    x.cache[cache_key] = kmap
    return kmap


def _unique_outputs(candidates: list[tuple[int, Tensor, Tensor]]) -> tuple[Tensor, KernelMap]:
    """Merge ``(offset, in_idx, out_coords)`` candidates into unique output voxels.

    Returns:
        (M, 4) int32 output coords sorted by packed key, and the kernel map onto them.
    """
    keys = torch.cat([pack_coords(c) for _, _, c in candidates])
    unique_keys, inverse = torch.unique(keys, return_inverse=True)
    coords = torch.stack([unique_keys >> 48, (unique_keys >> 32) & 0xFFFF,
                          (unique_keys >> 16) & 0xFFFF, unique_keys & 0xFFFF], dim=1)
    pairs, start = [], 0
    for k, in_idx, cand in candidates:
        pairs.append((k, in_idx, inverse[start:start + cand.shape[0]]))
        start += cand.shape[0]
    return coords.to(torch.int32).contiguous(), KernelMap(pairs, None, unique_keys.numel())


def _down_map(x: SparseTensor, kernel_size: int, stride: int) -> tuple[Tensor, KernelMap]:
    """Output coords and pairs of a strided conv on ``x`` (cached per coordinate set)."""
    cache_key = ("torch", "down", x.coord_key, kernel_size, stride)
    if cache_key in x.cache:
        return x.cache[cache_key]
    coords = x.coords.long()
    candidates = []
    for k, offset in enumerate(_kernel_offsets(kernel_size, centred=False, device=coords.device)):
        shifted = coords[:, 1:] - offset
        valid = ((shifted >= 0) & (shifted % stride == 0)).all(dim=1)
        in_idx = valid.nonzero().squeeze(1)
        if in_idx.numel():
            out = torch.cat([coords[in_idx, :1], shifted[in_idx] // stride], dim=1)
            candidates.append((k, in_idx, out))
    result = _unique_outputs(candidates)
    x.cache[cache_key] = result
    x.cache[("torch", "coords", x.coord_key)] = (x.coords, x.stride)  # for the inverse conv
    return result


def _up_map(x: SparseTensor, kernel_size: int, stride: int) -> tuple[Tensor, KernelMap]:
    """Output coords and pairs of a generative transposed conv on ``x`` (cached)."""
    cache_key = ("torch", "up", x.coord_key, kernel_size, stride)
    if cache_key in x.cache:
        return x.cache[cache_key]
    coords = x.coords.long()
    if int(coords[:, 1:].max()) * stride + kernel_size > COORD_LIMIT:
        raise ValueError(f"transposed conv: output coordinates would exceed {COORD_LIMIT}")
    in_idx = torch.arange(coords.shape[0], device=coords.device)
    candidates = []
    for k, offset in enumerate(_kernel_offsets(kernel_size, centred=False, device=coords.device)):
        out = torch.cat([coords[:, :1], coords[:, 1:] * stride + offset], dim=1)
        candidates.append((k, in_idx, out))
    result = _unique_outputs(candidates)
    x.cache[cache_key] = result
    return result


def _scatter_forward(features: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
    """out[o] += features[i] @ weight[k] over all pairs; weight is (k**3, C_in, C_out)."""
    if kmap.identity is not None:
        out = features @ weight[kmap.identity]
    else:
        out = features.new_zeros(kmap.num_out, weight.shape[2])
    for k, in_idx, out_idx in kmap.pairs:
        out.index_add_(0, out_idx, features[in_idx] @ weight[k])
    return out


def _scatter_backward(
    features: Tensor, weight: Tensor, kmap: KernelMap, grad_out: Tensor, need_x: bool,
    need_w: bool,
) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of ``_scatter_forward`` w.r.t. features and weight (gathers recomputed)."""
    grad_x = torch.zeros_like(features) if need_x else None
    grad_w = torch.zeros_like(weight) if need_w else None
    grad_out = grad_out.contiguous()
    if kmap.identity is not None:
        if need_w:
            grad_w[kmap.identity] = features.t() @ grad_out
        if need_x:
            grad_x += grad_out @ weight[kmap.identity].t()
    for k, in_idx, out_idx in kmap.pairs:
        g = grad_out[out_idx]
        if need_w:
            grad_w[k] = features[in_idx].t() @ g
        if need_x:
            grad_x.index_add_(0, in_idx, g @ weight[k].t())
    return grad_x, grad_w


class _GatherMatmulScatter(torch.autograd.Function):
    """Sparse conv as one autograd node: stores only the input and weight, not the gathers.

    Runs in the input's dtype with autocast off (mixed dtypes would break ``index_add_``).
    """

    @staticmethod
    def forward(ctx, features: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
        ctx.save_for_backward(features, weight)
        ctx.kmap = kmap
        with torch.autocast(features.device.type, enabled=False):
            return _scatter_forward(features, weight, kmap)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        features, weight = ctx.saved_tensors
        with torch.autocast(features.device.type, enabled=False):
            grad_x, grad_w = _scatter_backward(features, weight, ctx.kmap,
                                               grad_out.to(features.dtype),
                                               ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return grad_x, grad_w, None


def sparse_conv_features(features: Tensor, weight: Tensor, kmap: KernelMap) -> Tensor:
    """Apply a sparse convolution given its kernel map.

    Args:
        features: (N_in, C_in) input features.
        weight: (C_out, k, k, k, C_in) kernel (``SparseConvLayer`` layout).
        kmap: the pairs, offsets indexing the flattened k**3 kernel.

    Returns:
        (kmap.num_out, C_out) output features.
    """
    c_out, c_in = weight.shape[0], weight.shape[-1]
    per_offset = weight.permute(1, 2, 3, 4, 0).reshape(-1, c_in, c_out)  # (k**3, C_in, C_out)
    return _GatherMatmulScatter.apply(features, per_offset.to(features.dtype), kmap)


class _TorchConv(SparseConvLayer, nn.Module):
    """Weights and init shared by the PyTorch sparse convolutions."""

    _submanifold = False

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 2, stride: int = 2,
        bias: bool = False,
    ) -> None:
        super().__init__()
        check_conv_args(type(self).__name__, in_channels, out_channels, kernel_size,
                        None if self._submanifold else stride)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        k = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, k, k, k, in_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        bound = 1.0 / math.sqrt(in_channels * k**3)  # nn.Conv3d's default init
        nn.init.uniform_(self.weight, -bound, bound)

    def _apply_kmap(self, features: Tensor, kmap: KernelMap) -> Tensor:
        out = sparse_conv_features(features, self.weight, kmap)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, bias={self.bias is not None}")


class TorchSubMConv3d(_TorchConv):
    """Submanifold sparse conv (odd kernel); output voxels are the input voxels."""

    _submanifold = True

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 3, bias: bool = False
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size=kernel_size, stride=1, bias=bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        """(N, C_in) -> (N, C_out) on the same voxels."""
        return x.replace_features(self._apply_kmap(x.features, _subm_map(x, self.kernel_size)))


class TorchDownConv3d(_TorchConv):
    """Strided sparse conv (padding 0); the output level has ``stride`` times coarser voxels."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        """(N, C_in) -> (M, C_out) on the coarse voxels, sorted by (batch, x, y, z)."""
        coords, kmap = _down_map(x, self.kernel_size, self.stride)
        step: CoordStep = ("down", self.kernel_size, self.stride)
        return x.derive(self._apply_kmap(x.features, kmap), coords, stride=x.stride * self.stride,
                        coord_key=x.coord_key + (step,))


def _parent_of(x: SparseTensor, kernel_size: int, stride: int) -> tuple[CoordStep, ...]:
    """Coordinate key of the level a down conv with this kernel/stride came from."""
    step = ("down", kernel_size, stride)
    if not x.coord_key or x.coord_key[-1] != step:
        raise ValueError(f"inverse conv (k={kernel_size}, s={stride}) needs a tensor made by a "
                         "down conv with the same kernel and stride; got "
                         f"{coord_key_name(x.coord_key)}")
    return x.coord_key[:-1]


class TorchInverseConv3d(_TorchConv):
    """Transposed conv onto the voxels (and order) the matching down conv started from."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        """(M, C_in) coarse -> (N, C_out) on the parent voxels."""
        parent_key = _parent_of(x, self.kernel_size, self.stride)
        entry = x.cache.get(("torch", "down", parent_key, self.kernel_size, self.stride))
        parent = x.cache.get(("torch", "coords", parent_key))
        if entry is None or parent is None:
            raise ValueError(f"inverse conv: no torch-backend down conv from "
                             f"{coord_key_name(parent_key)} in this tensor's cache")
        parent_coords, parent_stride = parent
        kmap = entry[1].reversed(parent_coords.shape[0])
        return x.derive(self._apply_kmap(x.features, kmap), parent_coords, stride=parent_stride,
                        coord_key=parent_key)


class TorchTransposedConv3d(_TorchConv):
    """Generative transposed conv: creates every voxel ``i * stride + d`` (``d`` in [0, k)^3)."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        """(N, C_in) -> (M, C_out) on the new finer voxels, sorted by (batch, x, y, z)."""
        if x.stride % self.stride:
            raise ValueError(f"transposed conv: stride {self.stride} does not divide the input "
                             f"level's stride {x.stride}")
        coords, kmap = _up_map(x, self.kernel_size, self.stride)
        step: CoordStep = ("up", self.kernel_size, self.stride)
        return x.derive(self._apply_kmap(x.features, kmap), coords,
                        stride=x.stride // self.stride, coord_key=x.coord_key + (step,))


class TorchBackend(SparseBackend):
    """Module factory of the pure-PyTorch backend (any device torch supports).

    Neighbour maps come from ``torch.searchsorted`` on packed int64 voxel keys and are cached per
    coordinate set in ``SparseTensor.cache``; a custom autograd node recomputes the gathers in
    backward instead of storing one gathered input copy per kernel offset. Deterministic; the
    test oracle of the spconv backend.
    """

    name = "torch"

    subm_cls = TorchSubMConv3d
    down_cls = TorchDownConv3d
    inverse_cls = TorchInverseConv3d
    transposed_cls = TorchTransposedConv3d
