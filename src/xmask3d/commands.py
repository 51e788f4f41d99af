"""The list of subcommands and the small ones that need no module of their own."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

# module paths whose ``add_parser(subparsers)`` registers a subcommand, in help order
_MODULES = (
    "xmask3d.demo",
    "xmask3d.data.synth.cli",
    "xmask3d.data.prepare",
    "xmask3d.engine.train_cli",
    "xmask3d.engine.eval_cli",
    "xmask3d.apps.segment",
    "xmask3d.apps.query",
    "xmask3d.interop.import_cli",
    "xmask3d.viewer.cli",
)


def _add_splits(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("splits", help="print the base/novel category splits of every benchmark")
    p.set_defaults(func=_run_splits)


def _run_splits(args: argparse.Namespace) -> int:
    from xmask3d.data.splits import format_split_table

    print(format_split_table())
    return 0


def register_all() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Registration functions of every subcommand, in help order."""
    return [*(importlib.import_module(name).add_parser for name in _MODULES), _add_splits]
