"""The ``xmask3d synth`` subcommand: generate a synthetic indoor dataset."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace

from xmask3d.data.synth.generate import SynthConfig, generate_dataset
from xmask3d.data.synth.regions import RegionNoise

logger = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``synth`` on an ``argparse`` subparsers object and return its parser."""
    p = subparsers.add_parser(
        "synth", help="generate synthetic indoor scenes (points, RGB-D views, captions)",
        description="Procedurally generate rooms with all 20 ScanNet20 classes, sample their "
                    "surfaces, render RGB-D views with labels and caption them, in the "
                    "processed ScanNet layout that every reader of xmask3d loads.")
    p.add_argument("--out", required=True, help="output dataset root")
    p.add_argument("--scenes", type=int, default=10, help="number of scenes (default 10)")
    p.add_argument("--views", type=int, default=20, help="views per scene (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="fraction of scenes in the val split (default 0.2)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--density", "--points-per-m2", dest="density", type=float, default=600.0,
                   help="surface points per square metre (default 600, about 30k-100k points "
                        "per room like ScanNet's vh_clean_2 meshes)")
    p.add_argument("--region-noise", type=float, default=None, metavar="R",
                   help="set all four region-caption error rates below to R (e.g. 0, 0.2, 0.4); "
                        "the individual options override it")
    default = RegionNoise()
    for name, what in (("miss", "objects without a region"),
                       ("wrong_noun", "regions whose noun is replaced by another object kind"),
                       ("merge", "regions merged with their nearest neighbour into one box"),
                       ("hallucinate", "extra regions naming an absent object, per real region")):
        p.add_argument(f"--region-{name.replace('_', '-')}", dest=f"region_{name}", type=float,
                       default=None, help=f"rate of {what} (default {getattr(default, name)})")
    p.add_argument("--studio", type=float, default=0.0, metavar="F",
                   help="fraction of scenes that are large studio rooms holding a bedroom, a "
                        "living room and a kitchen (default 0)")
    p.add_argument("--color-cast", type=float, default=0.0, metavar="S",
                   help="per-scene exposure exp(U(-S, S)) and white balance exp(N(0, S/3)) of the "
                        "points and views (default 0; 0.3 gives real-scan-like variety)")
    p.add_argument("--scan-views", type=int, default=0, metavar="N",
                   help="make each point cloud as a real scan is made: N noisy depth frames "
                        "along the camera loop, fused in 4.5 cm voxels (no ceiling, no "
                        "undersides, holes where the camera never looked; about 3 s per scene "
                        "for N = 40); default 0 samples every surface")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dataset previously written by `xmask3d synth` in --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``xmask3d synth`` with parsed ``args``; returns the exit code."""
    noise = RegionNoise() if args.region_noise is None else RegionNoise.uniform(args.region_noise)
    rates = {k: getattr(args, f"region_{k}") for k in ("miss", "wrong_noun", "merge",
                                                        "hallucinate")}
    noise = replace(noise, **{k: v for k, v in rates.items() if v is not None})
    cfg = SynthConfig(scenes=args.scenes, views=args.views, seed=args.seed,
                      val_fraction=args.val_fraction, density=args.density, region_noise=noise,
                      studio=args.studio, color_cast=args.color_cast,
                      scan_views=args.scan_views)
    summary = generate_dataset(args.out, cfg, workers=args.workers, overwrite=args.overwrite,
                               progress=not args.no_progress)
    pts = summary["points_per_scene"]
    print(f"wrote {cfg.scenes} scenes x {cfg.views} views to {args.out} in "
          f"{summary['seconds']:.1f} s ({len(summary['splits']['train'])} train, "
          f"{len(summary['splits']['val'])} val; points per scene {pts['min']}-{pts['max']}, "
          f"median {pts['median']})")
    return 0
