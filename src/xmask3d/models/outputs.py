"""Output containers of the XMask3D model (the same type in training and evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class PointRows:
    """Per-point values stored once per distinct row: point ``i`` has ``rows[index[i]]``.

    Many points share a value (the points of one voxel share its 3D feature, the points of one
    mask its 2D feature), so the model computes wide per-point tensors once per row and gathers
    to points last (issue 18: the per-point heads were a quarter of a CPU training step).

    Attributes:
        rows: (R, D) the distinct values.
        index: (P,) int64 row of every point.
    """

    rows: Tensor
    index: Tensor

    @classmethod
    def of_points(cls, values: Tensor) -> PointRows:
        """One row per point (``index = arange(P)``)."""
        return cls(values, torch.arange(values.shape[0], device=values.device))

    @property
    def num_points(self) -> int:
        return int(self.index.shape[0])

    def points(self) -> Tensor:
        """(P, D) the value of every point."""
        return self.rows[self.index]

    def group_weights(self, group: Tensor, num_groups: int,
                      point_weight: Tensor | None = None) -> Tensor:
        """(G, R) summed ``point_weight`` (default 1) of the points of each group on each row.

        ``weights @ rows`` then equals the per-group sums of the per-point values.
        """
        w = torch.ones(self.num_points, dtype=self.rows.dtype, device=self.rows.device) \
            if point_weight is None else point_weight.to(self.rows.dtype)
        r = self.rows.shape[0]
        flat = self.rows.new_zeros(num_groups * r).index_add_(0, group * r + self.index, w)
        return flat.view(num_groups, r)


@dataclass
class XMask3DOutput:
    """Everything the model predicts for one ``ViewBatch`` (B views, P visible points, Q queries).

    Text-space tensors have the text-embedding width E. Class logits index the vocabulary the
    model was called with (``class_names``) followed by one "no object" column where noted.

    Attributes:
        point_logits_3d: (P, C) logit_scale * cos(pure 3D point feature, class embedding).
        point_logits_fused: (P, C) the same for the fused 3D-2D point feature.
        point_logits_2d: (P, C) the same for the per-point 2D mask feature (uncovered points: 0).
        feats_3d: pure 3D point features (not normalised), one row per voxel.
        feats_fused: fused point features (equal to the 3D feature on uncovered points only when
            the published behaviour is selected; otherwise always from the fusion layer), one row
            per distinct (voxel, final mask) pair.
        feats_2d: 2D mask embedding of the final mask covering each point, 0 if none; one row per
            mask of the batch and a last zero row.
        point_covered: (P,) bool, the point lies in one of the final disjoint 2D masks.
        point_mask_id: (P,) int64 query index of the final mask covering the point, -1 if none.
        point_query_logits: (P, Q) raw final-layer query mask logits sampled at each point's pixel.
        binary_logits: (P,) base-vs-novel logit of the binary head (> 0 means base).
        global_feat: (B, D) per-view 3D global feature used as the diffusion condition.
        mask_logits: per decoder layer (last = final) the (B, Q, h, w) query mask logits.
        mask_embeds: per decoder layer the (B, Q, E) mask embeddings in text space.
        class_logits: per decoder layer the (B, Q, C + 1) mask class logits (last column = null).
        mask_clip_embeds: (B, Q, E) CLIP mask-token embeddings when a CLIP vision tower is loaded.
        logit_scale: () the learned temperature shared by all cosine logits.
        class_embeds: (C, E) L2-normalised class text embeddings used for the logits.
        alignment_target: which embedding the mask-level regularisation aligns 3D features with:
            ``"clip"`` (CLIP mask tokens) or ``"mask_embed"`` (detached 2D mask embeddings).
    """

    point_logits_3d: Tensor
    point_logits_fused: Tensor
    point_logits_2d: Tensor
    feats_3d: PointRows
    feats_fused: PointRows
    feats_2d: PointRows
    point_covered: Tensor
    point_mask_id: Tensor
    point_query_logits: Tensor
    binary_logits: Tensor
    global_feat: Tensor
    mask_logits: list[Tensor] = field(default_factory=list)
    mask_embeds: list[Tensor] = field(default_factory=list)
    class_logits: list[Tensor] = field(default_factory=list)
    mask_clip_embeds: Tensor | None = None
    logit_scale: Tensor | None = None
    class_embeds: Tensor | None = None
    alignment_target: str = "mask_embed"

    @property
    def point_feats_3d(self) -> Tensor:
        """(P, E) pure 3D feature of every point."""
        return self.feats_3d.points()

    @property
    def point_feats_fused(self) -> Tensor:
        """(P, E) fused feature of every point."""
        return self.feats_fused.points()

    @property
    def point_feats_2d(self) -> Tensor:
        """(P, E) 2D mask feature of every point (0 where uncovered)."""
        return self.feats_2d.points()
