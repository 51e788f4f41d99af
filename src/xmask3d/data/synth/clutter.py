"""Small objects: "otherfurniture" (trash cans, stools, ottomans, benches) and unlabelled clutter.

Clutter has no ScanNet20 class (label 255, nyu40 id 0 in label images) but keeps a caption name
and, where one exists, a ScanNet200 name.
"""

from __future__ import annotations

import numpy as np

from xmask3d.data.synth.furniture import WOODISH, pick_material
from xmask3d.data.synth.materials import make_material
from xmask3d.data.synth.parts import Draft, PartList

OTHER = "otherfurniture"


def trash_can(rng: np.random.Generator) -> Draft:
    """A cylindrical (or boxy) trash can."""
    r, h = rng.uniform(0.12, 0.2), rng.uniform(0.3, 0.6)
    mat = pick_material(rng, (("plastic", "plain"), ("metal", "metal")))
    parts = PartList((OTHER, "trash can", "trash can"))
    if rng.random() < 0.7:
        parts.cyl(mat, 0, 0, 0, h, r)
    else:
        parts.box_from(mat, (-r, -r * 0.8, 0), (r, r * 0.8, h))
    return Draft("trash can", OTHER, 2 * r, 2 * r, h, parts.parts)


def stool(rng: np.random.Generator) -> Draft:
    """A round stool on three or four thin legs (bar stool in kitchens)."""
    r, h = rng.uniform(0.15, 0.2), rng.uniform(0.45, 0.75)
    mat = pick_material(rng, WOODISH + (("metal", "metal"), ("plastic", "plain")))
    parts = PartList((OTHER, "stool", "stool"))
    parts.cyl(mat, 0, 0, h - 0.04, h, r)
    n = int(rng.integers(3, 5))
    for k in range(n):
        a = 2 * np.pi * k / n
        parts.cyl(mat, 0.75 * r * np.cos(a), 0.75 * r * np.sin(a), 0, h - 0.04, 0.015)
    return Draft("stool", OTHER, 2 * r, 2 * r, h, parts.parts)


def ottoman(rng: np.random.Generator) -> Draft:
    """An upholstered ottoman (box or drum)."""
    s, h = rng.uniform(0.4, 0.7), rng.uniform(0.35, 0.45)
    mat = make_material(rng, "fabric", "fabric")
    parts = PartList((OTHER, "ottoman", "ottoman"))
    if rng.random() < 0.5:
        parts.cyl(mat, 0, 0, 0, h, s / 2)
    else:
        parts.box_from(mat, (-s / 2, -s / 2, 0), (s / 2, s / 2, h))
    return Draft("ottoman", OTHER, s, s, h, parts.parts)


def bench(rng: np.random.Generator) -> Draft:
    """A bench: a long seat on two slab legs."""
    w, d, h = rng.uniform(1.0, 1.4), rng.uniform(0.35, 0.45), rng.uniform(0.42, 0.48)
    mat = pick_material(rng, WOODISH + (("fabric", "fabric"),))
    parts = PartList((OTHER, "bench", "bench"))
    parts.box_from(mat, (-w / 2, -d / 2, h - 0.05), (w / 2, d / 2, h))
    for x0 in (-w / 2 + 0.05, w / 2 - 0.09):
        parts.box_from(mat, (x0, -d / 2 + 0.03, 0), (x0 + 0.04, d / 2 - 0.03, h - 0.05))
    return Draft("bench", OTHER, w, d, h, parts.parts)


def other_furniture(rng: np.random.Generator, room_type: str) -> Draft:
    """An "otherfurniture" object that fits the room type."""
    options = {"bedroom": (trash_can, ottoman, bench), "living room": (ottoman, trash_can, bench),
               "kitchen": (stool, trash_can), "bathroom": (trash_can,),
               "office": (trash_can, stool)}[room_type]
    return options[int(rng.integers(len(options)))](rng)


