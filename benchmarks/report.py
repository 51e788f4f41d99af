"""Render docs/RESULTS.md from docs/results.json (every number in the tables comes from there)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.caption_noise import NOISE_RATES, caption_noise_tables
from benchmarks.demo_scenes import demo_scenes_table
from benchmarks.levers import levers_table
from benchmarks.other_words import candidates_table
from benchmarks.quality import ABLATIONS, BUDGET_STEPS, SPLIT_CONFIGS, Protocol, _protocol_key
from benchmarks.quality_tables import TARGETS, budget_tables, quality_tables
from benchmarks.real import real_segment_tables, real_tables
from benchmarks.region_purity import purity_table
from xmask3d.data.processed import atomic_write


def recipe_tables(sec: dict, img_dir: Path | None) -> list[str]:
    """Quality against training time: the recipe before issue 18 and the curves of
    ``python -m benchmarks.recipe_curve`` (intermediate checkpoints of one run each)."""
    before = sec.get("before", {}).get("runs", [])
    curves = sec.get("curves", {})
    if not before and not curves:
        return []
    lines = ["### Quality against training time: the recipe before and after issue 18", "",
             "B15/N4, fused prediction, the multi-view evaluation of the quality section on each "
             "run's own val scenes. *Before*: " + sec.get("before", {}).get("note", "") + ". "
             "*After*: intermediate checkpoints of one run each (`python -m "
             "benchmarks.recipe_curve`), so a point is part-way down its run's schedule. Runs "
             "that shared the cores with other jobs are in the table, not in the figure.", ""]
    if img_dir is not None:
        plot_recipe(before, curves, img_dir / "quality_vs_time.png")
        lines += ["![quality against training time](img/quality_vs_time.png)", ""]
    lines += ["| recipe | step | train min | fused hIoU | fused base | fused novel | 3D base | "
              "3D novel |", "|---|---|---|---|---|---|---|---|"]

    def row(name, pt):
        p = pt["predictions"]
        return (f"| {name} | {pt['steps'] if 'steps' in pt else pt['step']} | "
                f"{pt['train_s'] / 60:.1f} | {p['fused']['hIoU']:.1f} | "
                f"{p['fused']['mIoU_base']:.1f} | {p['fused']['mIoU_novel']:.1f} | "
                f"{p['3d']['mIoU_base']:.1f} | {p['3d']['mIoU_novel']:.1f} |")

    lines += [row(f"before (seed {r['seed']})", r) for r in before]
    for name, c in curves.items():
        lines += [row(name, pt) for pt in c["points"]]
        if c.get("note"):
            lines += [f"| *{name}*: {c['note']} |||||||| "]
    return lines


def plot_recipe(before: list[dict], curves: dict, path: Path) -> None:
    """Fused mIoU base and novel against training minutes, before and after."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, metric, title in ((axes[0], "mIoU_base", "base classes"),
                              (axes[1], "mIoU_novel", "novel classes")):
        if before:
            ax.plot([r["train_s"] / 60 for r in before],
                    [r["predictions"]["fused"][metric] for r in before], "o", color="grey",
                    label="before (complete runs)")
        for name, c in curves.items():
            if not c.get("timed", True):         # shared the cores: its time means nothing
                continue
            pts = c["points"]
            ax.plot([p["train_s"] / 60 for p in pts],
                    [p["predictions"]["fused"][metric] for p in pts], marker="o", label=name)
        ax.axhline(TARGETS[metric], color="grey", ls="--", lw=1, label="target")
        ax.axvline(30, color="k", ls=":", lw=1)
        ax.set_xlabel("training time (min, 2-core VM)")
        ax.set_title(f"fused mIoU, {title}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mIoU (%)")
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle("Synthetic B15/N4, tiny model: quality against training time")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda t: fig.savefig(t, dpi=110, format="png"))
    plt.close(fig)




