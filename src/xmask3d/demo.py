"""``xmask3d demo``: the whole pipeline on generated rooms and, when present, a real ScanNet scan.

Steps: generate synthetic rooms -> train the tiny model for a fixed step budget -> evaluate it
(hIoU table) -> segment a held-out synthetic scene with a vocabulary that includes the novel
classes -> segment the real ScanNet scan scene0000_00 with its three real frames (when the
research fixtures are present). Every step is an ordinary subcommand, run through ``cli.main``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SCENES, VIEWS, SEED = 24, 8, 0      # the demo's generated data (``--scenes/--views/--seed``)


def segment_argv(scan: Path, views: Path, ckpt: Path, out: Path, *extra: str) -> list[str]:
    """The demo's ``segment`` call: the 19 ScanNet classes (novel ones included) as the user's
    words, the scan's own views, ``ckpt``; ``benchmarks.demo_scenes`` scores the same call."""
    from xmask3d.data.labels import SCANNET20_NAMES

    return ["segment", str(scan), "--classes", ", ".join(SCANNET20_NAMES[:19]),
            "--views", str(views), "--ckpt", str(ckpt), "--out", str(out), *extra]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the whole pipeline on synthetic rooms "
                                           "(and the real ScanNet scan when present)")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--scenes", type=int, default=SCENES, help="synthetic scenes to generate")
    p.add_argument("--views", type=int, default=VIEWS, help="views per synthetic scene")
    p.add_argument("--steps", type=int, default=120, help="training steps (batch of 4 views)")
    p.add_argument("--config", default="tiny/scannet_b15n4")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the training step (repeatable), e.g. "
                        "--set data.augment=true")
    p.add_argument("--make-checkpoint", default=None, metavar="PATH",
                   help="also write the trained model (weights + config only) to PATH")
    p.add_argument("--no-bundled", dest="compare_bundled", action="store_false",
                   help="do not also segment the two scans with the bundled checkpoint")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def _step(title: str, argv: list[str]) -> float:
    from xmask3d.cli import main

    print(f"\n=== {title}\n$ {shlex.join(['xmask3d', *argv])}", flush=True)   # pastable
    t0 = time.perf_counter()
    code = main(argv)
    if code != 0:
        raise SystemExit(f"demo step '{title}' failed with exit code {code}")
    return time.perf_counter() - t0


def held_out_scene(data: Path) -> tuple[Path, Path]:
    """The point file and views folder of the first val scene of the generated ``data``: the
    room the demo segments (never trained on)."""
    from xmask3d.data.processed import ProcessedLayout

    layout = ProcessedLayout(data)
    scene = layout.scene_names("val")[0]
    return layout.point_file("val", scene), layout.scene_2d_dir(scene)


def export_real_scan(out: Path) -> tuple[Path, Path] | None:
    """Write the real ScanNet fixture as a PLY plus a ScanNet-export views folder (no depth)."""
    from xmask3d.data.ply import write_ply
    from xmask3d.data.processed import write_intrinsics, write_view
    from xmask3d.data.real_fixtures import load_scannet_fixture, real_data_root

    if real_data_root() is None:
        return None
    scene = load_scannet_fixture()
    ply = out / "scene0000_00.ply"
    write_ply(ply, scene.points, scene.colors)
    views = out / "scene0000_00_views"
    for v in scene.views:
        write_view(views.parent, views.name, v.name, color=v.color, pose=v.pose)
        write_intrinsics(views.parent, views.name, v.intrinsics)
    return ply, views.parent / "scannet_2d" / views.name


def run(args: argparse.Namespace) -> int:
    from xmask3d.apps.common import write_json

    out = Path(args.out)
    data, train_dir = out / "data", out / "train"
    progress = ["--no-progress"] if args.no_progress else []
    times: dict[str, float] = {}
    if data.exists():
        shutil.rmtree(data)
    times["synth"] = _step("1/5 generate synthetic rooms", [
        "synth", "--out", str(data), "--scenes", str(args.scenes), "--views", str(args.views),
        "--seed", str(args.seed), *progress])
    common = ["--config", args.config, "--set", f"data.root={data}"]
    times["train"] = _step("2/5 train the tiny model", [
        "train", *common, "--max-steps", str(args.steps), "--out", str(train_dir),
        "--set", f"train.seed={args.seed}", "--set", "data.loop=8", "--set", "train.eval_every=3",
        *[a for kv in args.overrides for a in ("--set", kv)], *progress])
    ckpt = train_dir / "last.pt"
    times["eval"] = _step("3/5 evaluate on the held-out synthetic scenes (hIoU)", [
        "eval", "--ckpt", str(ckpt), "--set", f"data.root={data}", "--out", str(out / "eval"),
        *progress])
    scan, scan_views = held_out_scene(data)
    scene = scan_views.name
    times["segment_synth"] = _step(
        f"4/5 segment held-out scene {scene} (novel classes included)",
        segment_argv(scan, scan_views, ckpt, out / "segment_synth", *progress))
    real = export_real_scan(out / "real")
    if real is not None:
        times["segment_real"] = _step("5/5 segment the real ScanNet scan scene0000_00",
                                      segment_argv(*real, ckpt, out / "segment_real", *progress))
    else:
        print("\n=== 5/5 skipped: ../shared/data/real (the ScanNet fixture) is not present")
    outputs = {"data": str(data), "checkpoint": str(ckpt), "eval": str(out / "eval"),
               "segment_synth": str(out / "segment_synth"),
               "segment_real": str(out / "segment_real") if real else None}
    from xmask3d.apps.bundled import default_checkpoint

    bundled = default_checkpoint()
    if args.compare_bundled and not args.make_checkpoint and bundled.is_file():
        # the same two scans with the bundled checkpoint (`make checkpoint`: 1,100 steps on 96
        # rooms), which shows what a longer training run than the demo's few minutes gives
        times["segment_synth_bundled"] = _step(
            f"extra: segment {scene} with the bundled checkpoint (longer training)",
            segment_argv(scan, scan_views, bundled, out / "segment_synth_bundled", *progress))
        outputs["segment_synth_bundled"] = str(out / "segment_synth_bundled")
        if real is not None:
            times["segment_real_bundled"] = _step(
                "extra: segment scene0000_00 with the bundled checkpoint",
                segment_argv(*real, bundled, out / "segment_real_bundled", *progress))
            outputs["segment_real_bundled"] = str(out / "segment_real_bundled")
    if args.make_checkpoint:
        from xmask3d.engine.checkpoint import export_model_checkpoint

        export_model_checkpoint(ckpt, args.make_checkpoint)
        print(f"bundled checkpoint written to {args.make_checkpoint}")
    summary = {"times_s": {k: round(v, 1) for k, v in times.items()}, "outputs": outputs}
    write_json(out / "demo_summary.json", summary)
    print("\n=== done in %.0f s" % float(np.sum(list(times.values()))))
    for k, v in summary["outputs"].items():
        if v:
            print(f"  {k:<14} {v}")
    return 0
