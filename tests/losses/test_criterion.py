"""Tests of ``compute_losses`` on a hand-made batch and fake model outputs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from xmask3d.data.batch import ViewBatch
from xmask3d.errors import ConfigError
from xmask3d.losses.alignment import mask_region_alignment
from xmask3d.losses.criterion import LossWeights, compute_losses
from xmask3d.losses.matcher import HungarianMatcher
from xmask3d.losses.region_contrast import (
    RegionText,
    class_candidate_table,
    region_contrast,
    unique_phrases,
)
from xmask3d.models.outputs import PointRows, XMask3DOutput

P, B, H, W, Q, C, E, LAYERS = 40, 2, 8, 8, 3, 3, 8, 2
SET_KEYS = {"loss_ce", "loss_mask", "loss_dice", "loss_ce_0", "loss_mask_0", "loss_dice_0"}
POINT_KEYS = {"loss_point_fused", "loss_point_3d", "loss_binary"}
CAPTION_KEYS = {"loss_caption_fused", "loss_caption_3d", "loss_caption_2d"}


def make_batch(seed: int = 0) -> ViewBatch:
    """B=2 views of 20 points each, 8x8 images, 3 classes; view 0 is mostly unlabelled."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, C, (P,), generator=g)
    labels[:16] = 255  # view 0: 16 not-base points, 4 base points
    labels[25] = 255
    binary = (labels != 255).long()
    # 2x2-pixel blocks, so 4x4 mask logits can fit them.
    labels_2d = torch.randint(0, C, (B, H // 2, W // 2), generator=g)
    labels_2d = labels_2d.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    labels_2d[:, :2] = 255
    point_view = torch.arange(P) // 20
    return ViewBatch(
        points=torch.rand(P, 3, generator=g),
        colors=torch.rand(P, 3, generator=g) * 2 - 1,
        point_offsets=torch.tensor([0, 20, 40]),
        point_index=torch.arange(P),
        pixel_rc=torch.randint(0, H, (P, 2), generator=g),
        voxel_coords=torch.cat([point_view[:, None], torch.arange(P)[:, None].expand(-1, 3)], 1)
        .int(),
        voxel_feats=torch.zeros(P, 3),
        point2voxel=torch.arange(P),
        images=torch.rand(B, 3, H, W, generator=g),
        labels=labels,
        binary_labels=binary,
        labels_2d=labels_2d,
        captions=["a chair next to a table", ""],
        scene_names=["scene0000_00", "scene0001_00"],
        view_names=["0", "20"],
        class_names=["wall", "chair", "table"],
    )


def make_outputs(seed: int = 1, clip: bool = False) -> XMask3DOutput:
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).requires_grad_()

    query_logits = torch.full((P, Q), -2.0)
    query_logits[:20, 0] = 2.0  # query 0 of view 0 covers all its points
    query_logits[20:, 1] = 2.0
    covered = torch.arange(P) % 3 != 0
    return XMask3DOutput(
        point_logits_3d=leaf(P, C),
        point_logits_fused=leaf(P, C),
        point_logits_2d=leaf(P, C),
        feats_3d=PointRows.of_points(leaf(P, E)),
        feats_fused=PointRows.of_points(leaf(P, E)),
        feats_2d=PointRows.of_points(leaf(P, E)),
        point_covered=covered,
        point_mask_id=torch.where(covered, 0, -1),
        point_query_logits=query_logits.requires_grad_(),
        binary_logits=leaf(P),
        global_feat=leaf(B, 16),
        mask_logits=[leaf(B, Q, 4, 4) for _ in range(LAYERS)],
        mask_embeds=[leaf(B, Q, E) for _ in range(LAYERS)],
        class_logits=[leaf(B, Q, C + 1) for _ in range(LAYERS)],
        mask_clip_embeds=torch.randn(B, Q, E, generator=g) if clip else None,
        logit_scale=torch.tensor(14.3),
        class_embeds=torch.nn.functional.normalize(torch.randn(C, E, generator=g), dim=1),
    )


def captions() -> torch.Tensor:
    caps = torch.randn(B, E, generator=torch.Generator().manual_seed(2))
    caps[1] = 0.0  # the second view has an empty caption
    return caps


def run(outputs, batch, *, weights=None, alignment_on=True, caption_embeds="default", seed=0):
    weights = weights or LossWeights(num_points=None)
    return compute_losses(
        outputs,
        batch,
        weights=weights,
        matcher=HungarianMatcher(num_points=None),
        caption_embeds=captions() if caption_embeds == "default" else caption_embeds,
        alignment_on=alignment_on,
        generator=torch.Generator().manual_seed(seed),
    )


def test_every_term_present_finite_and_gradients_reach_the_right_inputs() -> None:
    outputs, batch = make_outputs(), make_batch()
    losses = run(outputs, batch)
    assert set(losses) == SET_KEYS | POINT_KEYS | CAPTION_KEYS | {"loss_mask_alignment"}
    total = sum(losses.values())
    assert torch.isfinite(total) and all(v.dim() == 0 for v in losses.values())
    assert losses["loss_mask_alignment"].item() > 0  # query 0 of view 0 is selected
    total.backward()
    trained = [outputs.point_logits_3d, outputs.point_logits_fused, outputs.binary_logits,
               outputs.feats_3d.rows, outputs.feats_fused.rows, outputs.feats_2d.rows,
               *outputs.mask_logits, *outputs.class_logits]  # fmt: skip
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in trained)
    untouched = [outputs.point_logits_2d, outputs.point_query_logits, outputs.global_feat,
                 *outputs.mask_embeds]  # fmt: skip
    assert all(t.grad is None for t in untouched)
    # 2D caption term only sees covered points; nothing else trains point_feats_2d.
    assert outputs.feats_2d.rows.grad[~outputs.point_covered].abs().sum() == 0
    # Only view 0 has a caption: fused features of view 1 get no gradient.
    assert outputs.feats_fused.rows.grad[20:].abs().sum() == 0


