"""Normalised 2D sine positional encoding of feature maps.

Follows DETR / Mask2Former (Cheng et al., CVPR 2022, ``PositionEmbeddingSine`` with
``normalize=True``): pixel centres are normalised to (0, 2*pi) along each axis and encoded with
interleaved sin/cos at geometric frequencies; the y half comes first, then the x half.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from xmask3d.errors import ConfigError

__all__ = ["SinePositionEncoding"]


class SinePositionEncoding(nn.Module):
    """Parameter-free 2D sine encoding.

    Args:
        num_pos_feats: channels per axis; the output has ``2 * num_pos_feats`` channels (even).
        temperature: base of the geometric frequency progression.
        scale: range the normalised coordinate is stretched to.
    """

    def __init__(
        self, num_pos_feats: int, *, temperature: float = 10000.0, scale: float = 2 * math.pi
    ) -> None:
        super().__init__()
        if num_pos_feats <= 0 or num_pos_feats % 2 != 0:
            raise ConfigError(f"SinePositionEncoding: num_pos_feats must be even > 0, "
                              f"got {num_pos_feats}")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = scale

    def _encode_axis(self, coords: Tensor) -> Tensor:
        """(n,) normalised coordinates -> (n, num_pos_feats) interleaved sin/cos."""
        idx = torch.arange(self.num_pos_feats, dtype=coords.dtype, device=coords.device)
        pair = torch.div(idx, 2, rounding_mode="floor")  # channels 2k and 2k+1 share a frequency
        dim_t = self.temperature ** (2 * pair / self.num_pos_feats)
        phase = coords[:, None] / dim_t  # (n, F)
        return torch.stack([phase[:, 0::2].sin(), phase[:, 1::2].cos()], dim=-1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """Encode the positions of a feature map (its values are not used).

        Args:
            x: (B, C, H, W) feature map (only shape, dtype and device are read).

        Returns:
            (B, 2 * num_pos_feats, H, W) positional encoding, same for every batch element.
        """
        bsz, _, h, w = x.shape
        dtype = x.dtype if x.is_floating_point() else torch.float32
        ys = (torch.arange(h, dtype=dtype, device=x.device) + 0.5) / h * self.scale
        xs = (torch.arange(w, dtype=dtype, device=x.device) + 0.5) / w * self.scale
        pos_y = self._encode_axis(ys)[:, None, :].expand(h, w, self.num_pos_feats)
        pos_x = self._encode_axis(xs)[None, :, :].expand(h, w, self.num_pos_feats)
        pos = torch.cat([pos_y, pos_x], dim=-1).permute(2, 0, 1)  # (2F, H, W)
        return pos[None].expand(bsz, -1, -1, -1)
