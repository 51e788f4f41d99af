"""Shared helpers of the benchmark scripts: timing, peak memory, result files."""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from xmask3d.data.processed import atomic_write


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine() -> dict:
    return {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def time_it(fn, *, repeats: int = 3, warmup: int = 1) -> dict:
    """Run ``fn`` warmup + repeats times; return median/min seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"median_s": times[len(times) // 2], "min_s": times[0], "repeats": repeats}


@contextmanager
def timer(out: dict, key: str):
    t0 = time.perf_counter()
    yield
    out[key] = time.perf_counter() - t0


def read_section(path: Path, section: str) -> dict:
    """The ``section`` of the JSON results file, ``{}`` when the file or the section is absent."""
    return json.loads(path.read_text()).get(section, {}) if path.is_file() else {}


def merge_results(path: Path, section: str, values: dict) -> None:
    """Write ``values`` under ``section`` of the JSON results file (atomically)."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[section] = values
    atomic_write(path, lambda t: Path(t).write_text(json.dumps(data, indent=1, sort_keys=True)))


def start_child(module: str, job: dict, log_path: Path, *, threads: int) -> subprocess.Popen:
    """Run ``python -m <module> JOB_JSON`` with ``threads`` CPU threads, output to ``log_path``
    (the log file is closed when the process object is garbage-collected)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    log = open(log_path, "w")  # noqa: SIM115 (lives as long as the process)
    return subprocess.Popen([sys.executable, "-m", module, json.dumps(job)], stdout=log,
                            stderr=subprocess.STDOUT, env=env)


def mean_half_range(vals: list[float]) -> tuple[float, float]:
    """Mean and half-range of ``vals`` (NaN, NaN when empty; half-range 0 for one value)."""
    if not vals:
        return float("nan"), float("nan")
    return statistics.mean(vals), (max(vals) - min(vals)) / 2 if len(vals) > 1 else 0.0


def prediction_stat(runs: list[dict], kind: str, metric: str) -> tuple[float, float]:
    """Mean and half-range over ``runs`` of ``predictions[kind][metric]`` (None and NaN skipped)."""
    vals = [r["predictions"][kind][metric] for r in runs]
    return mean_half_range([v for v in vals if v is not None and v == v])


def prediction_cell(runs: list[dict], kind: str, metric: str) -> str:
    """A table cell: ``mean ± half-range`` over several runs, the value of one."""
    m, s = prediction_stat(runs, kind, metric)
    return f"{m:.1f} ± {s:.1f}" if len(runs) > 1 else f"{m:.1f}"


def label_slug(label: str) -> str:
    """A checkpoint's table label as a file-name part safe in paths and Markdown links."""
    return re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")