def test_optional_terms_and_zero_weights() -> None:
    outputs, batch = make_outputs(), make_batch()
    off = run(outputs, batch, alignment_on=False, caption_embeds=None)
    assert set(off) == SET_KEYS | POINT_KEYS
    on = run(outputs, batch)
    for key in off:
        assert off[key].item() == pytest.approx(on[key].item(), rel=1e-6)
    zero = run(outputs, batch, weights=LossWeights(num_points=None, dice=0.0, mask_alignment=0.0))
    assert "loss_dice" not in zero and "loss_dice_0" not in zero
    assert "loss_mask_alignment" not in zero


def test_weights_scale_terms() -> None:
    outputs, batch = make_outputs(), make_batch()
    base = run(outputs, batch)
    heavy = run(outputs, batch, weights=LossWeights(num_points=None, ce=4.0, caption_3d=3.0,
                                                    binary=8.0, mask_alignment=1.0))  # fmt: skip
    assert heavy["loss_ce_0"].item() == pytest.approx(2 * base["loss_ce_0"].item(), rel=1e-6)
    assert heavy["loss_caption_3d"].item() == pytest.approx(3 * base["loss_caption_3d"].item())
    assert heavy["loss_binary"].item() == pytest.approx(0.5 * base["loss_binary"].item())
    assert heavy["loss_mask_alignment"].item() == pytest.approx(
        2 * base["loss_mask_alignment"].item()
    )


def test_alignment_target_is_clip_when_available() -> None:
    outputs, batch = make_outputs(clip=True), make_batch()
    losses = run(outputs, batch)
    expected = 0.5 * mask_region_alignment(
        outputs.feats_3d.rows, outputs.point_query_logits, batch.point_offsets,
        outputs.mask_clip_embeds, outputs.mask_logits[-1], batch.binary_labels,
    )  # fmt: skip
    assert losses["loss_mask_alignment"].item() == pytest.approx(expected.item(), rel=1e-6)
    no_clip = make_outputs()
    no_clip.alignment_target = "clip"
    with pytest.raises(ValueError, match="mask_clip_embeds"):
        run(no_clip, batch)


def test_published_options_change_the_targets() -> None:
    outputs, batch = make_outputs(), make_batch()
    ours = run(outputs, batch)
    published = run(outputs, batch, weights=LossWeights(num_points=None,
                                                        unlabelled_as_no_object=True))  # fmt: skip
    # One more target segment per view: the mask normaliser and the losses change.
    assert published["loss_mask"].item() != pytest.approx(ours["loss_mask"].item())
    with pytest.raises(ValueError, match="alignment_selection"):
        LossWeights(alignment_selection="gt")
    batch.labels = None
    with pytest.raises(ValueError, match="batch.labels"):
        run(outputs, batch)


