"""Room shells and object placement rules (against walls, on walls, free, on top of things).

A ``RoomBuilder`` keeps two occupancy registers: floor footprints (axis-aligned boxes) and, per
wall, the (along-wall, height) rectangles covered by things on or against that wall. A new
object is placed only where both are free, so beds and shelves stand flush against walls,
windows and pictures do not overlap doors or tall furniture, and doors keep a free swing area.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xmask3d.data.synth.materials import Light, make_material
from xmask3d.data.synth.parts import Draft, footprint_corners, normalize, place
from xmask3d.data.synth.primitives import Primitive

ROOM_TYPES = ("bedroom", "living room", "kitchen", "bathroom", "office")
STUDIO = "studio"   # optional (``xmask3d synth --studio F``): one large room, three recipes
ROOM_SIZES = {  # (width range, depth range) in metres
    "bedroom": ((3.0, 4.5), (3.2, 5.0)), "living room": ((4.0, 6.5), (3.5, 6.0)),
    "kitchen": ((3.0, 4.8), (3.0, 4.8)), "bathroom": ((2.2, 3.2), (2.3, 3.5)),
    "office": ((3.0, 6.0), (3.0, 5.5)), STUDIO: ((5.5, 8.0), (4.5, 7.0)),
}
FLOOR_TEXTURES = {
    "bedroom": (("floor_wood", "planks"), ("carpet", "fabric")),
    "living room": (("floor_wood", "planks"), ("tile", "tile"), ("carpet", "fabric")),
    "kitchen": (("tile", "tile"), ("floor_wood", "planks")),
    "bathroom": (("tile", "tile"),),
    "office": (("carpet", "fabric"), ("floor_wood", "planks"), ("tile", "tile")),
    STUDIO: (("floor_wood", "planks"), ("tile", "tile"), ("carpet", "fabric")),
}
WALL_T = 0.1  # wall, floor and ceiling slab thickness (only the room-facing face is sampled)


@dataclass
class PlacedObject:
    """An object in the room.

    Attributes:
        draft: the (normalised) draft it was built from.
        x, y, z, yaw: its pose (local origin in world metres, rotation about z).
        instance: instance id of its main part.
        wall: index of the wall it stands against or hangs on, else ``None``.
        corners: (4, 2) world corners of its footprint.
    """

    draft: Draft
    x: float
    y: float
    z: float
    yaw: float
    instance: int
    wall: int | None
    corners: np.ndarray

    @property
    def name(self) -> str:
        """Caption name of the object."""
        return self.draft.name

    @property
    def category(self) -> str | None:
        """ScanNet20 class of the object's main part (``None`` for clutter)."""
        return self.draft.category


@dataclass
class Room:
    """A generated room.

    Attributes:
        room_type: one of ``ROOM_TYPES``.
        width, depth, height: interior extents (the room is [0, W] x [0, D] x [0, H]).
        primitives: every solid in the room (walls, floor and ceiling included).
        light: the room light.
        objects: placed objects (walls, floor and ceiling excluded).
    """

    room_type: str
    width: float
    depth: float
    height: float
    primitives: list[Primitive]
    light: Light
    objects: list[PlacedObject] = field(default_factory=list)


