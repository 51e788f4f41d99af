"""Fixture drafts: doors, windows, curtains, pictures, counters with sinks, toilets, bathtubs.

Wall-mounted drafts have their back (local y = -depth/2) on the wall and z measured from the
floor, so they are placed with the same call as furniture against a wall.
"""

from __future__ import annotations

import numpy as np

from xmask3d.data.synth.furniture import WOODISH, cabinet, pick_material
from xmask3d.data.synth.materials import make_material
from xmask3d.data.synth.parts import Draft, PartList


def door(rng: np.random.Generator) -> Draft:
    """A closed door: leaf with panels, frame and a lever handle, protruding a few cm."""
    w, h, t = rng.uniform(0.8, 0.95), rng.uniform(2.0, 2.1), rng.uniform(0.03, 0.05)
    fw = rng.uniform(0.05, 0.08)
    palette = ("wood", "painted")[int(rng.random() < 0.5)]
    leaf = make_material(rng, palette, "panel")
    frame = make_material(rng, "painted", "plain") if rng.random() < 0.6 else leaf
    parts = PartList(("door", "door", "door"))
    d = t + 0.03
    parts.box_from(leaf, (-w / 2, -d / 2, 0), (w / 2, -d / 2 + t, h))
    for x0 in (-w / 2 - fw, w / 2):
        parts.box_from(frame, (x0, -d / 2, 0), (x0 + fw, -d / 2 + t + 0.015, h + fw))
    parts.box_from(frame, (-w / 2, -d / 2, h), (w / 2, -d / 2 + t + 0.015, h + fw))
    metal = make_material(rng, "metal", "metal")
    hx = w / 2 - 0.08
    parts.box_from(metal, (hx - 0.12, -d / 2 + t, 0.98), (hx, d / 2, 1.02))
    return Draft("door", "door", w + 2 * fw, d, h + fw, parts.parts)


def window(rng: np.random.Generator, *, sill: float) -> Draft:
    """A window: glass pane inside a frame with an optional mullion; ``z`` starts at 0."""
    w, h = rng.uniform(0.7, 1.8), rng.uniform(0.9, 1.5)
    fw, d = rng.uniform(0.04, 0.07), rng.uniform(0.03, 0.05)
    frame = pick_material(rng, (("painted", "plain"), ("wood", "wood")))
    glass = make_material(rng, "glass", "glass", second=tuple(frame.base))
    parts = PartList(("window", "window", "window"))
    parts.box_from(glass, (-w / 2, -d / 2, 0), (w / 2, -d / 2 + 0.01, h))
    for x0 in (-w / 2, w / 2 - fw):
        parts.box_from(frame, (x0, -d / 2, 0), (x0 + fw, d / 2, h))
    for z0 in (0.0, h - fw):
        parts.box_from(frame, (-w / 2 + fw, -d / 2, z0), (w / 2 - fw, d / 2, z0 + fw))
    if w > 1.0:
        parts.box_from(frame, (-fw / 3, -d / 2, fw), (fw / 3, d / 2 - 0.01, h - fw))
    return Draft("window", "window", w, d, h, parts.parts)


def curtain(rng: np.random.Generator, *, width: float, height: float, shower: bool = False
            ) -> Draft:
    """A hanging curtain panel (folds or stripes), or a thin patterned shower curtain."""
    if shower:
        parts = PartList(("shower curtain", "shower curtain", "shower curtain"))
        palette = ("ceramic", "glass", "plastic", "tile")[int(rng.integers(4))]
        texture = ("plain", "stripes", "folds")[int(rng.integers(3))]
        thick = rng.uniform(0.01, 0.02)
    else:
        parts = PartList(("curtain", "curtain", "curtain"))
        palette = ("fabric", "bedding")[int(rng.random() < 0.3)]
        texture = ("folds", "folds", "stripes")[int(rng.integers(3))]
        thick = rng.uniform(0.05, 0.1)
    mat = make_material(rng, palette, texture)
    parts.box_from(mat, (-width / 2, -thick / 2, 0), (width / 2, thick / 2, height))
    return Draft(parts.who[1], parts.who[0], width, thick, height, parts.parts)


