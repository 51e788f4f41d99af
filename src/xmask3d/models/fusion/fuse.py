"""3D-2D mask feature fusion: a linear layer over the concatenated 2D mask and 3D point features.

Follows XMask3D's FeatureMerger (method.md §2.10). By default every point goes through the layer
(uncovered points with a zero 2D feature), so the fused features live in one space; the
published behaviour, where uncovered points copy the raw 3D feature (method §8.21), is the
``uncovered="copy3d"`` option. With ``enabled=False`` (ablation) the fused feature is the 3D one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmask3d.models.outputs import PointRows


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

    def fuse_rows(self, feats_2d: PointRows, feats_3d: PointRows, *,
                  proj_3d: tuple[Tensor, nn.Linear]) -> PointRows:
        """``forward`` computed once per distinct (2D row, 3D row) pair of the points.

        The Linear over ``[f_2d, f_3d]`` is split into its 2D and 3D halves, each applied to the
        rows of its input (B * Q + 1 mask rows, V voxel rows) before the pairs are formed, so no
        (P, 2E) tensor is built. ``feats_2d``'s last row must be its zero (uncovered) row.

        Args:
            feats_2d: mask rows and a last zero row.
            feats_3d: 3D rows.
            proj_3d: ``(u, proj)`` with ``feats_3d.rows == proj(u)``: the 3D half is applied as
                one composed Linear to the narrower ``u`` (the same function, fewer FLOPs when
                ``u`` is narrower than E).
        """
        if self.linear is None:
            return feats_3d
        dim = feats_3d.rows.shape[1]
        n2 = feats_2d.rows.shape[0]
        key = feats_3d.index * n2 + feats_2d.index
        pairs, index = torch.unique(key, return_inverse=True)
        row_3d, row_2d = pairs // n2, pairs % n2
        w = self.linear.weight
        part_2d = F.linear(feats_2d.rows, w[:, :dim])
        w_3d = w[:, dim:]
        u, proj = proj_3d
        bias = self.linear.bias if proj.bias is None else self.linear.bias + w_3d @ proj.bias
        part_3d = F.linear(u, w_3d @ proj.weight, bias)
        fused = part_2d[row_2d] + part_3d[row_3d]
        if self.uncovered == "copy3d":
            covered = (row_2d != n2 - 1).unsqueeze(1)
            fused = torch.where(covered, fused, feats_3d.rows[row_3d])
        return PointRows(fused, index)
