"""Quality against training time of one training run, from the checkpoints it left behind.

``python -m benchmarks.recipe_curve --run RUN --label NAME [--ckpt-glob 'snap/*.pt']``
evaluates each checkpoint of ``RUN`` (the same multi-view evaluation as the quality section, on
the run's own ``data.root`` val split) and stores, under ``recipe.curves[NAME]`` of
docs/results.json, one point per checkpoint: its optimiser step, the training seconds up to that
step (summed from the run's ``log.jsonl`` windows, so checkpointing and evaluation do not count),
and the fused / 3D / 2D hIoU, mIoU-base and mIoU-novel.

Intermediate checkpoints of one run sit part-way down its cosine schedule: they show how fast a
recipe gets somewhere, not what a run trained for that long would reach (the quality section's
``budget`` runs measure that, each with its own schedule). ``recipe.before`` holds the runs of the
recipe this replaced, copied from the quality section that measured them (see docs/training.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from benchmarks.common import merge_results

METRICS = ("hIoU", "mIoU_base", "mIoU_novel")


def train_seconds_by_step(log: Path) -> dict[int, float]:
    """Cumulative training seconds at each logged step of a run's ``log.jsonl``.

    Each train record covers the steps since the previous one at ``views_per_s``; the views of
    a step are read from the config copy next to the log (``train.batch_size``).
    """
    from xmask3d.config import load_config

    batch = load_config(str(log.parent / "config.yaml")).train.batch_size
    out, total, prev = {}, 0.0, 0
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") != "train" or not rec.get("views_per_s"):
            continue
        total += (rec["step"] - prev) * batch / rec["views_per_s"]
        prev = rec["step"]
        out[prev] = total
    return out


def evaluate_checkpoint(ckpt: Path, out: Path) -> dict:
    """``xmask3d eval`` of ``ckpt`` into ``out`` (skipped when ``out`` holds its metrics)."""
    metrics = out / "metrics.json"
    if not metrics.is_file():
        from xmask3d.cli import main

        if main(["eval", "--ckpt", str(ckpt), "--out", str(out), "--no-progress"]) != 0:
            raise RuntimeError(f"xmask3d eval of {ckpt} failed")
    preds = json.loads(metrics.read_text())["predictions"]
    return {k: {m: v[m] for m in METRICS} for k, v in preds.items()}


def curve(run: Path, ckpts: list[Path]) -> list[dict]:
    """One point per checkpoint, by step."""
    seconds = train_seconds_by_step(run / "log.jsonl")
    points = []
    for ckpt in ckpts:
        step = int(torch.load(ckpt, map_location="cpu", weights_only=False)["step"])
        logged = [s for s in seconds if s <= step]
        points.append({"step": step, "checkpoint": str(ckpt),
                       "train_s": round(seconds[max(logged)], 1) if logged else 0.0,
                       "predictions": evaluate_checkpoint(ckpt, run / f"eval_step_{step}")})
    return sorted(points, key=lambda p: p["step"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.recipe_curve")
    p.add_argument("--run", required=True, help="training run folder (log.jsonl, config.yaml)")
    p.add_argument("--label", required=True, help="curve name in results.json")
    p.add_argument("--ckpt-glob", default="snap/*.pt", help="checkpoints under --run "
                   "(last.pt is always added)")
    p.add_argument("--results", default="docs/results.json")
    p.add_argument("--note", default="", help="what the run was (stored with the curve)")
    p.add_argument("--untimed", action="store_true", help="the run shared the cores with other "
                   "jobs: its quality counts, its time does not (left out of the figure)")
    a = p.parse_args(argv)
    run, results = Path(a.run), Path(a.results)
    ckpts = sorted(c for c in {*run.glob(a.ckpt_glob), run / "last.pt"} if c.is_file())
    if not ckpts:
        raise SystemExit(f"no checkpoint under {run}")
    data = json.loads(results.read_text()) if results.is_file() else {}
    section = data.get("recipe", {"curves": {}})
    # two snapshots of the same step (the last one and last.pt) count once
    points = {pt["step"]: pt for pt in curve(run, ckpts)}
    from xmask3d.config import load_config

    cfg = load_config(str(run / "config.yaml"))
    section.setdefault("curves", {})[a.label] = {
        "run": str(run), "note": a.note, "train_threads": cfg.train.threads,
        "timed": not a.untimed,
        "points": [points[s] for s in sorted(points)]}
    merge_results(results, "recipe", section)
    print(json.dumps(section["curves"][a.label]["points"][-1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
