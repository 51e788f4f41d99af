"""Placement rules of the room generator, checked on many generated rooms."""

from __future__ import annotations

import numpy as np
import pytest

from xmask3d.data.labels import SCANNET20_NAMES
from xmask3d.data.synth.layout import ROOM_TYPES
from xmask3d.data.synth.rooms import build_room
from xmask3d.data.synth.scan import room_type_of, scene_room

ROOMS = [(rt, seed) for rt in ROOM_TYPES for seed in range(12)]


@pytest.fixture(scope="module")
def rooms():
    return [build_room(rt, np.random.default_rng(seed)) for rt, seed in ROOMS]


def _wall_gaps(room, corners):
    """Distance of each footprint corner to the nearest wall plane."""
    x, y = corners[:, 0], corners[:, 1]
    return np.min(np.stack([x, room.width - x, y, room.depth - y]), axis=0)


def _dist_to_rect(px, py, obj):
    c, s = np.cos(obj.yaw), np.sin(obj.yaw)
    u, v = c * (px - obj.x) + s * (py - obj.y), -s * (px - obj.x) + c * (py - obj.y)
    du = max(abs(u) - obj.draft.width / 2, 0.0)
    dv = max(abs(v) - obj.draft.depth / 2, 0.0)
    return float(np.hypot(du, dv))


def test_beds_and_bookshelves_stand_against_a_wall(rooms):
    checked = 0
    for room in rooms:
        for o in room.objects:
            if o.category in ("bed", "bookshelf"):
                gaps = np.sort(_wall_gaps(room, o.corners))
                assert gaps[1] <= 0.05, f"{o.name} in {room.room_type} is {gaps[1]:.2f} m off"
                checked += 1
    assert checked >= 20


def test_chairs_are_at_a_table_or_desk(rooms):
    checked = 0
    for room in rooms:
        tables = [o for o in room.objects if o.category in ("table", "desk")]
        for o in room.objects:
            if o.category == "chair":
                assert tables and min(_dist_to_rect(o.x, o.y, t) for t in tables) <= 1.0
                checked += 1
    assert checked >= 20


def test_floor_objects_do_not_overlap_and_stay_inside(rooms):
    for room in rooms:
        floor = [o for o in room.objects if o.z < 0.05 and o.name != "rug"]
        boxes = np.array([[*o.corners.min(0), *o.corners.max(0)] for o in floor])
        assert boxes[:, :2].min() >= -1e-6 and boxes[:, 2].max() <= room.width + 1e-6
        assert boxes[:, 3].max() <= room.depth + 1e-6
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                overlap = a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
                assert not overlap, f"{floor[i].name} overlaps {floor[j].name}"


def test_wall_things_hang_on_walls(rooms):
    for room in rooms:
        for o in room.objects:
            if o.category in ("window", "picture", "door"):
                assert o.wall is not None and np.sort(_wall_gaps(room, o.corners))[1] <= 1e-6
                if o.category != "door":
                    assert o.z > 0.3 and o.z + o.draft.height <= room.height


def test_every_class_within_any_ten_consecutive_scenes():
    for seed in range(2):
        cats = [{p.category for p in scene_room(i, seed=seed).primitives} for i in range(20)]
        for start in range(11):
            present = set().union(*cats[start:start + 10])
            assert set(SCANNET20_NAMES) <= present, (seed, start, set(SCANNET20_NAMES) - present)


def test_room_types_cycle_so_every_fifth_scene_differs():
    assert [room_type_of(i) for i in range(5)] == list(ROOM_TYPES)
    assert {room_type_of(i) for i in (4, 9, 14, 19, 24)} == set(ROOM_TYPES)


def test_unknown_room_type():
    with pytest.raises(ValueError, match="unknown room type"):
        build_room("garage", np.random.default_rng(0))
