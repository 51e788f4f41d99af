"""Tests of the region-caption contrastive loss, its phrase table, its text cache and its terms
in ``compute_losses``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F

from xmask3d.losses.region_contrast import (
    class_candidate_table,
    dedup_per_voxel,
    phrase_class_share,
    prime_phrase_cache,
    region_contrast,
    region_text_embeddings,
    unique_phrases,
)
from xmask3d.models.text.classifier import TextClassifier
from xmask3d.models.text.encoders import TextEncoder


class CountingEncoder(TextEncoder):
    """A seeded vector per text; records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return 8

    @property
    def name(self) -> str:
        return "counting"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        rows = [torch.randn(8, generator=torch.Generator().manual_seed(
            sum(ord(c) * (i + 1) for i, c in enumerate(t)))) for t in texts]
        return F.normalize(torch.stack(rows), dim=-1)


def test_unique_phrases_share_one_candidate() -> None:
    phrases, index = unique_phrases(["a sofa", "a lamp", "a sofa", "two chairs"])
    assert phrases == ["a sofa", "a lamp", "two chairs"]
    assert index.tolist() == [0, 1, 0, 2]


def test_value_on_a_two_phrase_case() -> None:
    phrases = torch.eye(2, 3)                       # orthogonal phrase embeddings
    feats = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 5.0]])  # aligned with 0; orthogonal to both
    loss = region_contrast(feats, torch.tensor([0, 1]), phrases, scale=3.0)
    first = math.log(1 + math.exp(-3.0))            # logits (3, 0), target 0
    second = math.log(2.0)                          # logits (0, 0)
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-6)
    weighted = region_contrast(feats, torch.tensor([0, 1]), phrases, scale=3.0,
                               weights=torch.tensor([3.0, 1.0]))
    assert weighted.item() == pytest.approx((3 * first + second) / 4, rel=1e-6)


def test_perfect_features_beat_shuffled_ones_and_gradients_flow() -> None:
    g = torch.Generator().manual_seed(0)
    phrases = F.normalize(torch.randn(5, 16, generator=g), dim=-1)
    target = torch.randint(0, 5, (60,), generator=g)
    perfect = phrases[target].clone().requires_grad_()
    shuffled = phrases[target[torch.randperm(60, generator=g)]]
    good = region_contrast(perfect, target, phrases, scale=1 / 0.07)
    bad = region_contrast(shuffled, target, phrases, scale=1 / 0.07)
    assert good.item() < 0.5 * bad.item()
    noisy = (phrases[target] + 0.5 * torch.randn(60, 16, generator=g)).requires_grad_()
    region_contrast(noisy, target, phrases, scale=10.0).backward()
    assert noisy.grad is not None and noisy.grad.abs().sum() > 0


def test_duplicate_phrases_are_not_negatives() -> None:
    """Two regions with one phrase: one candidate; a naive table with the phrase twice would
    push each point away from its own phrase and give a higher loss."""
    enc = CountingEncoder()
    text = region_text_embeddings(TextClassifier(enc, templates=False),
                                  ["a sofa", "a lamp", "a sofa"], torch.device("cpu"))
    assert text.embeds.shape == (2, 8) and text.region_to_phrase.tolist() == [0, 1, 0]
    feats = text.embeds[[0, 1, 0]].clone()
    target = text.region_to_phrase                   # points of regions 0, 1 and 2
    ours = region_contrast(feats, target, text.embeds, scale=10.0)
    naive_table = text.embeds[[0, 1, 0]]             # one row per region
    naive = region_contrast(feats, torch.tensor([0, 1, 2]), naive_table, scale=10.0)
    assert naive.item() > ours.item() + 0.3          # each sofa point pays log 2 more or less


def test_no_target_gives_a_connected_zero() -> None:
    feats = torch.randn(4, 3, requires_grad=True)
    loss = region_contrast(feats, torch.full((4,), -1), torch.eye(3), scale=1.0)
    assert loss.item() == 0.0
    loss.backward()
    assert feats.grad is not None


def test_per_voxel_dedup_equals_the_per_point_mean() -> None:
    g = torch.Generator().manual_seed(1)
    point2voxel = torch.randint(0, 12, (200,), generator=g)
    target = torch.randint(-1, 4, (200,), generator=g)
    voxel_feats = torch.randn(12, 6, generator=g)
    phrases = F.normalize(torch.randn(4, 6, generator=g), dim=-1)
    feats = voxel_feats[point2voxel]
    rep, count = dedup_per_voxel(point2voxel, target)
    assert len(rep) < (target >= 0).sum() and count.sum().item() == (target >= 0).sum().item()
    pairs = {(int(v), int(t)) for v, t in zip(point2voxel[rep], target[rep], strict=True)}
    assert len(pairs) == len(rep)                   # one entry per distinct (voxel, phrase)
    fast = region_contrast(feats[rep], target[rep], phrases, scale=5.0, weights=count)
    slow = region_contrast(feats, target, phrases, scale=5.0)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5)


