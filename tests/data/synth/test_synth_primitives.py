"""Ray intersection, containment, normals and surface sampling of the synthetic primitives."""

from __future__ import annotations

import numpy as np
import pytest

from xmask3d.data.synth.materials import make_material
from xmask3d.data.synth.primitives import Primitive

MAT = make_material(np.random.default_rng(0), "wood", "plain")


def _prim(kind, center, size, yaw=0.0):
    return Primitive(kind, center, size, yaw, MAT, "table", "table", "table", 1)


def _hit(p, origin, direction):
    return float(p.intersect(np.asarray(origin, float), np.asarray(direction, float)[:, None])[0])


def test_box_hits_hand_computed():
    box = _prim("box", (2.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert _hit(box, (0, 0, 0), (1, 0, 0)) == pytest.approx(1.5)
    assert _hit(box, (0, 0, 0), (2, 0, 0)) == pytest.approx(0.75)  # t scales with |dir|
    assert _hit(box, (0, 0, 0), (-1, 0, 0)) == np.inf  # behind the ray
    assert _hit(box, (0, 0, 0), (1, 1, 0)) == np.inf  # passes beside it
    turned = _prim("box", (2.0, 0.0, 0.0), (1.0, 1.0, 1.0), yaw=np.pi / 4)
    assert _hit(turned, (0, 0, 0), (1, 0, 0)) == pytest.approx(2 - np.sqrt(0.5))  # a corner
    inside = _prim("box", (0.0, 0.0, 0.0), (2.0, 2.0, 2.0))
    assert _hit(inside, (0, 0, 0), (1, 0, 0)) == np.inf  # only hits from outside count


def test_cylinder_hits_side_and_caps():
    cyl = _prim("cylinder", (0.0, 0.0, 0.0), (2.0, 2.0, 2.0))  # r = 1, z in [-1, 1]
    assert _hit(cyl, (-3, 0, 0), (1, 0, 0)) == pytest.approx(2.0)
    assert _hit(cyl, (0, 0, 5), (0, 0, -1)) == pytest.approx(4.0)
    assert _hit(cyl, (0.5, 0, -4), (0, 0, 1)) == pytest.approx(3.0)
    assert _hit(cyl, (-3, 0, 1.5), (1, 0, 0)) == np.inf  # above the top cap
    assert _hit(cyl, (-3, 0.9, 0), (1, 0, 0)) == pytest.approx(3 - np.sqrt(1 - 0.81))


def test_contains_with_tolerance():
    box = _prim("box", (0.0, 0.0, 0.0), (1.0, 2.0, 1.0), yaw=np.pi / 2)  # x/y swapped
    pts = np.array([[0.9, 0.0, 0.0], [0.0, 0.9, 0.0], [1.004, 0.0, 0.0]])
    assert box.contains(pts).tolist() == [True, False, False]
    assert box.contains(pts, tol=0.005).tolist() == [True, False, True]


@pytest.mark.parametrize("kind", ["box", "cylinder"])
def test_sampling_density_surface_and_normals(kind):
    p = _prim(kind, (1.0, -2.0, 0.5), (0.8, 0.8, 1.2), yaw=0.3)
    rng = np.random.default_rng(1)
    pts, nrm = p.sample_surface(2000.0, rng)
    area = p.areas().sum()
    assert abs(len(pts) - 2000 * area) < 5 * np.sqrt(2000 * area)
    q = p.to_local(pts)
    h = p.half
    if kind == "box":  # every point lies on a face: one coordinate at +-h
        on_face = np.isclose(np.abs(q), h, atol=1e-9).any(axis=1)
    else:
        on_face = np.isclose(np.hypot(q[:, 0], q[:, 1]), h[0]) | np.isclose(np.abs(q[:, 2]), h[2])
    assert on_face.all() and np.all(np.abs(q) <= h + 1e-9)
    np.testing.assert_allclose(p.normal_at(pts), nrm, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1.0)


def test_rejects_degenerate_size():
    with pytest.raises(ValueError, match="non-positive size"):
        _prim("box", (0, 0, 0), (1.0, 0.0, 1.0))
