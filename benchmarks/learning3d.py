"""Diagnostic: how fast the sparse 3D network alone learns the synthetic benchmark.

The quality section trains the whole model for a fixed number of optimiser steps and misses the
issue's targets. This section separates the causes: it trains only the 3D branch of the tiny
B15/N4 model (``backbone3d`` + ``point_proj``, the published point cross-entropy against the base
class text embeddings, nothing else) on the same benchmark data with the same batch size, warm-up
and cosine schedule, at the config's 3D learning rate and at a larger one. Every ``every`` steps
it scores each usable view of the held-out ``val`` scenes (per view, over every base and novel
class, no voting); at the end it scores the views of the *training* scenes the same way. If the
3D network alone is as weak as the full model's 3D-only prediction at the same budget, the other
losses are not what holds it back; if it is as weak on its own training scenes as on held-out
ones, the budget (under-fitting), not generalisation, is the limit.

Not an evaluation protocol: per-view scores of the visible points, no multi-view votes and no
fill of unseen points (the quality section's protocol), so its numbers compare with each other,
not with the tables above. ``python -m benchmarks --only learning3d``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from benchmarks.common import merge_results, read_section, start_child
from xmask3d.data.batch import IGNORE_LABEL
from xmask3d.data.dataset import collate_views
from xmask3d.data.processed import atomic_write

CONFIG = "tiny/scannet_b15n4"


@dataclass
class Curve:
    """One 3D-only training run of the diagnostic."""

    steps: int = 200
    every: int = 50
    lr_3d: float | None = None         # None: the config's train.lr_3d
    seed: int = 0
    overrides: list[str] = field(default_factory=lambda: ["data.loop=8",
                                                          "data.select_fraction=0"])


def _per_view_metrics(model, dataset, class_embeds, split, scale: float) -> dict:
    """mIoU-base / mIoU-novel (percent) of per-view 3D predictions over ``dataset``'s views."""
    from xmask3d.eval.metrics import ConfusionMatrix, open_vocab_metrics
    from xmask3d.models.fusion.mask_to_points import cosine_logits

    cm = ConfusionMatrix(split.num_classes, ignore=tuple(split.ignore))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=4, collate_fn=collate_views):
            feats, _, _ = model.encode_3d(batch)
            logits = cosine_logits(feats, class_embeds, scale)
            logits[:, list(split.ignore)] = float("-inf")   # only base + novel are offered
            cm.update(logits.argmax(1), batch.labels)
    model.train(was_training)
    m = open_vocab_metrics(cm.matrix, split)
    return {"mIoU_base": m.miou_base, "mIoU_novel": m.miou_novel}


