"""Mask2Former pixel decoder: deformable-attention encoder on the coarse levels plus an FPN.

Follows Mask2Former (Cheng et al., CVPR 2022, ``MSDeformAttnPixelDecoder``), its encoder from
Deformable DETR (Zhu et al., ICLR 2021), as configured by ODISE (Xu et al., CVPR 2023) and
XMask3D (method.md §2.5): input projections (1x1 conv + GroupNorm) of the transformer levels,
sine position + learned level embeddings, post-norm deformable encoder layers, FPN lateral/output
convolutions for the finer levels down to ``common_stride``, and a 1x1 ``mask_features`` conv.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xmask3d.errors import ConfigError
from xmask3d.models.mask2d.msdeform_attn import MSDeformAttn
from xmask3d.models.mask2d.position import SinePositionEncoding

__all__ = [
    "DeformableEncoderLayer",
    "MultiScaleDeformablePixelDecoder",
    "encoder_reference_points",
]

logger = logging.getLogger(__name__)


def encoder_reference_points(
    shapes: list[tuple[int, int]], *, device: torch.device | None = None, dtype: torch.dtype
) -> Tensor:
    """Normalised pixel-centre (x, y) of every token of every level, levels concatenated.

    Args:
        shapes: ``(h, w)`` per level.
        device: output device.
        dtype: output dtype.

    Returns:
        (S, 2) with S = sum of h*w; token (i, j) of an (h, w) level is ``((j+.5)/w, (i+.5)/h)``.
    """
    refs = []
    for h, w in shapes:
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        refs.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1))
    return torch.cat(refs, dim=0)


class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer: deformable self-attention, then a ReLU FFN.

    Args:
        d_model: token width.
        ffn_dim: hidden width of the FFN.
        n_levels: feature levels attended to.
        n_heads: attention heads.
        n_points: sampling points per head and level.
        dropout: dropout after attention and inside the FFN.
    """

    def __init__(
        self, d_model: int, ffn_dim: int, *, n_levels: int, n_heads: int, n_points: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        for lin in (self.linear1, self.linear2):
            nn.init.xavier_uniform_(lin.weight)

    def forward(
        self, src: Tensor, pos: Tensor, reference_points: Tensor, shapes: list[tuple[int, int]]
    ) -> Tensor:
        """Update every token of every level.

        Args:
            src: (B, S, d_model) flattened multi-level tokens.
            pos: (B, S, d_model) position + level embedding.
            reference_points: (B, S, L, 2) normalised reference of each token on each level.
            shapes: ``(h, w)`` per level.

        Returns:
            (B, S, d_model) updated tokens.
        """
        attn = self.self_attn(src + pos, reference_points, src, shapes)
        src = self.norm1(src + self.dropout(attn))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout(ffn))