def picture(rng: np.random.Generator) -> Draft:
    """A framed picture or an unframed poster on a wall."""
    poster = rng.random() < 0.25
    w, h = rng.uniform(0.3, 1.2), rng.uniform(0.3, 0.9)
    d = 0.006 if poster else rng.uniform(0.02, 0.04)
    frame = pick_material(rng, (("wood", "plain"), ("painted", "plain")))
    art = make_material(rng, "plastic", "picture", second=tuple(frame.base))
    if poster:
        art.second = art.base * 0.9
    name = "poster" if poster else "picture"
    parts = PartList(("picture", name, name))
    parts.box_from(art, (-w / 2, -d / 2, 0), (w / 2, d / 2, h))
    return Draft(name, "picture", w, d, h, parts.parts)


def _sink_basin(parts: PartList, rng: np.random.Generator, x: float, y: float, top: float,
                w: float, d: float, depth: float) -> None:
    """An undermount basin: bottom and four walls below the counter hole, plus a faucet."""
    steel = make_material(rng, "metal" if rng.random() < 0.6 else "ceramic", "metal")
    sink = ("sink", "sink", "sink")
    t = 0.015
    parts.box_from(steel, (x - w / 2, y - d / 2, top - depth), (x + w / 2, y + d / 2,
                                                                 top - depth + t), sub=2, who=sink)
    for sx in (-1, 1):
        x0 = x + sx * w / 2 - (t if sx > 0 else 0)
        parts.box_from(steel, (x0, y - d / 2, top - depth), (x0 + t, y + d / 2, top), sub=2,
                       who=sink)
    for sy in (-1, 1):
        y0 = y + sy * d / 2 - (t if sy > 0 else 0)
        parts.box_from(steel, (x - w / 2, y0, top - depth), (x + w / 2, y0 + t, top), sub=2,
                       who=sink)
    chrome = make_material(rng, "metal", "metal")
    parts.cyl(chrome, x, y - d / 2 - 0.05, top, top + rng.uniform(0.12, 0.22), 0.015, sub=3,
              who=(None, "faucet", None))


def counter_run(rng: np.random.Generator, length: float, *, sink: bool, bathroom: bool = False
                ) -> Draft:
    """Base cabinets under a counter top, optionally with an undermount sink.

    The sink cuts a hole in the counter (four counter slabs around it); the cabinet below the
    sink is lowered under the basin and closed by a front panel.
    """
    h = rng.uniform(0.82, 0.88) if bathroom else rng.uniform(0.86, 0.92)
    ct, d = rng.uniform(0.03, 0.05), (rng.uniform(0.45, 0.55) if bathroom else 0.62)
    counter_who = ("counter", "counter", "bathroom counter" if bathroom else "kitchen counter")
    cab_name = ("cabinet", "bathroom vanity" if bathroom else "kitchen cabinet")
    parts = PartList(counter_who)
    slab = pick_material(rng, (("stone", "speckle"), ("stone", "plain"), ("wood", "wood")))
    n_units = max(1, int(round(length / rng.uniform(0.5, 0.8))))
    unit_w = length / n_units
    sink_unit = int(rng.integers(n_units)) if sink else -1
    # basin: leave >= 9 cm of counter behind it (faucet) and >= 3 cm in front
    sw, depth = min(unit_w - 0.1, rng.uniform(0.45, 0.75)), 0.18
    sd = min(rng.uniform(0.35, 0.42), d - 0.13)
    body = make_material(rng, ("wood", "painted")[int(rng.random() < 0.5)], "panel")
    handle = make_material(rng, "metal", "metal")
    for k in range(n_units):
        x0 = -length / 2 + k * unit_w
        top = h - ct - depth - 0.02 if k == sink_unit else h - ct
        who = (cab_name[0], cab_name[1], cab_name[1])
        parts.box_from(body, (x0, -d / 2, 0), (x0 + unit_w, d / 2 - 0.03, top), sub=1, who=who)
        if k == sink_unit:
            parts.box_from(body, (x0, d / 2 - 0.05, top), (x0 + unit_w, d / 2 - 0.03, h - ct),
                           sub=1, who=who)
        parts.box(handle, (x0 + unit_w / 2, d / 2 - 0.02, top - 0.08), (0.14, 0.02, 0.02), sub=1,
                  who=who)
    cz = (h - ct, h)
    if sink_unit < 0:
        parts.box_from(slab, (-length / 2, -d / 2, cz[0]), (length / 2, d / 2 + 0.02, cz[1]))
    else:
        sx = -length / 2 + (sink_unit + 0.5) * unit_w
        sy = rng.uniform(-d / 2 + 0.09 + sd / 2, d / 2 - 0.03 - sd / 2)
        parts.box_from(slab, (-length / 2, -d / 2, cz[0]), (sx - sw / 2, d / 2 + 0.02, cz[1]))
        parts.box_from(slab, (sx + sw / 2, -d / 2, cz[0]), (length / 2, d / 2 + 0.02, cz[1]))
        parts.box_from(slab, (sx - sw / 2, -d / 2, cz[0]), (sx + sw / 2, sy - sd / 2, cz[1]))
        parts.box_from(slab, (sx - sw / 2, sy + sd / 2, cz[0]), (sx + sw / 2, d / 2 + 0.02, cz[1]))
        _sink_basin(parts, rng, sx, sy, h, sw, sd, depth)
    keepout = None if sink_unit < 0 else (sx - sw / 2 - 0.05, sx + sw / 2 + 0.05)
    return Draft("counter", "counter", length, d + 0.02, h, parts.parts,
                 top=(h, length - 0.1, d - 0.15), keepout=keepout, wall_height=h)


