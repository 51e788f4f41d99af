"""Room recipes: what a bedroom, living room, kitchen, bathroom or office holds, and where.

Every room gets walls, floor, ceiling, a door, usually windows and pictures; each recipe adds
its typical furniture plus some cross-room extras, so that a handful of scenes covers all 20
ScanNet20 classes. The optional *studio* (``xmask3d synth --studio F``) is one large room that
holds a bedroom, a living room and a kitchen, as many real scans do (a studio apartment, a
dorm room; ScanNet's scene0000_00 is one): bed, sofa and counter in one scan, with more
furniture per wall than the single-purpose rooms.
"""

from __future__ import annotations

import numpy as np

from xmask3d.data.synth import clutter, fixtures, furniture
from xmask3d.data.synth.arrange import (
    add_common,
    add_door,
    add_pictures,
    add_rug,
    add_wall_thing,
    decorate,
    desk_with_chair,
    facing_yaw,
    front_dir,
    side_dir,
    table_with_chairs,
)
from xmask3d.data.synth.layout import (
    ROOM_SIZES,
    STUDIO,
    PlacedObject,
    Room,
    RoomBuilder,
    build_shell,
)
from xmask3d.data.synth.parts import Draft, normalize


def _maybe(b: RoomBuilder, p: float) -> bool:
    return bool(b.rng.random() < p)


def _beside(b: RoomBuilder, anchor: PlacedObject, draft: Draft, side: int,
            gap: float = 0.05) -> PlacedObject | None:
    """Put ``draft`` against the wall of ``anchor``, next to it on ``side`` (-1 or 1)."""
    draft = normalize(draft)
    s = b.wall_coord(anchor.wall, anchor.x, anchor.y)
    s += side * (anchor.draft.width / 2 + gap + draft.width / 2)
    if draft.width / 2 < s < b.wall_length(anchor.wall) - draft.width / 2:
        return b.against_wall(draft, walls=(anchor.wall,), s=s)
    return None


def _mandatory(b: RoomBuilder, make, tries: int = 6, **kwargs) -> PlacedObject | None:
    """Try ``tries`` fresh drafts from ``make()`` against the walls; the first that fits."""
    for _ in range(tries):
        obj = b.against_wall(make(), **kwargs)
        if obj is not None:
            return obj
    return None


def bedroom(b: RoomBuilder) -> None:
    """Bed with nightstands; often wardrobe, dresser, desk, bookshelf, curtains."""
    add_common(b, windows=(1, 2), sill=(0.8, 1.0), curtain_p=0.85)
    _bed_corner(b)
    if _maybe(b, 0.7):
        b.against_wall(furniture.cabinet(b.rng, "wardrobe"))
    if _maybe(b, 0.4) and (dresser := b.against_wall(furniture.cabinet(b.rng, "dresser"))):
        decorate(b, dresser, int(b.rng.integers(1, 3)))
    if _maybe(b, 0.45):
        desk_with_chair(b, office=False)
    if _maybe(b, 0.4):
        b.against_wall(furniture.bookshelf(b.rng))
    if _maybe(b, 0.7):
        b.against_wall(clutter.other_furniture(b.rng, "bedroom"), gap=b.rng.uniform(0.0, 0.1))
    if _maybe(b, 0.25) and (end := b.against_wall(furniture.table(b.rng, "end"))):
        _beside(b, end, furniture.sofa(b.rng, armchair=True), int(b.rng.choice([-1, 1])))
    add_pictures(b, int(b.rng.integers(1, 4)))
    if _maybe(b, 0.3):
        b.against_wall(clutter.floor_plant(b.rng), gap=0.05)


def _bed_corner(b: RoomBuilder) -> None:
    """A bed against a wall, usually with nightstands (and lamps), sometimes a rug at its foot."""
    bed = _mandatory(b, lambda: furniture.bed(b.rng))
    if bed is not None:
        for side in (-1, 1):
            if _maybe(b, 0.75) and (ns := _beside(b, bed, clutter.nightstand(b.rng), side)):
                b.on_top(ns, clutter.lamp(b.rng) if _maybe(b, 0.7) else
                         clutter.tabletop_item(b.rng))
        foot = np.array([bed.x, bed.y]) + front_dir(bed.yaw) * (bed.draft.depth / 2 + 0.5)
        if _maybe(b, 0.4):
            add_rug(b, foot[0], foot[1], bed.yaw)


