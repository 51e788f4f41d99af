"""Evaluate a synthetic-trained checkpoint on the real ScanNet scene0000_00 (3 frames, no depth)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.common import merge_results


def export_real_layout(root: Path) -> Path | None:
    """The ScanNet fixture as a one-scene processed dataset (split ``val``), views without depth."""
    from xmask3d.data.processed import save_point_file, write_intrinsics, write_view
    from xmask3d.data.real_fixtures import load_scannet_fixture, real_data_root

    if real_data_root() is None:
        return None
    scene = load_scannet_fixture()
    save_point_file(root / "scannet_3d" / "val" / f"{scene.name}_vh_clean_2.pth", scene.points,
                    scene.colors, scene.labels)
    for v in scene.views:
        write_view(root, scene.name, v.name, color=v.color, pose=v.pose)
    write_intrinsics(root, scene.name, scene.views[0].intrinsics)
    return root


def run_real(results: Path, runs: Path) -> None:
    from xmask3d.cli import main as cli

    root = export_real_layout(runs / "real_scannet")
    ckpt = runs / "split_B15N4_s0" / "last.pt"
    if root is None or not ckpt.is_file():
        return
    out = runs / "real_eval"
    code = cli(["eval", "--ckpt", str(ckpt), "--set", f"data.root={root}", "--split", "val",
                "--out", str(out), "--no-progress"])
    if code != 0:
        raise RuntimeError("real-scan evaluation failed")
    m = json.loads((out / "metrics.json").read_text())
    merge_results(results, "real_scan", {
        "note": "Tiny model trained only on synthetic rooms (B15/N4, seed 0), evaluated as is on "
                "the real scan; the views have no depth, so visibility comes from a z-buffer of the "
                "projected vertices. Three frames see only part of the scan; unseen points copy "
                "the nearest seen point.",
        "predictions": {k: {x: v[x] for x in ("hIoU", "mIoU_base", "mIoU_novel")}
                        for k, v in m["predictions"].items()}})
