"""Pictures people look at after a run: training curves and confusion matrices (matplotlib Agg)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from xmask3d.data.processed import atomic_write

__all__ = ["plot_confusion", "plot_training_curves", "read_jsonl"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL log; a torn last line (crash mid-write) is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _series(records: list[dict], kind: str) -> dict[str, tuple[list[float], list[float]]]:
    out: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for r in records:
        if r.get("kind") != kind:
            continue
        for key, value in r.items():
            if key in ("kind", "step", "epoch", "time") or not isinstance(value, (int, float)):
                continue
            if isinstance(value, bool) or not math.isfinite(value):
                continue
            out[key][0].append(r["step"])
            out[key][1].append(value)
    return dict(out)


def plot_training_curves(log_path: str | Path, png_path: str | Path) -> Path | None:
    """Plot the total loss, every loss term, the learning rates and the selection metrics.

    Args:
        log_path: the run's JSONL log (records with ``kind`` ``"train"`` or ``"select"``).
        png_path: the picture to write.

    Returns:
        ``png_path``, or ``None`` when the log holds no training record.
    """
    records = read_jsonl(log_path)
    train, select = _series(records, "train"), _series(records, "select")
    if not train:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels = [
        (axes[0, 0], "total loss", [k for k in train if k == "loss"], False),
        (axes[0, 1], "loss terms", sorted(k for k in train if k.startswith("loss_")
                                          and not k[-1].isdigit()), True),
        (axes[1, 0], "learning rate", sorted(k for k in train if k.startswith("lr_")), False),
        (axes[1, 1], "selection split (%)", sorted(k for k in select if "IoU" in k), False),
    ]
    for ax, title, keys, log_y in panels:
        source = select if "selection" in title else train
        for key in keys:
            steps, values = source[key]
            ax.plot(steps, values, label=key, marker="o" if len(steps) < 20 else None, ms=3)
        ax.set_title(title)
        ax.set_xlabel("step")
        if log_y and keys and all(v > 0 for k in keys for v in source[k][1]):
            ax.set_yscale("log")
        if keys:
            ax.legend(fontsize=7, ncol=2)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    png_path = Path(png_path)
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return png_path


def plot_confusion(matrix: np.ndarray, class_names: list[str], png_path: str | Path, *,
                   title: str = "", novel: set[str] | None = None) -> Path:
    """A row-normalised confusion matrix (rows: ground truth, columns: prediction).

    Args:
        matrix: (K, K) counts over ``class_names``.
        class_names: K names; novel ones are marked with ``*``.
        png_path: the picture to write.
        title: figure title.
        novel: names of the novel classes.
    """
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    labels = [f"{n}*" if novel and n in novel else n for n in class_names]
    k = len(labels)
    size = min(max(6.0, 0.35 * k + 2), 40.0)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    font = max(3, min(9, int(400 / max(k, 1))))
    ax.set_xticks(range(k), labels, rotation=90, fontsize=font)
    ax.set_yticks(range(k), labels, fontsize=font)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if norm[i, j] >= 0.005:
                    ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center",
                            fontsize=font - 1, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title or "confusion (row-normalised %, * = novel)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    png_path = Path(png_path)
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return png_path
