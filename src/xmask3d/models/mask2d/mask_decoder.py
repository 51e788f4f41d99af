"""Masked-attention transformer decoder that turns multi-scale maps into query masks.

Follows Mask2Former (Cheng et al., CVPR 2022, ``MultiScaleMaskedTransformerDecoder``) as used by
ODISE (Xu et al., CVPR 2023) and XMask3D (method.md §2.6): learned query features and query
positions; per layer masked cross-attention to one level (cycling coarse to fine), self-attention
and an FFN, all post-norm; mask logits are the dot product of an MLP of the normalised queries with
the per-pixel mask features, predicted after the initial state and after every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmask3d.errors import ConfigError
from xmask3d.models.mask2d.position import SinePositionEncoding

__all__ = [
    "MLP",
    "CrossAttentionLayer",
    "FFNLayer",
    "MaskDecoderOutput",
    "MaskedAttentionDecoder",
    "SelfAttentionLayer",
    "attention_mask",
]


@dataclass
class MaskDecoderOutput:
    """Per-prediction outputs of the decoder (index 0 = initial queries, last = main output).

    Attributes:
        query_outputs: n_layers + 1 tensors (B, Q, hidden), the layer-normalised query states.
        mask_logits: n_layers + 1 tensors (B, Q, Hm, Wm) at the mask-feature resolution.
    """

    query_outputs: list[Tensor] = field(default_factory=list)
    mask_logits: list[Tensor] = field(default_factory=list)


class MLP(nn.Module):
    """Plain MLP with ReLU between layers (none after the last).

    Args:
        in_dim: input width.
        hidden_dim: width of the hidden layers.
        out_dim: output width.
        n_layers: number of linear layers (>= 1).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, n_layers: int) -> None:
        super().__init__()
        if n_layers < 1:
            raise ConfigError(f"MLP: n_layers must be >= 1, got {n_layers}")
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


