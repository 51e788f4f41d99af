"""Point-discriminative contrastive loss between point features and region-caption embeddings.

After RegionPLC (Yang et al., CVPR 2024, "point-discriminative contrastive learning" with
dense-captioner region captions) and PLA (Ding et al., CVPR 2023, point-caption association);
written fresh for this project. Every point associated with a region (``data/regions.py``) is
classified among *all* caption phrases of the batch: cross-entropy of
``cos(point feature, phrase embedding) / temperature`` with its own region's phrase as the
target. Regions with the same phrase (in one view or in different views) share one candidate, so
a phrase is never its own negative.

The 3D features of all points of a voxel are equal (they are gathered from the voxel), so the
3D term is computed once per distinct (voxel, phrase) pair, weighted by its number of points:
the same value as the per-point mean at a fraction of the cost. ``max_points`` optionally caps
the entries of a term by a uniform random subset (``generator``).

With class candidates (``loss.region_class_candidates``, :func:`phrase_class_share`), the base
class names join the phrases as candidates: a point without a base label is taught its phrase
with the base class names as negatives (it is none of them), and a base-labelled point is taught
its own class name with the phrases as negatives, except phrases *about* its class (those whose
associated points carry that base label in at least ``about_share`` of cases: "a wooden chair"
is no negative of a chair point, "a grey couch" is). Only base labels are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from xmask3d.models.fusion.mask_to_points import cosine_logits

__all__ = ["RegionText", "class_candidate_table", "dedup_per_voxel", "phrase_class_share",
           "prime_phrase_cache", "region_contrast", "region_text_embeddings", "unique_phrases"]


@dataclass
class RegionText:
    """The text side of a batch's regions.

    Attributes:
        embeds: (U, E) L2-normalised embeddings of the batch's distinct phrases.
        region_to_phrase: (R,) int64 phrase of each region of the batch.
    """

    embeds: Tensor
    region_to_phrase: Tensor


def unique_phrases(captions: list[str]) -> tuple[list[str], Tensor]:
    """Distinct phrases in first-seen order and the (R,) index of each caption among them."""
    phrases = list(dict.fromkeys(captions))
    where = {p: i for i, p in enumerate(phrases)}
    return phrases, torch.tensor([where[c] for c in captions], dtype=torch.int64)


def region_text_embeddings(text, captions: list[str], device: torch.device) -> RegionText | None:
    """Embeddings of a batch's region phrases, from the text classifier's caption cache.

    Each phrase is encoded once per run (the cache of ``TextClassifier.encode_captions``, by
    phrase, the same encoder as the class names); a phrase seen before costs no encoder call.
    New phrases are encoded one at a time, so an embedding never depends on its batch-mates.

    Args:
        text: a :class:`~xmask3d.models.text.classifier.TextClassifier`.
        captions: the R region phrases of the batch (``ViewBatch.region_captions``).
        device: where the embeddings go.

    Returns:
        The :class:`RegionText`, or ``None`` when the batch has no region.
    """
    if not captions:
        return None
    phrases, index = unique_phrases(captions)
    for phrase in phrases:
        text.encode_captions([phrase])                   # no-op for cached phrases
    return RegionText(text.encode_captions(phrases).to(device), index.to(device))


def prime_phrase_cache(text, phrases: list[str], *, chunk: int = 64) -> None:
    """Encode a dataset's phrases once, before training, in batches of ``chunk``.

    Batched encoding is an order of magnitude faster than one phrase at a time. The batches
    depend only on ``phrases`` (pass them sorted), so a resumed run gets bit-identical
    embeddings; :func:`region_text_embeddings` then finds every phrase in the cache.
    """
    for start in range(0, len(phrases), chunk):
        text.encode_captions(phrases[start:start + chunk])


def dedup_per_voxel(point2voxel: Tensor, target: Tensor,
                    point_weight: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One representative point per distinct (voxel, target) pair among points with a target.

    Args:
        point2voxel: (P,) voxel of each point.
        target: (P,) phrase of each point, -1 = none.
        point_weight: (P,) weight of each point (default 1).

    Returns:
        (K,) indices of representative points and (K,) float summed weight (by default the
        number of points) each stands for.
    """
    idx = torch.nonzero(target >= 0).flatten()
    if idx.numel() == 0:
        return idx, torch.zeros(0, device=target.device)
    key = point2voxel[idx] * (int(target.max()) + 1) + target[idx]
    uniq, inverse, counts = torch.unique(key, return_inverse=True, return_counts=True)
    first = torch.full((uniq.numel(),), idx.numel(), dtype=torch.int64, device=idx.device)
    first = first.scatter_reduce(0, inverse, torch.arange(idx.numel(), device=idx.device),
                                 reduce="amin")
    if point_weight is None:
        return idx[first], counts.to(torch.float32)
    summed = torch.zeros(uniq.numel(), device=idx.device, dtype=torch.float32)
    summed = summed.index_add(0, inverse, point_weight[idx].to(torch.float32))
    return idx[first], summed


