"""``xmask3d segment``: label every point of a user's scan with the user's own class names.

Per point, the scores are the mean over the views that see it of the softmax probabilities of
the fused 3D-2D prediction (with ``--no-2d``: the probabilities of the 3D prediction), as in
XMask3D inference (method.md §4.1-§4.3). The base/novel gating of the binary head applies only
when ``--base-classes`` names the words the checkpoint was trained on.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xmask3d.apps.common import (
    PATH_3D,
    CommandMemory,
    ScanScores,
    add_scan_arguments,
    open_inputs,
    parse_names,
    write_json,
)
from xmask3d.apps.other import (
    DEFAULT_OTHER_BELOW,
    OTHER,
    OtherPolicy,
    add_other_arguments,
    assign_labels,
    other_policy,
)
from xmask3d.errors import ConfigError
from xmask3d.vocabulary import display_names

# torch and the model code are imported inside the functions that need them, after the
# arguments and the input files have been checked (see xmask3d.apps.common)
if TYPE_CHECKING:
    from torch import Tensor

    from xmask3d.apps.inference import LoadedModel
    from xmask3d.config import FusionCfg
    from xmask3d.data.batch import ViewBatch
    from xmask3d.data.scene import Scene, View
    from xmask3d.models.outputs import XMask3DOutput

__all__ = ["OTHER", "add_parser", "assign_labels", "class_summary", "point_probabilities",
           "run", "score_classes", "view_probabilities"]

logger = logging.getLogger(__name__)

_EPILOG = f"""examples:
  xmask3d segment room.ply --classes "chair, sofa|couch, lamp, floor, wall" --out seg
  xmask3d segment scene.pth --classes "bed, desk" --views frames/ --ckpt best.pt --out seg
  xmask3d segment big.ply --classes "table, chair" --no-2d --other-below 0.3 --out seg
  xmask3d segment room.ply --classes "chair, sofa" --no-other --out seg   # every point a word

