"""Real ScanNet scene0000_00 (evaluation only): a synthetic-trained checkpoint, scored.

Two ways: ``run_real`` evaluates the bench's B15/N4 seed-0 run through ``xmask3d eval`` on the 3
frames (no depth); ``python -m benchmarks.real`` runs ``xmask3d segment`` on the scan as a user
would (3 frames, virtual views, 3D only) and scores all its vertices per class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.common import label_slug, merge_results, read_section

__all__ = ["real_segment_tables", "real_tables", "run_real", "segment_real_scan", "segment_scores"]


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
        "note": "Tiny model trained only on synthetic rooms (B15/N4, seed 0), evaluated as is "
                "on the real scan; the views have no depth, so visibility comes from a z-buffer "
                "of the projected vertices. Three frames see only part of the scan; unseen points "
                "copy the nearest seen point.",
        "predictions": {k: {x: v[x] for x in ("hIoU", "mIoU_base", "mIoU_novel")}
                        for k, v in m["predictions"].items()}})


# ---------------------------------------------------------------------------------------------
# scene0000_00 as a user runs it: `xmask3d segment` on the scan, scored on all its vertices
# ---------------------------------------------------------------------------------------------

SEGMENT_MODES = {
    "frames": "its three real colour frames (no depth: z-buffer visibility)",
    "virtual": "a bare PLY, virtual views rendered from its coloured points",
    "3d-only": "a bare PLY, the 3D network alone (--no-2d)",
}


def segment_scores(labels: np.ndarray, gt: np.ndarray, split_name: str = "scannet_b15n4") -> dict:
    """Per-class IoU, mIoU base / novel and hIoU of ``segment``'s labels (indices of the split's
    class names, every point one of them) against ScanNet20 ground truth (255 = unlabelled)."""
    from xmask3d.data.splits import get_split
    from xmask3d.eval.metrics import ConfusionMatrix, open_vocab_metrics

    split = get_split(split_name)
    cm = ConfusionMatrix(split.num_classes, ignore=tuple(split.ignore))
    cm.update(labels, gt)
    m = open_vocab_metrics(cm.matrix, split)
    r = lambda v: None if v is None or v != v else round(float(v), 1)  # noqa: E731 (NaN -> None)
    return {"hIoU": r(m.hiou), "mIoU_base": r(m.miou_base), "mIoU_novel": r(m.miou_novel),
            "per_class_IoU": {k: r(v) for k, v in m.per_class.items()},
            "labelled_points": int(cm.matrix.sum())}


def segment_real_scan(ckpt: Path | None, work: Path, modes: tuple[str, ...] = tuple(SEGMENT_MODES),
                      split_name: str = "scannet_b15n4") -> dict:
    """Run ``xmask3d segment`` on scene0000_00 (written as a PLY, plus its frames for
    ``frames``) with the split's classes but the ignored one (the 19 ScanNet classes),
    ``--no-other`` (every point takes a class, as the benchmark scores), no base/novel gating;
    score all vertices. ``ckpt=None``: the bundled
    checkpoint. Returns ``{mode: scores + seconds + picture path}``."""
    import time

    from xmask3d.cli import main as cli
    from xmask3d.data.ply import read_ply
    from xmask3d.data.real_fixtures import load_scannet_fixture
    from xmask3d.data.splits import get_split
    from xmask3d.demo import export_real_scan

    exported = export_real_scan(work)
    if exported is None:
        raise SystemExit("the real fixtures (../shared/data/real) are absent: nothing to measure")
    ply, frames = exported
    gt = load_scannet_fixture(with_views=False).labels
    split = get_split(split_name)
    keep = [i for i in range(split.num_classes) if i not in split.ignore]   # no otherfurniture
    names, to_split = [split.class_names[i] for i in keep], np.asarray(keep, np.int64)
    out: dict = {}
    for mode in modes:
        extra = {"frames": ["--views", str(frames)], "virtual": ["--virtual"],
                 "3d-only": ["--no-2d"]}[mode]
        folder = work / f"segment_{mode}"
        t0 = time.perf_counter()
        code = cli(["segment", str(ply), "--classes", ", ".join(names), "--no-other",
                    "--out", str(folder), "--no-progress", *extra,
                    *(["--ckpt", str(ckpt)] if ckpt else [])])
        if code != 0:
            raise RuntimeError(f"segment ({mode}) failed with exit code {code}")
        labels = to_split[np.asarray(read_ply(folder / "segmentation.ply").fields["class_id"])]
        out[mode] = {**segment_scores(labels, gt, split_name),
                     "seconds": round(time.perf_counter() - t0, 1),
                     "picture": str(folder / "segmentation.png")}
        print(f"{mode:8s} base {out[mode]['mIoU_base']}  novel {out[mode]['mIoU_novel']}  "
              f"({out[mode]['seconds']} s)", flush=True)
    return out


def real_tables(r: dict) -> list[str]:
    lines = ["## Real scan: ScanNet scene0000_00 (3 real frames, z-buffer visibility, B15/N4)", "",
             r.get("note", ""), "", "| prediction | hIoU | mIoU base | mIoU novel |",
             "|---|---|---|---|"]
    for kind, v in r["predictions"].items():
        lines.append(f"| {kind} | {v['hIoU']:.1f} | {v['mIoU_base']:.1f} | {v['mIoU_novel']:.1f} |")
    return lines


def real_segment_tables(section: dict) -> list[str]:
    """RESULTS.md: per-class IoU of ``segment`` on scene0000_00, one table per checkpoint."""
    lines = ["## Real scan as a user runs it: `xmask3d segment` on ScanNet scene0000_00", "",
             "All 81,369 vertices scored against ScanNet20 labels; the 19 classes as `--classes`, "
             "`--no-other` (every point takes a class, as the benchmark scores), no base/novel "
             "gating; split B15/N4 for the means. Modes: "
             + "; ".join(f"`{k}`: {v}" for k, v in SEGMENT_MODES.items())
             + ". scene0000_00 is evaluation only: nothing was trained or tuned on it. "
             "`python -m benchmarks.real --ckpt PATH --label NAME`.", ""]
    for label, entry in section.items():
        modes = [m for m in SEGMENT_MODES if m in entry["modes"]]
        lines += [f"**{label}**: {entry.get('note', '')}", "",
                  "| class | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]
        first = entry["modes"][modes[0]]
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        for name in first["per_class_IoU"]:
            lines.append(f"| {name} | " + " | ".join(
                fmt(entry["modes"][m]["per_class_IoU"][name]) for m in modes) + " |")
        for key, title in (("mIoU_base", "**mIoU base**"), ("mIoU_novel", "**mIoU novel**"),
                           ("hIoU", "**hIoU**"), ("seconds", "seconds")):
            lines.append(f"| {title} | " + " | ".join(
                fmt(entry["modes"][m][key]) for m in modes) + " |")
        pics = [f"![{label}, {m}](img/{entry['modes'][m]['image']})" for m in modes
                if entry["modes"][m].get("image")]
        lines += [""] + pics + [""] if pics else [""]
    return lines


def main(argv: list[str] | None = None) -> int:
    import argparse
    import shutil

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default=None, help="checkpoint (default: the bundled one)")
    p.add_argument("--label", required=True, help="name of this checkpoint in the tables")
    p.add_argument("--note", default="", help="one sentence: what the checkpoint is")
    p.add_argument("--modes", default=",".join(SEGMENT_MODES))
    p.add_argument("--work", default="runs/real_segment")
    p.add_argument("--out", default="docs", help="folder of results.json and img/")
    a = p.parse_args(argv)
    modes = tuple(m.strip() for m in a.modes.split(",") if m.strip())
    unknown = [m for m in modes if m not in SEGMENT_MODES]
    if unknown:
        p.error(f"unknown mode(s) {unknown}; known: {', '.join(SEGMENT_MODES)}")
    slug = label_slug(a.label)
    work = Path(a.work) / slug
    scores = segment_real_scan(Path(a.ckpt) if a.ckpt else None, work, modes)
    out = Path(a.out)
    (out / "img").mkdir(parents=True, exist_ok=True)
    for mode, s in scores.items():
        image = f"real_scene0000_{slug}_{mode}.png"
        shutil.copyfile(s.pop("picture"), out / "img" / image)
        s["image"] = image
    results = out / "results.json"
    section = read_section(results, "real_scan_segment")
    section[a.label] = {"note": a.note, "ckpt": a.ckpt or "bundled", "modes": scores}
    merge_results(results, "real_scan_segment", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
