"""Placement rules of the room generator, checked on many generated rooms."""

from __future__ import annotations

import numpy as np
import pytest

from xmask3d.data.labels import SCANNET20_NAMES
from xmask3d.data.synth.layout import ROOM_SIZES, ROOM_TYPES, STUDIO
from xmask3d.data.synth.rooms import build_room
from xmask3d.data.synth.scan import generate_scan, room_look, room_type_of, scene_room

ROOMS = [(rt, seed) for rt in (*ROOM_TYPES, STUDIO) for seed in range(12)]


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


def test_studios_hold_a_bed_a_sofa_and_a_kitchen_in_one_large_room():
    (w0, w1), (d0, d1) = ROOM_SIZES[STUDIO]
    complete = 0
    for seed in range(10):
        room = build_room(STUDIO, np.random.default_rng(seed))
        assert w0 <= room.width <= w1 and d0 <= room.depth <= d1
        labels = {p.category for p in room.primitives}
        assert "bed" in labels and "refrigerator" in labels, (seed, labels)
        complete += {"sofa", "counter"} <= labels
    assert complete >= 8        # the anchors go first; a sofa or a run may not fit (~10 %)


def test_room_look_off_leaves_every_scene_as_before_and_on_is_per_scene():
    assert [room_look(i, seed=0).room_type for i in range(10)] == \
        [room_type_of(i) for i in range(10)]
    assert all(np.array_equal(room_look(i, seed=0).gain, np.ones(3)) for i in range(10))
    kinds = [room_look(i, seed=0, studio=0.5).room_type for i in range(40)]
    assert 8 <= kinds.count(STUDIO) <= 32                   # about half, drawn per scene
    assert [room_look(i, seed=0, studio=1.0).room_type for i in range(5)] == [STUDIO] * 5
    gains = np.array([room_look(i, seed=0, color_cast=0.3).gain for i in range(40)])
    assert gains.min() > np.exp(-0.3 - 4 * 0.1) and gains.max() < np.exp(0.3 + 4 * 0.1)
    assert gains.std(axis=0).min() > 0.05                   # scenes differ, channels too
    np.testing.assert_array_equal(room_look(3, seed=0, color_cast=0.3).gain, gains[3])


def test_color_cast_scales_points_and_views_by_the_scene_gain():
    plain = generate_scan(2, seed=0, n_views=1, density=80.0)
    cast = generate_scan(2, seed=0, n_views=1, density=80.0, color_cast=0.3)
    gain = room_look(2, seed=0, color_cast=0.3).gain
    np.testing.assert_array_equal(plain.points, cast.points)     # geometry unchanged
    np.testing.assert_array_equal(plain.labels, cast.labels)
    mid = (plain.colors > 40).all(1) & (plain.colors < 160).all(1)  # away from clipping
    ratio = cast.colors[mid].astype(float).mean(0) / plain.colors[mid].astype(float).mean(0)
    np.testing.assert_allclose(ratio, gain, rtol=0.03)
    v0, v1 = plain.views[0].color.astype(float), cast.views[0].color.astype(float)
    vm = (v0 > 40).all(-1) & (v0 < 160).all(-1)
    np.testing.assert_allclose(v1[vm].mean(0) / v0[vm].mean(0), gain, rtol=0.03)
