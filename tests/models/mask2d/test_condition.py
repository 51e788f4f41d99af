"""Tests of the gated implicit condition (context sequence + time-embedding offset)."""

from __future__ import annotations

import pytest
import torch

from xmask3d.errors import ConfigError
from xmask3d.models.mask2d.condition import ImplicitCondition

D, L, DCTX, DT = 6, 5, 4, 7


def _make(mode: str = "3d", uncond: torch.Tensor | None = None) -> ImplicitCondition:
    torch.manual_seed(0)
    return ImplicitCondition(
        D, context_len=L, context_dim=DCTX, time_dim=DT, mode=mode, uncond_context=uncond
    )


def _perturb_gates(cond: ImplicitCondition) -> None:
    with torch.no_grad():
        cond.context_gate.normal_()
        cond.time_gate.normal_()


def test_init_is_exactly_unconditional() -> None:
    u = torch.randn(L, DCTX)
    cond = _make(uncond=u)
    g = torch.randn(3, D) * 10
    out = cond(g)
    assert out.context.shape == (3, L, DCTX) and out.time_offset.shape == (3, DT)
    assert torch.equal(out.context, u.expand(3, L, DCTX))
    assert torch.equal(out.time_offset, torch.zeros(3, DT))


def test_matches_hand_computed_formula() -> None:
    u = torch.randn(1, L, DCTX)
    cond = _make(uncond=u)
    _perturb_gates(cond)
    g = torch.randn(2, D, dtype=torch.float32)
    out = cond(g)
    w, b = cond.context_proj.weight, cond.context_proj.bias
    for i in range(2):
        for pos in range(L):
            expect = u[0, pos] + torch.tanh(cond.context_gate[0, pos]) * (
                w @ g[i] + b + cond.context_pos[0, pos]
            )
            torch.testing.assert_close(out.context[i, pos], expect)
        wt, bt = cond.time_proj.weight, cond.time_proj.bias
        expect_t = torch.tanh(cond.time_gate) * (wt @ g[i] + bt + cond.time_pos[0])
        torch.testing.assert_close(out.time_offset[i], expect_t)


def test_gradients_at_init_and_after_gate_change() -> None:
    cond = _make()
    g = torch.randn(2, D, requires_grad=True)
    w_ctx, w_t = torch.randn(2, L, DCTX), torch.randn(2, DT)
    out = cond(g)
    ((out.context * w_ctx).sum() + (out.time_offset * w_t).sum()).backward()
    # tanh(0) = 0 blocks the projection and the input at init; only the gates learn first.
    assert torch.count_nonzero(g.grad) == 0
    assert torch.count_nonzero(cond.context_proj.weight.grad) == 0
    assert cond.context_gate.grad.abs().sum() > 0 and cond.time_gate.grad.abs().sum() > 0

    _perturb_gates(cond)
    cond.zero_grad()
    g.grad = None
    out = cond(g)
    ((out.context * w_ctx).sum() + (out.time_offset * w_t).sum()).backward()
    assert g.grad.abs().sum() > 0
    for p in (cond.context_proj.weight, cond.time_proj.weight, cond.context_pos, cond.time_pos):
        assert p.grad.abs().sum() > 0


def test_positional_init_statistics() -> None:
    cond = ImplicitCondition(8, context_len=77, context_dim=256, time_dim=512)
    assert abs(cond.context_pos.std().item() - 0.02) < 0.002
    assert torch.count_nonzero(cond.context_gate) == 0 and torch.count_nonzero(cond.time_gate) == 0


def test_mode_none_has_no_parameters_and_ignores_input() -> None:
    u = torch.randn(1, L, DCTX)
    cond = _make("none", u)
    assert list(cond.parameters()) == []
    out = cond(None, batch_size=4)
    assert torch.equal(out.context, u.expand(4, L, DCTX))
    assert torch.equal(out.time_offset, torch.zeros(4, DT))
    assert torch.equal(cond(torch.randn(2, 99)).context, u.expand(2, L, DCTX))
    with pytest.raises(ValueError, match="batch_size"):
        cond(None)


@pytest.mark.parametrize("mode", ["text", "image"])
def test_text_and_image_modes_compute_the_same_map(mode: str) -> None:
    a, b = _make("3d"), _make(mode)
    _perturb_gates(a)
    b.load_state_dict(a.state_dict())
    g = torch.randn(2, D)
    assert torch.equal(a(g).context, b(g).context)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ConfigError, match="mode"):
        _make("depth")
    with pytest.raises(ConfigError, match="uncond_context"):
        _make(uncond=torch.zeros(1, L + 1, DCTX))
    with pytest.raises(ConfigError, match="context_len"):
        ImplicitCondition(D, context_len=0, context_dim=DCTX, time_dim=DT)
    cond = _make()
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        cond(torch.randn(2, D + 1))
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        cond(None, batch_size=2)
