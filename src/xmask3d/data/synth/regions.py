"""Synthetic dense-captioner output: loose boxes with short phrases, with realistic errors.

Stands in for the dense captioner of RegionPLC (Yang et al., CVPR 2024), whose region captions
(a box and a phrase per region) supervise 3D features with words no label names; written fresh
for this project. Every visible object of a rendered view becomes a region whose box is its
pixel bounding box loosened and jittered (never the exact mask) and whose phrase comes from the
object's *name* (the generator's object kind, with synonyms, colour and count from
``captions.py``), never from a benchmark label id. Errors at configurable rates
(:class:`RegionNoise`):

- ``miss``: each object is left out with this probability;
- ``merge``: each kept region is merged with its nearest neighbour with this probability (one
  union box; "two chairs" for two objects of one kind, "a desk and a chair" otherwise);
- ``wrong_noun``: each region's noun is replaced by a confusable (or any other) object kind;
- ``hallucinate``: for each real region, with this probability, one more box somewhere in the
  view names an object of the room type that is not there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmask3d.data.regions import Region
from xmask3d.data.synth.captions import COLORED, DISTRACTORS, SYNONYMS, _phrase
from xmask3d.errors import ConfigError

__all__ = ["RegionNoise", "SynthRegion", "make_regions"]

NOT_CAPTIONED = {"ceiling", "ceiling light", "curtain rod", "shower floor"}
CONFUSIONS: dict[str, tuple[str, ...]] = {  # nouns a captioner plausibly mixes up
    "chair": ("armchair", "stool", "office chair"), "armchair": ("sofa", "chair"),
    "office chair": ("chair", "armchair"), "sofa": ("armchair", "bed", "bench"),
    "bed": ("sofa", "couch"), "desk": ("table", "dining table", "counter"),
    "table": ("desk", "counter", "coffee table"), "dining table": ("desk", "table"),
    "coffee table": ("end table", "ottoman", "table"), "end table": ("nightstand", "stool"),
    "bookshelf": ("cabinet", "wardrobe", "shelf"), "cabinet": ("dresser", "bookshelf"),
    "wardrobe": ("cabinet", "door", "bookshelf"), "dresser": ("cabinet", "nightstand"),
    "counter": ("table", "desk", "cabinet"), "toilet": ("sink", "bathtub", "trash can"),
    "sink": ("toilet", "bathtub"), "bathtub": ("sink", "toilet"), "door": ("wardrobe", "window"),
    "window": ("picture", "door", "mirror"), "picture": ("window", "poster", "mirror"),
    "curtain": ("shower curtain", "towel"), "refrigerator": ("cabinet", "wardrobe"),
}


@dataclass(frozen=True)
class RegionNoise:
    """Error rates of the synthetic dense captioner (see the module docstring).

    Defaults are of the order of a real dense captioner's errors on indoor views.
    """

    miss: float = 0.15
    wrong_noun: float = 0.10
    merge: float = 0.10
    hallucinate: float = 0.10
    min_area: float = 0.005  # objects smaller than this fraction of the image are not captioned
    loosen: float = 0.15     # boxes grow by up to this fraction of their size on each side

    @classmethod
    def uniform(cls, rate: float) -> RegionNoise:
        """All four error rates set to ``rate`` (the ``--region-noise`` shorthand)."""
        return cls(miss=rate, wrong_noun=rate, merge=rate, hallucinate=rate)

    def validate(self) -> None:
        for name in ("miss", "wrong_noun", "merge", "hallucinate", "min_area", "loosen"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"--region-{name.replace('_', '-')} must be in [0, 1], "
                                  f"got {value}")


@dataclass
class SynthRegion:
    """A generated region and where it came from (for tests and statistics; not written).

    Attributes:
        region: the box and phrase written to ``region_captions.json``.
        instances: instance ids the box describes (empty for a hallucination).
        names: the object names it was made from (after a wrong-noun error).
        wrong_noun: whether the noun was replaced.
    """

    region: Region
    instances: tuple[int, ...]
    names: tuple[str, ...]
    wrong_noun: bool = False


def _boxes(inst_image: np.ndarray, min_pixels: int) -> dict[int, tuple[int, int, int, int, int]]:
    """``instance -> (x0, y0, x1, y1, area)`` of every instance with >= ``min_pixels`` pixels."""
    ids, area = np.unique(inst_image[inst_image > 0], return_counts=True)
    out = {}
    for i, a in zip(ids.tolist(), area.tolist(), strict=True):
        if a < min_pixels:
            continue
        rows, cols = np.nonzero(inst_image == i)
        out[i] = (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1, a)
    return out


def _gap(a: tuple, b: tuple) -> float:
    dx = max(a[0] - b[2], b[0] - a[2], 0)
    dy = max(a[1] - b[3], b[1] - a[3], 0)
    return float(np.hypot(dx, dy))


def _loosen(box: tuple, hw: tuple[int, int], rng: np.random.Generator,
            loosen: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    w, h = x1 - x0, y1 - y0
    grow = rng.uniform(0.02, max(loosen, 0.02), 4) * np.array([w, h, w, h])
    shift = rng.normal(0.0, 0.03, 2) * np.array([w, h])
    x0, x1 = x0 - grow[0] + shift[0], x1 + grow[2] + shift[0]
    y0, y1 = y0 - grow[1] + shift[1], y1 + grow[3] + shift[1]
    H, W = hw
    x0, x1 = np.clip([x0, x1], 0.0, W)
    y0, y1 = np.clip([y0, y1], 0.0, H)
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:  # pushed off the image: keep the original box
        x0, y0, x1, y1 = (float(v) for v in box[:4])
    return round(float(x0), 2), round(float(y0), 2), round(float(x1), 2), round(float(y1), 2)


def _wrong(name: str, rng: np.random.Generator) -> str:
    pool = CONFUSIONS.get(name) or tuple(k for k in SYNONYMS if k != name)
    return str(rng.choice(pool))


def _describe(names: list[str], colors: list[str | None], rng: np.random.Generator) -> str:
    if len(set(names)) == 1:
        color = colors[0] if len(names) == 1 else None
        return _phrase(names[0], len(names), color, rng)
    return " and ".join(_phrase(n, 1, c, rng) for n, c in zip(names, colors, strict=True))


def make_regions(inst_image: np.ndarray, inst_name: dict[int, str], inst_color: dict[int, str],
                 room_type: str, rng: np.random.Generator,
                 noise: RegionNoise | None = None) -> list[SynthRegion]:
    """Regions of one view.

    Args:
        inst_image: (H, W) instance id per pixel (0 = nothing).
        inst_name: object name (the generator's kind, e.g. "sofa") of every instance.
        inst_color: colour name of every instance's main body.
        room_type: the scene's room type (what a captioner may hallucinate).
        rng: the generator of the regions (its own stream: view captions do not change).
        noise: error rates (default :class:`RegionNoise`).

    Returns:
        The regions, largest box first.
    """
    noise = noise or RegionNoise()
    hw = (int(inst_image.shape[0]), int(inst_image.shape[1]))
    boxes = _boxes(inst_image, max(int(noise.min_area * hw[0] * hw[1]), 1))
    objects = [i for i in sorted(boxes) if inst_name.get(i, "") not in NOT_CAPTIONED
               and inst_name.get(i)]
    kept = [i for i in objects if rng.random() >= noise.miss]
    groups: list[list[int]] = []
    used: set[int] = set()
    for i in kept:
        if i in used:
            continue
        used.add(i)
        group = [i]
        free = [j for j in kept if j not in used]
        if free and rng.random() < noise.merge:
            j = min(free, key=lambda k: (_gap(boxes[i], boxes[k]), k))
            if _gap(boxes[i], boxes[j]) <= 0.1 * max(hw):  # only neighbours are merged
                group.append(j)
                used.add(j)
        groups.append(group)
    out = []
    for group in groups:
        names = [inst_name[i] for i in group]
        wrong = rng.random() < noise.wrong_noun
        if wrong:
            names[0] = _wrong(names[0], rng)
            if len(group) > 1 and inst_name[group[1]] == inst_name[group[0]]:
                names[1] = names[0]            # "two stools" instead of "two chairs"
        colors = [inst_color.get(i) if n in COLORED and rng.random() < 0.5 else None
                  for i, n in zip(group, names, strict=True)]
        union = tuple(f(boxes[i][k] for i in group) for k, f in enumerate((min, min, max, max)))
        box = _loosen(union, hw, rng, noise.loosen)
        out.append(SynthRegion(Region(box, _describe(names, colors, rng)), tuple(group),
                               tuple(names), wrong))
    pool = DISTRACTORS.get(room_type, ()) + tuple(SYNONYMS)
    for _ in range(int(rng.binomial(len(groups), noise.hallucinate)) if groups else 0):
        name = str(rng.choice(pool))
        w, h = rng.uniform(0.15, 0.4) * hw[1], rng.uniform(0.15, 0.4) * hw[0]
        x0, y0 = rng.uniform(0, hw[1] - w), rng.uniform(0, hw[0] - h)
        box = (round(x0, 2), round(y0, 2), round(x0 + w, 2), round(y0 + h, 2))
        out.append(SynthRegion(Region(box, _describe([name], [None], rng)), (), (name,)))
    return sorted(out, key=lambda r: (-r.region.area, r.region.caption))