def train_curve(curve: Curve, data: Path) -> dict:
    """Train the 3D branch alone; return its learning curve (see the module docstring)."""
    from xmask3d.config import load_config
    from xmask3d.engine.data import category_split, open_layout, view_dataset
    from xmask3d.engine.optim import build_optimizer, build_scheduler
    from xmask3d.engine.sampler import EpochBatchSampler
    from xmask3d.models.build import build_model, build_text
    from xmask3d.models.fusion.mask_to_points import cosine_logits

    cfg = load_config(CONFIG, [f"data.root={data}", f"train.seed={curve.seed}",
                               *curve.overrides])
    lr = cfg.train.lr_3d if curve.lr_3d is None else curve.lr_3d
    torch.manual_seed(curve.seed)
    text = build_text(cfg)
    model = build_model(cfg, text_dim=text.dim)
    split, layout = category_split(cfg), open_layout(cfg)
    train_set = view_dataset(cfg, layout, split=cfg.data.train_split, mode="train")
    val_set = view_dataset(cfg, layout, split="val", mode="eval")
    seen_set = view_dataset(cfg, layout, split=cfg.data.train_split, mode="eval")
    base = text.class_embeddings(list(split.base_names))
    full = text.class_embeddings(list(split.class_names))
    params = [p for m in (model.backbone3d, model.point_proj) for p in m.parameters()]
    opt = build_optimizer([{"params": params, "lr": lr, "weight_decay": cfg.train.weight_decay}])
    sched = build_scheduler(opt, total_steps=curve.steps, warmup_steps=cfg.train.warmup_steps)
    sampler = EpochBatchSampler(len(train_set), cfg.train.batch_size, seed=curve.seed)
    scale = float(model.mask_generator.mask_embed.logit_scale().detach())
    points, losses, step, epoch, t_train = [], [], 0, 0, 0.0
    t_start = time.perf_counter()
    model.train()
    while step < curve.steps:
        train_set.set_epoch(epoch)
        sampler.set_epoch(epoch)
        epoch += 1
        t0 = time.perf_counter()
        for batch in DataLoader(train_set, batch_sampler=sampler, collate_fn=collate_views):
            feats, _, _ = model.encode_3d(batch)
            loss = F.cross_entropy(cosine_logits(feats, base, scale), batch.labels,
                                   ignore_index=IGNORE_LABEL)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            if step % curve.every == 0 or step == curve.steps:
                t_train += time.perf_counter() - t0
                recent = losses[-curve.every:]
                points.append({"step": step, "train_loss": sum(recent) / len(recent),
                               "val": _per_view_metrics(model, val_set, full, split, scale)})
                print(json.dumps(points[-1]), flush=True)
                t0 = time.perf_counter()
            if step >= curve.steps:
                break
        t_train += time.perf_counter() - t0
    return {**asdict(curve), "lr_3d": lr, "config": CONFIG, "points": points,
            "train_scenes": _per_view_metrics(model, seen_set, full, split, scale),
            "train_s": round(t_train, 1), "threads": torch.get_num_threads(),
            "wall_s": round(time.perf_counter() - t_start, 1)}


def novel_diagnosis(ckpt: Path, data: Path) -> dict:
    """Where the novel classes are lost, for a trained B15/N4 checkpoint, on the val views.

    Per view (visible points, no votes): the share of base-labelled points the binary head calls
    base, the share of novel-labelled points it calls novel, and the accuracy of the 3D features
    at choosing among the novel classes on the novel points (what a perfect base/novel gate would
    leave; chance is 1 / #novel): over all novel points, per novel class (its recall) and the
    mean of those recalls (each class counts the same, as in mIoU).
    """
    from xmask3d.engine.checkpoint import load_checkpoint, load_model_state
    from xmask3d.engine.data import category_split, open_layout, view_dataset
    from xmask3d.models.build import build_model, build_text
    from xmask3d.models.fusion.mask_to_points import cosine_logits

    ck = load_checkpoint(ckpt)
    cfg = ck["config"]
    cfg = replace(cfg, data=replace(cfg.data, root=str(data)))
    text = build_text(cfg)
    model = build_model(cfg, text_dim=text.dim)
    load_model_state(model, ck["model"], ckpt)
    model.eval()
    split = category_split(cfg)
    novel, base = torch.tensor(split.novel), torch.tensor(split.base)
    embeds = text.class_embeddings([split.class_names[i] for i in split.novel])
    scale = float(model.mask_generator.mask_embed.logit_scale().detach())
    counts = torch.zeros(5, dtype=torch.long)  # base->base, base, novel->novel, novel, correct
    per_class = torch.zeros(len(split.novel), 2, dtype=torch.long)   # novel class: right, all
    with torch.no_grad():
        for batch in DataLoader(view_dataset(cfg, open_layout(cfg), split="val", mode="eval"),
                                batch_size=4, collate_fn=collate_views):
            feats, _, binary = model.encode_3d(batch)
            is_base, is_novel = torch.isin(batch.labels, base), torch.isin(batch.labels, novel)
            called_base = binary > 0
            choice = novel[cosine_logits(feats, embeds, scale).argmax(1)]
            counts += torch.tensor([int((called_base & is_base).sum()), int(is_base.sum()),
                                    int((~called_base & is_novel).sum()), int(is_novel.sum()),
                                    int((choice == batch.labels)[is_novel].sum())])
            for j, k in enumerate(split.novel):
                on = batch.labels == k
                per_class[j] += torch.tensor([int((choice == k)[on].sum()), int(on.sum())])
    c = counts.tolist()
    recall = {split.class_names[k]: (100.0 * int(r) / int(n) if int(n) else None)
              for k, (r, n) in zip(split.novel, per_class, strict=True)}
    seen = [v for v in recall.values() if v is not None]
    return {"checkpoint": str(ckpt), "steps": int(ck.get("step", 0)),
            "base_called_base": 100.0 * c[0] / max(c[1], 1),
            "novel_called_novel": 100.0 * c[2] / max(c[3], 1),
            "novel_choice_acc": 100.0 * c[4] / max(c[3], 1),
            "novel_choice_per_class": recall,
            "novel_choice_class_mean": sum(seen) / len(seen) if seen else None,
            "chance": 100.0 / len(split.novel)}