def living_room(b: RoomBuilder) -> None:
    """Sofa facing a coffee table (armchairs beside it), TV stand, shelves."""
    add_common(b, windows=(1, 3), sill=(0.7, 1.0), curtain_p=0.75)
    for _ in range(int(b.rng.integers(0, 2))):
        add_door(b)
    _sofa_corner(b)
    for _ in range(int(b.rng.integers(1, 3)) if _maybe(b, 0.75) else 0):
        _mandatory(b, lambda: furniture.bookshelf(b.rng), tries=3)
    if _maybe(b, 0.35):
        table_with_chairs(b, "dining", int(b.rng.integers(2, 5)))
    if _maybe(b, 0.3):
        b.against_wall(furniture.cabinet(b.rng, "tall"))
    _living_tail(b, desk_p=0.15, other_p=0.7, plant_p=0.5)


def _living_tail(b: RoomBuilder, *, desk_p: float, other_p: float, plant_p: float) -> None:
    """What a living space ends with: maybe a desk, an ottoman/bench/bin, a plant; pictures."""
    if _maybe(b, desk_p):
        desk_with_chair(b, office=False)
    if _maybe(b, other_p):
        b.against_wall(clutter.other_furniture(b.rng, "living room"), gap=b.rng.uniform(0, 0.2))
    if _maybe(b, plant_p):
        b.against_wall(clutter.floor_plant(b.rng), gap=0.05)
    add_pictures(b, int(b.rng.integers(1, 5)))


def _sofa_corner(b: RoomBuilder) -> None:
    """A sofa facing a coffee table (armchairs beside it, maybe a rug), a TV stand opposite."""
    sofa = _mandatory(b, lambda: furniture.sofa(b.rng))
    if sofa is not None:
        ct = normalize(furniture.table(b.rng, "coffee"))
        c = np.array([sofa.x, sofa.y]) + front_dir(sofa.yaw) * (
            sofa.draft.depth / 2 + b.rng.uniform(0.3, 0.5) + ct.depth / 2)
        if _maybe(b, 0.6):
            add_rug(b, c[0], c[1], sofa.yaw)
        table = b.at(ct, c[0], c[1], sofa.yaw) or b.free(ct, near=(c[0], c[1], 1.0))
        if table is not None:
            decorate(b, table, int(b.rng.integers(0, 3)))
            _armchairs(b, table, int(b.rng.integers(0, 3)))
    walls = (0, 1, 2, 3) if sofa is None else ((sofa.wall + 2) % 4,)
    if _maybe(b, 0.8) and (stand := b.against_wall(furniture.cabinet(b.rng, "low"), walls=walls)
                           or b.against_wall(furniture.cabinet(b.rng, "low"))):
        b.on_top(stand, clutter.tv(b.rng), back=True)


def _armchairs(b: RoomBuilder, table: PlacedObject, n: int) -> None:
    """Up to ``n`` armchairs at the ends of a coffee table, facing it."""
    for side in b.rng.permutation([-1, 1])[:n]:
        ac = normalize(furniture.sofa(b.rng, armchair=True))
        outward = side_dir(table.yaw) * side
        c = np.array([table.x, table.y]) + outward * (
            table.draft.width / 2 + b.rng.uniform(0.2, 0.4) + ac.depth / 2)
        b.at(ac, c[0], c[1], facing_yaw(outward))


