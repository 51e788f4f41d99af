"""Novel-class quality against the error rate of the region captions (issue 13 ablation).

The synthetic dense captioner (``xmask3d synth``, docs/synthetic-data.md "Region captions") makes
four kinds of error: missed objects, wrong nouns, neighbours merged into one box and hallucinated
objects. ``synth --region-noise R`` sets all four rates to ``R``. For each rate this section
generates the bench data again with the same seed (the same rooms, views and view captions; only
the region captions differ), trains the full B15/N4 tiny model at the quality protocol's budget
and evaluates it on the held-out rooms exactly as the quality section does. The reference row is
the CPU recipe at the default rates (miss 15 %, the other three 10 %), read from the ``recipe``
section (the same data, budget and evaluation).

``python -m benchmarks --only caption_noise --jobs 2`` runs it; results go under
``caption_noise`` of docs/results.json, the table and ``docs/img/caption_noise.png`` into
RESULTS.md.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from benchmarks.common import merge_results, read_section
from benchmarks.common import prediction_cell as _cell
from benchmarks.common import prediction_stat as _mean
from benchmarks.quality import SPLIT_CONFIGS, Protocol, _pool, _protocol_key, _Task, ensure_data
from xmask3d.data.processed import atomic_write

__all__ = ["NOISE_RATES", "caption_noise_tables", "noise_data_root", "run_caption_noise"]

NOISE_RATES = (0.0, 0.2, 0.4)
DEFAULT_RATES = {"miss": 0.15, "wrong_noun": 0.1, "merge": 0.1, "hallucinate": 0.1}
METRICS = ("hIoU", "mIoU_base", "mIoU_novel")


def noise_data_root(runs_dir: Path, rate: float) -> Path:
    """Where the bench data with every region-caption error rate at ``rate`` lives."""
    return runs_dir / f"bench_data_region_noise{rate:g}"


def _slug(rate: float) -> str:
    return f"capnoise{round(rate * 100):02d}"


def _reference(results: Path) -> list[dict]:
    """The recipe's runs at the default rates: last point of each ``recipe.curves`` entry
    labelled ``after (seed N)`` (same data, budget and evaluation)."""
    if not results.is_file():
        return []
    curves = json.loads(results.read_text()).get("recipe", {}).get("curves", {})
    out = []
    for label, c in sorted(curves.items()):
        if label.startswith("after (seed ") and c.get("points"):
            last = c["points"][-1]
            out.append({"seed": int(label[len("after (seed "):-1]), "steps": last["step"],
                        "predictions": last["predictions"], "run": c.get("run")})
    return out


def run_caption_noise(results: Path, runs_dir: Path, *, proto: Protocol,
                      rates: list[float] | tuple[float, ...] = NOISE_RATES,
                      jobs: int = 1) -> dict:
    """Train and evaluate the full B15/N4 model at each region-caption error rate, seeds
    ``proto.seeds``; finished seeds of the same protocol are kept and not re-run. Runs are
    ordered seed-major (every rate gets its first seed before any gets its second)."""
    old = read_section(results, "caption_noise")
    key = _protocol_key(proto)
    same = {k: v for k, v in old.get("protocol", {}).items() if k != "seeds"} == key
    runs: dict[str, dict[int, dict]] = {
        r: {x["seed"]: x for x in rs} for r, rs in (old.get("rates", {}) if same else {}).items()}
    config = SPLIT_CONFIGS["B15/N4"]
    tasks = []
    for seed in proto.seeds:
        for rate in rates:
            if seed in runs.get(f"{rate:g}", {}):
                continue
            data = ensure_data(noise_data_root(runs_dir, rate), proto, region_noise=rate)
            tasks.append(_Task("caption_noise", f"{rate:g}", config, [], _slug(rate), seed,
                               data=data))

    def store(task: _Task | None = None, result: dict | None = None) -> None:
        if task is not None:
            runs.setdefault(task.name, {})[task.seed] = {**result, "region_noise": float(
                task.name)}
        merge_results(results, "caption_noise", {
            "protocol": {**key, "seeds": list(proto.seeds)},
            "default_rates": DEFAULT_RATES, "reference": _reference(results),
            "rates": {r: [got[s] for s in sorted(got)] for r, got in sorted(runs.items())}})

    store()
    _pool(tasks, data=runs_dir / "bench_data", proto=proto, runs_dir=runs_dir, jobs=jobs,
          on_result=store)
    return json.loads(results.read_text())["caption_noise"]


def _rows(sec: dict) -> list[tuple[str, float, list[dict]]]:
    """(label, mean error rate, runs) by rate; the reference at the mean of its four rates."""
    rows = [(f"{float(r) * 100:.0f} % (all four)", float(r), rs)
            for r, rs in sec.get("rates", {}).items() if rs]
    if sec.get("reference"):
        d = sec.get("default_rates", DEFAULT_RATES)
        rows.append((f"default: miss {d['miss'] * 100:.0f} %, wrong noun / merge / hallucinate "
                     f"{d['wrong_noun'] * 100:.0f} %", statistics.mean(d.values()),
                     sec["reference"]))
    return sorted(rows, key=lambda r: r[1])


def caption_noise_tables(sec: dict, img_dir: Path | None) -> list[str]:
    """The RESULTS.md section: a row per error rate and the plot of novel mIoU against it."""
    rows = _rows(sec)
    if not rows:
        return []
    p = sec["protocol"]
    lines = ["### Region-caption noise (issue 13 ablation, B15/N4)", "",
             f"The bench data (`synth --scenes {p['scenes']} --views {p['views']} --seed "
             f"{p['data_seed']}`) made again with `--region-noise R`: every error rate of the "
             "synthetic dense captioner (missed objects, wrong nouns, merged neighbours, "
             "hallucinated objects) set to R. Same rooms, views and view captions; full model, "
             f"{p['steps']} steps, evaluation as in the quality section. Cells: mean ± "
             "half-range over seeds (a row with fewer seeds is not comparable to their mean: "
             "compare seed by seed).", "",
             "| region-caption error rates | seeds | fused hIoU | fused base | fused novel | "
             "3D-only novel |", "|---|---|---|---|---|---|"]
    for label, _, runs in rows:
        seeds = ", ".join(str(r["seed"]) for r in runs)
        lines.append(f"| {label} | {seeds} | {_cell(runs, 'fused', 'hIoU')} | "
                     f"{_cell(runs, 'fused', 'mIoU_base')} | {_cell(runs, 'fused', 'mIoU_novel')}"
                     f" | {_cell(runs, '3d', 'mIoU_novel')} |")
    if img_dir is not None and len(rows) > 1:
        plot_caption_noise(rows, img_dir / "caption_noise.png")
        lines += ["", "![novel mIoU against region-caption noise](img/caption_noise.png)"]
    return lines


def plot_caption_noise(rows: list[tuple[str, float, list[dict]]], path: Path) -> None:
    """Fused and 3D-only novel mIoU (mean, half-range bars) and fused base mIoU against the
    mean region-caption error rate."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    x = [100 * r for _, r, _ in rows]
    for kind, metric, label, style in (("fused", "mIoU_novel", "fused, novel", "-o"),
                                       ("3d", "mIoU_novel", "3D only, novel", "-s"),
                                       ("fused", "mIoU_base", "fused, base", "--^")):
        stats = [_mean(runs, kind, metric) for _, _, runs in rows]
        ax.errorbar(x, [m for m, _ in stats], yerr=[s for _, s in stats], fmt=style,
                    capsize=3, label=label)
    ax.set_xlabel("region-caption error rate (%, mean of the four kinds)")
    ax.set_ylabel("mIoU (%)")
    ax.set_xticks(x, [f"{v:.0f}" for v in x])
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    ax.set_title("Synthetic B15/N4, tiny model: quality against caption noise")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda t: fig.savefig(t, dpi=110, format="png"))
    plt.close(fig)
