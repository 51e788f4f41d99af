"""Furniture drafts built from primitives: beds, chairs, tables, desks, sofas, shelves, cabinets.

Sizes follow common furniture dimensions (seat 0.42-0.48 m, table 0.72-0.78 m, counter
0.86-0.92 m); every builder draws its sizes, style and material from ``rng``.
"""

from __future__ import annotations

import numpy as np

from xmask3d.data.synth.materials import Material, make_material
from xmask3d.data.synth.parts import Draft, PartList

WOODISH = (("wood", "wood"), ("wood", "wood"), ("painted", "plain"))


def pick_material(rng: np.random.Generator, options) -> Material:
    """A material from one of ``options``: a sequence of ``(palette, texture)`` pairs."""
    palette, texture = options[int(rng.integers(len(options)))]
    return make_material(rng, palette, texture)


def _legs(parts: PartList, mat: Material, w: float, d: float, h: float, thick: float,
          round_legs: bool, inset: float = 0.03) -> None:
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (w / 2 - inset - thick / 2), sy * (d / 2 - inset - thick / 2)
            if round_legs:
                parts.cyl(mat, x, y, 0.0, h, thick / 2)
            else:
                parts.box(mat, (x, y, h / 2), (thick, thick, h))


def bed(rng: np.random.Generator) -> Draft:
    """A single or double bed: frame, headboard, mattress, optional blanket, pillows."""
    double = rng.random() < 0.6
    w = rng.uniform(1.35, 1.8) if double else rng.uniform(0.9, 1.05)
    length, hf, tm = rng.uniform(1.95, 2.15), rng.uniform(0.18, 0.32), rng.uniform(0.16, 0.24)
    hh, th = rng.uniform(0.8, 1.2), rng.uniform(0.04, 0.08)
    frame = pick_material(rng, WOODISH + (("fabric", "fabric"),))
    parts = PartList(("bed", "bed", "bed"))
    back = -length / 2
    parts.box_from(frame, (-w / 2, back + th, 0), (w / 2, length / 2, hf))
    parts.box_from(frame, (-w / 2 - 0.02, back, 0), (w / 2 + 0.02, back + th, hh))
    cover = make_material(rng, "bedding", "fabric")
    top = hf + tm
    parts.box_from(cover, (-w / 2 + 0.01, back + th + 0.02, hf), (w / 2 - 0.01, length / 2 - 0.02,
                                                                   top))
    if rng.random() < 0.6:
        blanket = make_material(rng, "bedding", rng.choice(["fabric", "stripes"]))
        y0 = rng.uniform(-0.2, 0.3)
        parts.box_from(blanket, (-w / 2, y0, hf + 0.05), (w / 2, length / 2, top + 0.03))
    pillow_mat = make_material(rng, "bedding", "fabric")
    n_pillows = 2 if double else 1
    pw, pd, ph = rng.uniform(0.45, 0.6), rng.uniform(0.3, 0.4), rng.uniform(0.1, 0.14)
    for k in range(n_pillows):
        x = 0.0 if n_pillows == 1 else (k - 0.5) * (w / 2)
        y = back + th + 0.05 + pd / 2
        parts.box(pillow_mat, (x, y, top + ph / 2), (pw, pd, ph), sub=k + 1,
                  who=(None, "pillow", "pillow"))
    return Draft("bed", "bed", w + 0.04, length, hh, parts.parts)


def chair(rng: np.random.Generator, style: str | None = None) -> Draft:
    """A chair facing +y: wooden, plastic or office style (swivel column and round base)."""
    style = style or str(rng.choice(["wood", "wood", "plastic", "office"]))
    hs, w, d = rng.uniform(0.42, 0.48), rng.uniform(0.40, 0.50), rng.uniform(0.40, 0.50)
    ts, hb, tb = rng.uniform(0.03, 0.06), rng.uniform(0.35, 0.5), rng.uniform(0.025, 0.05)
    name = "office chair" if style == "office" else "chair"
    parts = PartList(("chair", name, name))
    if style == "office":
        seat = make_material(rng, "fabric", "fabric")
    else:
        seat = pick_material(rng, WOODISH if style == "wood" else (("plastic", "plain"),))
    # the seat is added first: captions take an object's colour from its first part
    parts.box_from(seat, (-w / 2, -d / 2, hs - ts), (w / 2, d / 2, hs))
    if style == "office":
        metal = make_material(rng, "metal", "metal")
        r_base = rng.uniform(0.26, 0.32)
        parts.cyl(metal, 0, 0, 0.0, 0.06, r_base)
        parts.cyl(metal, 0, 0, 0.06, hs - ts, 0.03)
        hb, tb = hb + 0.15, tb + 0.03
    else:
        _legs(parts, seat, w, d, hs - ts, rng.uniform(0.025, 0.04), rng.random() < 0.4)
    parts.box_from(seat, (-w / 2, -d / 2, hs), (w / 2, -d / 2 + tb, hs + hb))
    if style == "office" and rng.random() < 0.6:
        for sx in (-1, 1):
            parts.box_from(seat, (sx * w / 2 - 0.03, -d / 4, hs + 0.18),
                           (sx * w / 2 + 0.03, d / 3, hs + 0.22))
    foot = 2 * r_base if style == "office" else 0.0
    return Draft(name, "chair", max(w + 0.06, foot), max(d, foot), hs + hb, parts.parts)


