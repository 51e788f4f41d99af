"""spconv 2.3.x sparse convolutions behind the backend interface, patched for CPU on import.

Follows docs/dependencies.md §2 (CUDA-stream crash, racy CPU scatter-add, contiguous indices).
"""

from __future__ import annotations

import logging
from typing import Any

import spconv.pytorch as spconv
import spconv.pytorch.cppcore as _cppcore
import spconv.pytorch.hash as _hash
import spconv.pytorch.ops as _ops
import spconv.pytorch.utils as _utils
import torch
import torch.nn.functional as F
from spconv.pytorch.conv import SparseConvolution
from torch import Tensor, nn

from xmask3d.sparse.base import (
    CoordStep,
    SparseBackend,
    SparseConvLayer,
    SparseTensor,
    check_conv_args,
    coord_key_name,
)

__all__ = [
    "apply_cpu_workarounds",
    "SpconvBackend",
    "SpconvSubMConv3d",
    "SpconvDownConv3d",
    "SpconvInverseConv3d",
    "SpconvTransposedConv3d",
]

_log = logging.getLogger(__name__)
_PATCH_FLAG = "_xmask3d_patched"


def _no_cuda_stream() -> int:
    """Stand-in for ``torch.cuda.current_stream().cuda_stream`` on CPU-only torch (stream 0)."""
    return 0


class _RaceFreeOps:
    """Delegates to spconv's ``SpconvOps`` but replaces the racy CPU ``scatter_add_cpu``."""

    def __init__(self, original: Any) -> None:
        self._original = original

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)

    @staticmethod
    def scatter_add_cpu(out: Any, inp: Any, inds: Any) -> None:
        """out[inds[j]] += inp[j] for the first len(inds) rows of buffer ``inp`` (tv tensors)."""
        target = torch.from_numpy(out.numpy_view())
        index = torch.from_numpy(inds.numpy_view()).long()
        source = torch.from_numpy(inp.numpy_view())
        target.index_add_(0, index, source[: index.shape[0]])


def apply_cpu_workarounds() -> bool:
    """Patch spconv once (idempotent); returns whether the patch is active.

    Without it, spconv 2.3.8's CPU build crashes in backward (it queries the CUDA stream) and
    gives silently wrong results with more than one thread (its OpenMP scatter-add captures its
    buffer pointers by reference, a data race).
    The race-free scatter-add only replaces spconv's CPU code path, so it is installed always
    (CPU tensors on a CUDA machine hit the same race). The CUDA-stream stub is installed only
    when CUDA is unavailable; with CUDA, spconv's own stream query is kept.
    """
    if getattr(_ops, _PATCH_FLAG, False):
        return True
    if not torch.cuda.is_available():
        for module in (_cppcore, _ops, _hash, _utils):
            module.get_current_stream = _no_cuda_stream
    _ops.SpconvOps = _RaceFreeOps(_ops.SpconvOps)
    setattr(_ops, _PATCH_FLAG, True)
    _log.debug("spconv CPU workarounds applied (cuda available: %s)", torch.cuda.is_available())
    return True


apply_cpu_workarounds()


def _indice_dict(x: SparseTensor) -> dict[str, Any]:
    return x.cache.setdefault(("spconv", "indice_dict"), {})


def _spatial_shape(x: SparseTensor) -> list[int]:
    """spconv grid size of ``x``'s coordinate set (fixed once per set; spconv checks it)."""
    key = ("spconv", "shape", x.coord_key)
    if key not in x.cache:
        x.cache[key] = [int(v) + 1 for v in x.coords[:, 1:].amax(dim=0)]
    return x.cache[key]


def _to_spconv(x: SparseTensor, spatial_shape: list[int]) -> spconv.SparseConvTensor:
    return spconv.SparseConvTensor(x.features, x.coords.contiguous(), spatial_shape, x.batch_size,
                                   indice_dict=_indice_dict(x))


def _run(module: SparseConvolution, x: SparseTensor, key: str | None,
         spatial_shape: list[int]) -> spconv.SparseConvTensor:
    """Run a spconv module on ``x`` with ``key`` as indice key; keeps spconv's new pair data."""
    module.indice_key = key
    out = SparseConvolution.forward(module, _to_spconv(x, spatial_shape))
    x.cache[("spconv", "indice_dict")] = out.indice_dict
    return out


def _check_same_coords(x: SparseTensor, coord_key: tuple[CoordStep, ...], coords: Tensor) -> None:
    """New coordinate sets must come out identical (same order) when computed twice."""
    key = ("spconv", "coords", coord_key)
    previous = x.cache.setdefault(key, coords)
    if previous is not coords and not torch.equal(previous, coords):
        raise RuntimeError(f"spconv produced coordinate set {coord_key_name(coord_key)} twice in "
                           "different orders; apply each down/transposed conv once per level")