def test_sampled_default_points_run() -> None:
    losses = run(make_outputs(), make_batch(), weights=LossWeights())
    assert torch.isfinite(sum(losses.values()))


def _leaves(outputs: XMask3DOutput) -> list[torch.Tensor]:
    return [outputs.point_logits_3d, outputs.point_logits_fused, outputs.binary_logits,
            outputs.feats_3d.rows, outputs.feats_fused.rows, outputs.feats_2d.rows,
            *outputs.mask_logits, *outputs.class_logits]  # fmt: skip


def test_gradient_descent_lowers_the_total() -> None:
    outputs, batch = make_outputs(), make_batch()
    before = sum(run(outputs, batch).values()).item()
    optimizer = torch.optim.SGD(_leaves(outputs), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        sum(run(outputs, batch).values()).backward()
        optimizer.step()
    assert sum(run(outputs, batch).values()).item() < before - 0.1


@pytest.mark.parametrize(
    "key", sorted(SET_KEYS | POINT_KEYS | CAPTION_KEYS | {"loss_mask_alignment"})
)
def test_gradient_descent_lowers_each_term(key: str) -> None:
    outputs, batch = make_outputs(), make_batch()
    before = run(outputs, batch)[key].item()
    optimizer = torch.optim.SGD(_leaves(outputs), lr=0.5)
    for _ in range(2):
        optimizer.zero_grad()
        run(outputs, batch)[key].backward()
        optimizer.step()
    assert run(outputs, batch)[key].item() < before


def _regions_batch():
    batch = make_batch()
    region = torch.full((40,), -1)
    region[:10], region[10:16], region[20:30], region[30:34] = 0, 1, 2, 3
    batch.point_region = region
    batch.region_captions = ["a sofa", "a lamp", "a sofa", "a desk"]
    phrases, index = unique_phrases(batch.region_captions)
    embeds = F.normalize(torch.randn(len(phrases), 8, generator=torch.Generator().manual_seed(3)),
                         dim=-1)
    return batch, RegionText(embeds, index)


def test_compute_losses_adds_the_region_terms_only_when_asked() -> None:
    batch, text = _regions_batch()
    outputs = make_outputs()
    on = LossWeights(num_points=None, region_3d=1.0, region_2d=0.5, region_fused=2.0)
    losses = run(outputs, batch, weights=on, alignment_on=False)
    assert "loss_region_3d" not in losses                   # no region text given
    def losses_with(weights):
        return compute_losses(outputs, batch, weights=weights,
                              matcher=HungarianMatcher(num_points=None), caption_embeds=None,
                              alignment_on=False, region_text=text)

    terms = losses_with(on)
    assert {"loss_region_3d", "loss_region_2d", "loss_region_fused"} <= set(terms)
    target = torch.tensor([0] * 10 + [1] * 6 + [-1] * 4 + [0] * 10 + [2] * 4 + [-1] * 6)
    expected_fused = region_contrast(outputs.point_feats_fused, target, text.embeds,
                                     scale=1 / 0.07)
    assert terms["loss_region_fused"].item() == pytest.approx(2 * expected_fused.item(), rel=1e-5)
    covered = torch.where(outputs.point_covered, target, -1)
    expected_2d = region_contrast(outputs.point_feats_2d, covered, text.embeds, scale=1 / 0.07)
    assert terms["loss_region_2d"].item() == pytest.approx(0.5 * expected_2d.item(), rel=1e-5)
    terms["loss_region_3d"].backward()
    assert outputs.feats_3d.rows.grad[:16].abs().sum() > 0
    assert outputs.feats_3d.rows.grad[16:20].abs().sum() == 0   # points of no region
    learned = losses_with(LossWeights(num_points=None, region_fused=1.0, region_temperature=0))
    by_scale = region_contrast(outputs.point_feats_fused, target, text.embeds, scale=14.3)
    assert learned["loss_region_fused"].item() == pytest.approx(by_scale.item(), rel=1e-5)
    assert set(losses_with(LossWeights(num_points=None))) & {"loss_region_3d"} == set()


@pytest.mark.parametrize("base_weight", [0.0, 0.25])
def test_region_base_weight_scales_base_labelled_points(base_weight: float) -> None:
    batch, text = _regions_batch()
    outputs = make_outputs()
    is_base = torch.zeros(40, dtype=torch.bool)
    is_base[::3] = True                                   # a third of the points: base-labelled
    batch.binary_labels = torch.where(is_base, 1, 0)
    weights = LossWeights(num_points=None, region_fused=1.0, region_base_weight=base_weight)
    terms = compute_losses(outputs, batch, weights=weights,
                           matcher=HungarianMatcher(num_points=None), caption_embeds=None,
                           alignment_on=False, region_text=text)
    target = torch.tensor([0] * 10 + [1] * 6 + [-1] * 4 + [0] * 10 + [2] * 4 + [-1] * 6)
    w = torch.where(is_base, base_weight, 1.0)
    expected = region_contrast(outputs.point_feats_fused, torch.where(w > 0, target, -1),
                               text.embeds, scale=1 / 0.07, weights=w)
    assert terms["loss_region_fused"].item() == pytest.approx(expected.item(), rel=1e-4)
    full = compute_losses(outputs, batch, weights=LossWeights(num_points=None, region_fused=1.0),
                          matcher=HungarianMatcher(num_points=None), caption_embeds=None,
                          alignment_on=False, region_text=text)
    assert full["loss_region_fused"].item() != pytest.approx(expected.item(), rel=1e-3)


def test_region_base_weight_outside_0_1_is_refused() -> None:
    with pytest.raises(ConfigError, match="region_base_weight"):
        LossWeights(region_base_weight=1.5)


def test_class_candidates_teach_base_points_their_class_name() -> None:
    batch, text = _regions_batch()           # phrases: 0 "a sofa", 1 "a lamp", 2 "a desk"
    outputs = make_outputs()
    labels = torch.full((40,), 255)
    labels[10:16] = 1                        # the "a lamp" region lies on chair points
    labels[20:22] = 2                        # two table points under "a sofa"
    labels[36:40] = 0                        # wall points in no region
    batch.labels, batch.binary_labels = labels, (labels != 255).long()
    weights = LossWeights(num_points=None, region_fused=1.0, region_class_candidates=True,
                          region_base_weight=0.5, region_about_share=0.5)
    terms = compute_losses(outputs, batch, weights=weights,
                           matcher=HungarianMatcher(num_points=None), caption_embeds=None,
                           alignment_on=False, region_text=text)
    # "a lamp" is about chair (6 of its 6 points); "a sofa" is about nothing (2 of 20 table)
    about = torch.zeros(3, C, dtype=torch.bool)
    about[1, 1] = True
    target = torch.tensor([0] * 10 + [3 + 1] * 6 + [-1] * 4 + [3 + 2] * 2 + [0] * 8
                          + [2] * 4 + [-1, -1] + [3 + 0] * 4)
    candidates = torch.cat([text.embeds, outputs.class_embeds])
    table = class_candidate_table(about)

    def mean_of(tgt, tab=table):
        return region_contrast(outputs.point_feats_fused, tgt, candidates, scale=1 / 0.07,
                               candidate_table=tab)

    phrase_part = mean_of(torch.where(target < 3, target, -1))
    class_part = mean_of(torch.where(target >= 3, target, -1))
    expected = phrase_part + 0.5 * class_part      # two means: base points do not dilute phrases
    assert terms["loss_region_fused"].item() == pytest.approx(expected.item(), rel=1e-4)
    # the chair points' own phrase is no negative: with it as one, their CE (and the mean) grows
    loose = mean_of(torch.where(target >= 3, target, -1), tab=None)
    assert class_part.item() < loose.item() - 1e-3
    no_base = compute_losses(outputs, batch, weights=replace(weights, region_base_weight=0.0),
                             matcher=HungarianMatcher(num_points=None), caption_embeds=None,
                             alignment_on=False, region_text=text)
    assert no_base["loss_region_fused"].item() == pytest.approx(phrase_part.item(), rel=1e-4)


def test_region_about_share_outside_0_1_is_refused() -> None:
    with pytest.raises(ConfigError, match="region_about_share"):
        LossWeights(region_about_share=0.0)
