"""Regenerate the pictures of docs/synthetic-data.md (docs/img/synth_*.png)."""

from __future__ import annotations

import argparse

from xmask3d.data.synth.figure import make_figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="docs/img", help="output folder (default docs/img)")
    ap.add_argument("--seed", type=int, default=1, help="seed (default 1: all 20 classes)")
    ap.add_argument("--scenes", type=int, default=5, help="scenes to show (default 5)")
    args = ap.parse_args()
    for path in make_figures(args.out, seed=args.seed, scenes=args.scenes):
        print(path)


if __name__ == "__main__":
    main()