class RoomBuilder:
    """Places drafts in a W x D x H room while keeping the occupancy registers.

    Args:
        rng: the room's random generator.
        room_type: one of ``ROOM_TYPES``.
        width, depth, height: interior size in metres.
    """

    def __init__(self, rng: np.random.Generator, room_type: str, *, width: float, depth: float,
                 height: float) -> None:
        self.rng, self.room_type = rng, room_type
        self.W, self.D, self.H = width, depth, height
        self.prims: list[Primitive] = []
        self.objects: list[PlacedObject] = []
        self.floor_boxes: list[np.ndarray] = []
        self.wall_boxes: list[list[tuple[float, float, float, float, int]]] = [[], [], [], []]
        self.next_instance = 1

    # -- geometry of the walls ------------------------------------------------------------------
    def wall_length(self, k: int) -> float:
        """Length of wall ``k`` (0: y = 0, 1: x = W, 2: y = D, 3: x = 0, counter-clockwise)."""
        return self.W if k % 2 == 0 else self.D

    def wall_pose(self, k: int, s: float, offset: float) -> tuple[float, float, float]:
        """World (x, y, yaw) of a point ``s`` along wall ``k`` and ``offset`` into the room."""
        start = ((0.0, 0.0), (self.W, 0.0), (self.W, self.D), (0.0, self.D))[k]
        yaw = k * np.pi / 2
        tangent = np.array([np.cos(yaw), np.sin(yaw)])
        normal = np.array([-np.sin(yaw), np.cos(yaw)])
        p = np.asarray(start) + s * tangent + offset * normal
        return float(p[0]), float(p[1]), float(yaw)

    def wall_coord(self, k: int, x: float, y: float) -> float:
        """Along-wall coordinate on wall ``k`` of the world point (x, y)."""
        return (x, y, self.W - x, self.D - y)[k]

    def _walls_touched(self, box: np.ndarray,
                       reach: float = 0.12) -> list[tuple[int, float, float]]:
        x0, y0, x1, y1 = box
        out = []
        if y0 < reach:
            out.append((0, x0, x1))
        if x1 > self.W - reach:
            out.append((1, y0, y1))
        if y1 > self.D - reach:
            out.append((2, self.W - x1, self.W - x0))
        if x0 < reach:
            out.append((3, self.D - y1, self.D - y0))
        return out

    # -- occupancy -------------------------------------------------------------------------------
    def floor_free(self, box: np.ndarray, margin: float = 0.03) -> bool:
        """Whether the floor box (x0, y0, x1, y1) is inside the room and ``margin`` away from
        every registered footprint."""
        x0, y0, x1, y1 = box
        if x0 < -1e-6 or y0 < -1e-6 or x1 > self.W + 1e-6 or y1 > self.D + 1e-6:
            return False
        for other in self.floor_boxes:
            if (x0 < other[2] + margin and other[0] < x1 + margin
                    and y0 < other[3] + margin and other[1] < y1 + margin):
                return False
        return True

    def wall_free(self, k: int, s0: float, s1: float, z0: float, z1: float, *,
                  allow: tuple[int, ...] = (), margin: float = 0.05) -> bool:
        """Whether the rectangle [s0, s1] x [z0, z1] of wall ``k`` is free (owners in ``allow``
        are ignored)."""
        for a0, a1, b0, b1, owner in self.wall_boxes[k]:
            if owner in allow:
                continue
            if s0 < a1 + margin and a0 < s1 + margin and z0 < b1 and b0 < z1:
                return False
        return True

    def fits(self, draft: Draft, x: float, y: float, yaw: float, *, z: float = 0.0,
             wall: int | None = None, s: float | None = None,
             allow: tuple[int, ...] = ()) -> bool:
        """Whether ``draft`` at (x, y, z, yaw) collides with nothing registered."""
        box = _aabb(footprint_corners(draft.width, draft.depth, x, y, yaw))
        on_floor = z < 0.05
        if on_floor and not self.floor_free(box):
            return False
        if not on_floor and (box[0] < -1e-6 or box[1] < -1e-6 or box[2] > self.W + 1e-6
                             or box[3] > self.D + 1e-6 or z + draft.height > self.H - 0.02):
            return False
        spans = self._walls_touched(box) if on_floor else []
        if wall is not None and s is not None:
            spans = [sp for sp in spans if sp[0] != wall] + [
                (wall, s - draft.width / 2, s + draft.width / 2)]
        top = z + (draft.wall_height or draft.height)
        return all(self.wall_free(k, s0, s1, z, top, allow=allow) for k, s0, s1 in spans)

    def add(self, draft: Draft, x: float, y: float, yaw: float, *, z: float = 0.0,
            wall: int | None = None, s: float | None = None,
            register_floor: bool = True) -> PlacedObject:
        """Place ``draft`` (no collision test) and register its occupancy."""
        corners = footprint_corners(draft.width, draft.depth, x, y, yaw)
        obj = PlacedObject(draft, x, y, z, yaw, self.next_instance, wall, corners)
        self.prims += place(draft, x, y, yaw, z=z, instance_base=self.next_instance)
        self.next_instance += max(p.instance for p in draft.parts) + 1
        box = _aabb(corners)
        spans = self._walls_touched(box) if z < 0.05 and register_floor else []
        if wall is not None and s is not None:
            spans = [sp for sp in spans if sp[0] != wall] + [
                (wall, s - draft.width / 2, s + draft.width / 2)]
        top = z + (draft.wall_height or draft.height)
        for k, s0, s1 in spans:
            self.wall_boxes[k].append((s0, s1, z, top, obj.instance))
        if z < 0.05 and register_floor:
            self.floor_boxes.append(box)
        self.objects.append(obj)
        return obj

    # -- placement strategies --------------------------------------------------------------------
    def against_wall(self, draft: Draft, *, walls: tuple[int, ...] = (0, 1, 2, 3),
                     s: float | None = None, gap: float = 0.0, z: float = 0.0, tries: int = 40,
                     allow: tuple[int, ...] = ()) -> PlacedObject | None:
        """Put ``draft`` with its back ``gap`` metres from one of ``walls`` (random or at ``s``)."""
        draft = normalize(draft)
        lengths = np.array([self.wall_length(k) for k in walls])
        ok = lengths > draft.width + 0.04
        if not ok.any():
            return None
        for _ in range(tries if s is None else 1):
            k = int(self.rng.choice(np.asarray(walls)[ok], p=lengths[ok] / lengths[ok].sum()))
            length = self.wall_length(k)
            at = s if s is not None else self.rng.uniform(draft.width / 2 + 0.02,
                                                          length - draft.width / 2 - 0.02)
            x, y, yaw = self.wall_pose(k, at, gap + draft.depth / 2)
            if self.fits(draft, x, y, yaw, z=z, wall=k, s=at, allow=allow):
                return self.add(draft, x, y, yaw, z=z, wall=k, s=at)
        return None

    def free(self, draft: Draft, *, tries: int = 40, clearance: float = 0.0,
             near: tuple[float, float, float] | None = None) -> PlacedObject | None:
        """Put ``draft`` anywhere on the floor (or within ``near`` = (x, y, radius)), axis-aligned
        or rotated by 90 degrees, keeping ``clearance`` metres free around it."""
        draft = normalize(draft)
        for _ in range(tries):
            yaw = float(self.rng.integers(4)) * np.pi / 2 + self.rng.normal(0, 0.05)
            if near is None:
                x, y = self.rng.uniform(0, self.W), self.rng.uniform(0, self.D)
            else:
                a, r = self.rng.uniform(0, 2 * np.pi), self.rng.uniform(0, near[2])
                x, y = near[0] + r * np.cos(a), near[1] + r * np.sin(a)
            grown = Draft(draft.name, draft.category, draft.width + 2 * clearance,
                          draft.depth + 2 * clearance, draft.height)
            if self.fits(grown, x, y, yaw) and self.fits(draft, x, y, yaw):
                return self.add(draft, x, y, yaw)
        return None

    def at(self, draft: Draft, x: float, y: float, yaw: float) -> PlacedObject | None:
        """Put ``draft`` exactly at (x, y, yaw) if it fits there."""
        draft = normalize(draft)
        return self.add(draft, x, y, yaw) if self.fits(draft, x, y, yaw) else None

    def on_top(self, support: PlacedObject, draft: Draft, *, slot: int = 0,
               slots: int = 1, back: bool = False) -> PlacedObject | None:
        """Put a small ``draft`` on the support surface of ``support`` (slot k of n along x)."""
        draft = normalize(draft)
        if support.draft.top is None:
            return None
        z, tw, td = support.draft.top
        span = tw / slots
        if draft.width > span or draft.depth > td:
            return None
        u = -tw / 2 + (slot + 0.5) * span + self.rng.uniform(-1, 1) * (span - draft.width) / 2
        keep = support.draft.keepout
        if keep is not None and u - draft.width / 2 < keep[1] and keep[0] < u + draft.width / 2:
            return None
        if back:
            v = -td / 2 + draft.depth / 2
        else:
            v = self.rng.uniform(-1, 1) * (td - draft.depth) / 2
        c, s = np.cos(support.yaw), np.sin(support.yaw)
        x, y = support.x + c * u - s * v, support.y + s * u + c * v
        return self.add(draft, x, y, support.yaw, z=support.z + z, register_floor=False)


