"""How fast ``xmask3d view`` answers: the first run (point features) and later queries.

``python -m benchmarks.view_query --out docs`` generates one room with ``xmask3d synth`` (dense
enough for about 100k points), runs the viewer's first run on it with the bundled checkpoint and
the room's own frames, then times (wall clock, ``time.perf_counter``) what the page does on a
query: encode the text with the model's text encoder and score every point (LERF relevance,
an (N x E) @ (E x k) product) and colour them, split into the text encoder and the rest,
and a re-segmentation with a new class list (its text embeddings use the prompt templates).
Every query text is new, so the text encoder's cache never answers. Writes the ``view_query`` key of
``<out>/results.json`` (other keys kept) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from benchmarks.common import merge_results

QUERIES = ("something to sit on", "a place to sleep", "where food is prepared", "metal",
           "a soft surface", "something to put books on", "the floor", "a window",
           "a lamp", "wooden furniture", "a door handle", "where to wash hands",
           "a picture on the wall", "a desk for work", "curtains", "a fridge",
           "a toilet", "a bathtub", "a cupboard", "a kitchen counter")


def run(out: Path, runs: Path, *, density: float, threads: int) -> dict:
    import torch

    from xmask3d.apps.common import load_scan
    from xmask3d.apps.inference import load_inference_model
    from xmask3d.cli import build_parser
    from xmask3d.cli import main as cli
    from xmask3d.viewer.features import compute_point_features, encode_query, make_vocabulary
    from xmask3d.viewer.state import ModelScorer, ViewState

    torch.set_num_threads(threads)
    data = runs / "view_query_data"
    if not any(data.rglob("*.pth")):
        cli(["synth", "--out", str(data), "--scenes", "1", "--views", "12", "--seed", "1",
             "--val-fraction", "0", "--density", str(density), "--no-progress"])
    scan = sorted(data.rglob("*.pth"))[0]
    args = build_parser().parse_args(["view", str(scan), "--device", "cpu"])
    scene = load_scan(scan)
    lm = load_inference_model(None, device="cpu")
    names = [n.strip() for n in args.classes.split(",")]
    t0 = time.perf_counter()
    feats = compute_point_features(args, lm, scene, make_vocabulary(lm, names))
    first = time.perf_counter() - t0
    state = ViewState(scene.points, scene.colors, ModelScorer(feats, lm))
    t0 = time.perf_counter()
    state.segment(args.classes)
    segment = time.perf_counter() - t0
    times, encode, score = [], [], []
    load_before = os.getloadavg()[0]
    for q in QUERIES:
        t0 = time.perf_counter()
        state.query(q)
        state.colors()
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()                  # the two parts, on a fresh text each
        emb = encode_query(lm, q + " here")
        t1 = time.perf_counter()
        feats.relevance(emb, state.scorer.negatives)
        state.colors()
        encode.append(t1 - t0)
        score.append(time.perf_counter() - t1)
    load_after = os.getloadavg()[0]
    t0 = time.perf_counter()
    state.segment("chair, table, floor, wall, window, door, bed, sofa, lamp, shelf")
    resegment = time.perf_counter() - t0
    return {
        "scan": f"xmask3d synth seed 1, density {density:g}/m2 ({scan.name})",
        "num_points": scene.num_points, "feature_width": int(feats.fused.shape[1]),
        "path": feats.path, "checkpoint": "bundled tiny_synthetic.pt",
        "first_run_s": round(first, 2), "first_segment_s": round(segment, 3),
        "query_s": {"median": round(statistics.median(times), 4),
                    "max": round(max(times), 4), "n": len(times)},
        "query_parts_median_s": {"text_encoder": round(statistics.median(encode), 4),
                                 "score_and_colour": round(statistics.median(score), 4)},
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "resegment_10_classes_s": round(resegment, 3),
        "threads": threads, "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.view_query")
    p.add_argument("--out", default="docs", help="folder of results.json")
    p.add_argument("--runs", default="runs/bench", help="scratch folder for the generated room")
    p.add_argument("--density", type=float, default=1100.0,
                   help="synth points per m2 (1100: about 100k points)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    a = p.parse_args(argv)
    res = run(Path(a.out), Path(a.runs), density=a.density, threads=a.threads)
    merge_results(Path(a.out) / "results.json", "view_query", res)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
