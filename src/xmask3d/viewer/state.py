"""What the viewer shows, independent of the web page: colours, legend, query heat map, inspect.

A :class:`ViewState` holds a scan and one of two scorers: :class:`ModelScorer` (cached point
features of :mod:`xmask3d.viewer.features`, any class list and any query) or
:class:`ResultScorer` (a folder written by ``xmask3d segment``: its labels and scores, no
model). The web server (:mod:`xmask3d.viewer.server`) only forwards GUI events here and sends
the colours this returns.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xmask3d.apps.common import parse_names
from xmask3d.apps.other import OTHER, assign_labels, background_for_query, other_policy
from xmask3d.apps.render import OTHER_COLOR, class_palette, heat_colors
from xmask3d.data.ply import read_ply, write_ply
from xmask3d.errors import ConfigError, DataError

__all__ = ["COLOUR_MODES", "Legend", "ModelScorer", "ResultScorer", "ViewState",
           "load_segment_result"]

COLOUR_MODES = ("input", "fused", "3d", "2d", "query")
DIM = 0.25          # weight of the input colour of points below the threshold ("matches only")
DIM_GREY = 70


@dataclass
class Legend:
    """Class names, colours and point counts, in display order (largest first)."""

    entries: list[tuple[str, tuple[int, int, int], int]] = field(default_factory=list)

    def html(self) -> str:
        rows = [f'<div><span style="display:inline-block;width:12px;height:12px;'
                f'background:rgb{rgb};margin-right:6px"></span>{_escape(name)} '
                f'<span style="opacity:0.7">({count:,})</span></div>'
                for name, rgb, count in self.entries]
        return "".join(rows) or "<div>(no segmentation yet)</div>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class ModelScorer:
    """Class probabilities and query relevance from cached point features and the text encoder.

    Args:
        features: a :class:`~xmask3d.viewer.features.PointFeatures`.
        lm: the loaded model (its text encoder embeds class lists and queries).
        other: score the background words of :mod:`xmask3d.apps.other` too (class lists:
            points that pick one, or whose best probability is below the default cut, are
            "other"; queries: compared with them), as ``segment`` and ``query`` do by default;
            ``False`` is ``--no-other``.
    """

    has_model = True

    def __init__(self, features, lm, *, other: bool = True) -> None:
        from xmask3d.viewer.features import encode_negatives

        self.features, self.lm, self.other = features, lm, other
        self.negatives = encode_negatives(lm)
        self.vocab = None
        self._background: dict[str, object] = {}      # background word -> embedding

    def set_classes(self, names: list[str], base: list[str]) -> None:
        from xmask3d.viewer.features import make_vocabulary

        self.vocab = make_vocabulary(self.lm, names, base)

    def probabilities(self, mode: str) -> np.ndarray:
        return self.features.probabilities(self.vocab, mode)

    def relevance(self, text: str) -> np.ndarray:
        """LERF relevance against the generic phrases and the background words ``text`` does
        not contain (see :func:`xmask3d.apps.query.query_negatives`)."""
        import torch

        from xmask3d.viewer.features import encode_negatives, encode_query

        words = background_for_query(text, enabled=self.other)
        missing = [w for w in words if w not in self._background]
        if missing:
            self._background.update(zip(missing, encode_negatives(self.lm, missing),
                                        strict=True))
        negatives = torch.cat([self.negatives, *[self._background[w][None] for w in words]])
        return self.features.relevance(encode_query(self.lm, text), negatives)

    def inspect(self, index: int, k: int = 5) -> dict:
        """Top-``k`` classes of one point for each prediction, and the base/novel gate."""
        import torch

        f = self.features
        idx = torch.tensor([index])
        out = {}
        for mode in ("fused", "3d", "2d"):
            p = f.log_scores(self.vocab, mode, idx)[0].exp().numpy()
            top = np.argsort(-p, kind="stable")[:k]
            out[mode] = [(self.vocab.names[i], float(p[i])) for i in top]
        logit = float(f.binary[index])
        out["gate"] = {"base_probability": float(1 / (1 + np.exp(-logit))),
                       "decision": "base" if bool(f.is_base()[index]) else "novel",
                       "applied": self.vocab.gating,
                       "covered_2d": float(f.covered[index])}
        return out


class ResultScorer:
    """The labels of a ``segment`` output folder: no model, no queries, no new class lists."""

    has_model = False

    def __init__(self, names: list[str], labels: np.ndarray, score: np.ndarray) -> None:
        self.names, self.labels, self.score = names, labels, score

    def inspect(self, index: int, k: int = 5) -> dict:
        label = int(self.labels[index])
        return {"fused": [(self.names[label], float(self.score[index]))], "gate": None}


def load_segment_result(folder: str | Path) -> tuple[np.ndarray, np.ndarray, ResultScorer, str]:
    """Points, input colours (class colours when the scan is gone), scorer and scan name of a
    folder written by ``xmask3d segment``.

    Raises:
        DataError: missing or inconsistent ``segment.json`` / ``segmentation.ply``.
    """
    folder = Path(folder)
    meta_path, ply_path = folder / "segment.json", folder / "segmentation.ply"
    for p in (meta_path, ply_path):
        if not p.is_file():
            raise DataError(folder, f"not a `xmask3d segment` output folder ({p.name} missing)")
    try:
        meta = json.loads(meta_path.read_text())
        names = [str(n) for n in meta["classes"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(meta_path, f"unreadable segment summary ({exc})") from exc
    cloud = read_ply(ply_path)
    if "class_id" not in cloud.fields or "score" not in cloud.fields:
        raise DataError(ply_path, "has no class_id/score vertex fields (not written by segment)")
    labels = cloud.fields["class_id"].astype(np.int64)
    if labels.min() < 0 or labels.max() >= len(names):
        raise DataError(ply_path, f"class_id outside 0..{len(names) - 1} ({meta_path.name})")
    colors = cloud.colors
    scan = Path(str(meta.get("scan", "")))
    if scan.is_file():
        from xmask3d.apps.common import load_scan

        try:
            scene = load_scan(scan)
            if scene.num_points == cloud.num_points:
                colors = scene.colors
        except DataError:
            pass
    scorer = ResultScorer(names, labels, cloud.fields["score"].astype(np.float32))
    return cloud.points, colors, scorer, scan.name or folder.name


class ViewState:
    """The colouring of the scan the page shows, and the actions that change it.

    Args:
        points: (N, 3) float32 as shown (the scan upright, in its canonical frame);
        colors: (N, 3) uint8 input colours.
        scorer: a :class:`ModelScorer`, a :class:`ResultScorer` or ``None`` while the
            features are being computed.
        export_points: (N, 3) what Export PLY writes (the scan's own coordinates; default
            ``points``).
    """

    def __init__(self, points: np.ndarray, colors: np.ndarray, scorer=None, *,
                 export_points: np.ndarray | None = None) -> None:
        self.points = np.asarray(points, np.float32)
        self.export_points = self.points if export_points is None else np.asarray(
            export_points, np.float32)
        self.input_colors = np.asarray(colors, np.uint8)
        self.lock = threading.RLock()
        self.scorer = None
        self.mode = "input"
        self.names: list[str] = []
        self.labels: dict[str, np.ndarray] = {}       # mode -> (N,) class ids
        self.palette = np.zeros((0, 3), np.uint8)
        self.query_text = ""
        self.query_rel: np.ndarray | None = None
        self.threshold = 0.5
        self.matches_only = False
        self.last_query_seconds = float("nan")
        if scorer is not None:
            self.set_scorer(scorer)

    @property
    def num_points(self) -> int:
        return len(self.points)

    def set_scorer(self, scorer) -> None:
        with self.lock:
            self.scorer = scorer
            if isinstance(scorer, ResultScorer):
                self.names = list(scorer.names)
                self._set_palette(len(self.names), has_other=self.names[-1:] == [OTHER])
                self.labels = {"fused": scorer.labels.astype(np.int32)}
                self.mode = "fused"

    def _set_palette(self, n: int, *, has_other: bool) -> None:
        self.palette = class_palette(n)
        if has_other:
            self.palette[-1] = OTHER_COLOR

    # --- actions -------------------------------------------------------------------------

    def segment(self, classes: str, base: str = "") -> str:
        """Label every point with ``classes`` ("chair, sofa|couch"); returns a status line.

        Raises:
            ConfigError: an empty/invalid class list, base classes not in it, or no model.
        """
        names = parse_names(classes, what="classes")
        base_names = parse_names(base, what="base classes") if base.strip() else []
        unknown = [b for b in base_names if b not in names]
        if unknown:
            raise ConfigError(f"base classes: {', '.join(unknown)} not in the class list")
        if self.scorer is None:
            raise ConfigError("the point features are still being computed; try again when done")
        if not self.scorer.has_model:
            raise ConfigError("no model loaded: this view shows a saved segmentation")
        policy = other_policy(names, no_other=not self.scorer.other)
        background = list(policy.background)
        start = time.perf_counter()
        with self.lock:
            # background words count as base classes under the gate, as in `segment`
            self.scorer.set_classes([*names, *background],
                                    [*base_names, *background] if base_names else [])
            self.labels = {m: assign_labels(self.scorer.probabilities(m),
                                            num_classes=len(names),
                                            other_below=policy.other_below)[0]
                           for m in ("fused", "3d", "2d")}
            self.names = names + ([OTHER] if policy.has_other else [])
            self._set_palette(len(self.names), has_other=policy.has_other)
            if self.mode in ("input", "query"):
                self.mode = "fused"
        return f"{len(names)} classes in {time.perf_counter() - start:.2f} s"

    def query(self, text: str) -> str:
        """Colour the points by relevance to ``text``; returns a status line for the page."""
        text = text.strip()
        if not text:
            return "Type a query first, e.g. \u201csomething to sit on\u201d."
        if self.scorer is None:
            return "The point features are still being computed; try again when done."
        if not self.scorer.has_model:
            return "Queries need the model: run `xmask3d view SCAN` instead of a result folder."
        start = time.perf_counter()
        rel = self.scorer.relevance(text)
        with self.lock:
            self.query_text, self.query_rel, self.mode = text, rel, "query"
            self.last_query_seconds = time.perf_counter() - start
        above = float((rel > self.threshold).mean())
        return (f"\u201c{_escape(text)}\u201d: {above:.1%} of the points above "
                f"{self.threshold:.2f} ({self.last_query_seconds * 1000:.0f} ms)")

    def set_mode(self, mode: str) -> None:
        if mode not in COLOUR_MODES:
            raise ConfigError(f"colour mode must be one of {COLOUR_MODES}, got {mode!r}")
        self.mode = mode

    # --- what the page shows ---------------------------------------------------------------

    def available_modes(self) -> list[str]:
        modes = ["input", *[m for m in ("fused", "3d", "2d") if m in self.labels]]
        return modes + (["query"] if self.query_rel is not None else [])

    def colors(self) -> np.ndarray:
        """(N, 3) uint8 colours of the current mode (input colours when it has no data)."""
        with self.lock:
            if self.mode in self.labels:
                return self.palette[self.labels[self.mode]]
            if self.mode == "query" and self.query_rel is not None:
                return self._heat()
            return self.input_colors

    def _heat(self) -> np.ndarray:
        rel = self.query_rel
        lo, hi = (float(v) for v in np.percentile(rel, [1, 99]))
        cols = heat_colors(rel, vmin=lo, vmax=max(hi, lo + 1e-6))
        if self.matches_only:
            below = rel <= self.threshold
            dim = self.input_colors[below].astype(np.float32) * DIM + DIM_GREY
            cols[below] = np.clip(dim, 0, 255).astype(np.uint8)
        return cols

    def legend(self) -> Legend:
        """Class colours and point counts of the current prediction (of the fused one while
        the input colours or a query are shown; empty before any segmentation)."""
        with self.lock:
            labels = self.labels.get(self.mode, self.labels.get("fused"))
            if labels is None:
                return Legend()
            counts = np.bincount(labels, minlength=len(self.names))
            return Legend([(self.names[i], tuple(int(c) for c in self.palette[i]),
                            int(counts[i])) for i in np.argsort(-counts, kind="stable")
                           if counts[i] > 0])

    def pick(self, origin, direction, visible: np.ndarray | None = None) -> int | None:
        """Index of the point a click ray hits (the nearest one along the ray within a small
        cone; only ``visible`` points when given), or ``None`` when the ray passes no point."""
        o = np.asarray(origin, np.float64)
        d = np.asarray(direction, np.float64)
        d = d / max(np.linalg.norm(d), 1e-12)
        rel = self.points.astype(np.float64) - o
        t = rel @ d
        perp = np.linalg.norm(rel - t[:, None] * d, axis=1)
        cone = (t > 0) & (perp <= 0.01 * t + 0.02)
        if visible is not None:
            cone &= visible
        if cone.any():
            idx = np.flatnonzero(cone)
            return int(idx[np.argmin(t[idx])])
        return None

    def inspect(self, index: int) -> str:
        """Markdown of the clicked point: its top-5 classes per prediction and the gate."""
        if self.scorer is None:
            return "The point features are still being computed."
        if not self.names and self.scorer.has_model:
            return "Segment the scan first (the class list decides the top-5)."
        info = self.scorer.inspect(index)
        p = self.points[index]
        lines = [f"**point {index:,}** at ({p[0]:.2f}, {p[1]:.2f}, {p[2]:.2f})", ""]
        for mode, title in (("fused", "fused 3D-2D"), ("3d", "3D only"), ("2d", "2D only")):
            if mode in info:
                top = ", ".join(f"{_escape(n)} {s:.2f}" for n, s in info[mode])
                lines.append(f"- {title}: {top}")
        gate = info.get("gate")
        if gate:
            lines.append(f"- gate: {gate['decision']} (base probability "
                         f"{gate['base_probability']:.2f}; "
                         f"{'applied' if gate['applied'] else 'not applied: no base classes'})")
            lines.append(f"- 2D mask covered it in {gate['covered_2d']:.0%} of its views")
        if self.query_rel is not None:
            lines.append(f"- relevance to \u201c{_escape(self.query_text)}\u201d: "
                         f"{self.query_rel[index]:.3f}")
        return "\n".join(lines)

    def export_ply(self, path: str | Path) -> Path:
        """Write the current colouring (and labels / relevance) as a PLY, atomically."""
        with self.lock:
            fields = {}
            if self.mode in self.labels:
                fields["class_id"] = self.labels[self.mode]
            if self.mode == "query" and self.query_rel is not None:
                fields["relevance"] = self.query_rel.astype(np.float32)
            write_ply(path, self.export_points, self.colors(), **fields)
        return Path(path)
