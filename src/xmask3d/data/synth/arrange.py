"""Arrangement helpers of the room recipes: doors, windows, tables with chairs, clutter, rugs."""

from __future__ import annotations

import numpy as np

from xmask3d.data.synth import clutter, fixtures, furniture
from xmask3d.data.synth.layout import PlacedObject, RoomBuilder
from xmask3d.data.synth.parts import Draft, footprint_corners, normalize


def front_dir(yaw: float) -> np.ndarray:
    """(2,) world direction of a draft's front (+y local) at ``yaw``."""
    return np.array([-np.sin(yaw), np.cos(yaw)])


def side_dir(yaw: float) -> np.ndarray:
    """(2,) world direction of a draft's width axis (+x local) at ``yaw``."""
    return np.array([np.cos(yaw), np.sin(yaw)])


def facing_yaw(outward: np.ndarray) -> float:
    """Yaw of a draft whose front (+y) looks against ``outward`` (i.e. back towards a table)."""
    return float(np.arctan2(outward[0], -outward[1]))


def add_door(b: RoomBuilder) -> None:
    """A door on a wall, with a free swing area in front of it."""
    obj = b.against_wall(fixtures.door(b.rng))
    if obj is not None:
        c = np.array([obj.x, obj.y]) + front_dir(obj.yaw) * (obj.draft.depth / 2 + 0.45)
        sw = footprint_corners(obj.draft.width, 0.9, c[0], c[1], obj.yaw)
        b.floor_boxes.append(np.array([*sw.min(axis=0), *sw.max(axis=0)]))


def add_window(b: RoomBuilder, sill: tuple[float, float], curtain_p: float) -> None:
    """A window at a sill height in ``sill``; with probability ``curtain_p`` two curtains."""
    sill_z = b.rng.uniform(*sill)
    win = fixtures.window(b.rng, sill=sill_z)
    if sill_z + win.height > b.H - 0.15:
        return
    obj = b.against_wall(win, z=sill_z)
    if obj is None or b.rng.random() >= curtain_p:
        return
    s_win = b.wall_coord(obj.wall, obj.x, obj.y)
    top = min(b.H - 0.05, sill_z + obj.draft.height + b.rng.uniform(0.1, 0.3))
    bottom = 0.01 if b.rng.random() < 0.6 else sill_z - b.rng.uniform(0.1, 0.2)
    width, overlap = b.rng.uniform(0.3, 0.55), b.rng.uniform(0.05, 0.25)
    first = None
    for side in (-1, 1):
        panel = fixtures.curtain(b.rng, width=width, height=top - bottom)
        if first is not None:
            panel.parts[0].material = first.parts[0].material
        first = first or panel
        s = s_win + side * (obj.draft.width / 2 + width / 2 - overlap)
        b.against_wall(panel, walls=(obj.wall,), s=s, gap=obj.draft.depth + 0.02, z=bottom,
                       allow=(obj.instance,))


def add_wall_thing(b: RoomBuilder, draft: Draft, center_z: tuple[float, float],
                   walls: tuple[int, ...] = (0, 1, 2, 3), s: float | None = None) -> None:
    """Hang ``draft`` on a wall with its centre at a height in ``center_z``."""
    z0 = b.rng.uniform(*center_z) - draft.height / 2
    if z0 > 0.3 and z0 + draft.height < b.H - 0.1:
        b.against_wall(draft, z=z0, walls=walls, s=s)


def decorate(b: RoomBuilder, support: PlacedObject, n: int) -> None:
    """Put up to ``n`` small unlabelled items on the support surface of ``support``."""
    for k in range(n):
        b.on_top(support, clutter.tabletop_item(b.rng), slot=k, slots=n)


