"""Render docs/RESULTS.md from docs/results.json (every number in the tables comes from there)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from xmask3d.data.processed import atomic_write

PAPER_B15N4 = {"XMask3D (paper, ScanNet)": (70.0, 69.8, 70.2)}
TARGETS = {"mIoU_base": 60.0, "mIoU_novel": 20.0}


def _stat(runs: list[dict], kind: str, metric: str) -> tuple[float, float]:
    vals = [r["predictions"][kind][metric] for r in runs]
    vals = [v for v in vals if v is not None and v == v]
    if not vals:
        return float("nan"), float("nan")
    return statistics.mean(vals), (max(vals) - min(vals)) / 2 if len(vals) > 1 else 0.0


def _cell(runs: list[dict], kind: str, metric: str) -> str:
    m, s = _stat(runs, kind, metric)
    return f"{m:.1f} ± {s:.1f}" if len(runs) > 1 else f"{m:.1f}"


def quality_tables(q: dict) -> list[str]:
    p = q["protocol"]
    lines = ["## Quality on the fixed synthetic benchmark", "",
             f"Protocol: `xmask3d synth --scenes {p['scenes']} --views {p['views']} --seed "
             f"{p['data_seed']}` (20 % of the scenes held out as `val`), tiny configuration, "
             f"**{p['steps']} optimiser steps of 4 views** on 2 CPU threads, seeds "
             f"{p['seeds']}; overrides {p['extra']}. Evaluation: every usable view of every val "
             "scene, votes, nearest-point fill. Cells: mean ± half-range over seeds (percent).", "",
             "| split | prediction | hIoU | mIoU base | mIoU novel | train s/run |",
             "|---|---|---|---|---|---|"]
    for split, runs in q.get("splits", {}).items():
        for kind in ("fused", "3d", "2d"):
            t = statistics.mean(r["train_s"] for r in runs)
            lines.append(f"| {split} | {kind} | {_cell(runs, kind, 'hIoU')} | "
                         f"{_cell(runs, kind, 'mIoU_base')} | {_cell(runs, kind, 'mIoU_novel')} | "
                         f"{t:.0f} |")
    if "B15/N4" in q.get("splits", {}):
        runs = q["splits"]["B15/N4"]
        b, _ = _stat(runs, "fused", "mIoU_base")
        n, _ = _stat(runs, "fused", "mIoU_novel")
        n3, s3 = _stat(runs, "3d", "mIoU_novel")
        _, sf = _stat(runs, "fused", "mIoU_novel")
        lines += ["", "Targets (issue 6, B15/N4, fused): mIoU-base ≥ 60: "
                  f"**{'met' if b >= 60 else 'missed'}** ({b:.1f}); mIoU-novel ≥ 20: "
                  f"**{'met' if n >= 20 else 'missed'}** ({n:.1f}); fused beats 3D-only on novel "
                  f"by more than the seed spread: **{'met' if n - n3 > max(sf, s3) else 'missed'}**"
                  f" ({n:.1f} vs {n3:.1f}, spread {max(sf, s3):.1f})."]
    if q.get("ablations"):
        lines += ["", "### Ablations (B15/N4, fused prediction)", "",
                  "| variant | hIoU | mIoU base | mIoU novel |", "|---|---|---|---|"]
        for name, runs in q["ablations"].items():
            lines.append(f"| {name} | {_cell(runs, 'fused', 'hIoU')} | "
                         f"{_cell(runs, 'fused', 'mIoU_base')} | "
                         f"{_cell(runs, 'fused', 'mIoU_novel')} |")
    return lines


def real_tables(r: dict) -> list[str]:
    lines = ["## Real scan: ScanNet scene0000_00 (3 real frames, z-buffer visibility, B15/N4)", "",
             r.get("note", ""), "", "| prediction | hIoU | mIoU base | mIoU novel |",
             "|---|---|---|---|"]
    for kind, v in r["predictions"].items():
        lines.append(f"| {kind} | {v['hIoU']:.1f} | {v['mIoU_base']:.1f} | {v['mIoU_novel']:.1f} |")
    return lines


def render(results: Path, out: Path, extra_sections: list[str] | None = None) -> None:
    data = json.loads(results.read_text()) if results.is_file() else {}
    lines = ["# Results", "",
             "Every number here is read from `docs/results.json`, written by `make bench` "
             "(`python -m benchmarks`). Numbers not yet measured are absent, not estimated.", ""]
    if "quality" in data:
        lines += quality_tables(data["quality"]) + [""]
    if "real_scan" in data:
        lines += real_tables(data["real_scan"]) + [""]
    lines += extra_sections or []
    text = "\n".join(lines) + "\n"
    atomic_write(out, lambda t: Path(t).write_text(text))
