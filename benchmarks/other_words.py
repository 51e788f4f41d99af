"""Points that match none of the user's words: background words, a probability cut, both.

``python -m benchmarks.other_words`` runs README's ``segment`` example (``--classes "chair,
sofa, table, lamp, plant"``, virtual views, the bundled checkpoint) on generated rooms and on the
real ScanNet scan scene0000_00 and compares four ways of labelling "other"
(:mod:`xmask3d.apps.other`):

- ``none``: every point takes one of the five words (the behaviour before);
- ``background``: the hidden background words (wall, floor, ceiling, door, window) are scored
  with the five words, points that pick one are "other";
- ``threshold``: "other" where the winning probability of the five words is below a cut;
- ``both``: the background words and a cut on the winning probability.

The cut of ``threshold`` and ``both`` is *calibrated on the generated rooms only* (``xmask3d
synth``, seeds unseen in training): the cut on a 0.05 grid that maximises the balanced accuracy
of the word-or-other decision, i.e. the mean of (points of chair/sofa/table that get their own
word) and (labelled points of any other class but desk that become "other"). scene0000_00 is only
evaluated with it: its labels are read for aggregate figures and never used to choose anything.

Figures per scene set: % of wall points and % of floor points that take one of the five words,
% of chair/sofa/table points that get their word (ScanNet20 labels; lamp and plant have none).
Also the ``query`` heat map "something to sit on" before and after (LERF phrases alone vs. with
the background words): % of floor/wall points and of chair/sofa/bed points above relevance 0.5.
Writes the ``other_words`` key of ``<out>/results.json`` (other keys kept), the pictures to
``<runs>/other_words/`` and prints the figures. ``--ckpt PATH --label NAME`` scores a candidate
checkpoint the same way (its own calibrated cuts) into ``other_words_candidates[NAME]``, so a
replacement for the bundled checkpoint can be judged before it is swapped in.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import label_slug, machine, merge_results, read_section

WORDS = ("chair", "sofa", "table", "lamp", "plant")       # README's example
OWN_WORD = {"chair": 4, "sofa": 5, "table": 6}            # ScanNet20 ids of the words it has
WALL, FLOOR, DESK = 0, 1, 12
SEAT_IDS = (4, 5, 3)                                       # chair, sofa, bed: "to sit on"
QUERY = "something to sit on"
CUTS = tuple(round(0.05 * k, 2) for k in range(1, 19))   # 0.05 .. 0.90
OPTIONS = ("none", "background", "threshold", "both")


def _args(scan: Path, device: str, views: int) -> argparse.Namespace:
    from xmask3d.cli import build_parser

    return build_parser().parse_args(
        ["segment", str(scan), "--classes", ", ".join(WORDS), "--out", "unused", "--virtual",
         "--virtual-views", str(views), "--no-progress", "--device", device])


def score_scene(lm, scan: Path, *, device: str, views: int) -> dict:
    """Probabilities of the five words alone and with the background words, the upright points
    and the two relevance maps of QUERY, on virtual views as README's example runs."""
    import torch

    from xmask3d.apps.common import load_scan, score_scan
    from xmask3d.apps.other import background_words
    from xmask3d.apps.query import DEFAULT_NEGATIVES, query_negatives, relevance
    from xmask3d.apps.segment import score_classes

    args = _args(scan, device, views)
    scene = load_scan(scan)
    words = list(WORDS)
    alone = score_classes(args, lm, scene, [], "", words, [])
    with_bg = score_classes(args, lm, scene, [], "", words, [], background_words(words))
    negatives, uses = query_negatives([QUERY], list(DEFAULT_NEGATIVES))
    uses = torch.from_numpy(np.concatenate([[np.isin(negatives, DEFAULT_NEGATIVES)], uses]))
    q_emb = lm.text.encode_captions([QUERY, QUERY])
    n_emb = lm.text.encode_captions(negatives)
    rel = score_scan(
        args, lm, scene, [], views_source="", class_embeds=torch.cat([q_emb, n_emb]),
        view_fn=lambda out, batch: relevance(out.point_feats_fused, q_emb, n_emb,
                                             out.logit_scale, uses),
        point_fn=lambda f, b, s: relevance(f, q_emb, n_emb, s, uses), width=2)
    return {"alone": alone.scores, "with_bg": with_bg.scores, "points": alone.points,
            "colors": scene.colors, "relevance": rel.scores, "path": alone.path}


def labels_of(scores: dict, option: str, cut: float | None) -> np.ndarray:
    """(N,) ids 0..5 (5 = "other") of one option."""
    from xmask3d.apps.other import assign_labels

    c = len(WORDS)
    if option == "none":
        return assign_labels(scores["alone"])[0]
    if option == "threshold":
        return assign_labels(scores["alone"], other_below=cut)[0]
    if option == "background":
        return assign_labels(scores["with_bg"], num_classes=c)[0]
    return assign_labels(scores["with_bg"], num_classes=c, other_below=cut)[0]