def _aabb(corners: np.ndarray) -> np.ndarray:
    return np.array([corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(),
                     corners[:, 1].max()])


def build_shell(builder: RoomBuilder) -> Light:
    """Add walls, floor and ceiling (boxes whose inner faces bound the room); return the light."""
    rng, W, D, H, t = builder.rng, builder.W, builder.D, builder.H, WALL_T
    opts = FLOOR_TEXTURES[builder.room_type]
    palette, texture = opts[int(rng.integers(len(opts)))]
    floor_mat = make_material(rng, palette, texture)
    tiled = builder.room_type == "bathroom" and rng.random() < 0.6
    wall_mat = make_material(rng, "tile" if tiled else "wall", "tile" if tiled else "plain")
    ceil_mat = make_material(rng, "ceiling", "plain")
    slabs = [
        ((W / 2, -t / 2, H / 2), (W + 2 * t, t, H + 2 * t), 0.0, wall_mat, "wall"),
        ((W + t / 2, D / 2, H / 2), (t, D + 2 * t, H + 2 * t), 0.0, wall_mat, "wall"),
        ((W / 2, D + t / 2, H / 2), (W + 2 * t, t, H + 2 * t), 0.0, wall_mat, "wall"),
        ((-t / 2, D / 2, H / 2), (t, D + 2 * t, H + 2 * t), 0.0, wall_mat, "wall"),
        ((W / 2, D / 2, -t / 2), (W + 2 * t, D + 2 * t, t), 0.0, floor_mat, "floor"),
        ((W / 2, D / 2, H + t / 2), (W + 2 * t, D + 2 * t, t), 0.0, ceil_mat, None),
    ]
    for center, size, yaw, mat, cat in slabs:
        name = cat or "ceiling"
        builder.prims.append(Primitive("box", center, size, yaw, mat, cat, name, name,
                                       builder.next_instance))
        builder.next_instance += 1
    tint = np.array(((1.0, 0.96, 0.88), (1.0, 1.0, 1.0), (0.92, 0.96, 1.0))[int(rng.integers(3))])
    return Light(position=np.array([W / 2 + rng.normal(0, 0.3), D / 2 + rng.normal(0, 0.3),
                                    H - 0.3]),
                 color=tint * rng.uniform(0.95, 1.1), ambient=rng.uniform(0.45, 0.6),
                 strength=rng.uniform(0.6, 0.9))