def speed_tables(sp: dict, img_dir: Path | None) -> list[str]:
    lines = ["## Speed and memory (CPU)", ""]
    t = sp.get("tiny_view")
    if t:
        lines += [f"Tiny model, one view of a synthetic room: {t['visible_points']:,} visible "
                  "points, "
                  f"{t['voxels']:,} voxels, image {t['image_hw'][0]}x{t['image_hw'][1]}, "
                  f"{t['cpu_threads']} CPU threads, backend `{t['backend']}`.", "",
                  "| measure | median s | min s | target |", "|---|---|---|---|",
                  f"| forward | {t['forward']['median_s']:.2f} | {t['forward']['min_s']:.2f} | "
                  f"≤ 1 s: **{'met' if t['forward']['median_s'] <= 1 else 'missed'}** |",
                  f"| forward + backward (all losses) | {t['forward_backward']['median_s']:.2f} | "
                  f"{t['forward_backward']['min_s']:.2f} | |", "",
                  f"Peak resident memory of that process: {t['peak_rss_mb']:.0f} MiB.", ""]
    st = sp.get("train_step")
    if st:
        lines += ["Training steps as a run of the bench protocol takes them (`python -m "
                  f"benchmarks.train_step`): batches of {st['views_per_step']:.0f} views from the "
                  f"bench data ({st['points_per_step']:,.0f} points, {st['voxels_per_step']:,.0f} "
                  f"voxels per step), forward + every loss + backward + AdamW, {st['steps']} "
                  f"timed steps, {st['cpu_threads']} threads, data loading excluded.", "",
                  "| measure | median | min | target |", "|---|---|---|---|",
                  f"| seconds per view | {st['view_s_median']:.3f} | {st['view_s_min']:.3f} | "
                  f"≤ 0.3 s: **{'met' if st['view_s_median'] <= 0.3 else 'missed'}** |",
                  f"| seconds per step | {st['step_s_median']:.2f} | {st['step_s_min']:.2f} | |",
                  ""]
    f = sp.get("full_view")
    if f:
        lines += [f"Full-size model ({f['config']}), one forward of one {f['image_hw'][0]}x"
                  f"{f['image_hw'][1]} view ({f['visible_points']:,} points, UNet input "
                  f"{f['input_size']}): **{f['forward_s']:.1f} s** on {f['cpu_threads']} CPU "
                  f"threads (build {f['build_s']:.1f} s), peak RSS {f['peak_rss_mb'] / 1024:.2f} "
                  "GiB.", ""]
    b = sp.get("backends")
    if b:
        fl = b["flops"]
        lines += ["### Sparse backends and achieved FLOP/s (tiny 3D UNet, same weights, "
                  "forward)", "",
                  "| backend | median s | min s |", "|---|---|---|",
                  f"| pure PyTorch | {b['torch']['median_s']:.3f} | {b['torch']['min_s']:.3f} |",
                  f"| spconv 2.3.8 (CPU) | {b['spconv']['median_s']:.3f} | "
                  f"{b['spconv']['min_s']:.3f} |", "",
                  f"Work of the sparse convolutions: {fl['gflop']:.2f} GFLOP"
                  + (f" over {fl['pairs']:,} input-output pairs" if "pairs" in fl else "")
                  + f" ({fl['note']}). Achieved with the PyTorch backend: "
                  f"{fl['achieved_gflops_torch']:.1f} GFLOP/s; a plain 2048x2048 matmul on the "
                  "same "
                  f"threads: {fl['matmul_gflops']:.1f} GFLOP/s; fraction of that ceiling: "
                  f"**{100 * fl['fraction_of_matmul_ceiling']:.1f} %** (the whole UNet time, BN "
                  "and "
                  "neighbour search included, is charged to the convolutions).", ""]
    c = sp.get("segment_curve")
    if c:
        lines += ["### `xmask3d segment` against scan size (2 threads, wall time incl. start-up)",
                  ""]
        if img_dir is not None and (img_dir / "segment_cost_curve.png").is_file():
            lines += ["![segment cost curve](img/segment_cost_curve.png)", ""]
        lines += ["| points | views | real views s | real views MiB | virtual views s | "
                  "virtual MiB | 3D only s | 3D only MiB |", "|---|---|---|---|---|---|---|---|"]
        for n in sorted({r["points"] for r in c}):
            row = {r["mode"]: r for r in c if r["points"] == n}
            nviews = row.get("views", {}).get("views")
            cells = [f"{r['wall_s']:.1f} | {r['peak_rss_mb']:.0f}" if r else "- | -"
                     for r in (row.get(m) for m in ("views", "virtual", "3d-only"))]
            lines.append(f"| {n:,} | {nviews} | {' | '.join(cells)} |")
        r100 = next((r for r in c if r["points"] == 100_000 and r["mode"] == "views"), None)
        peak = max(r["peak_rss_mb"] for r in c)
        if r100:
            lines += ["", f"Targets: 100k points with {r100['views']} views in ≤ 30 s: "
                      f"**{'met' if r100['wall_s'] <= 30 else 'missed'}** ({r100['wall_s']:.1f} s);"
                      f" peak resident memory ≤ 4 GB: **{'met' if peak <= 4096 else 'missed'}** "
                      f"(largest {peak:.0f} MiB)."]
        lines.append("")
    return lines


