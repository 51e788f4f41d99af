"""Training levers (issues 13 and 16): each lever's training runs, seed by seed, scored twice.

A lever is a change of the training recipe (data made another way, an augmentation, an input
channel, a loss) meant to help a model trained on generated rooms, on held-out generated rooms
(novel classes above all, issue 13) or on a real scan (issue 16). Each of its runs is scored on

- the held-out generated rooms: ``xmask3d eval`` on the val split of ``--data`` (the bench data,
  every view, votes), fused hIoU / mIoU-base / mIoU-novel; and again without the base/novel
  gate (``fusion.gating=false``: every point chooses among all 19 classes, as ``segment`` does
  with a user's words), hIoU and the chair IoU;
- ScanNet scene0000_00 as a user runs it (``benchmarks.real.segment_real_scan``: a bare PLY, the
  19 classes, ``--no-other``): mIoU-base and novel with virtual views and with the 3D network
  alone, and the floor and wall IoU (the two classes a user sees first).

``python -m benchmarks.levers --lever NAME --run RUN [--note TEXT]`` scores one finished run
(``RUN/last.pt``; its seed is read from ``RUN/config.yaml``) and stores it under
``levers[NAME]`` of docs/results.json; scores already in ``RUN`` (``eval_bench/metrics.json``,
``eval_ungated/metrics.json``, ``real_scene0000.json``) are read instead of computed again.
RESULTS.md gets one row per lever (mean ± half-range over its seeds). scene0000_00 is
evaluation only: nothing is tuned on it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.common import mean_half_range, merge_results, read_section
from xmask3d.apps.common import write_json

__all__ = ["levers_table", "score_run"]

REAL_MODES = ("virtual", "3d-only")
COLUMNS = (  # (header, where, key)
    ("generated hIoU", "synthetic", "hIoU"), ("generated base", "synthetic", "mIoU_base"),
    ("generated novel", "synthetic", "mIoU_novel"),
    ("generated hIoU, no gate", "ungated", "hIoU"),
    ("generated chair, no gate", "ungated", "chair"),
    ("real base, virtual views", "virtual", "mIoU_base"),
    ("real novel, virtual views", "virtual", "mIoU_novel"),
    ("real base, 3D only", "3d-only", "mIoU_base"),
    ("real floor, 3D only", "3d-only", "floor"), ("real wall, virtual views", "virtual", "wall"))


def _cached_eval(ckpt: Path, data: Path, out: Path, *overrides: str) -> dict:
    """The fused scores of ``xmask3d eval`` of ``ckpt`` on the val rooms of ``data`` (with
    ``overrides``), read from ``out/metrics.json`` or computed into it first."""
    metrics = out / "metrics.json"
    if not metrics.is_file():
        from xmask3d.cli import main as cli

        sets = [a for o in overrides for a in ("--set", o)]
        code = cli(["eval", "--ckpt", str(ckpt), "--set", f"data.root={data}", *sets,
                    "--out", str(out), "--no-progress"])
        if code != 0:
            raise RuntimeError(f"xmask3d eval {' '.join(overrides)} of {ckpt} failed with exit "
                               f"code {code}")
    return json.loads(metrics.read_text())["predictions"]["fused"]


def score_run(run: Path, data: Path) -> dict:
    """The seed and scores of the finished training run ``run`` (cached in the run folder)."""
    from xmask3d.config import load_config

    ckpt = run / "last.pt"
    if not ckpt.is_file():
        raise FileNotFoundError(f"{ckpt}: no checkpoint; the run has not finished")
    seed = load_config(str(run / "config.yaml")).train.seed
    fused = _cached_eval(ckpt, data, run / "eval_bench")
    ungated = _cached_eval(ckpt, data, run / "eval_ungated", "fusion.gating=false")
    real_file = run / "real_scene0000.json"
    if not real_file.is_file():
        from benchmarks.real import segment_real_scan

        scores = segment_real_scan(ckpt, run / "real_segment", REAL_MODES)
        for s in scores.values():
            s.pop("picture", None)
        write_json(real_file, scores)
    real = json.loads(real_file.read_text())
    out = {"seed": seed, "run": str(run),
           "synthetic": {k: round(fused[k], 1) for k in ("hIoU", "mIoU_base", "mIoU_novel")},
           "ungated": {**{k: round(ungated[k], 1) for k in ("hIoU", "mIoU_base", "mIoU_novel")},
                       "chair": round(ungated["per_class_IoU"]["chair"], 1)}}
    for mode in REAL_MODES:
        r = real[mode]
        out[mode] = {"mIoU_base": r["mIoU_base"], "mIoU_novel": r["mIoU_novel"],
                     "floor": r["per_class_IoU"]["floor"], "wall": r["per_class_IoU"]["wall"]}
    return out


def _cell(runs: list[dict], where: str, key: str) -> str:
    vals = [r[where][key] for r in runs if r.get(where, {}).get(key) is not None]
    if not vals:
        return "-"
    m, s = mean_half_range(vals)
    return f"{m:.1f} ± {s:.1f}" if len(vals) > 1 else f"{m:.1f}"


def levers_table(section: dict) -> list[str]:
    """RESULTS.md: one row per lever, mean ± half-range over its seeds."""
    if not section:
        return []
    lines = ["## Training levers: generated rooms and the real scan (issues 13 and 16)", "",
             "Each lever is a change of the CPU recipe (tiny B15/N4 model, 1,100 steps, 96 "
             "generated training rooms); every run is scored on the 24 held-out generated rooms "
             "(fused prediction, every view) and on ScanNet scene0000_00 as `segment` runs on a "
             "bare PLY (19 classes, `--no-other`, all vertices). Cells: mean ± half-range over "
             "the seeds. `python -m benchmarks.levers --lever NAME --run RUN`.", "",
             "| lever | seeds | " + " | ".join(h for h, _, _ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    names = sorted(section, key=lambda n: (not section[n].get("reference"), n))
    for name in names:
        runs = section[name]["runs"]
        lines.append(f"| {name} | {', '.join(str(r['seed']) for r in runs)} | "
                     + " | ".join(_cell(runs, w, k) for _, w, k in COLUMNS) + " |")
    notes = [f"- **{n}**: {section[n]['note']}" for n in names if section[n].get("note")]
    return lines + ([""] + notes if notes else [])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.levers",
                                description=__doc__.splitlines()[0])
    p.add_argument("--lever", required=True, help="the lever's row name")
    p.add_argument("--run", required=True, type=Path, help="a finished training run folder")
    p.add_argument("--note", default=None, help="one sentence: what the lever is")
    p.add_argument("--reference", action="store_true",
                   help="this lever is the reference the others change (its row comes first)")
    p.add_argument("--data", type=Path, default=None,
                   help="the bench data whose val rooms score the run (default: "
                        "runs/bench/bench_data, made by the quality protocol if absent)")
    p.add_argument("--out", type=Path, default=Path("docs"), help="folder of results.json")
    a = p.parse_args(argv)
    if a.data is None:
        from benchmarks.quality import Protocol, ensure_data

        a.data = ensure_data(Path("runs/bench/bench_data"), Protocol())
    row = score_run(a.run, a.data)
    results = a.out / "results.json"
    section = read_section(results, "levers")
    entry = section.setdefault(a.lever, {"note": "", "runs": []})
    if a.note is not None:
        entry["note"] = a.note
    if a.reference:
        entry["reference"] = True
    entry["runs"] = sorted([r for r in entry["runs"] if r["seed"] != row["seed"]] + [row],
                           key=lambda r: r["seed"])
    merge_results(results, "levers", section)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
