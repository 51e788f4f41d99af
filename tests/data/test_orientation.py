"""Unit, up axis, floor and wall detection of a user's scan (xmask3d.data.orientation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xmask3d.data.orientation import ScanFrame, detect_frame, quarter_turns


def _box(rng, lo, hi, n):
    """Points on the surface of an axis-aligned box (all six faces)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    pts = rng.uniform(lo, hi, (n, 3))
    axis = rng.integers(0, 3, n)
    side = rng.integers(0, 2, n)
    pts[np.arange(n), axis] = np.where(side == 1, hi[axis], lo[axis])
    return pts


def _plane(rng, origin, u, v, n):
    ab = rng.uniform(0, 1, (n, 2))
    return np.asarray(origin) + ab[:, :1] * np.asarray(u) + ab[:, 1:] * np.asarray(v)


def room(seed: int = 0) -> np.ndarray:
    """A 5 x 4 x 2.6 m room without ceiling (floor at z = 0.3, walls rotated by 20 degrees
    about z), with a bed, a table top on legs, two chairs and a cabinet: like a real scan."""
    rng = np.random.default_rng(seed)
    parts = [
        _plane(rng, (0, 0, 0), (5, 0, 0), (0, 4, 0), 6000),        # floor
        _plane(rng, (0, 0, 0), (5, 0, 0), (0, 0, 2.6), 3000),      # walls
        _plane(rng, (0, 4, 0), (5, 0, 0), (0, 0, 2.6), 3000),
        _plane(rng, (0, 0, 0), (0, 4, 0), (0, 0, 2.6), 2500),
        _plane(rng, (5, 0, 0), (0, 4, 0), (0, 0, 2.6), 2500),
        _box(rng, (0.2, 0.2, 0), (2.2, 1.8, 0.55), 3000),           # bed
        _box(rng, (3.0, 2.5, 0.72), (4.2, 3.3, 0.76), 1500),        # table top
        _box(rng, (3.0, 0.3, 0), (3.5, 0.8, 0.45), 600),            # chair seats
        _box(rng, (4.3, 0.3, 0), (4.8, 0.8, 0.45), 600),
        _box(rng, (0.1, 3.4, 0), (1.5, 3.95, 1.9), 2000),           # cabinet
    ]
    for x, y in ((3.05, 2.55), (4.1, 2.55), (3.05, 3.2), (4.1, 3.2)):   # table legs
        parts.append(_box(rng, (x, y, 0), (x + 0.05, y + 0.05, 0.72), 150))
    pts = np.concatenate(parts)
    c, s = math.cos(math.radians(20)), math.sin(math.radians(20))
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    return (pts @ rot.T + np.array([10.0, -3.0, 0.3])).astype(np.float32)


def test_detects_metres_up_floor_and_walls():
    pts = room()
    frame = detect_frame(pts)
    assert frame.unit == "m" and frame.scale == 1.0 and frame.up == "+z"
    assert frame.floor == pytest.approx(0.3, abs=0.02)
    q = frame.apply(pts)
    # floor at 0, footprint from the origin, walls along x and y (a 5 x 4 box, either way round)
    assert np.percentile(q[:, 2], 5) == pytest.approx(0.0, abs=0.02)
    assert q[:, :2].min(axis=0) == pytest.approx([0.0, 0.0], abs=1e-4)
    assert sorted(np.ptp(q[:, :2], axis=0)) == pytest.approx([4.0, 5.0], abs=0.05)
    assert np.allclose(frame.rotation @ frame.rotation.T, np.eye(3))
    assert np.linalg.det(frame.rotation) == pytest.approx(1.0)
    d = frame.to_dict()
    assert d["up_axis"] == "+z" and d["unit"] == "m" and d["notes"]


@pytest.mark.parametrize("name,rot", quarter_turns())
def test_quarter_turns_give_the_same_canonical_points(name, rot):
    pts = room()
    base = detect_frame(pts).apply(pts)
    turned = (pts.astype(np.float64) @ rot.T).astype(np.float32)
    frame = detect_frame(turned)
    np.testing.assert_allclose(frame.apply(turned), base, atol=1e-4)


@pytest.mark.parametrize("factor,unit", [(1000.0, "mm"), (100.0, "cm")])
def test_units_are_detected_and_undone(factor, unit):
    pts = room()
    base = detect_frame(pts).apply(pts)
    frame = detect_frame(pts * np.float32(factor))
    assert frame.unit == unit and frame.scale == pytest.approx(1.0 / factor)
    np.testing.assert_allclose(frame.apply(pts * np.float32(factor)), base, atol=1e-3)
    assert frame.floor == pytest.approx(0.3 * factor, rel=0.05)


def test_given_up_and_unit_are_used_and_keep_leaves_the_frame():
    pts = room()
    y_up = pts[:, [0, 2, 1]] * np.array([1, 1, -1], np.float32)   # +z -> +y, proper rotation
    frame = detect_frame(y_up, up="+y")
    assert frame.up == "+y"
    np.testing.assert_allclose(frame.apply(y_up), detect_frame(pts).apply(pts), atol=1e-4)
    kept = detect_frame(pts * 1000, up="keep", unit="mm")
    assert kept.unit == "mm" and np.allclose(kept.rotation, np.eye(3))
    np.testing.assert_allclose(kept.apply(pts * 1000), pts, atol=1e-3)


def test_poses_follow_the_points():
    pts = room()
    rot = dict(quarter_turns())["x90"]
    turned = (pts.astype(np.float64) @ rot.T * 1000.0).astype(np.float32)  # y-up, millimetres
    frame = detect_frame(turned)
    cam = np.eye(4)   # a camera at (1, 2, 1.5) m looking along +y of the turned scan
    cam[:3, :3] = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0.0]]).T
    cam[:3, 3] = [1000.0, 2000.0, 1500.0]
    new = frame.apply_pose(cam)
    assert np.allclose(new[:3, :3] @ new[:3, :3].T, np.eye(3)) and new[3, 3] == 1.0
    # a point's camera coordinates (metres) are the same in both frames
    p = turned[:50].astype(np.float64)
    before = (p - cam[:3, 3]) @ cam[:3, :3] / 1000.0
    after = (frame.apply(p).astype(np.float64) - new[:3, 3]) @ new[:3, :3]
    np.testing.assert_allclose(after, before, atol=1e-3)


def test_too_few_points_and_bad_arguments():
    frame = detect_frame(np.zeros((5, 3), np.float32))
    assert isinstance(frame, ScanFrame) and frame.is_identity and "too few" in frame.notes[0]
    with pytest.raises(ValueError, match="up must be"):
        detect_frame(room(), up="sideways")
    with pytest.raises(ValueError, match="unit must be"):
        detect_frame(room(), unit="inch")


def test_quarter_turns_are_the_nine_proper_rotations():
    turns = dict(quarter_turns())
    assert len(turns) == 9
    for r in turns.values():
        assert np.array_equal(r @ r.T, np.eye(3)) and round(np.linalg.det(r)) == 1
    # z90 turns x into y
    assert np.array_equal(turns["z90"] @ [1, 0, 0], [0, 1, 0])
