"""Virtual views: camera poses, z-buffer splatting, hole filling, coverage and real visibility."""

from __future__ import annotations

import numpy as np
import pytest

from xmask3d.apps.virtual_views import (
    fill_small_holes,
    look_at,
    point_spacing,
    render_view,
    render_virtual_views,
    splat_nearest,
    virtual_cameras,
    visible_pixels,
)
from xmask3d.data.projection import project_points

K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])


def test_look_at_is_rigid_and_centres_the_target():
    eye, target = np.array([1.0, -2.0, 1.5]), np.array([3.0, 1.0, 0.5])
    pose = look_at(eye, target)
    R = pose[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    # the target lies on the optical axis: camera x = y = 0 at the distance of the target
    cam = np.linalg.inv(pose) @ np.append(target, 1.0)
    np.testing.assert_allclose(cam[:3], [0.0, 0.0, np.linalg.norm(target - eye)], atol=1e-9)
    rc, z = project_points(target[None], pose, K, (48, 64))
    assert z[0] == pytest.approx(np.linalg.norm(target - eye))
    # so it lands on a pixel next to the principal point (23.5, 31.5); which one of the four
    # depends on the last bit of the arithmetic, as x.5 sits exactly on the rounding boundary
    assert abs(rc[0, 0] - 23.5) == 0.5 and abs(rc[0, 1] - 31.5) == 0.5
    above, _ = project_points((target + [0, 0, 0.5])[None], pose, K, (48, 64))
    assert above[0, 0] < rc[0, 0]                # world up is image up
    down = look_at([0, 0, 3.0], [0, 0, 0.0])     # straight down along -up still works
    np.testing.assert_allclose(down[:3, 2], [0, 0, -1])


def test_splat_nearest_keeps_the_nearest_point_and_draws_discs():
    rc = np.array([[2, 2], [2, 2], [5, 5]])
    depth = np.array([3.0, 1.0, 2.0])
    zbuf, winner = splat_nearest(rc, depth, (8, 8), radius_px=np.array([0, 0, 1]))
    assert winner[2, 2] == 1 and zbuf[2, 2] == 1.0
    disc = {(5, 5), (4, 5), (6, 5), (5, 4), (5, 6)}          # radius 1: the 4-neighbours
    assert {tuple(p) for p in np.argwhere(winner == 2)} == disc
    assert (winner >= 0).sum() == 6 and np.isinf(zbuf[winner < 0]).all()
    # merging a later chunk: nearer points replace, farther ones do not
    zbuf, winner = splat_nearest(np.array([[2, 2], [5, 5]]), np.array([0.5, 9.0]), (8, 8),
                                 index=np.array([10, 11]), zbuf=zbuf, winner=winner)
    assert winner[2, 2] == 10 and winner[5, 5] == 2


def test_fill_small_holes_fills_only_near_pixels():
    winner = np.full((1, 7), -1)
    winner[0, 0] = 4
    zbuf = np.where(winner >= 0, 2.0, np.inf)
    z2, w2 = fill_small_holes(zbuf, winner, max_px=2)
    assert w2.tolist() == [[4, 4, 4, -1, -1, -1, -1]]
    assert z2[0, 2] == 2.0 and np.isinf(z2[0, 3])


def test_point_spacing_of_a_regular_grid():
    g = np.stack(np.meshgrid(np.arange(200) * 0.01, np.arange(200) * 0.01), -1).reshape(-1, 2)
    pts = np.concatenate([g, np.zeros((len(g), 1))], axis=1)
    assert point_spacing(pts) == pytest.approx(0.01, rel=0.05)
    # in chunks of any size (here 7 and 1000 points) the same voxels are counted
    rand = np.random.default_rng(2).uniform(-1.5, 2.5, (3000, 3)).astype(np.float32)
    whole = point_spacing(rand, chunk=len(rand))
    assert point_spacing(rand, chunk=7) == whole == point_spacing(rand, chunk=1000)
    assert point_spacing(pts, chunk=333) == point_spacing(pts)


def test_rendered_depth_gives_real_occlusion():
    """A front plate hides the back plate: its points are not visible, its colour shows."""
    rng = np.random.default_rng(0)
    back = np.concatenate([rng.uniform(-1, 1, (4000, 2)), np.full((4000, 1), 3.0)], 1)
    front = np.concatenate([rng.uniform(-0.3, 0.3, (1500, 2)), np.full((1500, 1), 2.0)], 1)
    pts = np.concatenate([back, front]).astype(np.float32)
    cols = np.concatenate([np.full((4000, 3), 10), np.full((1500, 3), 250)]).astype(np.uint8)
    pose = look_at([0, 0, 0.0], [0, 0, 1.0], up=(0, -1, 0))
    view = render_view(pts, cols, pose, K, (48, 64), name="v", spacing=point_spacing(pts))
    assert view.color[24, 32].tolist() == [250, 250, 250]
    assert view.depth[24, 32] == pytest.approx(2.0) and view.depth[24, 18] == pytest.approx(3.0)
    assert view.depth[2, 2] == 0.0                # nothing there
    seen = visible_pixels(pts, view, rel_thresh=0.05, border=2, chunk=700).point_idx
    x, y = pts[:4000, 0], pts[:4000, 1]
    behind = np.flatnonzero((np.abs(x) < 0.25) & (np.abs(y) < 0.25))   # well inside the plate
    assert not np.isin(behind, seen).any()
    assert np.isin(np.arange(4000, 5500), seen).mean() > 0.95


def test_virtual_views_cover_a_room_and_stay_inside(room_factory):
    pts, cols, part = room_factory(density=300)
    poses = virtual_cameras(pts, num_ring=6, num_top=2)
    eyes = np.array([p[:3, 3] for p in poses])
    assert len(poses) == 8
    assert (eyes[:, :2] > 0).all() and (eyes[:, 0] < 4).all() and (eyes[:, 1] < 3).all()
    views = render_virtual_views(pts, cols, hw=(48, 64), num_ring=6, num_top=2, num_extra=2,
                                 border=2)
    seen = np.zeros(len(pts), bool)
    for v in views:
        assert v.depth.shape == (48, 64) and v.color.dtype == np.uint8
        assert (v.depth > 0).mean() > 0.5
        seen[visible_pixels(pts, v, rel_thresh=0.05, border=2).point_idx] = True
    assert seen.mean() > 0.8
    assert all(seen[part == k].mean() > 0.6 for k in range(3))


def test_object_scale_scan_gets_cameras_outside():
    rng = np.random.default_rng(1)
    pts = rng.uniform(-0.4, 0.4, (2000, 3)) + [5.0, 5.0, 0.4]
    eyes = np.array([p[:3, 3] for p in virtual_cameras(pts, num_ring=4, num_top=1)])
    horizontal = np.linalg.norm(eyes[:4, :2] - [5.0, 5.0], axis=1)
    assert (horizontal > 0.8).all()
