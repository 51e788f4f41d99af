"""``xmask3d query``: per-point relevance of free-text queries, as heat-map PLYs and PNGs.

Relevance follows LERF (Kerr et al., ICCV 2023, §3.3): the point feature's scaled cosine with
the query is compared by a pairwise softmax with each of a few generic "canonical" phrases, and
the lowest of these probabilities is kept. Since a pairwise softmax is a sigmoid of the
difference, this equals ``sigmoid(s_query - max_j s_negative_j)``: 0.5 means "as close to the
query as to the most similar generic phrase", which makes values comparable across queries. The
point feature is the fused 3D-2D feature (the 3D feature with ``--no-2d``), the scale is the
model's learned logit scale, texts are embedded as they are (no prompt templates), and the
relevance of a point is the mean over the views that see it.

By default the negatives of a query also hold the background words of
:mod:`xmask3d.apps.other` (wall, floor, ceiling, door, window; those the query contains as a word
are left out for it): a point is then relevant only where it is closer to the query than to the
room's structure, so "something to sit on" no longer lights up the floor. ``--no-other`` compares
with LERF's phrases alone.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xmask3d.apps.common import (
    CommandMemory,
    add_scan_arguments,
    open_inputs,
    parse_names,
    write_json,
)
from xmask3d.apps.other import BACKGROUND_WORDS, add_other_arguments, background_for_query
from xmask3d.errors import ConfigError

# torch and the model code are imported inside the functions that need them, after the
# arguments and the input files have been checked (see xmask3d.apps.common)
if TYPE_CHECKING:
    from torch import Tensor

    from xmask3d.data.batch import ViewBatch
    from xmask3d.models.outputs import XMask3DOutput

__all__ = ["DEFAULT_NEGATIVES", "add_parser", "query_negatives", "relevance", "run"]

logger = logging.getLogger(__name__)

DEFAULT_NEGATIVES = ("object", "things", "stuff", "texture")   # LERF's canonical phrases

_EPILOG = """examples:
  xmask3d query room.ply "something to sit on" "metal" "a place to sleep" --out q
  xmask3d query scene.pth "where food is prepared" --views frames/ --ckpt best.pt
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``query``."""
    p = subparsers.add_parser(
        "query", help="per-point relevance of free-text queries (heat-map PLY and PNG)",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scan", help="point cloud: .ply (colour optional), .npy (N,3|6) or .pth")
    p.add_argument("queries", nargs="+",
                   help="free-text queries: objects, materials, room types, properties, "
                        "affordances, activities")
    p.add_argument("--negatives", default=",".join(DEFAULT_NEGATIVES),
                   help="comma-separated generic phrases the queries are compared with")
    p.add_argument("--out", default=None, help="output folder (default: <scan stem>_query)")
    add_other_arguments(p, "query")
    add_scan_arguments(p)
    p.set_defaults(func=run)


def relevance(feats: Tensor, queries: Tensor, negatives: Tensor, scale: Tensor,
              uses: Tensor | None = None) -> Tensor:
    """LERF relevance of every point to every query.

    Args:
        feats: (P, E) point features (any norm).
        queries: (Q, E) query text embeddings.
        negatives: (M, E) generic-phrase embeddings, M >= 1.
        scale: () logit scale (inverse temperature) applied to the cosines.
        uses: (Q, M) bool, which negatives each query is compared with (default all; every
            row needs at least one).

    Returns:
        (P, Q) ``min_j softmax([s_q, s_j])[0] = sigmoid(s_q - max_j s_j)`` in (0, 1), the
        maximum over the negatives query ``q`` uses.
    """
    import torch
    import torch.nn.functional as F

    f = F.normalize(feats.float(), dim=-1)
    s_q = scale.float() * f @ F.normalize(queries.float().to(f.device), dim=-1).T
    s_n = scale.float() * f @ F.normalize(negatives.float().to(f.device), dim=-1).T
    if uses is None:
        return torch.sigmoid(s_q - s_n.max(dim=1, keepdim=True).values)
    uses = uses.to(f.device)
    if not bool(uses.any(dim=1).all()):
        raise ValueError("relevance: every query needs at least one negative")
    masked = s_n[:, None, :].masked_fill(~uses[None], float("-inf"))     # (P, Q, M)
    return torch.sigmoid(s_q - masked.max(dim=2).values)


def query_negatives(queries: Sequence[str], generic: Sequence[str], *,
                    background: bool = True) -> tuple[list[str], np.ndarray]:
    """The negatives of a set of queries and which of them each query uses.

    Returns:
        ``generic`` followed by the background words some query uses, and a (Q, M) bool array:
        every query uses every generic phrase and the background words it does not contain.
    """
    per_query = [background_for_query(q, enabled=background) for q in queries]
    extra = [w for w in BACKGROUND_WORDS if w not in generic and any(w in b for b in per_query)]
    names = [*generic, *extra]
    uses = np.array([[n in generic or n in b for n in names] for b in per_query], dtype=bool)
    return names, uses


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "query"


def _queries(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    queries = [q.strip() for q in args.queries]
    if not all(queries):
        raise ConfigError(f"query {queries.index('') + 1} is empty; give a phrase such as "
                          "\"something to sit on\"")
    return queries, parse_names(args.negatives, what="--negatives")


def _write_query(out: Path, k: int, text: str, points: np.ndarray, rel: np.ndarray,
                 title: str, upright: np.ndarray) -> dict:
    from xmask3d.apps.render import heat_colors, save_heatmap_png
    from xmask3d.data.ply import write_ply

    lo, hi = (float(v) for v in np.percentile(rel, [1, 99]))
    hi = max(hi, lo + 1e-6)
    stem = out / f"query_{k:02d}_{_slug(text)}"
    ply = stem.with_suffix(".ply")
    write_ply(ply, points, heat_colors(rel, vmin=lo, vmax=hi), relevance=rel.astype(np.float32))
    png = save_heatmap_png(stem.with_suffix(".png"), upright, rel, vmin=lo, vmax=hi,
                           title=f"{title}: \u201c{text}\u201d")
    return {"query": text, "ply": str(ply), "png": str(png), "mean": float(rel.mean()),
            "max": float(rel.max()), "fraction_above_0.5": float((rel > 0.5).mean()),
            "colour_range": [lo, hi]}


def run(args: argparse.Namespace) -> int:
    """Score every query; write one heat-map PLY and PNG per query and ``query.json``."""
    start, memory = time.perf_counter(), CommandMemory()
    queries, generic = _queries(args)
    scene, views, source, lm = open_inputs(args, width=len(queries))
    import torch

    from xmask3d.apps.common import score_scan

    negatives, uses_np = query_negatives(queries, generic, background=not args.no_other)
    uses = torch.from_numpy(uses_np)
    q_emb = lm.text.encode_captions(queries)
    n_emb = lm.text.encode_captions(negatives)

    def view_fn(out: XMask3DOutput, batch: ViewBatch) -> Tensor:
        return relevance(out.point_feats_fused, q_emb, n_emb, out.logit_scale, uses)

    def point_fn(feats: Tensor, binary: Tensor, scale: Tensor) -> Tensor:
        return relevance(feats, q_emb, n_emb, scale, uses)

    result = score_scan(args, lm, scene, views, views_source=source,
                        class_embeds=torch.cat([q_emb, n_emb]), view_fn=view_fn,
                        point_fn=point_fn, width=len(queries))
    out = Path(args.out or f"{Path(args.scan).stem}_query")
    title = f"{Path(args.scan).name}: {result.path}"
    per_query = [{**_write_query(out, k, q, scene.points, result.scores[:, k], title,
                                 result.points),
                  "negatives": [n for n, u in zip(negatives, uses_np[k], strict=True) if u]}
                 for k, q in enumerate(queries)]
    summary = {
        "scan": str(args.scan), "num_points": scene.num_points, "queries": per_query,
        "negatives": negatives, **result.to_dict(),
        "background_words": negatives[len(generic):],
        "relevance": "sigmoid(s_query - max_j s_negative_j) with s = logit_scale * cosine "
                     "(LERF's pairwise-softmax minimum) over the query's negatives, mean over "
                     "views",
        "feature": "3D" if args.no_2d else "fused 3D-2D",
        "checkpoint": str(lm.checkpoint), "checkpoint_step": lm.step,
        "seconds": round(time.perf_counter() - start, 2), **memory.to_dict(),
    }
    path = write_json(out / "query.json", summary)
    logger.info("query: %s path, %d queries, wrote %s", result.path, len(queries), path)
    return 0