def nightstand(rng: np.random.Generator) -> Draft:
    """A bedside table with a drawer (unlabelled in ScanNet20, "nightstand" in ScanNet200)."""
    w, d, h = rng.uniform(0.4, 0.55), rng.uniform(0.35, 0.45), rng.uniform(0.5, 0.62)
    mat = pick_material(rng, (("wood", "panel"), ("painted", "panel")))
    parts = PartList((None, "nightstand", "nightstand"))
    parts.box_from(mat, (-w / 2, -d / 2, 0), (w / 2, d / 2, h))
    knob = make_material(rng, "metal", "metal")
    parts.box_from(knob, (-0.05, d / 2, h - 0.12), (0.05, d / 2 + 0.02, h - 0.1))
    return Draft("nightstand", None, w, d + 0.02, h, parts.parts, top=(h, w - 0.1, d - 0.1))


def lamp(rng: np.random.Generator) -> Draft:
    """A table lamp: base, stem and a drum shade."""
    h, r = rng.uniform(0.35, 0.55), rng.uniform(0.1, 0.17)
    base = pick_material(rng, (("metal", "metal"), ("ceramic", "plain"), ("wood", "wood")))
    shade = make_material(rng, "bedding", "fabric")
    parts = PartList((None, "lamp", "lamp"))
    parts.cyl(base, 0, 0, 0, 0.03, 0.07)
    parts.cyl(base, 0, 0, 0.03, h - 0.2, 0.012)
    parts.cyl(shade, 0, 0, h - 0.22, h, r)
    return Draft("lamp", None, 2 * r, 2 * r, h, parts.parts)


def desk_set(rng: np.random.Generator) -> Draft:
    """A monitor on a stand with a keyboard in front of it (or a laptop)."""
    black = make_material(rng, "metal", "plain")  # black, white, silver or steel
    if rng.random() < 0.3:
        parts = PartList((None, "laptop", "laptop"))
        w, d = rng.uniform(0.3, 0.38), rng.uniform(0.22, 0.26)
        parts.box_from(black, (-w / 2, -d / 2, 0), (w / 2, d / 2, 0.02))
        parts.box_from(black, (-w / 2, -d / 2, 0.02), (w / 2, -d / 2 + 0.01, 0.24))
        return Draft("laptop", None, w, d, 0.24, parts.parts)
    parts = PartList((None, "monitor", "monitor"))
    w, h = rng.uniform(0.5, 0.7), rng.uniform(0.3, 0.42)
    parts.cyl(black, 0, -0.1, 0, 0.01, 0.1)
    parts.box_from(black, (-0.03, -0.12, 0.01), (0.03, -0.1, 0.12))
    parts.box_from(black, (-w / 2, -0.1, 0.12), (w / 2, -0.07, 0.12 + h))
    keys = make_material(rng, "metal", "plain")
    parts.box_from(keys, (-0.22, 0.08, 0), (0.22, 0.23, 0.025), sub=1,
                   who=(None, "keyboard", "keyboard"))
    return Draft("monitor", None, w, 0.35, 0.12 + h, parts.parts)


def tabletop_item(rng: np.random.Generator) -> Draft:
    """A small object for a table or counter: box, books, cup, bottle, bowl, plant, microwave."""
    kind = str(rng.choice(["box", "books", "cup", "bottle", "bowl", "plant", "microwave"]))
    parts = PartList((None, kind, kind))
    if kind == "box":
        s = rng.uniform(0.15, 0.4, 3)
        parts.box_from(make_material(rng, "wood", "plain"), (-s[0] / 2, -s[1] / 2, 0),
                       (s[0] / 2, s[1] / 2, s[2]))
    elif kind == "books":
        parts = PartList((None, "books", "book"))
        h = rng.uniform(0.05, 0.15)
        parts.box_from(make_material(rng, "plastic", "books"), (-0.12, -0.16, 0), (0.12, 0.16, h))
    elif kind in ("cup", "bottle", "bowl"):
        r, h = {"cup": (0.04, 0.1), "bottle": (0.035, 0.28), "bowl": (0.1, 0.07)}[kind]
        parts.cyl(make_material(rng, "plastic", "plain"), 0, 0, 0, h, r)
    elif kind == "plant":
        parts = PartList((None, "plant", "potted plant"))
        parts.cyl(make_material(rng, "ceramic", "plain"), 0, 0, 0, 0.14, 0.08)
        parts.cyl(make_material(rng, "plant", "fabric"), 0, 0, 0.14, rng.uniform(0.3, 0.45), 0.13)
    else:
        parts.box_from(make_material(rng, "metal", "metal"), (-0.25, -0.18, 0), (0.25, 0.18, 0.3))
    return Draft(parts.who[1], None, 0.0, 0.0, 0.0, parts.parts)


