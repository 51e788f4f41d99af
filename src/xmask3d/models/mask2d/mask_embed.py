"""Mask embeddings in text space from hard-mask pooled features, and cosine mask classification.

Follows ODISE (Xu et al., CVPR 2023, ``PooledMaskEmbed`` and ``CategoryEmbed``) on top of
Mask2Former (Cheng et al., CVPR 2022), as used by XMask3D (method.md §2.7-§2.8): average-pool
the per-pixel mask features inside each query's hard mask, project, add the decoder query output,
map to the text-embedding space with an MLP, and classify by a learnable-temperature cosine
against class text embeddings plus a learned "no object" embedding. Unlike the published code
(method.md §8.27) the pooling is computed once per layer.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmask3d.errors import ConfigError
from xmask3d.models.mask2d.mask_decoder import MLP

__all__ = ["PooledMaskEmbed", "hard_mask_pool"]


def hard_mask_pool(features: Tensor, mask_logits: Tensor) -> Tensor:
    """Average features inside each hard mask (sigmoid > 0.5, no gradient through the mask).

    Args:
        features: (B, C, H, W) per-pixel features.
        mask_logits: (B, Q, h, w) mask logits; resized bilinearly to (H, W) when they differ.

    Returns:
        (B, Q, C) mean feature of the masked pixels; all zeros for an empty mask.
    """
    if features.dim() != 4 or mask_logits.dim() != 4 or features.shape[0] != mask_logits.shape[0]:
        raise ValueError(f"hard_mask_pool: need features (B, C, H, W) and mask_logits (B, Q, h, w),"
                         f" got {tuple(features.shape)} and {tuple(mask_logits.shape)}")
    logits = mask_logits.detach()
    if logits.shape[-2:] != features.shape[-2:]:
        logits = F.interpolate(logits, size=features.shape[-2:], mode="bilinear",
                               align_corners=False)
    hard = (logits.sigmoid() > 0.5).to(features.dtype)  # (B, Q, H, W)
    area = hard.sum(dim=(-2, -1)).clamp(min=1.0)  # (B, Q); empty masks divide 0 by 1
    return torch.einsum("bchw,bqhw->bqc", features, hard) / area[..., None]


class PooledMaskEmbed(nn.Module):
    """Per-query mask embedding in text space and its cosine classifier.

    Args:
        hidden_dim: width of the decoder query outputs.
        mask_dim: width of the per-pixel mask features.
        embed_dim: width of the text-embedding space (E).
        logit_scale_init: initial log of the cosine temperature (log(1/0.07) gives 14.29).
        logit_scale_max: upper clamp of the temperature after ``exp``.
    """

    def __init__(
        self, hidden_dim: int, mask_dim: int, embed_dim: int, *,
        logit_scale_init: float = math.log(1 / 0.07), logit_scale_max: float = 100.0,
    ) -> None:
        super().__init__()
        if min(hidden_dim, mask_dim, embed_dim) <= 0 or logit_scale_max <= 0:
            raise ConfigError("PooledMaskEmbed: dims and logit_scale_max must be positive")
        self.embed_dim = embed_dim
        self.pool_proj = nn.Sequential(nn.LayerNorm(mask_dim), nn.Linear(mask_dim, hidden_dim))
        self.embed = nn.Sequential(nn.LayerNorm(hidden_dim),
                                   MLP(hidden_dim, hidden_dim, embed_dim, 3))
        self.log_logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))
        self.logit_scale_max = float(logit_scale_max)
        self.null_embed = nn.Parameter(torch.randn(1, embed_dim) / math.sqrt(embed_dim))

    def logit_scale(self) -> Tensor:
        """() the temperature ``exp(log_logit_scale)`` clamped at ``logit_scale_max``."""
        return self.log_logit_scale.exp().clamp(max=self.logit_scale_max)

    @torch.no_grad()
    def set_null_init(self, vec: Tensor) -> None:
        """Set the "no object" embedding (e.g. to the text embedding of the empty string).

        Args:
            vec: (E,) or (1, E) embedding.
        """
        if vec.numel() != self.embed_dim or vec.dim() > 2:
            raise ValueError(f"set_null_init: expected ({self.embed_dim},) or (1, "
                             f"{self.embed_dim}), got {tuple(vec.shape)}")
        self.null_embed.copy_(vec.reshape(1, -1).to(self.null_embed))

    def forward(self, query_output: Tensor, mask_features: Tensor, mask_logits: Tensor) -> Tensor:
        """Embed every query's mask.

        Args:
            query_output: (B, Q, hidden) decoder query outputs (after the decoder norm).
            mask_features: (B, mask_dim, H, W) per-pixel mask features.
            mask_logits: (B, Q, h, w) mask logits of the same prediction.

        Returns:
            (B, Q, E) mask embeddings (not normalised).
        """
        pooled = hard_mask_pool(mask_features, mask_logits)  # (B, Q, mask_dim)
        if pooled.shape[:2] != query_output.shape[:2]:
            raise ValueError(f"PooledMaskEmbed: query_output {tuple(query_output.shape)} and "
                             f"mask_logits {tuple(mask_logits.shape)} disagree on (B, Q)")
        return self.embed(self.pool_proj(pooled) + query_output)

    def embed_layers(
        self, query_outputs: list[Tensor], mask_logits: list[Tensor], mask_features: Tensor
    ) -> list[Tensor]:
        """``forward`` for every decoder prediction (one shared module for all layers).

        Args:
            query_outputs: per prediction (B, Q, hidden).
            mask_logits: per prediction (B, Q, h, w).
            mask_features: (B, mask_dim, H, W).

        Returns:
            Per prediction (B, Q, E) mask embeddings.
        """
        return [self(q, mask_features, m) for q, m in zip(query_outputs, mask_logits, strict=True)]

    def classify(self, mask_embed: Tensor, class_embeds: Tensor) -> Tensor:
        """Cosine logits against the classes and the "no object" embedding.

        Args:
            mask_embed: (B, Q, E) mask embeddings.
            class_embeds: (C, E) class text embeddings (any norm).

        Returns:
            (B, Q, C + 1) ``logit_scale * cos``; the last column is "no object".
        """
        if class_embeds.dim() != 2 or class_embeds.shape[1] != self.embed_dim:
            raise ValueError(f"classify: class_embeds should be (C, {self.embed_dim}), "
                             f"got {tuple(class_embeds.shape)}")
        if mask_embed.shape[-1] != self.embed_dim:
            raise ValueError(f"classify: mask_embed last dim {mask_embed.shape[-1]} != "
                             f"{self.embed_dim}")
        text = torch.cat([class_embeds, self.null_embed.to(class_embeds.dtype)], dim=0)
        cos = F.normalize(mask_embed, dim=-1) @ F.normalize(text, dim=-1).T
        return self.logit_scale() * cos
