"""Project tapped diffusion features to a few fixed strides and sum the taps of each stride.

Follows ODISE's ``FeatureExtractorBackbone`` as used by XMask3D (method.md §2.4): strides are
clamped to ``[min_stride, max_stride]``, taps are grouped by stride, every tap is resized to the
group's resolution (nearest) and projected by its own bottleneck block (1x1 -> 3x3 -> 1x1 with
GroupNorm, a 1x1 shortcut when widths differ), and the projections of a group are summed.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _gn(channels: int) -> nn.GroupNorm:
    groups = 32 if channels % 32 == 0 else max(g for g in (16, 8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class BottleneckProjection(nn.Module):
    """A residual bottleneck block from ``in_channels`` to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int, *, mid_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, 1, bias=False), _gn(mid_channels), nn.ReLU(),
            nn.Conv2d(mid_channels, mid_channels, 3, padding=1, bias=False), _gn(mid_channels),
            nn.ReLU(),
            nn.Conv2d(mid_channels, out_channels, 1, bias=False), _gn(out_channels),
        )
        self.shortcut = (nn.Identity() if in_channels == out_channels else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False), _gn(out_channels)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class StrideGroupedProjection(nn.Module):
    """Merge named multi-scale taps into one map per stride.

    Args:
        in_channels: tap name -> channels.
        in_strides: tap name -> stride w.r.t. the network input.
        out_channels: width of every output map.
        mid_channels: bottleneck width of the projections.
        min_stride, max_stride: stride clamp (ODISE uses 4 and 32).

    Output names are ``"s{stride}"``; ``out_strides`` maps them to their strides.
    """

    def __init__(self, in_channels: dict[str, int], in_strides: dict[str, int], *,
                 out_channels: int, mid_channels: int, min_stride: int = 4,
                 max_stride: int = 32) -> None:
        super().__init__()
        if set(in_channels) != set(in_strides) or not in_channels:
            raise ValueError("StrideGroupedProjection: in_channels and in_strides need the same "
                             "non-empty set of tap names")
        self.group_of = {n: f"s{min(max(s, min_stride), max_stride)}"
                         for n, s in in_strides.items()}
        self.proj = nn.ModuleDict({n: BottleneckProjection(c, out_channels,
                                                           mid_channels=mid_channels)
                                   for n, c in in_channels.items()})
        groups = sorted(set(self.group_of.values()), key=lambda g: int(g[1:]))
        self.out_strides = {g: int(g[1:]) for g in groups}
        self.out_channels = {g: out_channels for g in groups}

    def forward(self, features: dict[str, Tensor], input_hw: tuple[int, int]) -> dict[str, Tensor]:
        """name -> (B, C, h, w) taps -> ``"s{stride}"`` -> (B, out, ceil(H/s), ceil(W/s))."""
        out: dict[str, Tensor] = {}
        for name, x in features.items():
            group = self.group_of[name]
            s = self.out_strides[group]
            size = (-(-input_hw[0] // s), -(-input_hw[1] // s))
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode="nearest")
            y = self.proj[name](x)
            out[group] = y if group not in out else out[group] + y
        return {g: out[g] for g in self.out_strides}
