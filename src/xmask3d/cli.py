"""The ``xmask3d`` command line: one tool, one subcommand per job.

Each subcommand lives next to the code it drives and registers itself through an
``add_parser(subparsers)`` function that sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from xmask3d import __version__
from xmask3d.errors import XMask3DError

log = logging.getLogger("xmask3d")


def _registrars() -> list[Callable[[argparse._SubParsersAction], None]]:
    from xmask3d.commands import register_all

    return register_all()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xmask3d",
        description="Open-vocabulary 3D semantic segmentation of indoor scans (XMask3D).")
    parser.add_argument("--version", action="version", version=f"xmask3d {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _registrars():
        register(sub)
    return parser


@contextlib.contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit(143)`` while a command runs.

    Python's default SIGTERM action ends the process on the spot; as an exception it unwinds
    instead, so that a file being written (``atomic_write``) removes its temporary file and
    no output is left half-written. (Nothing can clean up after SIGKILL; a temporary file,
    ``.<name>.<random>.tmp``, may then remain, but never a half-written ``<name>``.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (importable for tests)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        with _terminate_as_exit():
            return int(args.func(args) or 0)
    except XMask3DError as exc:
        print(f"xmask3d {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
