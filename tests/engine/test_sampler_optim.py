"""Resumable sharded batch sampler and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import math

import pytest
import torch

from xmask3d.engine.optim import WarmupCosine, build_optimizer, build_scheduler
from xmask3d.engine.sampler import EpochBatchSampler
from xmask3d.errors import ConfigError


def test_ranks_get_disjoint_shares_of_one_permutation():
    a = EpochBatchSampler(11, 2, rank=0, world_size=2, seed=5)
    b = EpochBatchSampler(11, 2, rank=1, world_size=2, seed=5)
    assert len(a) == len(b) == 2          # 5 items per rank -> 2 full batches
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(5)).tolist()
    assert a.epoch_indices() == perm[:10][0::2] and b.epoch_indices() == perm[:10][1::2]
    got_a, got_b = [i for x in a for i in x], [i for x in b for i in x]
    assert not set(got_a) & set(got_b) and len(got_a) == len(got_b) == 4


def test_epoch_order_is_reproducible_and_resumable():
    s = EpochBatchSampler(20, 3, seed=1)
    s.set_epoch(4)
    full = list(s)
    s.set_epoch(4, start=2)
    assert list(s) == full[2:]
    s.set_epoch(5)
    assert list(s) != full
    s.set_epoch(4)
    assert list(s) == full
    with pytest.raises(ValueError):
        s.set_epoch(4, start=len(s) + 1)


def test_too_few_items_is_a_clear_error():
    with pytest.raises(ConfigError, match="fewer than train.batch_size"):
        EpochBatchSampler(3, 2, rank=0, world_size=2)


def test_warmup_cosine_values():
    f = WarmupCosine(10, warmup_steps=2)
    assert f(0) == pytest.approx(0.5) and f(1) == pytest.approx(1.0)
    assert f(2) == pytest.approx(1.0)
    assert f(6) == pytest.approx(0.5)
    assert f(10) == pytest.approx(0.0) and f(12) == pytest.approx(0.0)
    g = WarmupCosine(8)       # the published schedule: no warm-up
    assert g(0) == 1.0 and g(2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_two_groups_follow_the_schedule():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    opt = build_optimizer([{"params": [a], "lr": 1e-3, "weight_decay": 0.01},
                           {"params": [b], "lr": 1e-4, "weight_decay": 0.01},
                           {"params": [], "lr": 5.0, "weight_decay": 0.0}])
    assert len(opt.param_groups) == 2          # empty group dropped
    sched = build_scheduler(opt, total_steps=4, warmup_steps=0)
    lrs = []
    for _ in range(3):
        (a.sum() + b.sum()).backward()
        opt.step()
        sched.step()
        lrs.append([g["lr"] for g in opt.param_groups])
    expect = [0.5 * (1 + math.cos(math.pi * s / 4)) for s in (1, 2, 3)]
    assert [x[0] for x in lrs] == pytest.approx([1e-3 * e for e in expect])
    assert [x[1] for x in lrs] == pytest.approx([1e-4 * e for e in expect])
    # resuming after 3 steps: the rebuilt schedule gives the same rate for step 4 as the original
    expected_next = [g["lr"] for g in opt.param_groups]
    for g in opt.param_groups:
        g["lr"] = 123.0                           # as if the optimiser state were stale
    rebuilt = build_scheduler(opt, total_steps=4, warmup_steps=0, last_step=3)
    assert [g["lr"] for g in opt.param_groups] == expected_next and rebuilt.last_epoch == 3
    with pytest.raises(ValueError, match="initial_lr"):
        build_scheduler(torch.optim.AdamW([a]), total_steps=4, warmup_steps=0, last_step=2)