def phrase_class_share(phrase: Tensor, labels: Tensor, is_base: Tensor, num_phrases: int,
                       num_classes: int) -> Tensor:
    """(U, C) share of the points associated with each phrase that carry each base label.

    Args:
        phrase: (P,) phrase of each point, -1 = none.
        labels: (P,) base label of each point (read only where ``is_base``).
        is_base: (P,) bool, the point carries a base label.
        num_phrases, num_classes: U and C.

    Returns:
        (U, C) float: points of phrase u with base label c over all points of phrase u (0 for a
        phrase without points).
    """
    on = phrase >= 0
    total = torch.bincount(phrase[on], minlength=num_phrases).to(torch.float32)
    both = on & is_base
    key = phrase[both] * num_classes + labels[both]
    counts = torch.bincount(key, minlength=num_phrases * num_classes).to(torch.float32)
    return counts.view(num_phrases, num_classes) / total.clamp_min(1.0)[:, None]


def class_candidate_table(about: Tensor) -> Tensor:
    """(U + C, U + C) bool: row t = the candidates of an entry whose target is t.

    Targets ``< U`` are phrases (every candidate); target ``U + c`` is base class ``c``, whose
    candidates are the class names and the phrases not about ``c`` (``about``: (U, C) bool).
    """
    num_phrases, num_classes = about.shape
    n = num_phrases + num_classes
    table = torch.ones(n, n, dtype=torch.bool, device=about.device)
    table[num_phrases:, :num_phrases] = ~about.t()
    return table


def region_contrast(feats: Tensor, target: Tensor, phrase_embeds: Tensor, *,
                    scale: Tensor | float, weights: Tensor | None = None,
                    max_points: int = 0, generator: torch.Generator | None = None,
                    candidate_table: Tensor | None = None) -> Tensor:
    """Weighted mean cross-entropy of ``scale * cos(feature, phrase)`` against each target.

    Args:
        feats: (K, E) features (not necessarily normalised).
        target: (K,) int64 phrase index in ``[0, U)``; entries < 0 are left out.
        phrase_embeds: (U, E) phrase embeddings (normalised here).
        scale: inverse temperature (a float or a () tensor, e.g. the model's learned scale).
        weights: (K,) weight of each entry (e.g. points per voxel), default 1.
        max_points: keep a uniform random subset of at most this many entries (0 = all).
        generator: random source of that subset.
        candidate_table: (U, U) bool over the U candidates, row t = those of an entry with
            target t (the target itself must be one); default every candidate.

    Returns:
        () loss; 0 (connected to ``feats``) when no entry has a target.
    """
    target = target.to(torch.int64)
    if max_points > 0:
        keep = torch.nonzero(target >= 0).flatten()
        if keep.numel() > max_points:
            perm = torch.randperm(keep.numel(), generator=generator)[max_points:]
            target = target.clone()
            target[keep[perm.to(keep.device)]] = -1
    valid = target >= 0
    if not bool(valid.any()):
        return feats.sum() * 0.0
    f = feats.float()
    logits = cosine_logits(f, phrase_embeds.to(f), torch.as_tensor(scale, dtype=f.dtype))
    if candidate_table is not None:
        allowed = candidate_table[target.clamp(min=0)]
        logits = logits.masked_fill(~allowed, float("-inf"))
    ce = F.cross_entropy(logits, target, ignore_index=-1, reduction="none")
    w = valid.to(ce.dtype) if weights is None else weights.to(ce) * valid
    return (ce * w).sum() / w.sum()
