"""``python -m benchmarks`` (``make bench``): regenerate docs/RESULTS.md and docs/results.json.

Sections: ``quality`` (synthetic benchmark, three splits x seeds), ``ablations`` (B15/N4),
``budget`` (the full B15/N4 model at shorter training budgets, first seed), ``caption_noise``
(the full B15/N4 model with region captions at 0 / 20 / 40 % error rates), ``learning3d``
(diagnostic: the 3D network alone at the protocol's budget and two learning rates), ``real``
(ScanNet scene0000_00 with its three frames), ``speed`` (tiny per-view timing, full-size
forward, segment cost curve, sparse backends and FLOP/s). ``--quick`` runs a tiny version of the
quality protocol into a scratch folder (used by the test suite); it never touches docs/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.common import merge_results
from benchmarks.quality import (ABLATIONS, BUDGET_STEPS, QUICK, SPLIT_CONFIGS, Protocol,
                                budget_slug, ensure_data, run_quality, split_slug)
from benchmarks.report import render

SECTIONS = ("quality", "ablations", "budget", "caption_noise", "learning3d", "real", "speed")


def _speed(results: Path, runs: Path) -> None:
    from benchmarks.costs import backend_comparison, segment_curve
    from benchmarks.views import synthetic_view_batch
    from xmask3d.cli import main as cli
    from xmask3d.config import load_config

    py = [sys.executable, "-m", "benchmarks.speed"]
    data = runs / "speed_data"
    if not (data / "scannet_3d").is_dir():
        cli(["synth", "--out", str(data), "--scenes", "2", "--views", "20", "--seed", "0",
             "--density", "2400", "--no-progress"])
    tiny = json.loads(subprocess.check_output([*py, "tiny", "--source", "synth", "--root",
                                               str(data)]).decode().splitlines()[-1])
    bench_data = ensure_data(runs / "bench_data", Protocol())
    step = json.loads(subprocess.check_output(
        [sys.executable, "-m", "benchmarks.train_step", "--data", str(bench_data)]
    ).decode().splitlines()[-1])
    full = json.loads(subprocess.check_output([*py, "full", "--source", "synth", "--root",
                                               str(data)]).decode().splitlines()[-1])
    cfg = load_config("tiny/scannet_b15n4")
    backends = backend_comparison("tiny/scannet_b15n4", synthetic_view_batch(cfg, str(data)))
    from xmask3d.apps.bundled import default_checkpoint

    ckpt = runs / "split_B15N4_s0" / "last.pt"
    if not ckpt.is_file():
        ckpt = default_checkpoint()
    curve = segment_curve(str(ckpt), data, "synth_0001_00", runs / "segment_curve") \
        if ckpt.is_file() else []
    merge_results(results, "speed", {"tiny_view": tiny, "train_step": step, "full_view": full,
                                     "backends": backends, "segment_curve": curve})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("--out", default="docs", help="where RESULTS.md and results.json go")
    p.add_argument("--runs", default="runs/bench", help="scratch folder for data and runs")
    p.add_argument("--only", nargs="*", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--steps", type=int, default=None, help="override the training budget")
    p.add_argument("--splits", nargs="*", default=list(SPLIT_CONFIGS))
    p.add_argument("--ablations", nargs="*", default=list(ABLATIONS))
    p.add_argument("--budget-steps", type=int, nargs="*", default=None,
                   help=f"other budgets of the budget section (default {list(BUDGET_STEPS)})")
    p.add_argument("--budget-seeds", type=int, default=1,
                   help="seeds of each other budget (the first N of --seeds; default 1)")
    p.add_argument("--seeds", type=int, nargs="*", default=None,
                   help="training seeds of the quality runs (default 0 1)")
    p.add_argument("--noise-rates", type=float, nargs="*", default=None,
                   help="region-caption error rates of the caption_noise section (default "
                        "0 0.2 0.4)")
    p.add_argument("--jobs", type=int, default=1,
                   help="quality runs (seeds) trained in parallel, sharing the CPU threads")
    p.add_argument("--quick", action="store_true", help="tiny protocol into --runs (for tests)")
    a = p.parse_args(argv)
    out, runs = Path(a.out), Path(a.runs)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.json"
    proto = QUICK if a.quick else Protocol()
    if a.steps:
        proto.steps = a.steps
    if a.seeds:
        proto.seeds = tuple(a.seeds)
    budget = a.budget_steps if a.budget_steps is not None else \
        [2 * proto.steps] if a.quick else list(BUDGET_STEPS)
    if {"quality", "ablations", "budget"} & set(a.only):
        run_quality(out, results, proto=proto,
                    splits=a.splits if "quality" in a.only else ["B15/N4"],
                    ablations=a.ablations if "ablations" in a.only else [], runs_dir=runs,
                    jobs=a.jobs, budget=budget if "budget" in a.only else [],
                    budget_seeds=a.budget_seeds)
    if "caption_noise" in a.only:
        from benchmarks.caption_noise import NOISE_RATES, run_caption_noise

        run_caption_noise(results, runs, proto=proto, jobs=a.jobs,
                          rates=a.noise_rates if a.noise_rates is not None else NOISE_RATES)
    if "learning3d" in a.only and not a.quick:
        from benchmarks.learning3d import Curve, run_learning3d

        run_learning3d(results, runs, ensure_data(runs / "bench_data", proto), jobs=a.jobs,
                       curves=[Curve(steps=proto.steps), Curve(steps=proto.steps, lr_3d=0.01)],
                       checkpoints=[runs / f"{n}_s{proto.seeds[0]}" / "last.pt" for n in
                                    (split_slug("B15/N4"), *map(budget_slug, sorted(budget)))])
    if "real" in a.only and not a.quick:
        from benchmarks.real import run_real

        run_real(results, runs)
    if "speed" in a.only and not a.quick:
        _speed(results, runs)
    render(results, out / "RESULTS.md")
    print(f"wrote {out / 'RESULTS.md'} and {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