def _conv_gn(c_in: int, c_out: int, kernel: int, *, groups: int, relu: bool) -> nn.Sequential:
    """Bias-free conv + GroupNorm (+ ReLU), conv initialised like detectron2's c2_xavier_fill."""
    conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False)
    nn.init.kaiming_uniform_(conv.weight, a=1)
    layers: list[nn.Module] = [conv, nn.GroupNorm(groups, c_out)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MultiScaleDeformablePixelDecoder(nn.Module):
    """Multi-scale deformable-attention pixel decoder (Mask2Former).

    Args:
        in_channels: channels of each backbone feature, by name.
        in_strides: stride of each backbone feature, by name (same keys as ``in_channels``).
        transformer_in_features: names of the levels refined by the deformable encoder.
        conv_dim: width of every internal map and of the multi-scale outputs.
        mask_dim: width of ``mask_features``.
        n_heads: deformable attention heads.
        ffn_dim: hidden width of the encoder FFN.
        enc_layers: number of encoder layers (0 keeps the projected inputs).
        common_stride: stride of ``mask_features``; features with stride in
            [common_stride, finest transformer stride) form the FPN levels.
        n_points: sampling points per head and level.
        norm_groups: GroupNorm groups (divides ``conv_dim``).
        n_multiscale: how many maps (coarse to fine) are returned for the mask decoder.
        dropout: encoder dropout.
    """

    def __init__(
        self, in_channels: dict[str, int], in_strides: dict[str, int], *,
        transformer_in_features: list[str], conv_dim: int, mask_dim: int, n_heads: int,
        ffn_dim: int, enc_layers: int, common_stride: int, n_points: int = 4,
        norm_groups: int = 32, n_multiscale: int = 3, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels = dict(in_channels)
        tr_names, fpn_names = self._plan_levels(in_channels, in_strides,
                                                transformer_in_features, common_stride)
        if conv_dim % norm_groups != 0:
            raise ConfigError(f"pixel decoder: conv_dim {conv_dim} not divisible by "
                              f"norm_groups {norm_groups}")
        self.transformer_in_features, self.fpn_features = tr_names, fpn_names
        self.num_multiscale = min(n_multiscale, len(tr_names) + len(fpn_names))
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[n], conv_dim, 1),
                          nn.GroupNorm(norm_groups, conv_dim))
            for n in tr_names
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        self.position = SinePositionEncoding(conv_dim // 2)
        self.level_embed = nn.Parameter(torch.empty(len(tr_names), conv_dim).normal_())
        self.layers = nn.ModuleList(
            DeformableEncoderLayer(conv_dim, ffn_dim, n_levels=len(tr_names), n_heads=n_heads,
                                   n_points=n_points, dropout=dropout)
            for _ in range(enc_layers)
        )
        self.lateral_convs = nn.ModuleList(
            _conv_gn(in_channels[n], conv_dim, 1, groups=norm_groups, relu=False) for n in fpn_names
        )
        self.output_convs = nn.ModuleList(
            _conv_gn(conv_dim, conv_dim, 3, groups=norm_groups, relu=True) for _ in fpn_names
        )
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

    @staticmethod
    def _plan_levels(
        in_channels: dict[str, int], in_strides: dict[str, int],
        transformer_in_features: list[str], common_stride: int,
    ) -> tuple[list[str], list[str]]:
        """Order transformer levels and pick FPN levels, both coarse to fine."""
        if set(in_channels) != set(in_strides):
            raise ConfigError(f"pixel decoder: in_channels keys {sorted(in_channels)} differ from "
                              f"in_strides keys {sorted(in_strides)}")
        missing = [n for n in transformer_in_features if n not in in_strides]
        if not transformer_in_features or missing:
            raise ConfigError(f"pixel decoder: transformer_in_features {transformer_in_features} "
                              f"must be a non-empty subset of {sorted(in_strides)}")
        tr = sorted(transformer_in_features, key=lambda n: -in_strides[n])
        finest = in_strides[tr[-1]]
        fpn = sorted((n for n, s in in_strides.items() if common_stride <= s < finest),
                     key=lambda n: -in_strides[n])
        out_stride = in_strides[fpn[-1]] if fpn else finest
        if out_stride != common_stride:
            raise ConfigError(f"pixel decoder: common_stride {common_stride} but the finest "
                              f"usable feature has stride {out_stride} (strides {in_strides})")
        unused = sorted(set(in_strides) - set(tr) - set(fpn))
        if unused:
            logger.info("pixel decoder ignores features %s", unused)
        return tr, fpn

    def _check(self, features: dict[str, Tensor]) -> None:
        for name in self.transformer_in_features + self.fpn_features:
            if name not in features:
                raise ValueError(f"pixel decoder: features lack {name!r} (got {sorted(features)})")
            x = features[name]
            if x.dim() != 4 or x.shape[1] != self.in_channels[name]:
                raise ValueError(f"pixel decoder: features[{name!r}] should be (B, "
                                 f"{self.in_channels[name]}, H, W), got {tuple(x.shape)}")

    def _encode(self, features: dict[str, Tensor]) -> list[Tensor]:
        """Project the transformer levels and run the deformable encoder; coarse to fine."""
        srcs = [proj(features[n]) for n, proj in zip(self.transformer_in_features,
                                                      self.input_proj, strict=True)]
        shapes = [(x.shape[-2], x.shape[-1]) for x in srcs]
        bsz, dim = srcs[0].shape[:2]
        tokens = torch.cat([x.flatten(2).transpose(1, 2) for x in srcs], dim=1)  # (B, S, C)
        pos = torch.cat([
            self.position(x).flatten(2).transpose(1, 2) + self.level_embed[lvl]
            for lvl, x in enumerate(srcs)
        ], dim=1)
        ref = encoder_reference_points(shapes, device=tokens.device, dtype=tokens.dtype)
        ref = ref[None, :, None, :].expand(bsz, -1, len(shapes), -1)  # (B, S, L, 2)
        for layer in self.layers:
            tokens = layer(tokens, pos, ref, shapes)
        sizes = [h * w for h, w in shapes]
        return [t.transpose(1, 2).reshape(bsz, dim, h, w)
                for t, (h, w) in zip(tokens.split(sizes, dim=1), shapes, strict=True)]

    def forward(self, features: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Decode backbone features into per-pixel mask features and multi-scale maps.

        Args:
            features: name -> (B, C_name, H_name, W_name) backbone maps (any spatial sizes,
                odd ones included; each FPN level is upsampled bilinearly to the next).

        Returns:
            mask_features: (B, mask_dim, H_cs, W_cs) at the ``common_stride`` level's size.
            multi_scale: ``num_multiscale`` maps (B, conv_dim, h, w), coarse to fine.
        """
        self._check(features)
        outs = self._encode(features)
        for name, lateral, output in zip(self.fpn_features, self.lateral_convs,
                                         self.output_convs, strict=True):
            lat = lateral(features[name])
            up = F.interpolate(outs[-1], size=lat.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(output(lat + up))
        return self.mask_features(outs[-1]), outs[: self.num_multiscale]

