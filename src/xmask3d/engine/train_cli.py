"""``xmask3d train``: train on a processed dataset, alone or under ``torchrun`` (DDP)."""

from __future__ import annotations

import argparse
import json
import logging

from xmask3d.config import load_config

logger = logging.getLogger(__name__)

_EPILOG = """examples:
  xmask3d train --config tiny/scannet_b15n4 --set data.root=runs/synthetic
  xmask3d train --config scannet/b15n4 --resume auto
  torchrun --nproc_per_node 4 -m xmask3d train --config scannet/b15n4
  torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
      -m xmask3d train --config scannet200/b170n30
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train``."""
    p = subparsers.add_parser(
        "train", help="train XMask3D (one process, or one rank per GPU under torchrun)",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True,
                   help="config file or packaged name (e.g. scannet/b15n4, tiny/scannet_b15n4)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.lr=2e-4 (repeatable)")
    p.add_argument("--resume", metavar="PATH|auto",
                   help="continue from a checkpoint; 'auto' = <out>/last.pt when it exists")
    p.add_argument("--max-steps", type=int, default=None,
                   help="train for this many optimiser steps in total (train.max_steps): it "
                        "replaces train.epochs, and the learning-rate schedule spans these steps")
    p.add_argument("--out", default=None, help="run folder (train.out_dir)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, train, print where the results are."""
    from xmask3d.engine.fit import train

    overrides = list(args.overrides)
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={int(args.max_steps)}")
    cfg = load_config(args.config, overrides)
    if args.out:
        cfg.train.out_dir = str(args.out)
    summary = train(cfg, resume=args.resume, device=args.device, progress=not args.no_progress)
    if summary.get("world_size", 1) == 1 or _is_rank0():
        print(json.dumps({k: summary[k] for k in ("steps", "views_per_s", "last_checkpoint",
                                                   "best_checkpoint", "best")}, indent=2))
    return 0


def _is_rank0() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
