"""Multi-scale deformable attention in pure PyTorch (bilinear ``grid_sample`` per level).

Follows Deformable DETR (Zhu et al., ICLR 2021, "Deformable Transformers for End-to-End Object
Detection", `MSDeformAttn` and its PyTorch reference core) as used by Mask2Former (Cheng et al.,
CVPR 2022) and ODISE (Xu et al., CVPR 2023). No compiled operator: the sampling is one
``F.grid_sample`` call per feature level, which runs on CPU and GPU and is differentiable with
respect to the values, the sampling locations and the attention weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmask3d.errors import ConfigError

__all__ = ["MSDeformAttn", "ms_deform_attn", "level_shapes", "start_offsets"]

ShapesLike = Tensor | Sequence[Sequence[int]]


def level_shapes(spatial_shapes: ShapesLike) -> list[tuple[int, int]]:
    """Return the per-level ``(height, width)`` pairs as Python ints.

    Args:
        spatial_shapes: (L, 2) integer tensor or sequence of ``(h, w)`` pairs.

    Returns:
        A list of L ``(h, w)`` tuples.
    """
    rows = spatial_shapes.tolist() if isinstance(spatial_shapes, Tensor) else spatial_shapes
    shapes = [(int(r[0]), int(r[1])) for r in rows]
    if not shapes or any(h <= 0 or w <= 0 for h, w in shapes):
        raise ValueError(f"spatial_shapes: need >= 1 level of positive sizes, got {shapes}")
    return shapes


def start_offsets(spatial_shapes: ShapesLike) -> list[int]:
    """Offsets of each level in the flattened (sum of h*w) token axis.

    Args:
        spatial_shapes: (L, 2) ``(h, w)`` per level.

    Returns:
        A list of L start offsets (the first is 0).
    """
    starts, total = [], 0
    for h, w in level_shapes(spatial_shapes):
        starts.append(total)
        total += h * w
    return starts


def _check_core_inputs(
    value: Tensor,
    shapes: list[tuple[int, int]],
    starts: list[int],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> None:
    if value.dim() != 4:
        raise ValueError(f"value: expected (B, S, heads, head_dim), got {tuple(value.shape)}")
    bsz, n_tokens, n_heads, _ = value.shape
    if n_tokens != sum(h * w for h, w in shapes):
        raise ValueError(f"value: {n_tokens} tokens but spatial_shapes {shapes} sum differently")
    if starts != start_offsets(shapes):
        raise ValueError(f"level_start_index {starts} does not match spatial_shapes {shapes}")
    loc, att = sampling_locations.shape, attention_weights.shape
    if len(loc) != 6 or loc[-1] != 2 or loc[0] != bsz or loc[2] != n_heads or loc[3] != len(shapes):
        raise ValueError(
            f"sampling_locations: expected (B={bsz}, Lq, {n_heads}, {len(shapes)}, P, 2), got {loc}"
        )
    if tuple(att) != tuple(loc[:-1]):
        raise ValueError(f"attention_weights: expected shape {tuple(loc[:-1])}, got {tuple(att)}")


def ms_deform_attn(
    value: Tensor,
    spatial_shapes: ShapesLike,
    level_start_index: Tensor | Sequence[int],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Multi-scale deformable attention core: weighted sum of bilinear samples.

    Locations are normalised to [0, 1] per level with (x, y) order; (0, 0) is the top-left
    corner of the top-left pixel (``align_corners=False``). Samples outside the map read zero.

    Args:
        value: (B, S, heads, head_dim) values, levels flattened row-major and concatenated.
        spatial_shapes: (L, 2) ``(h, w)`` of each level; sum of h*w must be S.
        level_start_index: (L,) start offset of each level in S.
        sampling_locations: (B, Lq, heads, L, P, 2) normalised (x, y) sampling points.
        attention_weights: (B, Lq, heads, L, P) weights (already softmax-normalised over L*P).

    Returns:
        (B, Lq, heads * head_dim) attended features.
    """
    shapes = level_shapes(spatial_shapes)
    raw = level_start_index.tolist() if isinstance(level_start_index, Tensor) else level_start_index
    starts = [int(s) for s in raw]
    _check_core_inputs(value, shapes, starts, sampling_locations, attention_weights)
    bsz, _, n_heads, head_dim = value.shape
    _, n_query, _, n_levels, n_points, _ = sampling_locations.shape
    # grid_sample works on [-1, 1]; fold heads into the batch axis: (B*heads, Lq, P, 2) per level.
    grids = (2.0 * sampling_locations - 1.0).permute(0, 2, 1, 3, 4, 5)
    grids = grids.reshape(bsz * n_heads, n_query, n_levels, n_points, 2)
    samples = []
    for lvl, ((h, w), start) in enumerate(zip(shapes, starts, strict=True)):
        # (B, h*w, heads, Dh) -> (B*heads, Dh, h, w)
        v = value[:, start : start + h * w].permute(0, 2, 3, 1)
        v = v.reshape(bsz * n_heads, head_dim, h, w)
        samples.append(
            F.grid_sample(
                v, grids[:, :, lvl], mode="bilinear", padding_mode="zeros", align_corners=False
            )
        )  # (B*heads, Dh, Lq, P)
    stacked = torch.stack(samples, dim=-2).flatten(-2)  # (B*heads, Dh, Lq, L*P)
    weights = attention_weights.permute(0, 2, 1, 3, 4).reshape(bsz * n_heads, 1, n_query, -1)
    out = (stacked * weights).sum(-1)  # (B*heads, Dh, Lq)
    return out.view(bsz, n_heads * head_dim, n_query).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (Deformable DETR, Eq. 3).

    Each query predicts, per head, level and point, a 2D offset from its reference point and
    an attention weight (softmax over levels and points); it attends to bilinear samples of the
    projected values at those locations.

    Args:
        d_model: feature width (divisible by ``n_heads``).
        n_levels: number of feature levels.
        n_heads: attention heads.
        n_points: sampling points per head and level.
    """

    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        if min(d_model, n_levels, n_heads, n_points) <= 0:
            raise ConfigError("MSDeformAttn: d_model, n_levels, n_heads, n_points must be > 0")
        if d_model % n_heads != 0:
            raise ConfigError(f"MSDeformAttn: d_model {d_model} not divisible by n_heads {n_heads}")
        self.d_model, self.n_levels = d_model, n_levels
        self.n_heads, self.n_points = n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Standard init: offsets start on a ring of head directions, point k at radius k+1."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float64) * (2.0 * math.pi / self.n_heads)
        dirs = torch.stack([angles.cos(), angles.sin()], dim=-1)  # (heads, 2)
        dirs = dirs / dirs.abs().max(dim=-1, keepdim=True).values
        radius = torch.arange(1, self.n_points + 1, dtype=torch.float64)
        grid = dirs[:, None, None, :] * radius[None, None, :, None]  # (heads, 1, P, 2)
        grid = grid.expand(self.n_heads, self.n_levels, self.n_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1).to(self.sampling_offsets.bias))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: Tensor,
        reference_points: Tensor,
        value_input: Tensor,
        spatial_shapes: ShapesLike,
        *,
        padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Attend from each query to sampled points of all levels.

        Args:
            query: (B, Lq, d_model) queries (content + position).
            reference_points: (B, Lq, n_levels, 2) normalised (x, y) reference per level.
            value_input: (B, S, d_model) flattened multi-level features.
            spatial_shapes: (L, 2) ``(h, w)`` per level.
            padding_mask: optional (B, S) bool, True where a token is padding (reads as zero).

        Returns:
            (B, Lq, d_model) attended features.
        """
        shapes = level_shapes(spatial_shapes)
        bsz, n_query, _ = query.shape
        if len(shapes) != self.n_levels:
            raise ValueError(f"spatial_shapes: {len(shapes)} levels, module has {self.n_levels}")
        if reference_points.shape != (bsz, n_query, self.n_levels, 2):
            raise ValueError(
                f"reference_points: expected {(bsz, n_query, self.n_levels, 2)}, "
                f"got {tuple(reference_points.shape)}"
            )
        value = self.value_proj(value_input)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(bsz, value.shape[1], self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(
            bsz, n_query, self.n_heads, self.n_levels, self.n_points, 2
        )
        weights = self.attention_weights(query).view(bsz, n_query, self.n_heads, -1).softmax(-1)
        weights = weights.view(bsz, n_query, self.n_heads, self.n_levels, self.n_points)
        # Offsets are in pixels of each level; normalise by (w, h) to the [0, 1] frame.
        wh = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
        offsets = offsets / wh[None, None, None, :, None]
        locations = reference_points[:, :, None, :, None, :] + offsets  # (B, Lq, H, L, P, 2)
        out = ms_deform_attn(value, shapes, start_offsets(shapes), locations, weights)
        return self.output_proj(out)