def pedestal_sink(rng: np.random.Generator) -> Draft:
    """A bathroom pedestal sink: a column carrying a basin with a hollow bowl."""
    w, d, h = rng.uniform(0.45, 0.6), rng.uniform(0.38, 0.48), rng.uniform(0.8, 0.88)
    mat = make_material(rng, "ceramic", "plain")
    parts = PartList(("sink", "sink", "sink"))
    parts.cyl(mat, 0, -0.05, 0, h - 0.15, rng.uniform(0.08, 0.11))
    t = 0.03
    parts.box_from(mat, (-w / 2, -d / 2, h - 0.15), (w / 2, d / 2, h - 0.12))
    for x0 in (-w / 2, w / 2 - t):
        parts.box_from(mat, (x0, -d / 2, h - 0.12), (x0 + t, d / 2, h))
    for y0 in (-d / 2, d / 2 - t):
        parts.box_from(mat, (-w / 2 + t, y0, h - 0.12), (w / 2 - t, y0 + t, h))
    chrome = make_material(rng, "metal", "metal")
    parts.cyl(chrome, 0, -d / 2 + 0.05, h, h + 0.15, 0.012, sub=1, who=(None, "faucet", None))
    return Draft("sink", "sink", w, d, h, parts.parts)


def toilet(rng: np.random.Generator) -> Draft:
    """A toilet: pedestal, bowl rim with a seat, and a cistern against the wall."""
    mat = make_material(rng, "ceramic", "plain")
    parts = PartList(("toilet", "toilet", "toilet"))
    d = rng.uniform(0.65, 0.75)
    tank_w, tank_d, tank_h = rng.uniform(0.36, 0.45), rng.uniform(0.15, 0.22), rng.uniform(0.3, 0.4)
    hs, r = rng.uniform(0.38, 0.43), rng.uniform(0.18, 0.22)
    y_bowl = -d / 2 + tank_d + r * 0.9
    parts.cyl(mat, 0, y_bowl - 0.03, 0, hs - 0.06, r * 0.7)
    parts.cyl(mat, 0, y_bowl, hs - 0.06, hs - 0.02, r)
    seat = mat if rng.random() < 0.7 else make_material(rng, "plastic", "plain")
    parts.cyl(seat, 0, y_bowl, hs - 0.02, hs, r * 1.02)
    parts.box_from(mat, (-tank_w / 2, -d / 2, hs - 0.05), (tank_w / 2, -d / 2 + tank_d,
                                                         hs - 0.05 + tank_h))
    parts.box_from(mat, (-0.08, -d / 2 + tank_d, 0.08), (0.08, y_bowl - 0.05, hs - 0.06))
    return Draft("toilet", "toilet", max(tank_w, 2 * r), d, hs - 0.05 + tank_h, parts.parts)