def chairs_around(b: RoomBuilder, table: PlacedObject, n_chairs: int,
                  style: str | None = None) -> None:
    """Up to ``n_chairs`` identical chairs facing ``table``, on randomly chosen side slots
    (two per long side of a table longer than 1.3 m, one per side otherwise)."""
    template = normalize(furniture.chair(b.rng, style))
    w, d = table.draft.width, table.draft.depth
    slots = []
    for sy in (-1, 1):
        for off in ((-0.25, 0.25) if w > 1.3 else (0.0,)):
            slots.append((front_dir(table.yaw) * sy, d / 2, off * w))
    for sx in (-1, 1):
        slots.append((side_dir(table.yaw) * sx, w / 2, 0.0))
    order = b.rng.permutation(len(slots))
    placed = 0
    for i in order:
        if placed == n_chairs:
            break
        outward, half, off = slots[i]
        along = np.array([-outward[1], outward[0]])
        c = np.array([table.x, table.y]) + outward * (
            half + b.rng.uniform(0.05, 0.25) + template.depth / 2) + along * off
        yaw = facing_yaw(outward) + b.rng.normal(0, 0.15)
        placed += b.at(template, c[0], c[1], yaw) is not None


def table_with_chairs(b: RoomBuilder, kind: str, n_chairs: int,
                      style: str | None = None) -> PlacedObject | None:
    """A free-standing table with chairs around it; returns the table (or ``None``).

    When the room is crowded, new random tables with less free space around them are tried.
    """
    for clearance in (0.75, 0.6, 0.45):
        table = b.free(furniture.table(b.rng, kind), clearance=clearance)
        if table is not None:
            chairs_around(b, table, n_chairs, style)
            decorate(b, table, int(b.rng.integers(0, 3)))
            return table
    return None


def desk_with_chair(b: RoomBuilder, *, office: bool) -> None:
    """A desk against a wall with a chair in front and a monitor or lamp on it."""
    desk = b.against_wall(furniture.desk(b.rng))
    if desk is None:
        return
    ch = normalize(furniture.chair(b.rng, "office" if office or b.rng.random() < 0.4 else None))
    for _ in range(8):
        c = np.array([desk.x, desk.y]) + front_dir(desk.yaw) * (
            desk.draft.depth / 2 + b.rng.uniform(0.02, 0.3) + ch.depth / 2)
        c += side_dir(desk.yaw) * b.rng.uniform(-0.2, 0.2) * desk.draft.width / 2
        if b.at(ch, c[0], c[1], desk.yaw + np.pi + b.rng.normal(0, 0.2)) is not None:
            break
    items = [clutter.desk_set(b.rng)] if office or b.rng.random() < 0.5 else []
    if b.rng.random() < 0.6:
        items.append(clutter.lamp(b.rng) if b.rng.random() < 0.4 else
                     clutter.tabletop_item(b.rng))
    for k, item in enumerate(items):
        b.on_top(desk, item, slot=k, slots=len(items), back=True)


def add_pictures(b: RoomBuilder, n: int) -> None:
    """Hang up to ``n`` pictures or posters on free wall space."""
    for _ in range(n):
        add_wall_thing(b, fixtures.picture(b.rng), (1.35, 1.75))


def add_common(b: RoomBuilder, *, windows: tuple[int, int], sill: tuple[float, float],
               curtain_p: float) -> None:
    """Door, windows (with curtains) and the ceiling light, placed before furniture."""
    add_door(b)
    for _ in range(int(b.rng.integers(windows[0], windows[1] + 1))):
        add_window(b, sill, curtain_p)
    b.add(clutter.ceiling_light(b.rng), b.W / 2, b.D / 2, 0.0, z=b.H, register_floor=False)


def add_rug(b: RoomBuilder, x: float, y: float, yaw: float) -> None:
    """A rug centred at (x, y) if it fits in the room; furniture may stand on it."""
    w, d = b.rng.uniform(1.2, 2.2), b.rng.uniform(0.8, 1.6)
    corners = footprint_corners(w, d, x, y, yaw)
    if corners.min() > 0.1 and corners[:, 0].max() < b.W - 0.1 and corners[:, 1].max() < b.D - 0.1:
        b.add(normalize(clutter.rug(b.rng, w, d)), x, y, yaw, register_floor=False)
