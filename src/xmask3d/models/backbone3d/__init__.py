"""Sparse 3D backbones (MinkUNet-style residual U-Nets) built through ``xmask3d.sparse``."""

from __future__ import annotations

from xmask3d.models.backbone3d.blocks import BasicBlock, init_kaiming_fan_out, make_stage
from xmask3d.models.backbone3d.sparse_unet import (
    MINKUNET18A,
    MINKUNET34C,
    PRESETS,
    SparseResUNet,
    SparseUNetOutput,
    UNetArch,
    build_preset,
    count_parameters,
    minkunet18a,
    minkunet34c,
    preset_num_parameters,
)

__all__ = [
    "BasicBlock",
    "MINKUNET18A",
    "MINKUNET34C",
    "PRESETS",
    "SparseResUNet",
    "SparseUNetOutput",
    "UNetArch",
    "build_preset",
    "count_parameters",
    "init_kaiming_fan_out",
    "make_stage",
    "minkunet18a",
    "minkunet34c",
    "preset_num_parameters",
]