def kitchen(b: RoomBuilder) -> None:
    """Counter run with a sink, upper cabinets, fridge beside it, table, stools."""
    add_common(b, windows=(0, 2), sill=(1.0, 1.1), curtain_p=0.2)
    _kitchen_run(b)
    if _maybe(b, 0.8):
        table_with_chairs(b, "kitchen", int(b.rng.integers(2, 5)))
    for _ in range(int(b.rng.integers(1, 3)) if _maybe(b, 0.4) else 0):
        b.against_wall(clutter.stool(b.rng), gap=b.rng.uniform(0.05, 0.3))
    if _maybe(b, 0.7):
        b.against_wall(clutter.trash_can(b.rng), gap=b.rng.uniform(0.0, 0.1))
    if _maybe(b, 0.1):
        b.against_wall(furniture.bookshelf(b.rng))
    add_pictures(b, int(_maybe(b, 0.3)))
    if _maybe(b, 0.3):
        add_wall_thing(b, clutter.wall_item(b.rng, "clock"), (1.9, 2.2))


def _kitchen_run(b: RoomBuilder, max_length: float = np.inf) -> None:
    """A counter run with a sink (upper cabinets, a second run), the fridge beside it; the run
    spans 55-85 % of its wall, at most ``max_length`` metres."""
    run = None
    for _ in range(8):
        k = int(b.rng.integers(4))
        length = min(max(1.2, b.rng.uniform(0.55, 0.85) * b.wall_length(k)), max_length)
        draft = normalize(fixtures.counter_run(b.rng, length, sink=True))
        s = (draft.width / 2, b.wall_length(k) / 2, b.wall_length(k) - draft.width / 2)[
            int(b.rng.integers(3))]
        if (run := b.against_wall(draft, walls=(k,), s=s)) is not None:
            break
    if run is not None:
        decorate(b, run, int(b.rng.integers(1, 4)))
        if _maybe(b, 0.7):
            upper = fixtures.kitchen_wall_cabinets(b.rng, run.draft.width * b.rng.uniform(0.5, 1))
            b.against_wall(upper, walls=(run.wall,), s=b.wall_coord(run.wall, run.x, run.y),
                           z=b.rng.uniform(1.45, 1.55))
        if _maybe(b, 0.5):
            k2 = (run.wall + 1) % 4
            second = fixtures.counter_run(b.rng, b.rng.uniform(0.9, 1.6), sink=False)
            if (lrun := b.against_wall(second, walls=(k2,))) is not None:
                decorate(b, lrun, int(b.rng.integers(0, 3)))
    fridge = None
    if run is not None:
        fridge = _beside(b, run, furniture.refrigerator(b.rng), int(b.rng.choice([-1, 1])))
    if fridge is None:
        _mandatory(b, lambda: furniture.refrigerator(b.rng))


def bathroom(b: RoomBuilder) -> None:
    """Bathtub with a shower curtain in a corner, toilet, vanity or pedestal sink."""
    add_common(b, windows=(0, 1), sill=(1.2, 1.5), curtain_p=0.2)
    placed = None
    for attempt in range(12):  # a bathtub in a corner; a shower tray if no tub fits
        draft = normalize(fixtures.bathtub(b.rng, with_curtain=True) if attempt < 8
                          else fixtures.shower_stall(b.rng, height=b.H))
        k = int(b.rng.integers(4))
        s = (draft.width / 2, b.wall_length(k) - draft.width / 2)[int(b.rng.integers(2))]
        if (placed := b.against_wall(draft, walls=(k,), s=s)) is not None:
            break
    _mandatory(b, lambda: fixtures.toilet(b.rng), tries=8)
    sink = None
    if _maybe(b, 0.7):
        sink = b.against_wall(fixtures.counter_run(b.rng, b.rng.uniform(0.6, 1.2), sink=True,
                                                   bathroom=True))
    if sink is None:
        sink = _mandatory(b, lambda: fixtures.pedestal_sink(b.rng), tries=8)
    if sink is not None:
        add_wall_thing(b, clutter.wall_item(b.rng, "mirror"), (1.45, 1.65), walls=(sink.wall,),
                       s=b.wall_coord(sink.wall, sink.x, sink.y))
        if sink.draft.top is not None:
            decorate(b, sink, int(b.rng.integers(0, 2)))
    if _maybe(b, 0.7):
        add_wall_thing(b, clutter.wall_item(b.rng, "towel"), (1.0, 1.3))
    if _maybe(b, 0.6):
        b.against_wall(clutter.trash_can(b.rng), gap=b.rng.uniform(0.0, 0.1))
    if _maybe(b, 0.35):
        b.against_wall(furniture.cabinet(b.rng, "tall"))
    add_pictures(b, int(_maybe(b, 0.3)))