def counts(labels: np.ndarray, gt: np.ndarray) -> dict:
    """Point counts the figures are made of (summed over scenes before dividing)."""
    c = len(WORDS)
    word = labels < c
    valid = (gt >= 0) & (gt < 20) & (gt != DESK)       # a desk labelled "table" is not wrong
    own = np.zeros(len(gt), bool)
    for name, gid in OWN_WORD.items():
        own |= (gt == gid) & (labels == WORDS.index(name))
    targets = np.isin(gt, list(OWN_WORD.values()))
    return {"wall": int((gt == WALL).sum()), "wall_word": int(((gt == WALL) & word).sum()),
            "floor": int((gt == FLOOR).sum()), "floor_word": int(((gt == FLOOR) & word).sum()),
            "targets": int(targets.sum()), "targets_own": int((targets & own).sum()),
            "rest": int((valid & ~targets).sum()), "rest_other": int((valid & ~targets
                                                                      & ~word).sum()),
            **{f"{n}": int((gt == g).sum()) for n, g in OWN_WORD.items()},
            **{f"{n}_own": int(((gt == g) & (labels == WORDS.index(n))).sum())
               for n, g in OWN_WORD.items()}}


def _sum(parts: list[dict]) -> dict:
    return {k: sum(p[k] for p in parts) for k in parts[0]}


def _pct(a: int, b: int) -> float | None:
    return round(100.0 * a / b, 1) if b else None


def figures(c: dict) -> dict:
    out = {"wall_points_taking_a_word_pct": _pct(c["wall_word"], c["wall"]),
           "floor_points_taking_a_word_pct": _pct(c["floor_word"], c["floor"]),
           "chair_sofa_table_points_with_their_word_pct": _pct(c["targets_own"], c["targets"]),
           "other_labelled_points_becoming_other_pct": _pct(c["rest_other"], c["rest"])}
    for n in OWN_WORD:
        out[f"{n}_points_with_their_word_pct"] = _pct(c[f"{n}_own"], c[n])
    return out


def balanced_accuracy(c: dict) -> float:
    return 0.5 * (c["targets_own"] / max(c["targets"], 1) + c["rest_other"] / max(c["rest"], 1))


def calibrate(scored: list[tuple[dict, np.ndarray]], option: str) -> tuple[float, list]:
    """The cut of CUTS with the highest balanced accuracy over the scenes (the lowest on ties)."""
    curve = []
    for cut in CUTS:
        c = _sum([counts(labels_of(s, option, cut), gt) for s, gt in scored])
        curve.append((cut, round(balanced_accuracy(c), 4)))
    best = max(curve, key=lambda t: (t[1], -t[0]))
    return best[0], curve


def query_figures(scored: list[tuple[dict, np.ndarray]]) -> dict:
    out = {}
    for k, name in enumerate(("lerf_phrases_only", "with_background_words")):
        n = {"floor_wall": 0, "floor_wall_hot": 0, "seats": 0, "seats_hot": 0}
        for s, gt in scored:
            hot = s["relevance"][:, k] > 0.5
            fw, seat = np.isin(gt, (WALL, FLOOR)), np.isin(gt, SEAT_IDS)
            n["floor_wall"] += int(fw.sum())
            n["floor_wall_hot"] += int((fw & hot).sum())
            n["seats"] += int(seat.sum())
            n["seats_hot"] += int((seat & hot).sum())
        out[name] = {"floor_and_wall_points_above_0.5_pct": _pct(n["floor_wall_hot"],
                                                                 n["floor_wall"]),
                     "chair_sofa_bed_points_above_0.5_pct": _pct(n["seats_hot"], n["seats"])}
    return out


def _pictures(folder: Path, name: str, s: dict, cuts: dict) -> None:
    from xmask3d.apps.render import OTHER_COLOR, class_palette, save_heatmap_png
    from xmask3d.apps.render import save_segmentation_png as save

    names = [*WORDS, "other"]
    palette = class_palette(len(names))
    palette[-1] = OTHER_COLOR
    for option in OPTIONS:
        labels = labels_of(s, option, cuts.get(option))
        n = np.bincount(labels, minlength=len(names))
        legend = [(names[i], tuple(int(v) for v in palette[i]), int(n[i]))
                  for i in np.argsort(-n, kind="stable") if n[i]]
        save(folder / f"{name}_{option}.png", s["points"], palette[labels], legend=legend,
             title=f"{name}: \"{', '.join(WORDS)}\" ({option})")
    for k, what in enumerate(("before", "after")):
        rel = s["relevance"][:, k]
        save_heatmap_png(folder / f"{name}_query_{what}.png", s["points"], rel, vmin=0.0,
                         vmax=1.0, title=f"{name}: \u201c{QUERY}\u201d ({what})")


