"""XMask3D: a sparse 3D UNet, a 3D-conditioned diffusion mask generator and 3D-2D mask fusion.

Follows Wang et al., "XMask3D: Cross-modal Mask Reasoning for Open Vocabulary 3D Semantic
Segmentation" (NeurIPS 2024) as described in method.md §2, with the changes of decisions.md §5.
The model only predicts; losses live in ``xmask3d.losses`` and inference scoring in
``xmask3d.eval.scoring``. Training and evaluation return the same ``XMask3DOutput``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xmask3d.data.batch import ViewBatch
from xmask3d.models.backbone3d import SparseResUNet
from xmask3d.models.fusion.fuse import MaskFeatureFusion
from xmask3d.models.fusion.mask_to_points import (
    assign_final_masks,
    cosine_logits,
    mask_feature_rows,
    query_scores,
    sample_masks_at_points,
)
from xmask3d.models.fusion.routing import mask_class_allowed
from xmask3d.models.mask2d.diffusion_features import DiffusionFeatureExtractor
from xmask3d.models.mask2d.mask_decoder import MaskedAttentionDecoder
from xmask3d.models.mask2d.mask_embed import PooledMaskEmbed
from xmask3d.models.mask2d.pixel_decoder import MultiScaleDeformablePixelDecoder
from xmask3d.models.mask2d.tap_projection import StrideGroupedProjection
from xmask3d.models.outputs import PointRows, XMask3DOutput
from xmask3d.sparse import SparseTensor, global_max_pool


@dataclass
class Masks2D:
    """What the 2D branch predicts for B views (per decoder layer, last = final)."""

    mask_logits: list[Tensor]     # (B, Q, h, w)
    mask_embeds: list[Tensor]     # (B, Q, E)
    class_logits: list[Tensor]    # (B, Q, C + 1)
    clip_embeds: Tensor | None    # (B, Q, E) CLIP mask-token embeddings


class MaskGenerator2D(nn.Module):
    """3D-to-2D mask generation: diffusion taps -> pixel decoder -> masked-attention decoder."""

    def __init__(self, *, diffusion: DiffusionFeatureExtractor,
                 tap_projection: StrideGroupedProjection,
                 pixel_decoder: MultiScaleDeformablePixelDecoder,
                 mask_decoder: MaskedAttentionDecoder, mask_embed: PooledMaskEmbed) -> None:
        super().__init__()
        self.diffusion = diffusion
        self.tap_projection = tap_projection
        self.pixel_decoder = pixel_decoder
        self.mask_decoder = mask_decoder
        self.mask_embed = mask_embed

    def forward(self, images: Tensor, condition: Tensor | None,
                class_embeds: Tensor) -> Masks2D:
        """(B, 3, H, W) images in [0, 1], (B, D) condition, (C, E) classes -> ``Masks2D``."""
        taps = self.diffusion(images, condition).features
        levels = self.tap_projection(taps, self.diffusion.input_size)
        mask_features, multi_scale = self.pixel_decoder(levels)
        dec = self.mask_decoder(multi_scale, mask_features)
        embeds = self.mask_embed.embed_layers(dec.query_outputs, dec.mask_logits, mask_features)
        logits = [self.mask_embed.classify(e, class_embeds) for e in embeds]
        return Masks2D(dec.mask_logits, embeds, logits, None)


class XMask3D(nn.Module):
    """The full model.

    Args:
        backbone3d: per-voxel features and the stride-16 bottleneck (MinkUNet34C topology).
        point_proj: Linear(backbone out -> E) to the text space.
        global_proj: Linear(bottleneck width -> D) before the per-view max pooling.
        binary_net: the base/novel network (MinkUNet18A topology).
        binary_head: per-voxel (V, C_b) -> (V, 1) logit (BN, ReLU, Linear).
        mask_generator: the 2D branch.
        fusion: 3D-2D mask feature fusion.
        condition: what conditions the diffusion UNet: "3d", "none", "text", "image".
        clip_head: optional CLIP mask-token head (a CLIP vision tower) for per-mask CLIP embeddings.
        binary_thresh: sigmoid threshold of "base" for mask-level gating at evaluation.
    """

    def __init__(self, *, backbone3d: SparseResUNet, point_proj: nn.Linear,
                 global_proj: nn.Linear, binary_net: SparseResUNet, binary_head: nn.Module,
                 mask_generator: MaskGenerator2D, fusion: MaskFeatureFusion,
                 condition: str = "3d", clip_head: nn.Module | None = None,
                 binary_thresh: float = 0.5) -> None:
        super().__init__()
        self.backbone3d, self.point_proj, self.global_proj = backbone3d, point_proj, global_proj
        self.binary_net, self.binary_head = binary_net, binary_head
        self.mask_generator, self.fusion, self.clip_head = mask_generator, fusion, clip_head
        self.condition, self.binary_thresh = condition, binary_thresh

    def forward(self, batch: ViewBatch, class_embeds: Tensor, *,
                caption_embeds: Tensor | None = None,
                is_novel_class: Tensor | None = None) -> XMask3DOutput:
        """Predict everything for a batch of views.

        Args:
            batch: B views with P visible points.
            class_embeds: (C, E) text embeddings of the vocabulary the labels index.
            caption_embeds: (B, E) caption embeddings (needed for ``condition="text"``).
            is_novel_class: (C,) bool; when given (evaluation), queries are gated to base or
                novel classes by the binary head before the final masks are chosen (method §4.1).
        """
        feats_3d, global_feat, binary, unet_feats = self._encode_3d(batch)
        cond = self._condition_vector(global_feat, caption_embeds, batch)
        masks = self.mask_generator(batch.images, cond, class_embeds)
        if self.clip_head is not None:
            with torch.no_grad():
                masks.clip_embeds = self.clip_head(batch.images, masks.mask_logits[-1])
        point_batch = batch.point_batch
        pq = sample_masks_at_points(masks.mask_logits[-1], batch.pixel_rc, point_batch,
                                    batch.image_hw)                                 # (P, Q)
        allowed = None if is_novel_class is None else self._mask_gating(
            pq, binary, point_batch, is_novel_class, batch.batch_size)
        scores = query_scores(masks.class_logits[-1], allowed=allowed)
        mask_id = assign_final_masks(pq, scores, point_batch)
        covered = mask_id >= 0
        feats_2d = mask_feature_rows(masks.mask_embeds[-1], mask_id, point_batch)
        fused = self.fusion.fuse_rows(feats_2d, feats_3d, proj_3d=(unet_feats, self.point_proj))
        scale = self.mask_generator.mask_embed.logit_scale()

        def logits(rows: PointRows) -> Tensor:      # per row, gathered to points last
            return cosine_logits(rows.rows, class_embeds, scale)[rows.index]

        return XMask3DOutput(
            point_logits_3d=logits(feats_3d), point_logits_fused=logits(fused),
            point_logits_2d=logits(feats_2d),           # the zero row of uncovered points gives 0
            feats_3d=feats_3d, feats_fused=fused, feats_2d=feats_2d,
            point_covered=covered, point_mask_id=mask_id, point_query_logits=pq,
            binary_logits=binary, global_feat=global_feat, mask_logits=masks.mask_logits,
            mask_embeds=masks.mask_embeds, class_logits=masks.class_logits,
            mask_clip_embeds=masks.clip_embeds, logit_scale=scale,
            class_embeds=class_embeds,
            alignment_target="clip" if masks.clip_embeds is not None else "mask_embed",
        )

    def encode_3d(self, batch: ViewBatch) -> tuple[Tensor, Tensor, Tensor]:
        """The 3D branch alone (also the ``--no-2d`` path of ``xmask3d segment``).

        Returns:
            (P, E) point features in text space, (B, D) per-view global features and (P,)
            binary base-vs-novel logits. ``batch.images`` is not used.
        """
        feats, global_feat, binary, _ = self._encode_3d(batch)
        return feats.points(), global_feat, binary

    def _encode_3d(self, batch: ViewBatch) -> tuple[PointRows, Tensor, Tensor, Tensor]:
        """``encode_3d`` with the point features kept per voxel (``PointRows``), and the (V, C)
        UNet features before ``point_proj``."""
        voxels = SparseTensor.from_voxels(batch.voxel_feats, batch.voxel_coords,
                                          batch_size=int(batch.point_offsets.numel() - 1))
        unet = self.backbone3d(voxels)
        feats_3d = PointRows(self.point_proj(unet.features), batch.point2voxel)   # (V, E) rows
        global_feat = global_max_pool(unet.bottleneck.replace_features(
            self.global_proj(unet.bottleneck.features)))                           # (B, D)
        binary = self.binary_head(self.binary_net(voxels).features)[batch.point2voxel, 0]
        return feats_3d, global_feat, binary, unet.features

    def _condition_vector(self, global_feat: Tensor, caption_embeds: Tensor | None,
                          batch: ViewBatch) -> Tensor | None:
        """The vector that conditions the diffusion UNet (ablation: method Table 'condition')."""
        if self.condition == "3d":
            return global_feat
        if self.condition == "none":
            return None
        if self.condition == "text":
            if caption_embeds is None:
                raise ValueError("condition='text' needs caption embeddings")
            return caption_embeds
        lat = self.mask_generator.diffusion.encode_images(batch.images)["latent_input"]
        return torch.cat([lat.mean((2, 3)), lat.std((2, 3))], dim=1)            # "image"

    def _mask_gating(self, pq: Tensor, binary: Tensor, point_batch: Tensor,
                     is_novel_class: Tensor, batch_size: int) -> Tensor:
        """(B, Q, C + 1) allowed classes per query from the mean binary score of its points."""
        q = pq.shape[1]
        member = (pq.sigmoid() >= 0.5).to(binary.dtype)                           # (P, Q)
        idx = (point_batch[:, None] * q + torch.arange(q, device=pq.device)).reshape(-1)
        prob = binary.sigmoid()[:, None].expand(-1, q).reshape(-1) * member.reshape(-1)
        total = binary.new_zeros(batch_size * q).index_add_(0, idx, prob)
        count = binary.new_zeros(batch_size * q).index_add_(0, idx, member.reshape(-1))
        mean = torch.where(count > 0, total / count.clamp(min=1), torch.ones_like(total))
        return mask_class_allowed((mean > self.binary_thresh).view(batch_size, q),
                                  is_novel_class.to(pq.device))

    def param_groups(self, *, lr_3d: float, lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups: the 3D networks at ``lr_3d``, every other trainable parameter at ``lr``."""
        three_d = [self.backbone3d, self.point_proj, self.global_proj, self.binary_net,
                   self.binary_head]
        ids = {id(p) for m in three_d for p in m.parameters()}
        p3d = [p for m in three_d for p in m.parameters() if p.requires_grad]
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": p3d, "lr": lr_3d, "weight_decay": weight_decay, "name": "3d"},
                {"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "2d"}]