TABLE_SIZES = {  # kind: (width range, depth range, height range, caption name)
    "dining": ((1.0, 1.8), (0.7, 1.0), (0.72, 0.78), "dining table"),
    "kitchen": ((0.8, 1.3), (0.65, 0.85), (0.72, 0.78), "dining table"),
    "coffee": ((0.8, 1.3), (0.5, 0.7), (0.38, 0.48), "coffee table"),
    "end": ((0.4, 0.55), (0.4, 0.55), (0.5, 0.62), "end table"),
    "meeting": ((1.6, 2.4), (0.9, 1.2), (0.72, 0.76), "table"),
}


def table(rng: np.random.Generator, kind: str = "dining") -> Draft:
    """A table with four legs, or (sometimes) a round top on a pedestal."""
    (w0, w1), (d0, d1), (h0, h1), name = TABLE_SIZES[kind]
    w, d, h = rng.uniform(w0, w1), rng.uniform(d0, d1), rng.uniform(h0, h1)
    tt = rng.uniform(0.025, 0.05)
    mat = pick_material(rng, WOODISH + (("stone", "speckle"),))
    parts = PartList(("table", name, name if name != "table" else "table"))
    if kind in ("dining", "kitchen", "end") and rng.random() < 0.3:
        r = min(w, d) / 2 if kind == "end" else rng.uniform(0.45, 0.6)
        parts.cyl(mat, 0, 0, h - tt, h, r)
        parts.cyl(mat, 0, 0, 0.03, h - tt, rng.uniform(0.04, 0.07))
        parts.cyl(mat, 0, 0, 0.0, 0.03, r * 0.6)
        return Draft(name, "table", 2 * r, 2 * r, h, parts.parts, top=(h, 1.2 * r, 1.2 * r))
    parts.box_from(mat, (-w / 2, -d / 2, h - tt), (w / 2, d / 2, h))
    leg_mat = mat if rng.random() < 0.7 else make_material(rng, "metal", "metal")
    _legs(parts, leg_mat, w, d, h - tt, rng.uniform(0.03, 0.06), rng.random() < 0.4)
    if kind == "coffee" and rng.random() < 0.5:
        parts.box_from(mat, (-w / 2 + 0.05, -d / 2 + 0.05, 0.1), (w / 2 - 0.05, d / 2 - 0.05, 0.13))
    return Draft(name, "table", w, d, h, parts.parts, top=(h, w - 0.1, d - 0.1))


def desk(rng: np.random.Generator) -> Draft:
    """A desk (back against a wall): top on side panels or legs, optional drawer unit."""
    w, d, h = rng.uniform(1.0, 1.6), rng.uniform(0.55, 0.8), rng.uniform(0.72, 0.76)
    tt = rng.uniform(0.025, 0.04)
    mat = pick_material(rng, WOODISH + (("painted", "plain"),))
    parts = PartList(("desk", "desk", "desk"))
    parts.box_from(mat, (-w / 2, -d / 2, h - tt), (w / 2, d / 2, h))
    if rng.random() < 0.5:
        for x0 in (-w / 2, w / 2 - 0.03):
            parts.box_from(mat, (x0, -d / 2, 0), (x0 + 0.03, d / 2, h - tt))
        parts.box_from(mat, (-w / 2 + 0.03, -d / 2, 0.3), (w / 2 - 0.03, -d / 2 + 0.02, h - tt))
    else:
        leg_mat = mat if rng.random() < 0.5 else make_material(rng, "metal", "metal")
        _legs(parts, leg_mat, w, d, h - tt, rng.uniform(0.035, 0.05), False, inset=0.02)
    if rng.random() < 0.5:
        dw = rng.uniform(0.35, 0.45)
        side = rng.choice([-1, 1])
        x0 = side * (w / 2 - 0.03) - (dw if side > 0 else 0)
        drawers = make_material(rng, "painted", "panel") if rng.random() < 0.5 else mat
        parts.box_from(drawers, (x0, -d / 2 + 0.02, 0.0), (x0 + dw, d / 2 - 0.04, h - tt))
    return Draft("desk", "desk", w, d, h, parts.parts, top=(h, w - 0.1, d - 0.1))