def candidates_table(section: dict, bundled: dict | None = None) -> list[str]:
    """RESULTS.md: README's five words with candidate checkpoints (the ``both`` rule, each with
    its own calibrated cut), one row per candidate after the bundled checkpoint's row."""
    if not section:
        return []
    if bundled:
        section = {"bundled checkpoint": bundled, **section}
    cols = (("real wall taking a word", "scene0000_00", "wall_points_taking_a_word_pct"),
            ("real floor taking a word", "scene0000_00", "floor_points_taking_a_word_pct"),
            ("real chair/sofa/table with their word", "scene0000_00",
             "chair_sofa_table_points_with_their_word_pct"),
            ("generated chair/sofa/table with their word", "generated_rooms",
             "chair_sofa_table_points_with_their_word_pct"),
            ("generated chairs with their word", "generated_rooms",
             "chair_points_with_their_word_pct"))
    lines = ["## README's five words with candidate checkpoints", "",
             f"`segment --classes \"{', '.join(WORDS)}\"` (virtual views) with background words "
             "and a probability cut calibrated on generated rooms for each checkpoint, as for the "
             "bundled one. Cells: % of points. `python -m benchmarks.other_words --ckpt PATH "
             "--label NAME`.", "",
             "| checkpoint | cut | " + " | ".join(c[0] for c in cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for label, r in section.items():
        lines.append(f"| {label} | {r['calibration']['cuts']['both']} | " + " | ".join(
            fmt(r.get(where, {}).get("both", {}).get(key)) for _, where, key in cols) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    import torch

    from xmask3d.apps.inference import load_inference_model
    from xmask3d.cli import main as cli
    from xmask3d.data.labels import nyu40_to_scannet20
    from xmask3d.data.pointcloud import load_point_cloud
    from xmask3d.data.real_fixtures import real_data_root

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("docs"))
    p.add_argument("--runs", type=Path, default=Path("runs"))
    p.add_argument("--rooms", type=int, default=6, help="generated rooms (calibration)")
    p.add_argument("--seed", type=int, default=1601, help="synth seed (unseen in training)")
    p.add_argument("--virtual-views", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--ckpt", type=Path, default=None,
                   help="a candidate checkpoint instead of the bundled one: its figures go to "
                        "other_words_candidates[--label] and the bundled ones stay as they are")
    p.add_argument("--label", default=None, help="the candidate's name (with --ckpt)")
    args = p.parse_args(argv)
    if (args.ckpt is None) != (args.label is None):
        p.error("--ckpt and --label go together")
    start = time.perf_counter()
    work = args.runs / "other_words"
    pics = work / label_slug(args.label) if args.label else work
    data = work / f"synth_{args.rooms}_{args.seed}"
    if not any(data.rglob("*.pth")):
        cli(["synth", "--out", str(data), "--scenes", str(args.rooms), "--views", "2",
             "--seed", str(args.seed), "--val-fraction", "0", "--no-progress"])
    lm = load_inference_model(args.ckpt, device=args.device)
    rooms = []
    for scan in sorted(data.rglob("*.pth")):
        rooms.append((score_scene(lm, scan, device=args.device, views=args.virtual_views),
                      load_point_cloud(scan).labels.astype(np.int64)))
        print(f"scored {scan.name}", flush=True)
    cuts, curves = {}, {}
    for option in ("threshold", "both"):
        cuts[option], curves[option] = calibrate(rooms, option)
    result = {"words": list(WORDS), "virtual_views": args.virtual_views,
              "checkpoint": str(args.ckpt) if args.ckpt else "bundled tiny_synthetic.pt",
              "calibration": {"rule": "cut on a 0.05 grid maximising, over the generated rooms, "
                                      "the mean of (chair/sofa/table points with their word) "
                                      "and (other labelled points labelled other)",
                              "cuts": cuts, "balanced_accuracy_by_cut": curves},
              "generated_rooms": {"rooms": len(rooms), "seed": args.seed,
                                  "points": int(sum(len(g) for _, g in rooms))}}
    for option in OPTIONS:
        c = _sum([counts(labels_of(s, option, cuts.get(option)), gt) for s, gt in rooms])
        result["generated_rooms"][option] = {**figures(c),
                                             "balanced_accuracy": round(balanced_accuracy(c), 4)}
    result["generated_rooms"]["query"] = query_figures(rooms)
    real = real_data_root()
    if real is not None:
        folder = real / "scannet_mmdet3d"
        scan = folder / "scene0000_00_vert_all.npy"
        gt = nyu40_to_scannet20(np.load(folder / "scene0000_00_sem_label_all.npy")
                                .astype(np.int64))
        s = score_scene(lm, scan, device=args.device, views=args.virtual_views)
        result["scene0000_00"] = {"points": int(len(gt)), "path": s["path"]}
        for option in OPTIONS:
            c = counts(labels_of(s, option, cuts.get(option)), gt)
            result["scene0000_00"][option] = {**figures(c),
                                              "balanced_accuracy": round(balanced_accuracy(c),
                                                                         4)}
        result["scene0000_00"]["query"] = query_figures([(s, gt)])
        _pictures(pics, "scene0000_00", s, cuts)
    _pictures(pics, "generated_room0", rooms[0][0], cuts)
    result["machine"] = {**machine(), "threads": torch.get_num_threads()}
    result["seconds"] = round(time.perf_counter() - start, 1)
    if args.label:
        results = args.out / "results.json"
        section = read_section(results, "other_words_candidates")
        section[args.label] = result
        merge_results(results, "other_words_candidates", section)
    else:
        merge_results(args.out / "results.json", "other_words", result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