def office(b: RoomBuilder) -> None:
    """Desks with office chairs and monitors, shelves, file cabinets, meeting table."""
    add_common(b, windows=(1, 3), sill=(0.8, 1.0), curtain_p=0.4)
    for _ in range(1 + int(b.rng.integers(0, 2 + int(b.W * b.D > 15)))):
        desk_with_chair(b, office=True)
    for _ in range(int(b.rng.integers(1, 3)) if _maybe(b, 0.8) else 0):
        b.against_wall(furniture.bookshelf(b.rng))
    for _ in range(int(b.rng.integers(1, 3)) if _maybe(b, 0.7) else 0):
        b.against_wall(furniture.cabinet(b.rng, "file"))
    if _maybe(b, 0.3):
        b.against_wall(furniture.cabinet(b.rng, "tall"))
    if b.W * b.D > 14 and _maybe(b, 0.5):
        table_with_chairs(b, "meeting" if b.W * b.D > 20 else "dining",
                          int(b.rng.integers(3, 7)), style="office")
    if _maybe(b, 0.2):
        b.against_wall(furniture.sofa(b.rng))
    if _maybe(b, 0.25):
        b.against_wall(furniture.refrigerator(b.rng, mini=True))
    if _maybe(b, 0.8):
        b.against_wall(clutter.trash_can(b.rng), gap=b.rng.uniform(0.0, 0.1))
    if _maybe(b, 0.4):
        add_wall_thing(b, clutter.wall_item(b.rng, "whiteboard"), (1.3, 1.5))
    if _maybe(b, 0.4):
        b.against_wall(clutter.floor_plant(b.rng), gap=0.05)
    add_pictures(b, int(b.rng.integers(0, 3)))


def studio(b: RoomBuilder) -> None:
    """A large room with a cooking, a sleeping and a sitting corner (their anchors placed
    first, so that each corner gets its wall), then what a small flat adds."""
    add_common(b, windows=(2, 4), sill=(0.8, 1.0), curtain_p=0.6)
    _kitchen_run(b, max_length=3.6)
    _bed_corner(b)
    _sofa_corner(b)
    if _maybe(b, 0.6):
        table_with_chairs(b, "kitchen", int(b.rng.integers(2, 5)))
    if _maybe(b, 0.5):
        b.against_wall(furniture.cabinet(b.rng, "wardrobe"))
    if _maybe(b, 0.5):
        b.against_wall(furniture.bookshelf(b.rng))
    _living_tail(b, desk_p=0.3, other_p=0.6, plant_p=0.4)


RECIPES = {"bedroom": bedroom, "living room": living_room, "kitchen": kitchen,
           "bathroom": bathroom, "office": office, STUDIO: studio}


def build_room(room_type: str, rng: np.random.Generator) -> Room:
    """Generate one room of ``room_type`` with its furniture, fixtures and clutter.

    Args:
        room_type: one of ``ROOM_TYPES`` or ``STUDIO``.
        rng: the generator all choices are drawn from (one per scene).

    Returns:
        The room: primitives, light and placed objects.
    """
    if room_type not in RECIPES:
        raise ValueError(f"unknown room type {room_type!r}; choose one of {tuple(RECIPES)}")
    (w0, w1), (d0, d1) = ROOM_SIZES[room_type]
    b = RoomBuilder(rng, room_type, width=float(rng.uniform(w0, w1)),
                    depth=float(rng.uniform(d0, d1)), height=float(rng.uniform(2.4, 3.0)))
    light = build_shell(b)
    RECIPES[room_type](b)
    return Room(room_type, b.W, b.D, b.H, b.prims, light, b.objects)