def sofa(rng: np.random.Generator, *, armchair: bool = False) -> Draft:
    """A sofa (or an armchair, labelled chair): base, seat cushions, back and arms."""
    w = rng.uniform(0.75, 1.0) if armchair else rng.uniform(1.6, 2.4)
    d, hs = rng.uniform(0.8, 1.0), rng.uniform(0.4, 0.46)
    hb, ha, aw = rng.uniform(0.75, 0.92), rng.uniform(0.55, 0.66), rng.uniform(0.12, 0.22)
    tb = rng.uniform(0.16, 0.24)
    who = ("chair", "armchair", "armchair") if armchair else ("sofa", "sofa", "couch")
    parts = PartList(who)
    fab = make_material(rng, "fabric", "fabric")
    parts.box_from(fab, (-w / 2 + aw, -d / 2 + tb, 0.08), (w / 2 - aw, d / 2, hs - 0.1))
    parts.box_from(fab, (-w / 2 + aw, -d / 2 + tb, hs - 0.1), (w / 2 - aw, d / 2 - 0.01, hs))
    parts.box_from(fab, (-w / 2, -d / 2, 0.08), (w / 2, -d / 2 + tb, hb))
    for sx in (-1, 1):
        parts.box_from(fab, (min(sx * w / 2, sx * (w / 2 - aw)), -d / 2 + tb, 0.08),
                       (max(sx * w / 2, sx * (w / 2 - aw)), d / 2, ha))
    feet = make_material(rng, "wood", "wood")
    _legs(parts, feet, w, d, 0.08, 0.05, rng.random() < 0.5, inset=0.04)
    if not armchair and rng.random() < 0.7:
        cush = make_material(rng, "fabric", "fabric")
        for k in range(int(rng.integers(1, 3))):
            x = (k - 0.5) * (w - 2 * aw) * 0.6
            parts.box(cush, (x, -d / 2 + tb + 0.08, hs + 0.2), (0.42, 0.12, 0.4), sub=k + 1,
                      who=(None, "pillow", "pillow"))
    return Draft(who[1], who[0], w, d, hb, parts.parts)


def bookshelf(rng: np.random.Generator) -> Draft:
    """An open bookshelf: back, sides, top, plinth, shelves, and rows of books on the shelves."""
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.28, 0.4), rng.uniform(1.0, 2.1)
    t = rng.uniform(0.02, 0.03)
    mat = pick_material(rng, WOODISH)
    parts = PartList(("bookshelf", "bookshelf", "bookshelf"))
    parts.box_from(mat, (-w / 2, -d / 2, 0), (w / 2, -d / 2 + 0.01, h))
    for sx in (-1, 1):
        parts.box_from(mat, (sx * w / 2 - (t if sx > 0 else 0), -d / 2 + 0.01, 0),
                       (sx * w / 2 + (t if sx < 0 else 0), d / 2, h))
    parts.box_from(mat, (-w / 2 + t, -d / 2 + 0.01, h - t), (w / 2 - t, d / 2, h))
    parts.box_from(mat, (-w / 2 + t, -d / 2 + 0.01, 0), (w / 2 - t, d / 2, 0.06))
    n_shelves = max(2, int(h / 0.35))
    levels = np.linspace(0.06, h - t, n_shelves + 1)
    books = make_material(rng, "plastic", "books")
    for k, (z0, z1) in enumerate(zip(levels[:-1], levels[1:])):
        if k > 0:
            parts.box_from(mat, (-w / 2 + t, -d / 2 + 0.01, z0 - t), (w / 2 - t, d / 2, z0))
        if rng.random() < 0.8:
            bw = rng.uniform(0.4, 0.95) * (w - 2 * t)
            x0 = -w / 2 + t + rng.uniform(0, w - 2 * t - bw)
            bh = min(z1 - z0 - 0.04, rng.uniform(0.15, 0.28))
            parts.box_from(books, (x0, -d / 2 + 0.02, z0), (x0 + bw, -d / 2 + 0.02 + d * 0.7,
                                                             z0 + bh),
                           sub=1, who=(None, "books", "book"))
    return Draft("bookshelf", "bookshelf", w, d, h, parts.parts)


