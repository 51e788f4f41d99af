"""Implicit condition: a global embedding turned into a UNet context sequence and time offset.

Follows XMask3D (NeurIPS 2024) §3.2 and ODISE's ``LdmImplicitCaptionerExtractor`` (method.md §2.3):
c = u + tanh(alpha_c) * (W g + b + P), emb_offset = tanh(alpha_t) * (W_t g + b_t + P_t), with both
gates initialised to zero so that at initialisation the UNet sees exactly its unconditional input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from xmask3d.errors import ConfigError

__all__ = ["CONDITION_MODES", "ConditionOutput", "ImplicitCondition"]

# "3d", "text" and "image" compute the same thing from a (B, D) vector; the name says what the
# vector is (3D global feature, text embedding, 2D image embedding). "none" is the ablation.
CONDITION_MODES = ("3d", "text", "image", "none")


@dataclass
class ConditionOutput:
    """What the UNet receives from the condition.

    Attributes:
        context: (B, L, Dctx) cross-attention context (``encoder_hidden_states``).
        time_offset: (B, Dtime) added to the UNet time embedding.
    """

    context: Tensor
    time_offset: Tensor


class ImplicitCondition(nn.Module):
    """Maps a per-sample condition vector to a gated context sequence and time-embedding offset.

    Args:
        cond_dim: D, the width of the condition vector g.
        context_len: L, the length of the context sequence (77 for SD's CLIP text encoder).
        context_dim: Dctx, the UNet's ``cross_attention_dim``.
        time_dim: Dtime, the width of the UNet time embedding.
        mode: one of ``CONDITION_MODES``; ``"none"`` ignores the vector and has no parameters.
        uncond_context: (1, L, Dctx) or (L, Dctx) unconditional context u (for SD the CLIP text
            encoder output of ""); zeros when ``None``. Stored as a frozen buffer.
        pos_std: std of the truncated-normal init of the positional terms P and P_t.
    """

    def __init__(
        self,
        cond_dim: int,
        *,
        context_len: int,
        context_dim: int,
        time_dim: int,
        mode: str = "3d",
        uncond_context: Tensor | None = None,
        pos_std: float = 0.02,
    ) -> None:
        super().__init__()
        if mode not in CONDITION_MODES:
            raise ConfigError(
                f"ImplicitCondition: mode={mode!r}, expected one of {CONDITION_MODES}"
            )
        for name, value in (
            ("cond_dim", cond_dim),
            ("context_len", context_len),
            ("context_dim", context_dim),
            ("time_dim", time_dim),
        ):
            if value <= 0:
                raise ConfigError(f"ImplicitCondition: {name}={value} must be positive")
        self.mode = mode
        self.cond_dim = cond_dim
        self.time_dim = time_dim
        self.register_buffer(
            "uncond_context", _check_uncond(uncond_context, context_len, context_dim)
        )
        if mode == "none":
            return
        self.context_proj = nn.Linear(cond_dim, context_dim)
        self.context_pos = nn.Parameter(torch.empty(1, context_len, context_dim))
        self.context_gate = nn.Parameter(torch.zeros(1, context_len, context_dim))
        self.time_proj = nn.Linear(cond_dim, time_dim)
        self.time_pos = nn.Parameter(torch.empty(1, time_dim))
        self.time_gate = nn.Parameter(torch.zeros(time_dim))
        nn.init.trunc_normal_(self.context_pos, std=pos_std)
        nn.init.trunc_normal_(self.time_pos, std=pos_std)

    @property
    def context_len(self) -> int:
        """L, the length of the context sequence."""
        return self.uncond_context.shape[1]

    @property
    def context_dim(self) -> int:
        """Dctx, the width of the context tokens."""
        return self.uncond_context.shape[2]

    def forward(self, cond: Tensor | None, *, batch_size: int | None = None) -> ConditionOutput:
        """Compute the context and the time offset.

        Args:
            cond: (B, D) condition vectors; may be ``None`` only in mode ``"none"``.
            batch_size: B when ``cond`` is ``None``.

        Returns:
            ``ConditionOutput`` with context (B, L, Dctx) and time_offset (B, Dtime).
        """
        if self.mode == "none":
            b = cond.shape[0] if cond is not None else batch_size
            if b is None:
                raise ValueError("ImplicitCondition: give cond or batch_size in mode 'none'")
            u = self.uncond_context.expand(b, -1, -1)
            return ConditionOutput(u, u.new_zeros(b, self.time_dim))
        if cond is None or cond.dim() != 2 or cond.shape[1] != self.cond_dim:
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(
                f"ImplicitCondition: cond must have shape (B, {self.cond_dim}), got {got}"
            )
        if batch_size is not None and batch_size != cond.shape[0]:
            raise ValueError(
                f"ImplicitCondition: cond has {cond.shape[0]} rows, expected {batch_size}"
            )
        ctx = self.context_proj(cond).unsqueeze(1) + self.context_pos  # (B, L, Dctx)
        context = self.uncond_context + torch.tanh(self.context_gate) * ctx
        temb = self.time_proj(cond) + self.time_pos  # (B, Dtime)
        return ConditionOutput(context, torch.tanh(self.time_gate) * temb)


def _check_uncond(uncond: Tensor | None, length: int, dim: int) -> Tensor:
    """Validate and reshape the unconditional context to (1, L, Dctx)."""
    if uncond is None:
        return torch.zeros(1, length, dim)
    u = uncond.detach().float()
    if u.dim() == 2:
        u = u.unsqueeze(0)
    if tuple(u.shape) != (1, length, dim):
        raise ConfigError(
            f"ImplicitCondition: uncond_context has shape {tuple(uncond.shape)}, "
            f"expected (1, {length}, {dim}) or ({length}, {dim})"
        )
    return u.clone()
