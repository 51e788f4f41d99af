"""Seconds per training view of the tiny model: forward, backward and AdamW on fixed batches.

``python -m benchmarks.train_step`` builds the training batches a run of the bench protocol sees
(the bench data, the tiny B15/N4 configuration, batches of 4 views, seeded), runs ``--warmup``
steps, then times ``--steps`` steps and prints one JSON line: seconds per step and per view
(median and min), points and voxels per step, peak RSS. ``--profile`` adds the top operators of
one step (torch.profiler, self CPU time). Data loading is excluded: the batches are built first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch

from benchmarks.common import machine, peak_rss_mb


def build_batches(dataset, *, batch_size: int, count: int, seed: int):
    """The first ``count`` training batches (collated views) of ``dataset`` in epoch 0."""
    from xmask3d.data.dataset import collate_views
    from xmask3d.engine.sampler import EpochBatchSampler

    sampler = EpochBatchSampler(len(dataset), batch_size, seed=seed)
    sampler.set_epoch(0)
    dataset.set_epoch(0)
    batches = []
    for idx in sampler:
        batches.append(collate_views([dataset[i] for i in idx]))
        if len(batches) == count:
            break
    return batches


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_step")
    p.add_argument("--config", default="tiny/scannet_b15n4")
    p.add_argument("--data", default="runs/bench/bench_data")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time, or this process's CPU time (comparisons on a busy machine)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from xmask3d.engine import distributed as D
    from xmask3d.engine.trainer import build_run, train_step

    from xmask3d.config import load_config

    cfg = load_config(a.config, [f"data.root={a.data}", f"train.seed={a.seed}", "data.loop=8",
                                 "data.select_fraction=0", "train.eval_every=0",
                                 "train.out_dir=runs/bench/train_step", *a.overrides])
    run = build_run(cfg, D.DistInfo(rank=0, world_size=1, local_rank=0,
                                    device=torch.device("cpu"), backend=""))
    data_sets = sorted(o for o in a.overrides if o.startswith("data."))
    tag = hashlib.sha1(json.dumps([a.config, a.seed, data_sets]).encode()).hexdigest()[:10]
    cache = Path(a.data) / f"train_step_batches_{tag}.pt"      # the batches, built once
    count = a.warmup + a.steps
    batches = torch.load(cache, weights_only=False) if cache.is_file() else []
    if len(batches) < count:
        batches = build_batches(run.train_set, batch_size=cfg.train.batch_size, count=count,
                                seed=a.seed)
        torch.save(batches, cache)
    batches = batches[:count]
    run.state.epoch = cfg.loss.alignment_start_epoch     # every loss term on, as in most steps
    run.net.train()
    clock = time.perf_counter if a.clock == "wall" else time.process_time
    times = []
    for i, batch in enumerate(batches):
        t0 = clock()
        train_step(run, batch)
        if i >= a.warmup:
            times.append(clock() - t0)
    times.sort()
    views = sum(b.batch_size for b in batches[a.warmup:]) / len(times)
    res = {"config": a.config, "overrides": a.overrides, "steps": len(times), "clock": a.clock,
           "views_per_step": views,
           "points_per_step": sum(int(b.points.shape[0]) for b in batches) / len(batches),
           "voxels_per_step": sum(int(b.voxel_coords.shape[0]) for b in batches) / len(batches),
           "step_s_median": times[len(times) // 2], "step_s_min": times[0],
           "view_s_median": times[len(times) // 2] / views, "view_s_min": times[0] / views,
           "peak_rss_mb": peak_rss_mb(), **machine()}
    if a.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            train_step(run, batches[-1])
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
