"""Cost of the region-caption loss in a training step (issue 13: at most 15 % of a step).

``python -m benchmarks.region_cost --root <synthetic root>`` builds a tiny training run
(default ``tiny/scannet_b15n4``), takes a few batches from its loader and times complete
optimiser steps (``train_step``: forward, every loss, backward, AdamW) with the region terms on
(the config's weights) and off (weights 0), on the same batches, alternating on/off so that the
machine's load affects both alike. On a shared machine that difference drowns in the noise of
the step, so the *marginal* work of the region terms is also timed on its own: the phrase lookup,
the three terms' forward and their backward down to the point features (the backward through
the network is shared with the other losses). Phrase embeddings are cached before timing (a
phrase is encoded once per run); the one-off encoding of every distinct phrase of the dataset
is timed separately (``prime_phrase_cache``, as ``build_run`` does). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import tempfile
import time

import torch

from benchmarks.common import machine
from xmask3d.config import load_config
from xmask3d.data.regions import read_region_captions, region_phrases
from xmask3d.engine import distributed as D
from xmask3d.engine.trainer import build_run, train_step
from xmask3d.losses.criterion import region_loss_terms
from xmask3d.losses.region_contrast import prime_phrase_cache, region_text_embeddings
from xmask3d.models.build import build_text


def measure(config: str, root: str, *, batches: int, repeats: int, overrides: list[str]) -> dict:
    out_dir = tempfile.mkdtemp(prefix="region_cost_")
    cfg = load_config(config, [f"data.root={root}", f"train.out_dir={out_dir}",
                               "train.eval_every=0", "data.select_fraction=0", *overrides])
    run = build_run(cfg, D.DistInfo(0, 1, 0, torch.device("cpu"), ""))
    on = run.weights
    off = dataclasses.replace(on, region_3d=0.0, region_2d=0.0, region_fused=0.0)
    if on == off:
        raise SystemExit("the config has no region-caption term switched on")
    data = []
    for epoch in itertools.count():
        run.train_set.set_epoch(epoch)
        run.sampler.set_epoch(epoch)
        data += list(itertools.islice(iter(run.loader), batches - len(data)))
        if len(data) >= batches:
            break
    phrases = region_phrases(f"{root}/region_captions.json",
                             sorted(read_region_captions(f"{root}/region_captions.json")))
    fresh = build_text(cfg)                              # build_run primed run.text already
    t0 = time.perf_counter()
    prime_phrase_cache(fresh, phrases)
    encode_s = time.perf_counter() - t0

    def step(weights, batch) -> float:
        run.weights = weights
        t = time.perf_counter()
        train_step(run, batch)
        return time.perf_counter() - t

    def marginal(batch) -> float:
        run.model.train()
        out = run.net(batch, run.class_embeds)
        for name in ("point_feats_3d", "point_feats_2d", "point_feats_fused"):
            setattr(out, name, getattr(out, name).detach().requires_grad_())
        t = time.perf_counter()
        regions = region_text_embeddings(run.text, batch.region_captions, run.info.device)
        sum(region_loss_terms(out, batch, on, regions, run.loss_gen).values()).backward()
        return time.perf_counter() - t

    for batch in data:                                   # warm-up: allocator, caches
        step(on, batch)
    extra = sorted(marginal(b) for b in data for _ in range(repeats))
    times: dict[str, list[float]] = {"on": [], "off": []}
    for r in range(repeats):
        for batch in data:
            order = (("on", on), ("off", off)) if r % 2 == 0 else (("off", off), ("on", on))
            for name, w in order:
                times[name].append(step(w, batch))
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"config": config, "batches": batches, "repeats": repeats,
            "views_per_batch": cfg.train.batch_size,
            "points_per_batch": [int(b.points.shape[0]) for b in data],
            "regions_per_batch": [len(b.region_captions) for b in data],
            "step_on_median_s": round(med["on"], 4), "step_off_median_s": round(med["off"], 4),
            "overhead": round(med["on"] / med["off"] - 1.0, 4),
            "step_on_s": [round(t, 3) for t in times["on"]],
            "step_off_s": [round(t, 3) for t in times["off"]],
            "region_terms_median_s": round(extra[len(extra) // 2], 4),
            "region_terms_share_of_step_off": round(extra[len(extra) // 2] / med["off"], 4),
            "distinct_phrases": len(phrases), "encode_all_phrases_s": round(encode_s, 3),
            "threads": torch.get_num_threads(), **machine()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="dataset root written by `xmask3d synth`")
    p.add_argument("--config", default="tiny/scannet_b15n4")
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    print(json.dumps(measure(args.config, args.root, batches=args.batches, repeats=args.repeats,
                             overrides=args.overrides)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