def run_learning3d(results: Path, runs_dir: Path, data: Path, *, curves: list[Curve],
                   jobs: int = 2, checkpoints: list[Path] = ()) -> list[dict]:
    """Run ``curves`` (``jobs`` at a time in child processes), diagnose the novel classes of
    the trained ``checkpoints`` that exist, and store both under ``learning3d`` in
    ``results``."""
    jobs = max(jobs, 1)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    runs_dir.mkdir(parents=True, exist_ok=True)
    out: list[dict] = []
    for start in range(0, len(curves), jobs):
        procs = []
        for i, c in enumerate(curves[start:start + jobs], start):
            res, log = runs_dir / f"learning3d_{i}.json", runs_dir / f"learning3d_{i}.log"
            job = {"curve": asdict(c), "data": str(data), "out": str(res)}
            procs.append((res, log, start_child("benchmarks.learning3d", job, log,
                                                threads=threads)))
        for res, log, proc in procs:
            if proc.wait() != 0:
                raise RuntimeError(f"learning3d run failed; see {log}")
            out.append({**json.loads(res.read_text()), "parallel_jobs": len(procs)})
    gate = [novel_diagnosis(p, data) for p in checkpoints if Path(p).is_file()]
    merge_results(results, "learning3d", {"runs": out, "novel": gate})
    return out


def _cli(argv: list[str]) -> int:
    """``python -m benchmarks.learning3d --data ROOT --steps N [--set KEY=VALUE ...]``: one curve,
    printed as JSON (e.g. ``--set data.height_channel=true --set data.loop=2``)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m benchmarks.learning3d")
    p.add_argument("--data", required=True, help="processed dataset root (train and val)")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--every", type=int, default=0, help="val every N steps (0: at the end)")
    p.add_argument("--lr-3d", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--diagnose", action="append", default=[], metavar="CKPT=LABEL",
                   help="instead of training: run novel_diagnosis on these checkpoints (val of "
                        "--data) and store them, labelled, under learning3d.novel of --results")
    p.add_argument("--results", default="docs/results.json")
    a = p.parse_args(argv)
    if a.diagnose:
        rows = []
        for item in a.diagnose:
            path, _, label = item.partition("=")
            rows.append({**novel_diagnosis(Path(path), Path(a.data)), "label": label or path})
            print(json.dumps(rows[-1]))
        results = Path(a.results)
        section = read_section(results, "learning3d")
        labels = {r["label"] for r in rows}
        section["novel"] = [r for r in section.get("novel", []) if r.get("label") not in labels]
        section["novel"] += rows
        merge_results(results, "learning3d", section)
        return 0
    curve = Curve(steps=a.steps, every=a.every or a.steps, lr_3d=a.lr_3d, seed=a.seed,
                  overrides=["data.loop=8", "data.select_fraction=0", *a.overrides])
    print(json.dumps(train_curve(curve, Path(a.data))))
    return 0


def _main(argv: list[str]) -> int:
    """Child entry point: ``python -m benchmarks.learning3d JOB_JSON`` (or the options of
    :func:`_cli`)."""
    if not argv or argv[0].startswith("-"):
        return _cli(argv)
    job = json.loads(argv[0])
    result = train_curve(Curve(**job["curve"]), Path(job["data"]))
    atomic_write(Path(job["out"]), lambda t: Path(t).write_text(json.dumps(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