def bathtub(rng: np.random.Generator, *, with_curtain: bool) -> Draft:
    """A bathtub (hollow: floor and four walls), optionally with a shower curtain and rod."""
    length, w, h = rng.uniform(1.5, 1.8), rng.uniform(0.7, 0.8), rng.uniform(0.45, 0.6)
    t = rng.uniform(0.06, 0.09)
    mat = make_material(rng, "ceramic", "plain")
    parts = PartList(("bathtub", "bathtub", "bathtub"))
    parts.box_from(mat, (-length / 2, -w / 2, 0), (length / 2, w / 2, 0.08))
    for x0 in (-length / 2, length / 2 - t):
        parts.box_from(mat, (x0, -w / 2, 0.08), (x0 + t, w / 2, h))
    for y0 in (-w / 2, w / 2 - t):
        parts.box_from(mat, (-length / 2 + t, y0, 0.08), (length / 2 - t, y0 + t, h))
    top = h
    if with_curtain:
        rod_z = rng.uniform(1.9, 2.0)
        cw = length * rng.uniform(0.45, 1.0)
        drape = curtain(rng, width=cw, height=rod_z - 0.02 - (h + rng.uniform(0.1, 0.3)),
                        shower=True)
        x0 = -length / 2 + (rng.uniform(0, length - cw))
        y = w / 2 - t / 2
        for p in drape.parts:
            p.center = p.center + (x0 + cw / 2, y, rod_z - 0.02 - p.size[2])
            p.instance = 1
            parts.parts.append(p)
        rod = make_material(rng, "metal", "metal")
        parts.box_from(rod, (-length / 2, y - 0.01, rod_z - 0.02), (length / 2, y + 0.01, rod_z),
                       sub=2, who=(None, "curtain rod", "shower curtain rod"))
        top = rod_z
    # the curtain hangs 0.7 m from the wall: the tub blocks the wall only up to its rim
    return Draft("bathtub", "bathtub", length, w, top, parts.parts, wall_height=h)


def shower_stall(rng: np.random.Generator, *, height: float) -> Draft:
    """A shower corner without a tub: a floor tray and a shower curtain along its open side."""
    w, d = rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0)
    tray = make_material(rng, "ceramic", "plain")
    parts = PartList((None, "shower floor", "shower floor"))
    parts.box_from(tray, (-w / 2, -d / 2, 0), (w / 2, d / 2, 0.05))
    rod_z = min(height - 0.1, rng.uniform(1.9, 2.0))
    drape = curtain(rng, width=w, height=rod_z - 0.1, shower=True)
    for p in drape.parts:
        p.center = p.center + (0.0, d / 2 - p.size[1] / 2, 0.08)
        p.instance = 1
        parts.parts.append(p)
    return Draft("shower curtain", "shower curtain", w, d, rod_z, parts.parts, wall_height=0.1)


def kitchen_wall_cabinets(rng: np.random.Generator, length: float) -> Draft:
    """A row of upper kitchen cabinets of total ``length`` (mounted at z >= 1.4 m)."""
    n = max(1, int(round(length / 0.7)))
    d, h = rng.uniform(0.3, 0.35), rng.uniform(0.6, 0.8)
    body = make_material(rng, ("wood", "painted")[int(rng.random() < 0.5)], "panel")
    draft = Draft("kitchen cabinet", "cabinet", length, d, h)
    for k in range(n):
        unit = cabinet(rng, "wall", width=length / n, depth=d, height=h, body=body)
        for p in unit.parts:
            p.center = p.center + (-length / 2 + (k + 0.5) * length / n, 0.0, 0.0)
            p.instance = k
            draft.parts.append(p)
    return draft


__all__ = ["WOODISH", "bathtub", "counter_run", "curtain", "door", "kitchen_wall_cabinets",
           "pedestal_sink", "picture", "shower_stall", "toilet", "window"]