def floor_plant(rng: np.random.Generator) -> Draft:
    """A large potted plant standing on the floor."""
    parts = PartList((None, "plant", "potted plant"))
    r, h = rng.uniform(0.15, 0.22), rng.uniform(0.9, 1.5)
    parts.cyl(make_material(rng, "ceramic", "plain"), 0, 0, 0, 0.35, r)
    leaves = make_material(rng, "plant", "fabric")
    for k, scale in enumerate((1.6, 1.25, 0.8)):  # a rough cone of foliage
        z0 = 0.35 + k * (h - 0.35) / 3
        parts.cyl(leaves, 0, 0, z0, z0 + (h - 0.35) / 3, r * scale)
    return Draft("plant", None, 3.2 * r, 3.2 * r, h, parts.parts)


def tv(rng: np.random.Generator) -> Draft:
    """A flat television on a small stand."""
    w = rng.uniform(0.8, 1.4)
    black = make_material(rng, "plastic", "plain")
    black.base = black.base * 0.2 + 0.03
    parts = PartList((None, "tv", "tv"))
    parts.box_from(black, (-0.2, -0.12, 0), (0.2, 0.12, 0.02))
    parts.box_from(black, (-0.04, -0.02, 0.02), (0.04, 0.0, 0.12))
    parts.box_from(black, (-w / 2, -0.03, 0.08), (w / 2, 0.02, 0.08 + w * 0.57))
    return Draft("tv", None, w, 0.24, 0.08 + w * 0.57, parts.parts)


def wall_item(rng: np.random.Generator, kind: str) -> Draft:
    """A thin unlabelled wall object: "mirror", "towel", "whiteboard" or "clock"."""
    sizes = {"mirror": ((0.4, 0.8), (0.5, 0.9)), "towel": ((0.3, 0.5), (0.5, 0.8)),
             "whiteboard": ((1.0, 1.8), (0.8, 1.2)), "clock": ((0.25, 0.35), (0.25, 0.35))}
    (w0, w1), (h0, h1) = sizes[kind]
    w, h = rng.uniform(w0, w1), rng.uniform(h0, h1)
    mat = {"mirror": lambda: make_material(rng, "glass", "metal"),
           "towel": lambda: make_material(rng, "bedding", "fabric"),
           "whiteboard": lambda: make_material(rng, "ceramic", "plain"),
           "clock": lambda: make_material(rng, "painted", "plain")}[kind]()
    parts = PartList((None, kind, kind))
    parts.box_from(mat, (-w / 2, -0.01, 0), (w / 2, 0.01, h))
    return Draft(kind, None, w, 0.02, h, parts.parts)


def rug(rng: np.random.Generator, w: float, d: float) -> Draft:
    """A thin rug on the floor (unlabelled, "mat" in ScanNet200)."""
    mat = make_material(rng, ("carpet", "fabric")[int(rng.random() < 0.5)],
                        ("fabric", "stripes")[int(rng.random() < 0.3)])
    parts = PartList((None, "rug", "mat"))
    parts.box_from(mat, (-w / 2, -d / 2, 0), (w / 2, d / 2, 0.012))
    return Draft("rug", None, w, d, 0.012, parts.parts)


def ceiling_light(rng: np.random.Generator) -> Draft:
    """A round ceiling light; ``z`` is its top, placed flush with the ceiling."""
    parts = PartList((None, "ceiling light", "ceiling light"))
    r = rng.uniform(0.15, 0.3)
    parts.cyl(make_material(rng, "ceiling", "plain"), 0, 0, -0.08, 0.0, r)
    return Draft("ceiling light", None, 2 * r, 2 * r, 0.0, parts.parts)
