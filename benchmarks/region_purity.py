"""Diagnostic (issue 13): how often a region phrase that names a novel class lies on that class.

The point-region association (``xmask3d.data.regions.associate_regions``) gives every visible
point of a training view the phrase of the smallest captioned box around it whose depth agrees.
A loose box around a small object holds much wall, floor or neighbouring furniture, and those
points are then taught the object's phrase. This script measures it on the training views of a
generated dataset, for each novel class ``c`` of the split:

- ``purity``: of the points whose phrase names ``c``, the share that are ``c`` (ground truth,
  read here for the measurement only, never by training);
- ``purity_without_base``: the same over the points without a base label only, the points that
  ``loss.region_base_weight=0`` keeps in the region terms;
- ``named``: of the points of ``c``, the share whose phrase names ``c``.

A phrase names ``c`` when it holds one of the synthetic captioner's words for ``c``
(``xmask3d.data.synth.captions.SYNONYMS[c]``, singular or plural) that is not part of a longer
word of another object ("desk" in "a desk chair" names no desk).

``python -m benchmarks.region_purity --data ROOT [--views N]`` prints the table and stores it
under ``region_purity`` in docs/results.json.
"""

from __future__ import annotations

import argparse
import functools
import re
from pathlib import Path

import numpy as np

from benchmarks.common import merge_results

__all__ = ["named_classes", "purity_table", "region_purity"]


def _word_pattern(word: str) -> str:
    plural = re.escape(word[:-1]) + "ves" if word.endswith("f") else re.escape(word) + "e?s"
    return rf"\b(?:{re.escape(word)}|{plural})\b"


def named_classes(phrase: str, classes: list[str] | tuple[str, ...]) -> set[str]:
    """The classes of ``classes`` that ``phrase`` names (see the module docstring)."""
    return set(_named_classes(phrase, tuple(classes)))


@functools.cache
def _named_classes(phrase: str, classes: tuple[str, ...]) -> frozenset[str]:
    """:func:`named_classes`, once per (phrase, classes): views repeat their phrases."""
    from xmask3d.data.synth.captions import SYNONYMS

    spans = []   # (start, end, class or None) of every captioner word found in the phrase
    for kind, words in SYNONYMS.items():
        for word in set(words):
            for m in re.finditer(_word_pattern(word), phrase):
                spans.append((m.start(), m.end(), kind if kind in classes else None))
    named = set()
    for start, end, kind in spans:
        inside = any(s <= start and end <= e and (e - s) > (end - start) for s, e, _ in spans)
        if kind is not None and not inside:
            named.add(kind)
    return frozenset(named)


def region_purity(data: Path, *, views: int = 100, config: str = "tiny/scannet_b15n4") -> dict:
    """Purity of the association for the novel classes over ``views`` training items of ``data``
    (every ``len // views``-th item, so the same views on every call)."""
    from xmask3d.config import load_config
    from xmask3d.data.processed import ProcessedLayout
    from xmask3d.engine.data import view_dataset

    cfg = load_config(config, overrides=[f"data.root={data}"])
    ds = view_dataset(cfg, ProcessedLayout(data), split="train", mode="train")
    names = list(ds.category_split.class_names)
    novel = [names[i] for i in ds.category_split.novel]
    count = {c: dict.fromkeys(("points", "named", "phrase", "phrase_c", "nobase", "nobase_c"), 0)
             for c in novel}
    used = 0
    for index in range(0, len(ds), max(1, len(ds) // views)):
        sample = ds[index]
        if sample.region_index is None:
            continue
        used += 1
        # ground-truth labels of the full class space (novel included): measurement only
        gt = ds._scene(sample.scene_name).labels[sample.point_index]
        names_of = [named_classes(p, novel) for p in sample.region_captions]
        region = sample.region_index
        no_base = sample.binary_labels != 1
        for c in novel:
            ci = names.index(c)
            on_c = np.array([c in n for n in names_of] + [False])[region]   # -1 -> False
            is_c = gt == ci
            n = count[c]
            n["points"] += int(is_c.sum())
            n["named"] += int((is_c & on_c).sum())
            n["phrase"] += int(on_c.sum())
            n["phrase_c"] += int((on_c & is_c).sum())
            n["nobase"] += int((on_c & no_base).sum())
            n["nobase_c"] += int((on_c & no_base & is_c).sum())

    def share(a: int, b: int) -> float | None:
        return round(100.0 * a / b, 1) if b else None

    return {"data": str(data), "views": used, "classes": {
        c: {"points": n["points"], "named": share(n["named"], n["points"]),
            "phrase_points": n["phrase"], "purity": share(n["phrase_c"], n["phrase"]),
            "purity_without_base": share(n["nobase_c"], n["nobase"])}
        for c, n in count.items()}}


def purity_table(section: dict) -> list[str]:
    """RESULTS.md: one row per novel class."""
    if not section:
        return []
    lines = ["### Diagnostic: purity of the point-region association (novel classes)", "",
             f"Training views of `{section['data']}` ({section['views']} views; `python -m "
             "benchmarks.region_purity`). *purity*: of the points whose region phrase names the "
             "class, the share that are that class; *without base*: the same over the points "
             "that carry no base label (what `loss.region_base_weight=0` keeps); *named*: of "
             "the class's points, the share whose phrase names it.", "",
             "| novel class | its points | named | phrase points | purity | purity without base |",
             "|---|---|---|---|---|---|"]
    for c, r in section["classes"].items():
        cells = [f"{r[k]:.1f} %" if r[k] is not None else "-"
                 for k in ("named", "purity", "purity_without_base")]
        lines.append(f"| {c} | {r['points']:,} | {cells[0]} | {r['phrase_points']:,} | "
                     f"{cells[1]} | {cells[2]} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.region_purity",
                                description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="a generated processed dataset")
    p.add_argument("--views", type=int, default=100, help="training views to read")
    p.add_argument("--config", default="tiny/scannet_b15n4", help="its split's configuration")
    p.add_argument("--out", type=Path, default=Path("docs"), help="folder of results.json")
    a = p.parse_args(argv)
    section = region_purity(a.data, views=a.views, config=a.config)
    print("\n".join(purity_table(section)))
    merge_results(a.out / "results.json", "region_purity", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