class SpconvSubMConv3d(SparseConvLayer, spconv.SubMConv3d):
    """Submanifold conv via ``spconv.SubMConv3d`` (pairs shared per coordinate set and kernel)."""

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 3, bias: bool = False
    ) -> None:
        check_conv_args(type(self).__name__, in_channels, out_channels, kernel_size, None)
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                         bias=bias)

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        """(N, C_in) -> (N, C_out) on the same voxels."""
        if self.conv1x1:
            matrix = self.weight.view(self.out_channels, self.in_channels)
            return x.replace_features(F.linear(x.features, matrix, self.bias))
        k = self.kernel_size[0]
        out = _run(self, x, f"subm{k}@{coord_key_name(x.coord_key)}", _spatial_shape(x))
        return x.replace_features(out.features)


class SpconvDownConv3d(SparseConvLayer, spconv.SparseConv3d):
    """Strided conv (padding 0) via ``spconv.SparseConv3d``; its pairs serve the inverse conv."""

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 2, stride: int = 2,
        bias: bool = False,
    ) -> None:
        check_conv_args(type(self).__name__, in_channels, out_channels, kernel_size, stride)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, bias=bias)

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        """(N, C_in) -> (M, C_out) on the coarse voxels (spconv's order)."""
        k, s = self.kernel_size[0], self.stride[0]
        step: CoordStep = ("down", k, s)
        child_key = x.coord_key + (step,)
        key = f"down{k}s{s}@{coord_key_name(x.coord_key)}"
        # A grid just big enough that spconv's output grid covers every voxel's window.
        top = x.coords[:, 1:].amax(dim=0).tolist()
        grid = [max(v + 1, s * (v // s) + k) for v in top]
        out = _run(self, x, None if key in _indice_dict(x) else key, grid)
        _check_same_coords(x, child_key, out.indices)
        x.cache.setdefault(("spconv", "shape", child_key), list(out.spatial_shape))
        return x.derive(out.features, out.indices, stride=x.stride * s, coord_key=child_key)


class SpconvInverseConv3d(SparseConvLayer, spconv.SparseInverseConv3d):
    """Inverse conv via ``spconv.SparseInverseConv3d`` onto the parent voxels of a down conv."""

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 2, stride: int = 2,
        bias: bool = False,
    ) -> None:
        check_conv_args(type(self).__name__, in_channels, out_channels, kernel_size, stride)
        super().__init__(in_channels, out_channels, kernel_size, indice_key="", bias=bias)
        self.down_stride = stride

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        """(M, C_in) coarse -> (N, C_out) on the parent voxels, in the parent's order."""
        k, s = self.kernel_size[0], self.down_stride
        step = ("down", k, s)
        if not x.coord_key or x.coord_key[-1] != step:
            raise ValueError(f"inverse conv (k={k}, s={s}) needs a tensor made by a down conv "
                             f"with the same kernel and stride; got {coord_key_name(x.coord_key)}")
        parent_key = x.coord_key[:-1]
        key = f"down{k}s{s}@{coord_key_name(parent_key)}"
        if key not in _indice_dict(x):
            raise ValueError(f"inverse conv: no spconv down conv from {coord_key_name(parent_key)} "
                             "in this tensor's cache")
        out = _run(self, x, key, _spatial_shape(x))
        return x.derive(out.features, out.indices, stride=x.stride // s, coord_key=parent_key)


class SpconvTransposedConv3d(SparseConvLayer, spconv.SparseConvTranspose3d):
    """Generative transposed conv via ``spconv.SparseConvTranspose3d``."""

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 2, stride: int = 2,
        bias: bool = False,
    ) -> None:
        check_conv_args(type(self).__name__, in_channels, out_channels, kernel_size, stride)
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, bias=bias)

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        """(N, C_in) -> (M, C_out) on the new finer voxels (spconv's order)."""
        k, s = self.kernel_size[0], self.stride[0]
        if x.stride % s:
            raise ValueError(f"transposed conv: stride {s} does not divide the input level's "
                             f"stride {x.stride}")
        child_key = x.coord_key + (("up", k, s),)
        out = _run(self, x, None, _spatial_shape(x))
        _check_same_coords(x, child_key, out.indices)
        x.cache.setdefault(("spconv", "shape", child_key), list(out.spatial_shape))
        return x.derive(out.features, out.indices, stride=x.stride // s, coord_key=child_key)


class SpconvBackend(SparseBackend):
    """Module factory of the spconv backend (CPU build patched; CUDA build used as is).

    Indices are always handed to spconv contiguous, and 1x1 convs are computed here because
    spconv's 1x1 shortcut reads its (C_out, 1, 1, 1, C_in) weight as if it were (C_in, C_out).
    """

    name = "spconv"

    subm_cls = SpconvSubMConv3d
    down_cls = SpconvDownConv3d
    inverse_cls = SpconvInverseConv3d
    transposed_cls = SpconvTransposedConv3d
