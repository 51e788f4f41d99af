"""Benchmark: a user's scan as it comes (turned, in millimetres) gets the same labels.

1. Label stability: ``xmask3d segment`` with the bundled checkpoint on ScanNet scene0000_00 saved
   as a user-style PLY (vertices and colours only, virtual views), then on the same scan turned
   by 90, 180 and 270 degrees about x, y and z, and scaled x1000 (millimetres) and x100
   (centimetres). For each: the share of points whose label differs from the original scan's,
   with the canonical frame (the default) and with ``--up keep --units m`` (the scan's own frame,
   as before). No labels of scene0000_00 are read: only the predictions are compared.
2. Up-axis detection on generated rooms (``xmask3d synth``, which have ceilings, so floor and
   ceiling compete): the share of rooms whose detected up axis is +z, also after turning each
   room by 90 degrees about x.

Run: ``python -m benchmarks.orientation [--out docs] [--rooms 40]``; writes the ``orientation``
section of ``docs/results.json`` and prints a table (copied into docs/segment.md).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine, merge_results
from xmask3d.cli import main as xmask3d_main
from xmask3d.data.orientation import detect_frame, quarter_turns
from xmask3d.data.ply import read_ply, write_ply
from xmask3d.data.real_fixtures import SCANNET_SCENE, real_data_root

CLASSES = ("wall, floor, cabinet, bed, chair, sofa, table, door, window, bookshelf, picture, "
           "counter, desk, curtain, refrigerator, shower curtain, toilet, sink, bathtub")


def _segment(scan: Path, out: Path, extra: list[str]) -> tuple[np.ndarray | None, dict]:
    """Labels and summary of ``segment``; ``(None, {"refused": message})`` when it refuses."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = xmask3d_main(["segment", str(scan), "--classes", CLASSES, "--no-progress",
                             "--out", str(out), *extra])
    if code != 0:
        lines = [ln for ln in err.getvalue().splitlines() if "error:" in ln]
        return None, {"refused": lines[-1] if lines else f"exit code {code}"}
    summary = json.loads((out / "segment.json").read_text())
    return read_ply(out / "segmentation.ply").fields["class_id"], summary


def label_stability(work: Path, variants: list[str] | None = None,
                    as_given: list[str] | None = None) -> list[dict]:
    """Share of changed labels per variant in the canonical frame (``variants``: names to run,
    default all) and in the scan's own frame (``as_given``: names to run, default all)."""
    root = real_data_root()
    if root is None:
        raise SystemExit("the real fixtures (../shared/data/real) are absent: nothing to measure")
    data = np.load(root / "scannet_mmdet3d" / f"{SCANNET_SCENE}_vert_all.npy")
    pts, colors = data[:, :3].astype(np.float64), data[:, 3:6].astype(np.uint8)
    scans = [("original", pts)]
    scans += [(f"turn {name[0]} {name[1:]}", pts @ r.T) for name, r in quarter_turns()]
    scans += [("millimetres", pts * 1000.0), ("centimetres", pts * 100.0)]
    runs = [(name, p, mode, extra) for (name, p), (mode, extra, keep) in itertools.product(
        scans, (("canonical", [], variants), ("as given", ["--up", "keep", "--units", "m"],
                                              as_given)))
            if keep is None or name in keep or name == "original"]
    rows, ref = [], {}
    for name, p, mode, extra in runs:
        scan = work / f"{name.replace(' ', '_')}.ply"
        if not scan.is_file():
            write_ply(scan, p.astype(np.float32), colors)
        t0 = time.perf_counter()
        labels, summary = _segment(scan, work / f"out_{scan.stem}_{mode[:2]}", extra)
        seconds = time.perf_counter() - t0
        if name == "original":
            ref[mode] = labels
        frame = summary.get("frame", {})
        row = {"variant": name, "mode": mode, "up_axis": frame.get("up_axis"),
               "unit": frame.get("unit"), "seconds": round(seconds, 1)}
        if labels is None:
            row["refused"] = summary["refused"]
        else:
            row["changed_labels"] = round(float(np.mean(labels != ref[mode])), 5)
        rows.append(row)
        print(f"{name:14s} {mode:10s} {row.get('changed_labels', row.get('refused'))} "
              f" up {row['up_axis']}  unit {row['unit']}  {seconds:.1f} s", flush=True)
    return rows


def up_detection(work: Path, rooms: int) -> dict:
    """Detected up axis of generated rooms, as generated and turned by 90 degrees about x."""
    import torch

    xmask3d_main(["synth", "--out", str(work / "synth"), "--scenes", str(rooms), "--views", "1",
                  "--seed", "2024"])
    turn = dict(quarter_turns())["x90"]
    right = {"as generated": 0, "turned x 90": 0}
    wrong = []
    files = sorted((work / "synth" / "scannet_3d").glob("*/*.pth"))
    for f in files:
        pts = np.asarray(torch.load(f, weights_only=False)[0], dtype=np.float64)
        for key, p, want in (("as generated", pts, "+z"), ("turned x 90", pts @ turn.T, "-y")):
            got = detect_frame(p.astype(np.float32)).up
            right[key] += got == want
            if got != want:
                wrong.append(f"{f.stem} {key}: {got}")
    return {"rooms": len(files), "right": right, "wrong": wrong}


def run(out: Path, rooms: int, variants: list[str] | None = None,
        as_given: list[str] | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {"machine": machine(),
                  "label_stability": label_stability(work, variants, as_given),
                  "up_detection": up_detection(work, rooms)}
    merge_results(out / "results.json", "orientation", result)
    print(json.dumps(result["up_detection"], indent=1))
    return result


def table(result: dict) -> str:
    """Markdown table of the label stability rows."""
    rows = {}
    for r in result["label_stability"]:
        rows.setdefault(r["variant"], {})[r["mode"]] = r
    lines = ["| scan | labels changed, canonical frame (default) | detected up / unit "
             "| labels changed, as given (`--up keep --units m`) |", "|---|---|---|---|"]
    def pct(row: dict | None) -> str:
        if row is None:
            return "not run"
        if "refused" in row:
            return f"refused: {row['refused'].split('error: ')[-1]}"
        return f"{100 * row['changed_labels']:.2f} %"

    for name, modes in rows.items():
        c, g = modes.get("canonical"), modes.get("as given")
        frame = "" if c is None else f"{c['up_axis']} / {c['unit']}"
        lines.append(f"| {name} | {pct(c)} | {frame} | {pct(g)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs"))
    ap.add_argument("--rooms", type=int, default=40)
    ap.add_argument("--variants", nargs="*", default=None,
                    help="scans to run in the canonical frame (default all: 'turn x 90', ..., "
                         "'millimetres', 'centimetres')")
    ap.add_argument("--as-given", nargs="*", default=None,
                    help="scans to run in their own frame (default all)")
    args = ap.parse_args()
    print(table(run(args.out, args.rooms, args.variants, args.as_given)))