def _xavier_matrices(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention from queries to one flattened feature level.

    Args:
        d_model: token width.
        n_heads: attention heads.
        dropout: attention-output dropout.
    """

    def __init__(self, d_model: int, n_heads: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier_matrices(self)

    def forward(
        self, tgt: Tensor, memory: Tensor, *, attn_mask: Tensor | None, pos: Tensor,
        query_pos: Tensor,
    ) -> Tensor:
        """Attend from the queries to the memory tokens.

        Args:
            tgt: (B, Q, d) query states.
            memory: (B, S, d) flattened level features.
            attn_mask: (B*heads, Q, S) bool, True = blocked, or None for full attention.
            pos: (B, S, d) memory positions (added to keys only).
            query_pos: (B, Q, d) query positions (added to queries only).

        Returns:
            (B, Q, d) updated query states.
        """
        out = self.attn(tgt + query_pos, memory + pos, memory, attn_mask=attn_mask,
                        need_weights=False)[0]
        return self.norm(tgt + self.dropout(out))


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention among the queries.

    Args:
        d_model: token width.
        n_heads: attention heads.
        dropout: attention-output dropout.
    """

    def __init__(self, d_model: int, n_heads: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier_matrices(self)

    def forward(self, tgt: Tensor, *, query_pos: Tensor) -> Tensor:
        """Let the queries attend to each other.

        Args:
            tgt: (B, Q, d) query states.
            query_pos: (B, Q, d) query positions (added to queries and keys).

        Returns:
            (B, Q, d) updated query states.
        """
        qk = tgt + query_pos
        out = self.attn(qk, qk, tgt, need_weights=False)[0]
        return self.norm(tgt + self.dropout(out))


class FFNLayer(nn.Module):
    """Post-norm ReLU feed-forward block.

    Args:
        d_model: token width.
        ffn_dim: hidden width.
        dropout: dropout inside and after the block.
    """

    def __init__(self, d_model: int, ffn_dim: int, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier_matrices(self)

    def forward(self, tgt: Tensor) -> Tensor:
        """(B, Q, d) -> (B, Q, d)."""
        out = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm(tgt + self.dropout(out))


def attention_mask(mask_logits: Tensor, size: tuple[int, int], *, n_heads: int) -> Tensor:
    """Boolean cross-attention mask from mask logits (True = blocked), no gradient.

    A pixel is blocked for a query where sigmoid(logit) < 0.5 after bilinear resizing to
    ``size``; a query whose every pixel is blocked is unblocked everywhere (no empty softmax).

    Args:
        mask_logits: (B, Q, Hm, Wm) mask logits.
        size: ``(h, w)`` of the attended level.
        n_heads: attention heads (the mask is repeated per head).

    Returns:
        (B * n_heads, Q, h * w) bool, batch-major then head, as ``nn.MultiheadAttention`` wants.
    """
    resized = F.interpolate(mask_logits.detach(), size=size, mode="bilinear", align_corners=False)
    blocked = resized.flatten(2).sigmoid() < 0.5  # (B, Q, h*w)
    blocked = blocked & ~blocked.all(dim=-1, keepdim=True)
    return blocked.repeat_interleave(n_heads, dim=0)


class MaskedAttentionDecoder(nn.Module):
    """Mask2Former masked-attention decoder with learned queries.

    Args:
        hidden_dim: query width.
        n_heads: attention heads.
        ffn_dim: hidden width of the FFN.
        n_layers: decoder layers; layer i cross-attends to level ``i % n_levels``.
        n_queries: number of learned queries Q.
        mask_dim: width of the per-pixel mask features.
        n_levels: multi-scale levels received from the pixel decoder (coarse to fine).
        in_channels: width of those levels; a 1x1 projection is added when != ``hidden_dim``.
        dropout: dropout of the attention and FFN layers.
    """

    def __init__(
        self, hidden_dim: int, n_heads: int, ffn_dim: int, n_layers: int, n_queries: int,
        mask_dim: int, *, n_levels: int = 3, in_channels: int | None = None, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if min(hidden_dim, n_heads, ffn_dim, n_queries, mask_dim, n_levels) <= 0 or n_layers < 0:
            raise ConfigError("MaskedAttentionDecoder: sizes must be positive (n_layers >= 0)")
        if hidden_dim % n_heads != 0 or hidden_dim % 4 != 0:
            raise ConfigError(f"MaskedAttentionDecoder: hidden_dim {hidden_dim} must be divisible "
                              f"by n_heads {n_heads} and by 4")
        self.n_heads, self.n_levels, self.n_layers = n_heads, n_levels, n_layers
        self.mask_dim = mask_dim
        in_channels = hidden_dim if in_channels is None else in_channels
        self.position = SinePositionEncoding(hidden_dim // 2)
        self.input_proj = nn.ModuleList(
            nn.Conv2d(in_channels, hidden_dim, 1) if in_channels != hidden_dim else nn.Identity()
            for _ in range(n_levels)
        )
        for proj in self.input_proj:
            if isinstance(proj, nn.Conv2d):
                nn.init.kaiming_uniform_(proj.weight, a=1)
                nn.init.zeros_(proj.bias)
        self.level_embed = nn.Embedding(n_levels, hidden_dim)
        self.query_feat = nn.Embedding(n_queries, hidden_dim)
        self.query_pos = nn.Embedding(n_queries, hidden_dim)
        self.cross_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, n_heads, dropout=dropout) for _ in range(n_layers))
        self.self_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, n_heads, dropout=dropout) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(
            FFNLayer(hidden_dim, ffn_dim, dropout=dropout) for _ in range(n_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def predict(self, queries: Tensor, mask_features: Tensor) -> tuple[Tensor, Tensor]:
        """Prediction heads shared by every layer.

        Args:
            queries: (B, Q, hidden) raw query states.
            mask_features: (B, mask_dim, Hm, Wm).

        Returns:
            query_output (B, Q, hidden) after the decoder norm, mask_logits (B, Q, Hm, Wm).
        """
        out = self.decoder_norm(queries)
        logits = torch.einsum("bqc,bchw->bqhw", self.mask_embed(out), mask_features)
        return out, logits

    def _flatten_levels(self, multi_scale: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: (B, h*w, hidden) memory with level embedding, and its sine position."""
        srcs, poss = [], []
        for lvl, (x, proj) in enumerate(zip(multi_scale, self.input_proj, strict=True)):
            poss.append(self.position(x).flatten(2).transpose(1, 2))
            srcs.append(proj(x).flatten(2).transpose(1, 2) + self.level_embed.weight[lvl])
        return srcs, poss

    def forward(self, multi_scale: list[Tensor], mask_features: Tensor) -> MaskDecoderOutput:
        """Decode queries layer by layer.

        Args:
            multi_scale: ``n_levels`` maps (B, in_channels, h_l, w_l), coarse to fine.
            mask_features: (B, mask_dim, Hm, Wm) per-pixel embeddings.

        Returns:
            ``MaskDecoderOutput`` with n_layers + 1 predictions (last = main output).
        """
        if len(multi_scale) != self.n_levels:
            raise ValueError(f"MaskedAttentionDecoder: multi_scale has {len(multi_scale)} maps, "
                             f"expected n_levels={self.n_levels}")
        if mask_features.dim() != 4 or mask_features.shape[1] != self.mask_dim:
            raise ValueError(f"MaskedAttentionDecoder: mask_features should be (B, {self.mask_dim},"
                             f" H, W), got {tuple(mask_features.shape)}")
        bsz = mask_features.shape[0]
        srcs, poss = self._flatten_levels(multi_scale)
        sizes = [(x.shape[-2], x.shape[-1]) for x in multi_scale]
        query_pos = self.query_pos.weight[None].expand(bsz, -1, -1)
        queries = self.query_feat.weight[None].expand(bsz, -1, -1)
        result = MaskDecoderOutput()
        q_out, logits = self.predict(queries, mask_features)
        result.query_outputs.append(q_out)
        result.mask_logits.append(logits)
        for i in range(self.n_layers):
            lvl = i % self.n_levels
            blocked = attention_mask(logits, sizes[lvl], n_heads=self.n_heads)
            queries = self.cross_layers[i](queries, srcs[lvl], attn_mask=blocked, pos=poss[lvl],
                                           query_pos=query_pos)
            queries = self.self_layers[i](queries, query_pos=query_pos)
            queries = self.ffn_layers[i](queries)
            q_out, logits = self.predict(queries, mask_features)
            result.query_outputs.append(q_out)
            result.mask_logits.append(logits)
        return result