CABINET_SIZES = {  # kind: (width, depth, height ranges, caption name, ScanNet200 name)
    "wardrobe": ((0.8, 1.6), (0.55, 0.65), (1.8, 2.2), "wardrobe", "wardrobe"),
    "dresser": ((0.8, 1.3), (0.45, 0.55), (0.75, 1.0), "dresser", "cabinet"),
    "low": ((1.0, 1.8), (0.4, 0.5), (0.4, 0.6), "tv stand", "tv stand"),
    "file": ((0.4, 0.5), (0.5, 0.6), (0.7, 1.3), "file cabinet", "file cabinet"),
    "tall": ((0.5, 0.9), (0.35, 0.5), (1.5, 2.0), "cabinet", "cabinet"),
    "wall": ((0.6, 1.2), (0.3, 0.35), (0.6, 0.8), "kitchen cabinet", "kitchen cabinet"),
}


def cabinet(rng: np.random.Generator, kind: str = "tall", *, width: float | None = None,
            depth: float | None = None, height: float | None = None,
            body: Material | None = None) -> Draft:
    """A closed cabinet with panel doors (or drawers) and handles; sizes can be fixed."""
    (w0, w1), (d0, d1), (h0, h1), name, name200 = CABINET_SIZES[kind]
    w = width if width is not None else rng.uniform(w0, w1)
    d = depth if depth is not None else rng.uniform(d0, d1)
    h = height if height is not None else rng.uniform(h0, h1)
    if body is None:
        body = make_material(rng, ("wood", "painted")[int(rng.random() < 0.5)], "panel")
    parts = PartList(("cabinet", name, name200))
    parts.box_from(body, (-w / 2, -d / 2, 0), (w / 2, d / 2, h))
    handle = make_material(rng, "metal", "metal")
    if kind in ("dresser", "file"):  # one centred handle per drawer
        rows = max(2, int(h / 0.3))
        for j in range(rows):
            parts.box(handle, (0.0, d / 2 + 0.0125, (j + 0.5) * h / rows), (0.12, 0.025, 0.02))
    else:  # doors: a vertical handle near the inner edge of each door
        n_doors = max(1, int(round(w / 0.5)))
        z = 0.12 if kind == "wall" else min(0.5 * h, 1.0)
        for i in range(n_doors):
            x = -w / 2 + (i + 0.5 + (0.3 if i % 2 == 0 else -0.3)) * w / n_doors
            parts.box(handle, (x, d / 2 + 0.0125, z), (0.02, 0.025, 0.12))
    return Draft(name, "cabinet", w, d + 0.025, h, parts.parts, top=(h, w - 0.1, d - 0.1))


def refrigerator(rng: np.random.Generator, *, mini: bool = False) -> Draft:
    """A refrigerator (or a mini fridge): metal body and vertical door handles."""
    if mini:
        w, d, h = rng.uniform(0.45, 0.55), rng.uniform(0.5, 0.58), rng.uniform(0.8, 0.9)
    else:
        w, d, h = rng.uniform(0.6, 0.85), rng.uniform(0.62, 0.75), rng.uniform(1.6, 1.9)
    name200 = "mini fridge" if mini else "refrigerator"
    parts = PartList(("refrigerator", "refrigerator", name200))
    body = make_material(rng, "metal", "metal")
    parts.box_from(body, (-w / 2, -d / 2, 0), (w / 2, d / 2, h))
    handle = make_material(rng, "metal", "plain")
    split = h * rng.uniform(0.3, 0.4) if not mini else 0.0
    x = w / 2 - 0.08
    parts.box_from(handle, (x - 0.02, d / 2, split + 0.1), (x, d / 2 + 0.04, h - 0.12))
    if split > 0:
        parts.box_from(handle, (x - 0.02, d / 2, 0.15), (x, d / 2 + 0.04, split - 0.08))
    return Draft("refrigerator", "refrigerator", w, d + 0.04, h, parts.parts,
                 top=(h, w - 0.1, d - 0.1) if mini else None)
