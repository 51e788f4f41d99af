"""Output containers of the XMask3D model (the same type in training and evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class XMask3DOutput:
    """Everything the model predicts for one ``ViewBatch`` (B views, P visible points, Q queries).

    Text-space tensors have the text-embedding width E. Class logits index the vocabulary the
    model was called with (``class_names``) followed by one "no object" column where noted.

    Attributes:
        point_logits_3d: (P, C) logit_scale * cos(pure 3D point feature, class embedding).
        point_logits_fused: (P, C) the same for the fused 3D-2D point feature.
        point_logits_2d: (P, C) the same for the per-point 2D mask feature (uncovered points: 0).
        point_feats_3d: (P, E) pure 3D point features (not normalised).
        point_feats_fused: (P, E) fused point features (equal to the 3D feature on uncovered points
            only when the published behaviour is selected; otherwise always from the fusion layer).
        point_feats_2d: (P, E) 2D mask embedding of the final mask covering each point, 0 if none.
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
    point_feats_3d: Tensor
    point_feats_fused: Tensor
    point_feats_2d: Tensor
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
