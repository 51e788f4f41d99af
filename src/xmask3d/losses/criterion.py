"""All training losses of XMask3D as weighted, named terms of (outputs, batch).

Follows XMask3D method.md §3 (weights of §3.8, B15N4 values for the split-dependent ones) with the
fixes of decisions.md §5; the published behaviours are options of ``LossWeights``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from xmask3d.data.batch import IGNORE_LABEL, ViewBatch
from xmask3d.data.targets import mask_targets_for_batch
from xmask3d.errors import ConfigError
from xmask3d.losses.alignment import caption_alignment, mask_region_alignment
from xmask3d.losses.mask_losses import set_criterion
from xmask3d.losses.matcher import HungarianMatcher
from xmask3d.losses.point_losses import binary_loss, point_cross_entropy
from xmask3d.losses.region_contrast import (
    RegionText,
    class_candidate_table,
    dedup_per_voxel,
    phrase_class_share,
    region_contrast,
)
from xmask3d.models.outputs import XMask3DOutput

__all__ = ["LossWeights", "compute_losses", "needs_region_text", "region_loss_terms"]


@dataclass
class LossWeights:
    """Loss weights and loss options (no learnable state)."""

    ce: float = 2.0  # mask classification CE, every decoder layer
    mask: float = 5.0  # point-sampled mask BCE, every decoder layer
    dice: float = 5.0  # point-sampled mask dice, every decoder layer
    point_fused: float = 4.0  # point CE of the fused features
    point_3d: float = 4.0  # point CE of the pure 3D features
    caption_fused: float = 1.5  # caption alignment of the mean fused feature
    caption_3d: float = 1.0  # caption alignment of the mean 3D feature
    caption_2d: float = 4.0  # caption alignment of the mean 2D feature of covered points
    binary: float = 16.0  # base/novel head BCE (8/12/16/32/48 per split)
    mask_alignment: float = 0.5  # mask-level 2D-to-3D regularisation (0.5/1/2 per split)
    eos_coef: float = 0.1  # CE weight of the 2D "no object" class
    num_points: int | None = 12544  # sampled points per mask; None = every pixel (exact)
    oversample_ratio: float = 3.0  # importance sampling: candidates per point
    importance_ratio: float = 0.75  # importance sampling: fraction chosen by uncertainty
    binary_pos_weight: float = 0.267  # BCE weight of the base class (published data_ratio)
    alignment_selection: str = "ours"  # "ours" (base labels only) or "published" (GT novel)
    alignment_min_points: int = 10  # a mask needs this many points to be considered
    alignment_top_novel: int = 4  # mostly-not-base masks aligned per view
    alignment_top_base: int = 1  # mostly-base masks aligned per view
    unlabelled_as_no_object: bool = False  # published: unlabelled pixels = a no-object segment
    region_3d: float = 0.0  # region-caption contrast of the 3D features (losses/region_contrast)
    region_2d: float = 0.0  # ... of the 2D features of covered points
    region_fused: float = 0.0  # ... of the fused features
    region_temperature: float = 0.07  # its temperature; 0 = the model's learned logit scale
    region_max_points: int = 0  # random cap on the entries of each region term (0 = all)
    region_base_weight: float = 1.0  # weight of base-labelled points in the region terms
    region_class_candidates: bool = False  # base class names join the phrases as candidates
    region_about_share: float = 0.25  # a phrase is about class c from this share of c points
    point_class_weights: tuple[float, ...] = ()  # point CE class weights (); () = plain CE

    def __post_init__(self) -> None:
        if self.alignment_selection not in ("ours", "published"):
            raise ConfigError(
                f"LossWeights.alignment_selection: expected 'ours' or 'published', "
                f"got {self.alignment_selection!r}"
            )
        if self.num_points is not None and self.num_points < 1:
            raise ConfigError(
                f"LossWeights.num_points: expected >= 1 or None, got {self.num_points}"
            )
        if not 0.0 <= self.eos_coef <= 1.0:
            raise ConfigError(f"LossWeights.eos_coef: expected in [0, 1], got {self.eos_coef}")
        if self.region_temperature < 0 or self.region_max_points < 0:
            raise ConfigError(
                f"LossWeights.region_temperature and region_max_points: expected >= 0, got "
                f"{self.region_temperature} and {self.region_max_points}"
            )
        if not 0.0 <= self.region_base_weight <= 1.0:
            raise ConfigError(
                f"LossWeights.region_base_weight: expected in [0, 1], got "
                f"{self.region_base_weight}"
            )
        if not 0.0 < self.region_about_share <= 1.0:
            raise ConfigError(
                f"LossWeights.region_about_share: expected in (0, 1], got "
                f"{self.region_about_share}"
            )
        if self.binary_pos_weight <= 0:
            raise ConfigError(
                f"LossWeights.binary_pos_weight: expected > 0, got {self.binary_pos_weight}"
            )


def _set_losses(
    outputs: XMask3DOutput,
    batch: ViewBatch,
    weights: LossWeights,
    matcher: HungarianMatcher,
    generator: torch.Generator | None,
) -> dict[str, Tensor]:
    num_classes = len(batch.class_names)
    labels_2d = batch.labels_2d.to(outputs.mask_logits[-1].device)
    targets = mask_targets_for_batch(
        labels_2d, num_classes, unlabelled_as_no_object=weights.unlabelled_as_no_object
    )
    raw = set_criterion(
        outputs.class_logits,
        outputs.mask_logits,
        targets,
        matcher,
        num_classes=num_classes,
        eos_coef=weights.eos_coef,
        num_points=weights.num_points,
        oversample_ratio=weights.oversample_ratio,
        importance_ratio=weights.importance_ratio,
        generator=generator,
    )
    factor = {"loss_ce": weights.ce, "loss_mask": weights.mask, "loss_dice": weights.dice}
    weighted = {}
    for name, value in raw.items():
        weight = factor[re.sub(r"_\d+$", "", name)]  # aux layers share the final layer's weight
        if weight != 0:
            weighted[name] = weight * value
    return weighted


def _alignment_target(outputs: XMask3DOutput) -> Tensor:
    if outputs.mask_clip_embeds is not None:
        return outputs.mask_clip_embeds.detach()
    if outputs.alignment_target == "clip":
        raise ValueError(
            "outputs.alignment_target is 'clip' but outputs.mask_clip_embeds is None "
            "(no CLIP vision tower ran)"
        )
    return outputs.mask_embeds[-1].detach()


def _caption_losses(
    outputs: XMask3DOutput, batch: ViewBatch, weights: LossWeights, caption_embeds: Tensor
) -> dict[str, Tensor]:
    offsets = batch.point_offsets.to(outputs.feats_3d.rows.device)
    terms = {
        "loss_caption_fused": (weights.caption_fused, outputs.feats_fused, None),
        "loss_caption_3d": (weights.caption_3d, outputs.feats_3d, None),
        "loss_caption_2d": (weights.caption_2d, outputs.feats_2d, outputs.point_covered),
    }
    return {
        name: w * caption_alignment(feats, offsets, caption_embeds, point_mask=mask)
        for name, (w, feats, mask) in terms.items()
        if w != 0
    }


def needs_region_text(weights: LossWeights) -> bool:
    """Whether any region-caption term is on."""
    return (weights.region_3d, weights.region_2d, weights.region_fused) != (0, 0, 0)


def region_loss_terms(
    outputs: XMask3DOutput,
    batch: ViewBatch,
    weights: LossWeights,
    regions: RegionText,
    generator: torch.Generator | None,
) -> dict[str, Tensor]:
    """The weighted region-caption terms ``loss_region_{3d,fused,2d}`` (those with weight != 0);
    none when the batch has no ``point_region``.

    Points that carry a base label (``batch.binary_labels == 1``) enter with the weight
    ``weights.region_base_weight`` (1 = every associated point alike, as RegionPLC; 0 = only
    points without a base label: the point CE already supervises the others, and a loose box
    around a small object holds more wall than object). Only base labels are read, never a
    novel one.

    With ``weights.region_class_candidates`` the base class names join the candidates
    (``losses/region_contrast.py``): base-labelled points are taught their class name against
    the phrases not about it, the others their phrase against the base class names too; each
    term is the mean over the phrase entries plus ``region_base_weight`` times the mean over
    the class-name entries.
    """
    device = outputs.feats_3d.rows.device
    if batch.point_region is None:
        return {}
    region = batch.point_region.to(device)
    target = torch.where(region >= 0, regions.region_to_phrase.to(device)[region.clamp(min=0)],
                         region)
    point_weight = None
    candidates, table = regions.embeds, None
    if weights.region_class_candidates:
        labels = _require(batch, "labels").to(device)
        num_phrases, num_classes = regions.embeds.shape[0], outputs.class_embeds.shape[0]
        is_base = ((_require(batch, "binary_labels").to(device) == 1) & (labels >= 0)
                   & (labels < num_classes))
        share = phrase_class_share(target, labels, is_base, num_phrases, num_classes)
        table = class_candidate_table(share >= weights.region_about_share)
        target = torch.where(is_base, num_phrases + labels, target)
        candidates = torch.cat([regions.embeds,
                                outputs.class_embeds.detach().to(regions.embeds)])
    elif weights.region_base_weight != 1.0 and batch.binary_labels is not None:
        is_base = batch.binary_labels.to(device) == 1
        point_weight = torch.where(is_base, weights.region_base_weight, 1.0)
        target = torch.where(point_weight > 0, target, torch.full_like(target, -1))
    scale = (1.0 / weights.region_temperature if weights.region_temperature > 0
             else outputs.logit_scale)
    kw = dict(scale=scale, max_points=weights.region_max_points, generator=generator,
              candidate_table=table)
    covered = torch.where(outputs.point_covered, target, torch.full_like(target, -1))
    terms = {"loss_region_3d": (weights.region_3d, outputs.feats_3d, target),
             "loss_region_fused": (weights.region_fused, outputs.feats_fused, target),
             "loss_region_2d": (weights.region_2d, outputs.feats_2d, covered)}
    losses = {}
    for name, (w, feats, tgt) in terms.items():
        if w == 0:
            continue
        if table is None:   # points sharing a feature row and a phrase: one entry, by count
            rep, count = dedup_per_voxel(feats.index, tgt, point_weight)
            losses[name] = w * region_contrast(feats.rows[feats.index[rep]], tgt[rep],
                                               candidates, weights=count, **kw)
            continue
        # class candidates: phrase entries and class-name entries are averaged apart, so the
        # many base points do not dilute the phrase term: phrase mean + base weight * class mean
        # (each mean sees only its own entries: no logits are computed for the other kind)
        rep, count = dedup_per_voxel(feats.index, tgt)
        rows, tgt = feats.rows[feats.index[rep]], tgt[rep]
        is_phrase = tgt < regions.embeds.shape[0]
        loss = region_contrast(rows[is_phrase], tgt[is_phrase], candidates,
                               weights=count[is_phrase], **kw)
        if weights.region_base_weight > 0:
            loss = loss + weights.region_base_weight * region_contrast(
                rows[~is_phrase], tgt[~is_phrase], candidates, weights=count[~is_phrase], **kw)
        losses[name] = w * loss
    return losses


def _require(batch: ViewBatch, name: str) -> Tensor:
    value = getattr(batch, name)
    if value is None:
        raise ValueError(f"compute_losses: batch.{name} is None; training needs it")
    return value


def compute_losses(
    outputs: XMask3DOutput,
    batch: ViewBatch,
    *,
    weights: LossWeights,
    matcher: HungarianMatcher,
    caption_embeds: Tensor | None,
    alignment_on: bool,
    generator: torch.Generator | None = None,
    region_text: RegionText | None = None,
) -> dict[str, Tensor]:
    """Every training loss, already multiplied by its weight (total = ``sum(values)``).

    Terms with weight 0 are left out. Keys: ``loss_ce``, ``loss_mask``, ``loss_dice`` (final
    decoder layer) and ``loss_{ce,mask,dice}_i`` (earlier layers i); ``loss_point_fused``,
    ``loss_point_3d``, ``loss_binary``; with ``caption_embeds``: ``loss_caption_fused``,
    ``loss_caption_3d``, ``loss_caption_2d``; with ``alignment_on``: ``loss_mask_alignment``;
    with ``region_text`` and ``batch.point_region``: ``loss_region_{3d,2d,fused}``.

    Args:
        outputs: model predictions for ``batch``.
        batch: B views with ``labels``, ``binary_labels`` and ``labels_2d`` indexing
            ``batch.class_names``.
        weights: loss weights and options.
        matcher: Hungarian matcher of the 2D set losses.
        caption_embeds: (B, E) caption embeddings (zero rows for views without a caption), or
            ``None`` to skip the caption terms.
        alignment_on: add the mask-level 2D-to-3D regularisation (after its start epoch).
        generator: random source of the point sampling.
        region_text: the phrase embeddings of ``batch.region_captions``, or ``None`` to skip
            the region-caption terms.

    Returns:
        Named () weighted loss terms.
    """
    labels = _require(batch, "labels").to(outputs.point_logits_3d.device)
    binary_labels = _require(batch, "binary_labels").to(outputs.binary_logits.device)
    _require(batch, "labels_2d")
    losses = _set_losses(outputs, batch, weights, matcher, generator)
    point_terms = {
        "loss_point_fused": (weights.point_fused, outputs.point_logits_fused),
        "loss_point_3d": (weights.point_3d, outputs.point_logits_3d),
    }
    for name, (w, logits) in point_terms.items():
        if w != 0:
            losses[name] = w * point_cross_entropy(logits, labels, ignore_index=IGNORE_LABEL,
                                                   class_weights=weights.point_class_weights)
    if weights.binary != 0:
        losses["loss_binary"] = weights.binary * binary_loss(
            outputs.binary_logits, binary_labels, pos_weight=weights.binary_pos_weight
        )
    if caption_embeds is not None:
        losses.update(_caption_losses(outputs, batch, weights, caption_embeds))
    if region_text is not None:
        losses.update(region_loss_terms(outputs, batch, weights, region_text, generator))
    if alignment_on and weights.mask_alignment != 0:
        losses["loss_mask_alignment"] = weights.mask_alignment * mask_region_alignment(
            outputs.feats_3d,
            outputs.point_query_logits,
            batch.point_offsets.to(outputs.feats_3d.rows.device),
            _alignment_target(outputs),
            outputs.mask_logits[-1],
            binary_labels,
            selection=weights.alignment_selection,
            min_points=weights.alignment_min_points,
            top_novel=weights.alignment_top_novel,
            top_base=weights.alignment_top_base,
        )
    return losses
