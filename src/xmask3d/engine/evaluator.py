"""Multi-view evaluation of a split: per-view predictions, votes per scene, nearest-point fill.

Follows XMask3D inference (method.md §4.1-§4.3, §5) with decisions.md §5: any batch size, no
test-time augmentation (deterministic), and votes over every usable view of a scene. Points seen
by no view take the label of their nearest seen point. Under DDP, whole scenes are dealt to the
ranks (balanced by view count) so that every scene's votes stay on one rank; the confusion
matrices are then summed over ranks, which makes the result independent of the process count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from xmask3d.config import FusionCfg
from xmask3d.data.dataset import ViewDataset, collate_views
from xmask3d.data.splits import CategorySplit
from xmask3d.engine import distributed as D
from xmask3d.engine.data import loader_batches
from xmask3d.eval.metrics import ConfusionMatrix, OpenVocabMetrics, open_vocab_metrics
from xmask3d.eval.scoring import nearest_visible_fill, view_point_predictions

__all__ = ["KINDS", "EvalResult", "SceneVotes", "evaluate_views", "nearest_visible_fill",
           "shard_scenes", "spread_views"]

logger = logging.getLogger(__name__)

KINDS = ("fused", "3d", "2d")


class SceneVotes:
    """Per-point class votes of one scene, for each prediction kind.

    Args:
        num_points: N, points of the full scene.
        num_classes: C, size of the scored vocabulary.
        kinds: names of the prediction kinds.
    """

    def __init__(self, num_points: int, num_classes: int, *, kinds: tuple[str, ...] = KINDS,
                 dtype: torch.dtype = torch.int32) -> None:
        self.num_classes = num_classes
        self.votes = {k: torch.zeros(num_points, num_classes, dtype=dtype) for k in kinds}

    def add(self, kind: str, point_index: Tensor, pred: Tensor) -> None:
        """One view votes ``pred`` (n,) at its points ``point_index`` (n,); pred < 0 abstains."""
        pred, point_index = pred.long().cpu(), point_index.long().cpu()
        keep = pred >= 0
        votes = self.votes[kind]
        flat = point_index[keep] * self.num_classes + pred[keep]
        votes.view(-1).index_add_(0, flat, torch.ones_like(flat, dtype=votes.dtype))

    def predict(self, points: np.ndarray) -> dict[str, np.ndarray]:
        """(N,) majority class per kind (ties: lowest index); unseen points from the nearest seen.

        Returns:
            kind -> (N,) int64 labels in the vocabulary, all -1 if no view voted.
        """
        out = {}
        for kind, votes in self.votes.items():
            seen = (votes.sum(1) > 0).numpy()
            labels = votes.argmax(1).numpy().astype(np.int64)
            out[kind] = nearest_visible_fill(points, labels, seen)
        return out


def shard_scenes(view_counts: dict[str, int], world_size: int) -> list[list[str]]:
    """Deal scenes to ranks, largest first onto the least loaded rank (deterministic).

    Returns:
        Per rank, its scenes in the input order.
    """
    loads = [0] * world_size
    owner: dict[str, int] = {}
    for name, count in sorted(view_counts.items(), key=lambda kv: (-kv[1], kv[0])):
        r = min(range(world_size), key=lambda i: (loads[i], i))
        owner[name] = r
        loads[r] += max(count, 1)
    return [[s for s in view_counts if owner[s] == r] for r in range(world_size)]


def spread_views(views: list[int], max_views: int) -> list[int]:
    """At most ``max_views`` evenly spaced entries of ``views`` (all when ``max_views <= 0``)."""
    if max_views <= 0 or len(views) <= max_views:
        return list(views)
    pick = np.unique(np.linspace(0, len(views) - 1, max_views).round().astype(int))
    return [views[i] for i in pick]


@dataclass
class EvalResult:
    """Metrics of a split for every prediction kind, plus bookkeeping."""

    metrics: dict[str, OpenVocabMetrics]
    confusion: dict[str, np.ndarray]            # kind -> (K, K) counts over the full class list
    num_scenes: int
    num_views: int
    seconds: float
    scenes_without_views: list[str] = field(default_factory=list)
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # this rank's

    def to_dict(self) -> dict:
        return {
            "num_scenes": self.num_scenes, "num_views": self.num_views,
            "seconds": round(self.seconds, 3),
            "seconds_per_scene": round(self.seconds / max(self.num_scenes, 1), 3),
            "scenes_without_views": self.scenes_without_views,
            "predictions": {k: m.to_dict() for k, m in self.metrics.items()},
            "confusion": {k: c.tolist() for k, c in self.confusion.items()},
        }


@dataclass
class _Pass:
    """Mutable state of one evaluation pass on one rank."""

    votes: dict[str, SceneVotes]
    remaining: dict[str, int]
    matrices: dict[str, ConfusionMatrix]
    vocab_index: np.ndarray
    keep: bool = False
    predictions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    views: int = 0
    scenes: int = 0


def _finish_scene(state: _Pass, dataset: ViewDataset, scene: str) -> None:
    full = dataset.full_scene(scene)
    preds = state.votes.pop(scene).predict(full.points)
    labels = {kind: state.vocab_index[pred] for kind, pred in preds.items()}
    for kind, pred in labels.items():
        state.matrices[kind].update(torch.from_numpy(pred), torch.from_numpy(full.labels))
    if state.keep:
        state.predictions[scene] = labels
    state.scenes += 1


def _vote_batch(state: _Pass, batch, preds: dict[str, Tensor], dataset: ViewDataset) -> list[str]:
    done = []
    offsets = batch.point_offsets.tolist()
    for b, scene in enumerate(batch.scene_names):
        if scene not in state.votes:
            n = dataset.full_scene(scene).num_points
            state.votes[scene] = SceneVotes(n, len(state.vocab_index))
        lo, hi = offsets[b], offsets[b + 1]
        for kind, pred in preds.items():
            state.votes[scene].add(kind, batch.point_index[lo:hi], pred[lo:hi])
        state.remaining[scene] -= 1
        state.views += 1
        if state.remaining[scene] == 0:
            _finish_scene(state, dataset, scene)
            done.append(scene)
    return done


def _plan(dataset: ViewDataset, max_views: int, batch_size: int) -> tuple[list[list[int]],
                                                                          dict[str, int]]:
    items, remaining = [], {}
    for scene in dataset.scenes:
        views = spread_views(dataset.scene_views(scene), max_views)
        if views:
            items += views
            remaining[scene] = len(views)
    batches = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    return batches, remaining


@torch.no_grad()
def evaluate_views(model: nn.Module, dataset: ViewDataset | None, split: CategorySplit, *,
                   class_embeds: Tensor, fusion_cfg: FusionCfg, use_clip: bool = True,
                   batch_size: int = 4, max_views: int = 0, device: torch.device | None = None,
                   amp: bool = False, workers: int = 0, progress: bool = True,
                   keep_predictions: bool = False,
                   caption_encoder: Callable[[list[str]], Tensor] | None = None) -> EvalResult:
    """Evaluate this rank's scenes, then sum the confusion matrices over ranks.

    Args:
        model: the (unwrapped, not DDP) model; it is put in eval mode and left so.
        dataset: eval-mode dataset of this rank's scenes (``None`` when the rank has none).
        split: the category split (class space, base/novel/ignore).
        class_embeds: (C, E) embeddings of the evaluated classes (see ``eval_vocabulary``).
        fusion_cfg: ensemble ratios, binary threshold, gating.
        use_clip: ensemble with CLIP mask probabilities when the model has a vision tower.
        batch_size: views per forward (any value gives the same predictions).
        max_views: views per scene (evenly spaced; 0 = every usable view).
        device: where the model runs (default: its parameters' device).
        amp: bf16 autocast on CUDA.
        workers: DataLoader workers.
        progress: show a per-scene progress bar (rank 0).
        keep_predictions: return every scene's (N,) per-point labels (full class space).
        caption_encoder: views' captions -> (B, E) embeddings, for a model conditioned on text
            (the caption ablation); ``None`` for every other model.
    """
    start = time.perf_counter()
    device = device or next(model.parameters()).device
    vocab_index = np.asarray(split.evaluated, dtype=np.int64)
    novel = set(split.novel)
    is_novel = torch.tensor([i in novel for i in vocab_index], device=device)
    embeds = class_embeds.to(device)
    state = _Pass({}, {}, {k: ConfusionMatrix(split.num_classes, ignore=split.ignore)
                           for k in KINDS}, vocab_index, keep=keep_predictions)
    unusable: list[str] = []
    if dataset is not None:
        model.eval()
        batches, state.remaining = _plan(dataset, max_views, batch_size)
        unusable = [s for s in dataset.scenes if s not in state.remaining]
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate_views,
                            num_workers=workers)
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                    if amp and device.type == "cuda" else nullcontext())
        bar = tqdm(total=len(state.remaining), unit="scene", desc="eval", dynamic_ncols=True,
                   disable=not (progress and D.is_main_process()))
        for batch in loader_batches(loader):
            dev_batch = batch.to(device)
            caps = None if caption_encoder is None else caption_encoder(batch.captions)
            with autocast:
                out = model(dev_batch, embeds, is_novel_class=is_novel, caption_embeds=caps)
            preds = view_point_predictions(out, dev_batch, is_novel_class=is_novel,
                                           fusion_cfg=fusion_cfg, use_clip=use_clip)
            bar.update(len(_vote_batch(state, batch, preds, dataset)))
            bar.set_postfix(views_s=f"{state.views / (time.perf_counter() - start):.2f}")
        bar.close()
    return _reduce(state, split, unusable, time.perf_counter() - start)


def _reduce(state: _Pass, split: CategorySplit, unusable: list[str],
            seconds: float) -> EvalResult:
    for m in state.matrices.values():
        m.all_reduce()
    counts = D.all_reduce_mean(torch.tensor([state.scenes, state.views], dtype=torch.float64))
    world = D.get_world_size()
    unusable = sorted(s for part in D.all_gather_objects(unusable) for s in part)
    if unusable:
        logger.warning("%d scene(s) have no usable view and are left out of the metric: %s",
                       len(unusable), ", ".join(unusable[:10]))
    return EvalResult(
        metrics={k: open_vocab_metrics(m.matrix, split) for k, m in state.matrices.items()},
        confusion={k: m.matrix.numpy().copy() for k, m in state.matrices.items()},
        num_scenes=int(round(float(counts[0]) * world)),
        num_views=int(round(float(counts[1]) * world)), seconds=D.all_reduce_max(seconds),
        scenes_without_views=unusable, predictions=state.predictions)