def plot_segment_curve(rows: list[dict], path: Path) -> None:
    """Time and peak memory of ``segment`` against points (log x), one line per mode."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for mode, label in (("views", "real views"), ("virtual", "virtual views"),
                        ("3d-only", "3D only (--no-2d)")):
        pts = sorted((r["points"], r["wall_s"], r["peak_rss_mb"]) for r in rows
                     if r["mode"] == mode)
        if not pts:
            continue
        a1.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        a2.plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=label)
    for ax, yl in ((a1, "wall time (s)"), (a2, "peak RSS (MiB)")):
        ax.set_xscale("log")
        ax.set_xlabel("points in the scan")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    a1.legend()
    fig.suptitle("xmask3d segment, tiny model, 2 CPU threads")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda t: fig.savefig(t, dpi=110, format="png"))
    plt.close(fig)


def learning3d_tables(section: dict) -> list[str]:
    """The 3D-only learning-curve diagnostic (benchmarks/learning3d.py) as a table."""
    runs = section.get("runs", [])
    if not runs:
        return []
    steps = sorted({p["step"] for r in runs for p in r["points"]})
    head = " | ".join(f"val base @{s}" for s in steps)
    lines = ["### Diagnostic: the 3D network alone (B15/N4, point cross-entropy only)", "",
             "The sparse 3D UNet and its projection to the text space, trained alone with the "
             "point cross-entropy on the base classes (no 2D branch, no other loss) on the same "
             "data, batch size and schedule, at the config's 3D learning rate and a 5x larger "
             "one (`python -m benchmarks --only learning3d`). Scores are **per view** (visible "
             "points of each view, no votes, no fill), so they compare with each other, not "
             "with the tables above. \"train scenes\" scores the views of the scenes it trained "
             "on the same way: if it is as low as on held-out scenes, the model is under-fitted "
             "at this budget rather than failing to generalise.", "",
             f"| 3D lr | {head} | train scenes base | train loss (last {runs[0]['every']} steps) "
             "| train s |", "|---|" + "---|" * (len(steps) + 3)]
    for r in runs:
        by_step = {p["step"]: p for p in r["points"]}
        cells = " | ".join(f"{by_step[s]['val']['mIoU_base']:.1f}" if s in by_step else ""
                           for s in steps)
        last = r["points"][-1]
        lines.append(f"| {r['lr_3d']:g} | {cells} | {r['train_scenes']['mIoU_base']:.1f} | "
                     f"{last['train_loss']:.2f} | {r['train_s']:.0f} |")
    return lines + novel_table(section.get("novel", []))


def novel_table(rows: list[dict]) -> list[str]:
    """Where the novel classes are lost (``benchmarks.learning3d.novel_diagnosis``)."""
    if not rows:
        return []
    lines = ["", "### Diagnostic: where the novel classes are lost (B15/N4 full model, val views)",
             "", "Per view, on the visible points: how often the binary head calls base points "
             "base and novel points novel, and how often the 3D features pick the right class "
             "*among the novel classes* on novel points, i.e. with a perfect base/novel gate.", "",
             "| checkpoint (steps) | base points called base | novel points called novel | "
             "right novel class (perfect gate) | mean over novel classes | chance |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        mean = r.get("novel_choice_class_mean")
        per = r.get("novel_choice_per_class") or {}
        detail = ", ".join(f"{k} {v:.0f}" for k, v in per.items() if v is not None)
        lines.append(f"| {r.get('label', r['steps'])} | {r['base_called_base']:.1f} % | "
                     f"{r['novel_called_novel']:.1f} % | {r['novel_choice_acc']:.1f} % | "
                     + (f"{mean:.1f} % ({detail})" if mean is not None else "-")
                     + f" | {r['chance']:.1f} % |")
    return lines


def how_to_run(data: dict) -> list[str]:
    """The commands that regenerate each section, and the training time the file holds."""
    q = data.get("quality", {})
    seen, total, wall = set(), 0.0, 0.0
    for rows in [*q.get("splits", {}).values(), *q.get("ablations", {}).values(),
                 *q.get("budget", {}).values(),
                 *data.get("caption_noise", {}).get("rates", {}).values()]:
        for r in rows:
            key = (r.get("config"), tuple(r.get("overrides", [])), r.get("seed"), r.get("steps"),
                   r.get("region_noise"))
            if key not in seen:
                seen.add(key)
                total += r.get("train_s", 0.0)
                # runs trained N at a time share the wall clock; evaluation ~15 s per run
                wall += r.get("train_s", 0.0) / r.get("parallel_jobs", 1) + 15.0
    for r in data.get("learning3d", {}).get("runs", []):          # diagnostic, evals included
        wall += r.get("wall_s", 0.0) / r.get("parallel_jobs", 1)
    lines = ["Regenerate: `make bench` (every section), or one section at a time: "
             "`python -m benchmarks --only quality --jobs 2` (three splits x seeds; `--jobs 2` "
             "trains two seeds at once, one thread each), `--only ablations --jobs 2`, "
             "`--only budget --jobs 2` (the full B15/N4 model at shorter budgets: quality "
             "against training time), `--only caption_noise --jobs 2` (region-caption error rates "
             "0 / 20 / 40 %, two seeds each), "
             "`--only learning3d` (diagnostic: the 3D network alone), `--only real` (needs "
             "../shared/data/real and the B15/N4 seed-0 run), `--only speed`. "
             "Finished runs of the same protocol are kept in results.json and not re-run; delete "
             "the file to start over."]
    now = Protocol()
    needed = sum(len(now.row_seeds("splits", n)) for n in SPLIT_CONFIGS) + sum(
        len(now.row_seeds("ablations", n)) for n in ABLATIONS if not n.startswith("full")) + \
        len(NOISE_RATES) * len(now.seeds)
    share = sum(BUDGET_STEPS) / now.steps
    stored = {k: v for k, v in q.get("protocol", {}).items() if k != "seeds"}
    if seen and len(seen) >= needed:
        lines[0] += (f" The {len(seen)} training runs in this file took {total / 3600:.1f} h of "
                     "training in total on the 2-core machine (evaluation adds about 15 s per "
                     f"run); run as they were (two at a time where marked), they take about "
                     f"{wall / 3600:.1f} h of wall time, so a fresh `make bench` takes about "
                     f"{wall / 3600 + 0.1:.1f} h with the speed section (about 5 min).")
    elif seen:
        hours = (needed + share) * wall / len(seen) / 3600
        lines[0] += (f" `make bench` trains {needed} runs plus the shorter budgets ({share:.2f} "
                     f"of a run); {len(seen)} of them are in this file ({total / 3600:.1f} h of "
                     "training on the 2-core machine, two at a time where marked). At their mean "
                     f"wall time per run the whole takes about {hours:.1f} h (an estimate from "
                     "those runs, not a measured `make bench`).")
    if stored and stored != _protocol_key(now):
        ref = next(iter(data.get("recipe", {}).get("curves", {}).values()), {}).get("points")
        lines[0] += (f" **The quality tables below were measured under an earlier protocol** "
                     f"(stated in them). `make bench` now runs the protocol of "
                     f"`benchmarks/quality.py`: {now.scenes} rooms, {now.steps} steps, "
                     f"{needed} runs plus the shorter budgets ({share:.2f} of a run)")
        if ref:
            per = ref[-1]["train_s"] / 60 + 1.0          # + about 1 min of evaluation
            hours = (needed + share) * per / 2 / 60
            lines[0] += (f"; one {ref[-1]['step']}-step run took {ref[-1]['train_s'] / 60:.1f} min "
                         f"of training at 1 thread beside a second run, so two at a time the "
                         f"quality and ablation runs take about {hours:.1f} h (an estimate from "
                         "that one run, not a measured `make bench`)")
        lines[0] += "."
    prev = data.get("quality_previous", {}).get("protocol")
    if prev and q:
        lines[0] += (f" The current protocol's tables hold the rows measured so far; the runs of "
                     f"the earlier protocol ({prev['scenes']} rooms, {prev['steps']} steps) are "
                     "kept in their own section below until every current row is measured.")
    return lines


def render(results: Path, out: Path, extra_sections: list[str] | None = None) -> None:
    data = json.loads(results.read_text()) if results.is_file() else {}
    lines = ["# Results", "",
             "Every number here is read from `docs/results.json`, written by `make bench` "
             "(`python -m benchmarks`). Numbers not yet measured are absent, not estimated.", "",
             *how_to_run(data), ""]
    img = out.parent / "img"
    if "quality" in data:
        lines += quality_tables(data["quality"]) + [""]
        budget = budget_tables(data["quality"], img)
        lines += budget + [""] if budget else []
    if data.get("quality_previous"):
        prev = data["quality_previous"]
        lines += quality_tables(prev, previous=True) + [""]
        budget = budget_tables(prev, img, "quality_vs_budget_previous_protocol.png")
        lines += budget + [""] if budget else []
    if data.get("recipe"):
        lines += recipe_tables(data["recipe"], img) + [""]
    if data.get("caption_noise"):
        lines += caption_noise_tables(data["caption_noise"], img) + [""]
    if data.get("learning3d"):
        lines += learning3d_tables(data["learning3d"]) + [""]
    if data.get("region_purity"):
        lines += purity_table(data["region_purity"]) + [""]
    if "real_scan" in data:
        lines += real_tables(data["real_scan"]) + [""]
    if data.get("real_scan_segment"):
        lines += real_segment_tables(data["real_scan_segment"]) + [""]
    if data.get("levers"):
        lines += levers_table(data["levers"]) + [""]
    if data.get("other_words_candidates"):
        lines += candidates_table(data["other_words_candidates"],
                                  data.get("other_words")) + [""]
    if data.get("demo_scenes"):
        lines += demo_scenes_table(data["demo_scenes"]) + [""]
    if "speed" in data:
        if data["speed"].get("segment_curve"):
            plot_segment_curve(data["speed"]["segment_curve"], img / "segment_cost_curve.png")
        lines += speed_tables(data["speed"], img) + [""]
    lines += extra_sections or []
    text = "\n".join(lines) + "\n"
    atomic_write(out, lambda t: Path(t).write_text(text))