def test_max_points_caps_the_entries() -> None:
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(100, 4, generator=g, requires_grad=True)
    target = torch.randint(0, 3, (100,), generator=g)
    loss = region_contrast(feats, target, torch.eye(3, 4), scale=2.0, max_points=10,
                           generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert int((feats.grad.abs().sum(1) > 0).sum()) == 10


def test_second_epoch_calls_the_encoder_zero_times() -> None:
    enc = CountingEncoder()
    text = TextClassifier(enc, templates=False)
    epoch = [["a grey couch", "a lamp"], ["a lamp", "two wooden chairs", "a desk"]]
    for batch in epoch:
        region_text_embeddings(text, batch, torch.device("cpu"))
    assert sorted(t for call in enc.calls for t in call) == sorted(
        ["a grey couch", "a lamp", "two wooden chairs", "a desk"])   # each phrase once
    enc.calls.clear()
    again = [region_text_embeddings(text, batch, torch.device("cpu")) for batch in epoch]
    assert enc.calls == []
    assert torch.equal(again[0].embeds[0], enc.encode(["a grey couch"])[0])
    assert region_text_embeddings(text, [], torch.device("cpu")) is None


def test_priming_encodes_a_dataset_in_batches_and_steps_then_hit_the_cache() -> None:
    enc = CountingEncoder()
    text = TextClassifier(enc, templates=False)
    phrases = sorted({f"a phrase {i}" for i in range(70)})
    prime_phrase_cache(text, phrases, chunk=32)
    assert [len(call) for call in enc.calls] == [32, 32, 6]
    enc.calls.clear()
    region_text_embeddings(text, phrases[:5] + phrases[-3:], torch.device("cpu"))
    assert enc.calls == []


def test_weighted_dedup_sums_the_point_weights() -> None:
    g = torch.Generator().manual_seed(4)
    point2voxel = torch.randint(0, 10, (150,), generator=g)
    target = torch.randint(-1, 3, (150,), generator=g)
    point_weight = torch.rand(150, generator=g)
    voxel_feats = torch.randn(10, 5, generator=g)
    phrases = F.normalize(torch.randn(3, 5, generator=g), dim=-1)
    rep, summed = dedup_per_voxel(point2voxel, target, point_weight)
    assert summed.sum().item() == pytest.approx(point_weight[target >= 0].sum().item(), rel=1e-5)
    fast = region_contrast(voxel_feats[point2voxel[rep]], target[rep], phrases, scale=5.0,
                           weights=summed)
    slow = region_contrast(voxel_feats[point2voxel], target, phrases, scale=5.0,
                           weights=point_weight)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5)


def test_phrase_class_share_counts_base_labels_over_all_points_of_a_phrase() -> None:
    phrase = torch.tensor([0, 0, 0, 0, 1, 1, -1, 2])
    labels = torch.tensor([1, 1, 0, 9, 0, 1, 1, 9])       # 9: read nowhere (not base)
    is_base = torch.tensor([True, True, True, False, False, True, True, False])
    share = phrase_class_share(phrase, labels, is_base, num_phrases=4, num_classes=2)
    expected = torch.tensor([[0.25, 0.5], [0.0, 0.5], [0.0, 0.0], [0.0, 0.0]])
    assert torch.equal(share, expected)                   # the -1 point counts nowhere


def test_class_candidate_table_drops_only_the_phrases_about_the_class() -> None:
    about = torch.tensor([[True, False], [False, False], [True, True]])   # (U=3, C=2)
    table = class_candidate_table(about)
    assert table.shape == (5, 5)
    assert table[:3].all()                                 # phrase targets: every candidate
    assert table[3].tolist() == [False, True, False, True, True]     # class 0
    assert table[4].tolist() == [True, True, False, True, True]      # class 1


def test_candidate_table_equals_leaving_the_candidate_out() -> None:
    g = torch.Generator().manual_seed(4)
    embeds = F.normalize(torch.randn(4, 6, generator=g), dim=-1)
    feats = torch.randn(5, 6, generator=g)
    target = torch.tensor([0, 0, 1, -1, 3])
    table = torch.ones(4, 4, dtype=torch.bool)
    table[0, 2] = False                                    # target 0: phrase 2 is no candidate
    masked = region_contrast(feats, target, embeds, scale=5.0, candidate_table=table)
    logits = 5.0 * F.normalize(feats, dim=-1) @ embeds.t()
    logits[:2, 2] = float("-inf")
    per = F.cross_entropy(logits[[0, 1, 2, 4]], target[[0, 1, 2, 4]], reduction="none")
    assert masked.item() == pytest.approx(per.mean().item(), rel=1e-5)
    plain = region_contrast(feats, target, embeds, scale=5.0)
    assert plain.item() > masked.item()                    # one negative fewer for two entries
