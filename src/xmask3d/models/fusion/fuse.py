"""3D-2D mask feature fusion: a linear layer over the concatenated 2D mask and 3D point features.

Follows XMask3D's FeatureMerger (method.md §2.10). By default every point goes through the layer
(uncovered points with a zero 2D feature), so the fused features live in one space; the
published behaviour, where uncovered points copy the raw 3D feature (method §8.21), is the
``uncovered="copy3d"`` option. With ``enabled=False`` (ablation) the fused feature is the 3D one.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MaskFeatureFusion(nn.Module):
    """Fuse per-point 2D mask features with 3D point features.

    Args:
        dim: text-embedding width E of both inputs and of the output.
        enabled: when False the module returns the 3D features unchanged (no parameters used).
        uncovered: ``"fuse"`` (ours) or ``"copy3d"`` (published) for points outside every mask.
    """

    def __init__(self, dim: int, *, enabled: bool = True, uncovered: str = "fuse") -> None:
        super().__init__()
        if uncovered not in ("fuse", "copy3d"):
            raise ValueError(f"uncovered must be 'fuse' or 'copy3d', got {uncovered!r}")
        self.enabled = enabled
        self.uncovered = uncovered
        self.linear = nn.Linear(2 * dim, dim) if enabled else None

    def forward(self, feats_2d: Tensor, feats_3d: Tensor, covered: Tensor) -> Tensor:
        """(P, E) 2D features, (P, E) 3D features, (P,) bool coverage -> (P, E) fused features."""
        if self.linear is None:
            return feats_3d
        fused = self.linear(torch.cat([feats_2d, feats_3d], dim=1))
        if self.uncovered == "copy3d":
            fused = torch.where(covered.unsqueeze(1), fused, feats_3d)
        return fused
