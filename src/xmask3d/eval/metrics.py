"""Confusion-matrix segmentation metrics with base/novel mIoU and their harmonic mean (hIoU).

Follows the protocol of PLA / XMask3D (method.md §5, benchmarks-and-data.md §2.4): the confusion
matrix is accumulated over a whole dataset (all points of all scenes) before IoU is computed, the
ignore classes and unannotated points are excluded, mIoU-base and mIoU-novel average per-class IoU
over the split's base and novel classes, and hIoU = 2·B·N / (B + N) of those two means.
Unlike the published code, a class with no ground-truth point in the evaluated data is reported as
such and left out of the averages instead of entering them as IoU 0 (method §5, "oddities").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from xmask3d.data.scene import IGNORE_LABEL
from xmask3d.data.splits import CategorySplit


def harmonic_mean(base: float, novel: float) -> float:
    """hIoU = 2·b·n / (b + n); 0 when both are 0; NaN if either is NaN."""
    if math.isnan(base) or math.isnan(novel):
        return float("nan")
    return 0.0 if base + novel == 0 else 2.0 * base * novel / (base + novel)


class ConfusionMatrix:
    """A (K, K) confusion matrix (rows = ground truth, columns = prediction), int64.

    Args:
        num_classes: K, the size of the benchmark's full class list.
        ignore: class indices whose ground-truth points are excluded (plus ``IGNORE_LABEL``).
    """

    def __init__(self, num_classes: int, *, ignore: tuple[int, ...] = ()) -> None:
        self.num_classes = num_classes
        self.ignore = tuple(ignore)
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> None:
        """Add the points of one scene (or batch). ``pred`` and ``gt`` are (N,) class indices."""
        pred = torch.as_tensor(pred).reshape(-1).long().cpu()
        gt = torch.as_tensor(gt).reshape(-1).long().cpu()
        if pred.shape != gt.shape:
            raise ValueError(f"prediction has {pred.numel()} points, ground truth {gt.numel()}")
        keep = (gt >= 0) & (gt < self.num_classes) & (gt != IGNORE_LABEL)
        for c in self.ignore:
            keep &= gt != c
        pred, gt = pred[keep], gt[keep]
        if pred.numel() and (pred.min() < 0 or pred.max() >= self.num_classes):
            raise ValueError(f"predictions must lie in [0, {self.num_classes}), "
                             f"got range [{int(pred.min())}, {int(pred.max())}]")
        idx = gt * self.num_classes + pred
        self.matrix += torch.bincount(idx, minlength=self.num_classes**2).view_as(self.matrix)

    def merge(self, other: ConfusionMatrix) -> None:
        self.matrix += other.matrix

    def all_reduce(self) -> None:
        """Sum the matrix over all ranks when torch.distributed is initialised (no-op otherwise)."""
        if dist.is_available() and dist.is_initialized():
            t = self.matrix.clone()
            if dist.get_backend() == "nccl":
                t = t.cuda()
            dist.all_reduce(t)
            self.matrix = t.cpu()


def per_class_iou(matrix: torch.Tensor | np.ndarray) -> np.ndarray:
    """IoU per class from a confusion matrix; NaN for classes with no ground-truth point."""
    m = np.asarray(torch.as_tensor(matrix), dtype=np.float64)
    inter = np.diag(m)
    gt = m.sum(1)
    union = gt + m.sum(0) - inter
    iou = np.full(len(m), np.nan)
    has_gt = gt > 0
    iou[has_gt] = inter[has_gt] / union[has_gt]
    return iou


@dataclass
class OpenVocabMetrics:
    """mIoU over base and novel classes and hIoU (all in percent), plus per-class IoU.

    Attributes:
        miou_base, miou_novel, hiou, miou_all: percentages (NaN if no class of the group has
            ground truth).
        per_class: class name -> IoU in percent, or ``None`` when the class has no ground truth.
        no_ground_truth: names of evaluated classes without any ground-truth point (excluded).
        base, novel: names of the classes in each group.
    """

    miou_base: float
    miou_novel: float
    hiou: float
    miou_all: float
    per_class: dict[str, float | None] = field(default_factory=dict)
    no_ground_truth: list[str] = field(default_factory=list)
    base: list[str] = field(default_factory=list)
    novel: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "hIoU": self.hiou, "mIoU_base": self.miou_base, "mIoU_novel": self.miou_novel,
            "mIoU_all": self.miou_all, "per_class_IoU": self.per_class,
            "no_ground_truth": self.no_ground_truth, "base_classes": self.base,
            "novel_classes": self.novel,
        }


def _mean_pct(iou: np.ndarray, idx: tuple[int, ...]) -> float:
    vals = iou[list(idx)] if idx else np.array([])
    vals = vals[~np.isnan(vals)]
    return float(100.0 * vals.mean()) if vals.size else float("nan")


def open_vocab_metrics(matrix: torch.Tensor | np.ndarray, split: CategorySplit, *,
                       drop_trainonly: bool = False) -> OpenVocabMetrics:
    """Base / novel / harmonic mIoU of a dataset-level confusion matrix.

    Args:
        matrix: (K, K) confusion matrix over the split's full class list.
        split: the category split (base, novel and ignore indices).
        drop_trainonly: leave ScanNet200's 11 train-only classes out of the averages (RegionPLC).
    """
    iou = per_class_iou(matrix)
    dropped = set(split.trainonly()) if drop_trainonly else set()
    base = tuple(i for i in split.base if i not in dropped)
    novel = tuple(i for i in split.novel if i not in dropped)
    names = split.class_names
    b, n = _mean_pct(iou, base), _mean_pct(iou, novel)
    evaluated = tuple(sorted(base + novel))
    return OpenVocabMetrics(
        miou_base=b, miou_novel=n, hiou=harmonic_mean(b, n),
        miou_all=_mean_pct(iou, evaluated),
        per_class={names[i]: (None if np.isnan(iou[i]) else float(100.0 * iou[i]))
                   for i in evaluated},
        no_ground_truth=[names[i] for i in evaluated if np.isnan(iou[i])],
        base=[names[i] for i in base], novel=[names[i] for i in novel],
    )


def format_metrics_table(results: dict[str, OpenVocabMetrics]) -> str:
    """A terminal table: one row per prediction kind (e.g. fused / 3D-only / 2D-only)."""
    lines = [f"{'prediction':<12} {'hIoU':>7} {'mIoU-B':>7} {'mIoU-N':>7} {'mIoU':>7}"]
    for name, m in results.items():
        lines.append(f"{name:<12} {m.hiou:7.1f} {m.miou_base:7.1f} {m.miou_novel:7.1f} "
                     f"{m.miou_all:7.1f}")
    return "\n".join(lines)
