"""``xmask3d eval``: multi-view evaluation of a checkpoint on a split (table, JSON, PNG)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from xmask3d.config import XMask3DConfig, load_config, to_dict
from xmask3d.data.processed import atomic_write
from xmask3d.data.splits import CategorySplit
from xmask3d.errors import CheckpointError

# torch loads inside the functions, so that `xmask3d eval --help` and bad arguments answer at once
if TYPE_CHECKING:
    from xmask3d.eval.metrics import OpenVocabMetrics

logger = logging.getLogger(__name__)

_EPILOG = """examples:
  xmask3d eval --ckpt runs/tiny/best.pt
  xmask3d eval --config scannet/b15n4 --ckpt runs/full/best.pt --split val --out runs/eval
  torchrun --nproc_per_node 8 -m xmask3d eval --ckpt runs/full/best.pt
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``eval``."""
    p = subparsers.add_parser(
        "eval", help="evaluate a checkpoint on every usable view of every scene of a split",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="checkpoint (last.pt / best.pt)")
    p.add_argument("--config", default=None,
                   help="config file or packaged name; default: the one saved in the checkpoint")
    p.add_argument("--split", default=None,
                   help="folder under scannet_3d/ (default: data.val_split)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set eval.batch_size=8 (repeatable)")
    p.add_argument("--out", default=None,
                   help="output folder (default eval.out_dir, else <ckpt folder>/eval_<split>)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def resolve_config(ckpt_path: str, config: str | None,
                   overrides: list[str]) -> tuple[XMask3DConfig, dict]:
    """The evaluation config (given, or the checkpoint's) and the validated checkpoint."""
    from xmask3d.engine.checkpoint import architecture_diff, load_checkpoint

    if config is not None:
        cfg = load_config(config, overrides)
        return cfg, load_checkpoint(ckpt_path, expected_config=cfg)
    ckpt = load_checkpoint(ckpt_path)
    cfg = load_config(None, overrides, data=to_dict(ckpt["config"]))
    diff = architecture_diff(ckpt["config"], cfg)
    if diff:
        raise CheckpointError(f"{ckpt_path}: --set changes the architecture of the checkpoint "
                              "(checkpoint vs config):\n  " + "\n  ".join(diff))
    return cfg, ckpt


def format_per_class(results: dict[str, OpenVocabMetrics], split: CategorySplit) -> str:
    """Per-class IoU (%) of every prediction kind; ``*`` marks novel classes, ``-`` no GT."""
    kinds = list(results)
    lines = [f"{'class':<28}" + "".join(f"{k:>8}" for k in kinds)]
    novel = set(split.novel_names)
    for name in results[kinds[0]].per_class:
        cells = []
        for k in kinds:
            v = results[k].per_class.get(name)
            cells.append(f"{'-':>8}" if v is None else f"{v:8.1f}")
        label = f"{name}{'*' if name in novel else ''}"
        lines.append(f"{label[:28]:<28}" + "".join(cells))
    return "\n".join(lines)


def write_outputs(result, split: CategorySplit, out_dir: Path, *, meta: dict) -> Path:
    """``metrics.json`` and ``confusion_<kind>.png`` in ``out_dir``; returns the JSON path."""
    from xmask3d.engine.plots import plot_confusion

    out_dir.mkdir(parents=True, exist_ok=True)
    data = {**meta, **result.to_dict()}
    path = out_dir / "metrics.json"
    text = json.dumps(data, indent=2)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    idx = list(split.evaluated)
    names = [split.class_names[i] for i in idx]
    for kind, matrix in result.confusion.items():
        plot_confusion(matrix[idx][:, idx], names, out_dir / f"confusion_{kind}.png",
                       title=f"{meta['split']}: {kind} prediction (row-normalised %, * = novel)",
                       novel=set(split.novel_names))
    return path


def report(result, split: CategorySplit, out_dir: Path, *, meta: dict) -> Path:
    """Print the summary and per-class tables; write ``metrics.json`` and the PNGs."""
    from xmask3d.eval.metrics import format_metrics_table

    path = write_outputs(result, split, out_dir, meta=meta)
    named = {"fused": result.metrics["fused"], "3d-only": result.metrics["3d"],
             "2d-only": result.metrics["2d"]}
    print(f"{split.name} / {meta['split']}: {result.num_scenes} scenes, {result.num_views} "
          f"views, {result.seconds:.1f} s ({result.seconds / max(result.num_scenes, 1):.2f} s "
          "per scene)")
    print(format_metrics_table(named))
    print(format_per_class(named, split))
    print(f"wrote {path} and confusion_*.png")
    return path


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the tables, write JSON and PNGs (rank 0)."""
    from xmask3d.apps.bundled import checkpoint_file

    checkpoint_file(args.ckpt)       # a missing, empty or truncated file: refused before torch
    import torch

    from xmask3d.engine import distributed as D
    from xmask3d.engine.checkpoint import load_model_state
    from xmask3d.engine.data import category_split, eval_shard, eval_vocabulary, open_layout
    from xmask3d.engine.evaluator import evaluate_views
    from xmask3d.engine.trainer import caption_encoder
    from xmask3d.models.build import build_model, build_text

    cfg, ckpt = resolve_config(args.ckpt, args.config, args.overrides)
    info = D.init_distributed(args.device)
    threads, ok = torch.get_num_threads(), False
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    try:
        text = build_text(cfg)
        model = build_model(cfg, text_dim=text.dim)
        load_model_state(model, ckpt["model"], args.ckpt)
        model.to(info.device)
        split = category_split(cfg)
        folder = args.split or cfg.data.val_split
        dataset = eval_shard(cfg, open_layout(cfg), split=folder, rank=info.rank,
                             world_size=info.world_size)
        names, _, _ = eval_vocabulary(split)
        result = evaluate_views(
            model, dataset, split, class_embeds=text.class_embeddings(names),
            fusion_cfg=cfg.fusion, use_clip=cfg.eval.clip_ensemble,
            batch_size=cfg.eval.batch_size, max_views=cfg.eval.max_views, device=info.device,
            amp=cfg.train.amp, workers=cfg.data.workers, progress=not args.no_progress,
            caption_encoder=caption_encoder(cfg, text, info.device))
        if info.is_main:
            out_dir = Path(args.out or cfg.eval.out_dir or Path(args.ckpt).parent
                           / f"eval_{folder}")
            report(result, split, out_dir, meta={
                "split": folder, "category_split": split.name, "checkpoint": str(args.ckpt),
                "step": int(ckpt["step"]), "world_size": info.world_size})
        ok = True
    finally:
        torch.set_num_threads(threads)
        if info.world_size > 1:
            D.cleanup_distributed(wait=ok)
    return 0
