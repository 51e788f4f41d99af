"""``python -m benchmarks --quick``: the whole quality protocol at a toy budget, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_results_and_report(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path / "docs"),
           "--runs", str(tmp_path / "runs"), "--only", "quality", "ablations", "budget", "--splits", "B15/N4",
           "--ablations", "no 3D-2D fusion", "--seeds", "0", "1", "--jobs", "2"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "docs" / "results.json").read_text())
    q = results["quality"]
    assert q["protocol"]["steps"] == 2
    assert [r["seed"] for r in q["splits"]["B15/N4"]] == [0, 1]
    assert all(r["parallel_jobs"] == 2 and r["threads"] == 1 for r in q["splits"]["B15/N4"])
    run = q["splits"]["B15/N4"][0]
    for kind in ("fused", "3d", "2d"):
        vals = run["predictions"][kind]
        assert set(vals) == {"hIoU", "mIoU_base", "mIoU_novel"}
        assert all(v is None or 0.0 <= v <= 100.0 or v != v for v in vals.values())
    assert list(q["ablations"]) == ["no 3D-2D fusion"]
    # the budget section: the B15/N4 model at twice the quick budget, first seed only
    assert list(q["budget"]) == ["4"]
    assert [(r["seed"], r["steps"]) for r in q["budget"]["4"]] == [(0, 4)]
    assert json.loads((tmp_path / "runs" / "budget_4_s0" / "run_summary.json").read_text())[
        "steps"] == 4
    report = (tmp_path / "docs" / "RESULTS.md").read_text()
    assert "B15/N4" in report and "no 3D-2D fusion" in report and "2 optimiser steps" in report
    assert "Quality against the training budget" in report
    assert (tmp_path / "docs" / "img" / "quality_vs_budget.png").stat().st_size > 1000
    # a second invocation keeps the finished runs instead of training them again
    stamp = (tmp_path / "runs" / "split_B15N4_s1" / "last.pt").stat().st_mtime_ns
    stamp_budget = (tmp_path / "runs" / "budget_4_s0" / "last.pt").stat().st_mtime_ns
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "runs" / "split_B15N4_s1" / "last.pt").stat().st_mtime_ns == stamp
    assert (tmp_path / "runs" / "budget_4_s0" / "last.pt").stat().st_mtime_ns == stamp_budget
    again = json.loads((tmp_path / "docs" / "results.json").read_text())["quality"]
    assert again["splits"] == q["splits"] and again["ablations"] == q["ablations"]
    assert again["budget"] == q["budget"]


def test_quick_caption_noise_section_trains_on_its_own_data(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path / "docs"),
           "--runs", str(tmp_path / "runs"), "--only", "caption_noise", "--noise-rates", "0.4",
           "--seeds", "0"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sec = json.loads((tmp_path / "docs" / "results.json").read_text())["caption_noise"]
    assert list(sec["rates"]) == ["0.4"] and sec["protocol"]["steps"] == 2
    run = sec["rates"]["0.4"][0]
    assert run["seed"] == 0 and run["region_noise"] == 0.4
    cfg = (tmp_path / "runs" / "capnoise40_s0" / "config.yaml").read_text()
    assert "bench_data_region_noise0.4" in cfg
    assert "Region-caption noise" in (tmp_path / "docs" / "RESULTS.md").read_text()
