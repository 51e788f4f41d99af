"""Sparse voxel convolutions behind one small interface, with a pure-PyTorch and a spconv backend.

Network code builds its convolutions through ``make_backend(name)`` and never imports spconv.
"""

from __future__ import annotations

import importlib.util

from xmask3d.sparse.base import (
    SparseBackend,
    SparseBatchNorm,
    SparseConvLayer,
    SparseReLU,
    SparseTensor,
    cat_features,
    global_avg_pool,
    global_max_pool,
    to_conv3d_weight,
    to_conv_transpose3d_weight,
)
from xmask3d.sparse.torch_backend import TorchBackend

__all__ = [
    "BACKEND_NAMES",
    "SparseBackend",
    "SparseBatchNorm",
    "SparseConvLayer",
    "SparseReLU",
    "SparseTensor",
    "TorchBackend",
    "available_backends",
    "cat_features",
    "global_avg_pool",
    "global_max_pool",
    "make_backend",
    "to_conv3d_weight",
    "to_conv_transpose3d_weight",
]

BACKEND_NAMES = ("torch", "spconv")


def available_backends() -> list[str]:
    """Names of the backends that can be built here (``"spconv"`` needs the spconv package)."""
    names = ["torch"]
    if importlib.util.find_spec("spconv") is not None:
        names.append("spconv")
    return names


def make_backend(name: str | SparseBackend) -> SparseBackend:
    """Return the backend called ``name`` (``"torch"`` or ``"spconv"``); instances pass through.

    Raises:
        ValueError: unknown name.
        ImportError: ``"spconv"`` asked for but spconv is not installed.
    """
    if isinstance(name, SparseBackend):
        return name
    if name == "torch":
        return TorchBackend()
    if name == "spconv":
        try:
            from xmask3d.sparse.spconv_backend import SpconvBackend
        except ImportError as err:
            raise ImportError(f"sparse backend 'spconv' needs the spconv package ({err}); "
                              "install spconv (CPU: spconv==2.3.8) or use backend 'torch'") from err
        return SpconvBackend()
    raise ValueError(f"backend: unknown sparse backend {name!r}; choose one of {BACKEND_NAMES}")
