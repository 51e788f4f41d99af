"""Frozen CLIP ViT that embeds each predicted 2D mask through its own mask token.

Follows method.md §2.9 (the MaskCLIP head of XMask3D, from ODISE).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from xmask3d.errors import ConfigError

CLIP_PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
_MASKABLE_ATTENTION = ("eager", "sdpa")


def _split_clip(
    vision_model: nn.Module, projection: nn.Module | None
) -> tuple[nn.Module, nn.Module]:
    """Return (vision tower, projection) from a transformers CLIP vision model."""
    from transformers import CLIPModel, CLIPVisionModel, CLIPVisionModelWithProjection

    if isinstance(vision_model, (CLIPVisionModelWithProjection, CLIPModel)):
        if projection is not None:
            raise ConfigError("projection: the CLIP model already has visual_projection")
        return vision_model.vision_model, vision_model.visual_projection
    if isinstance(vision_model, CLIPVisionModel):
        return vision_model, projection if projection is not None else nn.Identity()
    raise ConfigError(
        "vision_model: expected a transformers CLIPVisionModelWithProjection, CLIPVisionModel "
        f"or CLIPModel, got {type(vision_model).__name__}"
    )


class CLIPMaskTokenHead(nn.Module):
    """Embed Q soft masks per image with a frozen CLIP ViT (no gradient, nothing trainable).

    Q extra tokens, each initialised as the CLS token after the pre-layernorm, are prepended;
    each attends to CLS and to the patches its mask covers, and nothing attends to them, so
    the image tokens run exactly as in plain CLIP. Their outputs go through the post-layernorm
    and the visual projection.

    Args:
        vision_model: a transformers ``CLIPVisionModelWithProjection``, ``CLIPModel`` or
            ``CLIPVisionModel`` (then ``projection`` maps hidden -> joint space). It is frozen
            in place and kept in eval mode.
        projection: the visual projection for a bare ``CLIPVisionModel``; identity if ``None``.
        image_size: side of the square CLIP input; must match the model's position grid
            (``None`` = the model's ``config.image_size``).
        mask_threshold: a patch belongs to a mask when the max of sigmoid(mask) over the
            patch is at least this.
        pixel_mean: per-channel mean of the CLIP normalisation (images in [0, 1]).
        pixel_std: per-channel std of the CLIP normalisation.
    """

    def __init__(
        self,
        vision_model: nn.Module,
        *,
        projection: nn.Module | None = None,
        image_size: int | None = None,
        mask_threshold: float = 0.5,
        pixel_mean: Sequence[float] = CLIP_PIXEL_MEAN,
        pixel_std: Sequence[float] = CLIP_PIXEL_STD,
    ) -> None:
        super().__init__()
        tower, proj = _split_clip(vision_model, projection)
        config = tower.config
        attn = getattr(config, "_attn_implementation", None) or "eager"
        if attn not in _MASKABLE_ATTENTION:
            raise ConfigError(
                f"CLIP attention implementation {attn!r} cannot take an arbitrary additive "
                f"mask; load the model with attn_implementation in {_MASKABLE_ATTENTION}"
            )
        if not isinstance(config.image_size, int) or not isinstance(config.patch_size, int):
            raise ConfigError("CLIP config: image_size and patch_size must be integers")
        self.image_size = config.image_size if image_size is None else int(image_size)
        if self.image_size != config.image_size:
            raise ConfigError(
                f"image_size={self.image_size} does not match the CLIP model's "
                f"config.image_size={config.image_size} (its position embeddings)"
            )
        self.patch_size = config.patch_size
        self.grid = self.image_size // self.patch_size
        self.mask_threshold = float(mask_threshold)
        self.tower = tower.eval().requires_grad_(False)
        self.projection = proj.eval().requires_grad_(False)
        mean = torch.tensor(pixel_mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(pixel_std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        layer_params = inspect.signature(tower.encoder.layers[0].forward).parameters
        # transformers 4.x layers take a separate (unused here) causal mask argument.
        self._needs_causal_arg = "causal_attention_mask" in layer_params

    def train(self, mode: bool = True) -> CLIPMaskTokenHead:
        """Keep the frozen CLIP in eval mode whatever the parent module does."""
        super().train(mode)
        self.tower.eval()
        self.projection.eval()
        return self

    @property
    def embed_dim(self) -> int:
        """Size E of the output embeddings."""
        out = getattr(self.projection, "out_features", None)
        return int(out) if out is not None else int(self.tower.config.hidden_size)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize images to the CLIP input size and apply the CLIP normalisation.

        Args:
            images: (B, 3, H, W) in [0, 1].

        Returns:
            (B, 3, S, S) normalised pixels, S = ``image_size``.
        """
        if images.dim() != 4 or images.shape[1] != self.pixel_mean.shape[1]:
            raise ConfigError(f"images: expected (B, 3, H, W), got {tuple(images.shape)}")
        size = (self.image_size, self.image_size)
        if images.shape[-2:] != size:
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return (images - self.pixel_mean) / self.pixel_std

    def patch_masks(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """Binary patch masks from mask logits.

        Resize the logits bilinearly to S x S, apply a sigmoid, max-pool each patch and keep
        patches with value >= ``mask_threshold``.

        Args:
            mask_logits: (B, Q, h, w) mask logits.

        Returns:
            (B, Q, G*G) bool, G = S // patch_size, patches in row-major order.
        """
        if mask_logits.dim() != 4:
            raise ConfigError(f"mask_logits: expected (B, Q, h, w), got {tuple(mask_logits.shape)}")
        size = (self.image_size, self.image_size)
        masks = mask_logits.float()
        if masks.shape[-2:] != size:
            masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        pooled = F.max_pool2d(masks.sigmoid(), kernel_size=self.patch_size, stride=self.patch_size)
        return (pooled >= self.mask_threshold).flatten(2)

    def attention_bias(self, patch_masks: torch.Tensor, *, dtype: torch.dtype) -> torch.Tensor:
        """Additive attention mask over [Q mask tokens, CLS, P patches].

        Every column of a mask token is blocked (also its own), so no token reads a mask
        token. A mask-token row allows CLS and its own patches; image rows allow all image
        tokens. Each row allows CLS, so no row is fully blocked.

        Args:
            patch_masks: (B, Q, P) bool.
            dtype: dtype of the attention logits.

        Returns:
            (B, 1, L, L) with 0 where allowed and the dtype's minimum where blocked,
            L = Q + 1 + P.
        """
        batch, queries, patches = patch_masks.shape
        length = queries + 1 + patches
        allowed = torch.zeros(batch, length, length, dtype=torch.bool, device=patch_masks.device)
        allowed[:, queries:, queries:] = True
        allowed[:, :queries, queries] = True
        allowed[:, :queries, queries + 1 :] = patch_masks
        bias = torch.zeros(allowed.shape, dtype=dtype, device=patch_masks.device)
        bias.masked_fill_(~allowed, torch.finfo(dtype).min)
        return bias.unsqueeze(1)

    def encode_tokens(self, pixels: torch.Tensor, patch_masks: torch.Tensor) -> torch.Tensor:
        """Run the CLIP encoder on [mask tokens, CLS, patches].

        Args:
            pixels: (B, 3, S, S) normalised pixels (see :meth:`preprocess`).
            patch_masks: (B, Q, G*G) bool.

        Returns:
            (B, Q + 1 + G*G, D) last hidden states, before the post-layernorm.
        """
        if patch_masks.shape[0] != pixels.shape[0] or patch_masks.shape[2] != self.grid**2:
            raise ConfigError(
                f"patch_masks {tuple(patch_masks.shape)} do not fit pixels {tuple(pixels.shape)} "
                f"(need batch {pixels.shape[0]} and {self.grid**2} patches)"
            )
        weight = self.tower.embeddings.patch_embedding.weight
        image_tokens = self.tower.pre_layrnorm(self.tower.embeddings(pixels.to(weight.dtype)))
        queries = patch_masks.shape[1]
        mask_tokens = image_tokens[:, :1].expand(-1, queries, -1)
        hidden = torch.cat([mask_tokens, image_tokens], dim=1)
        bias = self.attention_bias(patch_masks, dtype=hidden.dtype)
        extra = {"causal_attention_mask": None} if self._needs_causal_arg else {}
        for layer in self.tower.encoder.layers:
            hidden = layer(hidden, bias, **extra)
            if isinstance(hidden, tuple):
                hidden = hidden[0]
        return hidden

    @torch.no_grad()
    def forward(self, images: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """CLIP embedding of every mask.

        Args:
            images: (B, 3, H, W) views in [0, 1].
            mask_logits: (B, Q, h, w) mask logits (any resolution).

        Returns:
            (B, Q, E) unnormalised mask embeddings in the CLIP joint space.
        """
        if images.shape[0] != mask_logits.shape[0]:
            raise ConfigError(
                f"images batch {images.shape[0]} != mask_logits batch {mask_logits.shape[0]}"
            )
        hidden = self.encode_tokens(self.preprocess(images), self.patch_masks(mask_logits))
        queries = mask_logits.shape[1]
        return self.projection(self.tower.post_layernorm(hidden[:, :queries])).float()