Points whose best word is one of the hidden background words (wall, floor, ceiling, door,
window; those you name stay classes), or whose best probability is below
{DEFAULT_OTHER_BELOW} (--other-below), are labelled "other"; --no-other turns both off.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``segment``."""
    p = subparsers.add_parser(
        "segment", help="segment a scan (PLY/NPY/processed .pth) with your own class names",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scan", help="point cloud: .ply (colour optional), .npy (N,3|6) or .pth")
    p.add_argument("--classes", required=True,
                   help='comma-separated class names, synonyms with "|" ("sofa|couch")')
    p.add_argument("--base-classes", default=None,
                   help="those of --classes the checkpoint was trained on; enables the "
                        "binary head's base/novel gating (default: no gating)")
    add_other_arguments(p, "segment")
    p.add_argument("--out", required=True, help="output folder")
    add_scan_arguments(p)
    p.set_defaults(func=run)


def view_probabilities(out: XMask3DOutput, batch: ViewBatch, *, is_novel_class: Tensor,
                       fusion_cfg: FusionCfg, use_clip: bool) -> Tensor:
    """(P, C) probabilities of the fused prediction of each visible point (0 where gated)."""
    from xmask3d.eval.scoring import view_point_scores

    scores = view_point_scores(out, batch, is_novel_class=is_novel_class,
                               fusion_cfg=fusion_cfg, use_clip=use_clip)
    return scores["fused"].float().exp()


def point_probabilities(feats: Tensor, binary: Tensor, scale: Tensor, *, class_embeds: Tensor,
                        is_novel_class: Tensor, fusion_cfg: FusionCfg) -> Tensor:
    """(P, C) probabilities of the 3D prediction from (P, E) features and (P,) binary logits."""
    import torch.nn.functional as F

    from xmask3d.models.fusion.mask_to_points import cosine_logits
    from xmask3d.models.fusion.routing import gate_base_novel

    log_p = F.log_softmax(cosine_logits(feats.float(), class_embeds.to(feats.device),
                                        scale.float()), dim=1)
    if fusion_cfg.gating:
        t = min(max(fusion_cfg.binary_thresh, 1e-6), 1 - 1e-6)
        log_p = gate_base_novel(log_p, binary.float() > math.log(t / (1 - t)),
                                is_novel_class.to(feats.device))
    return log_p.exp()


def class_summary(names: list[str], counts: np.ndarray) -> str:
    """The per-class table ``segment`` prints: class, points and share, most points first."""
    total = max(int(counts.sum()), 1)
    width = max([len("class"), *(len(n) for n in names)])
    lines = [f"{'class':<{width}}  {'points':>10}  {'share':>6}"]
    for i in np.argsort(-counts, kind="stable"):
        lines.append(f"{names[i]:<{width}}  {int(counts[i]):>10,}  "
                     f"{100.0 * counts[i] / total:>5.1f}%")
    return "\n".join(lines)


def _vocabulary(args: argparse.Namespace
                ) -> tuple[list[str], list[str], list[str], OtherPolicy]:
    """The class entries, those of the base classes, the display name of each class and how
    points that match none of them become "other"."""
    classes = parse_names(args.classes, what="--classes")
    shown = display_names(classes)
    repeated = sorted({n for n in shown if shown.count(n) > 1})
    if repeated:
        raise ConfigError(f"--classes: two classes are shown as {', '.join(repeated)} (the "
                          "first name of an entry names it); make the first names differ")
    base = [] if args.base_classes is None else parse_names(args.base_classes,
                                                            what="--base-classes")
    unknown = [b for b in base if b not in classes]
    if unknown:
        raise ConfigError(f"--base-classes: {', '.join(unknown)} not in --classes")
    policy = other_policy(classes, no_other=args.no_other, other_below=args.other_below)
    return classes, base, shown, policy


def score_classes(args: argparse.Namespace, lm: LoadedModel, scene: Scene, views: list[View],
                  source: str, classes: list[str], base: list[str],
                  background: Sequence[str] = ()) -> ScanScores:
    """Mean per-point probabilities of ``classes`` then ``background`` (one softmax over all of
    them) on the path the arguments ask for. With base classes (gating) the background words
    count as base classes: wall, floor, door and window are labelled in every indoor training
    set."""
    from dataclasses import replace

    import torch

    from xmask3d.apps.common import score_scan

    words = [*classes, *background]
    embeds = lm.text.class_embeddings(words)
    gating = bool(base)
    is_novel = (torch.tensor([c not in base for c in classes] + [False] * len(background))
                if gating else torch.ones(len(words), dtype=torch.bool))
    fusion = replace(lm.cfg.fusion, gating=gating)
    return score_scan(
        args, lm, scene, views, views_source=source, class_embeds=embeds,
        view_fn=partial(view_probabilities, is_novel_class=is_novel.to(lm.device),
                        fusion_cfg=fusion, use_clip=lm.cfg.eval.clip_ensemble),
        point_fn=partial(point_probabilities, class_embeds=embeds, is_novel_class=is_novel,
                         fusion_cfg=fusion),
        width=len(words), is_novel_class=is_novel if gating else None)


def _write_outputs(out: Path, scene: Scene, labels: np.ndarray, score: np.ndarray,
                   names: list[str], title: str, *, has_other: bool,
                   upright: np.ndarray) -> tuple[dict, np.ndarray]:
    """``segmentation.ply`` (the scan's own coordinates) and ``segmentation.png`` (drawn from
    ``upright``, the points in the canonical frame); returns their paths and class counts."""
    from xmask3d.apps.render import OTHER_COLOR, class_palette, save_segmentation_png
    from xmask3d.data.ply import write_ply

    palette = class_palette(len(names))
    if has_other:                       # the last name is the "other" fallback
        palette[-1] = OTHER_COLOR
    ply = out / "segmentation.ply"
    write_ply(ply, scene.points, palette[labels], class_id=labels, score=score)
    counts = np.bincount(labels, minlength=len(names))
    legend = [(names[i], tuple(int(c) for c in palette[i]), int(counts[i]))
              for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    png = save_segmentation_png(out / "segmentation.png", upright, palette[labels],
                                legend=legend, title=title)
    return {"ply": str(ply), "png": str(png)}, counts


def run(args: argparse.Namespace) -> int:
    """Segment the scan; write ``segmentation.ply``, ``segmentation.png``, ``segment.json``."""
    start, memory = time.perf_counter(), CommandMemory()
    classes, base, shown, policy = _vocabulary(args)
    scene, views, source, lm = open_inputs(args, width=len(classes) + len(policy.background))
    result = score_classes(args, lm, scene, views, source, classes, base, policy.background)
    labels, score = assign_labels(result.scores, num_classes=len(classes),
                                  other_below=policy.other_below)
    names = shown + ([OTHER] if policy.has_other else [])
    outputs, counts = _write_outputs(Path(args.out), scene, labels, score, names,
                                     f"{Path(args.scan).name}: {result.path}",
                                     has_other=policy.has_other, upright=result.points)
    kind = "3D" if result.path == PATH_3D else "fused 3D-2D"
    summary = {
        "scan": str(args.scan), "num_points": scene.num_points, "classes": names,
        "class_entries": classes + ([OTHER] if policy.has_other else []),
        "point_counts": {n: int(c) for n, c in zip(names, counts, strict=True)},
        "mean_score": {n: float(score[labels == i].mean()) if counts[i] else None
                       for i, n in enumerate(names)},
        **result.to_dict(),
        "score": f"mean over views of the softmax probability of the {kind} prediction"
                 + (" over the classes and the background words" if policy.background else ""),
        **policy.to_dict(),
        "gating": bool(base), "base_classes": base,
        "checkpoint": str(lm.checkpoint), "checkpoint_step": lm.step, "outputs": outputs,
        "seconds": round(time.perf_counter() - start, 2), **memory.to_dict(),
    }
    path = write_json(Path(args.out) / "segment.json", summary)
    logger.info("segment: %s path, %d points, wrote %s", result.path, scene.num_points,
                ", ".join([*outputs.values(), str(path)]))
    print(f"{scene.num_points:,} point{'s' if scene.num_points > 1 else ''} of "
          f"{Path(args.scan).name} ({result.path} path):")
    print(class_summary(names, counts))
    print(f"wrote {Path(args.out)}/: {', '.join(Path(v).name for v in outputs.values())}, "
          f"{path.name}")
    return 0
