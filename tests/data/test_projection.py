"""Projection and visibility: hand-made cameras with known pixels, threshold edges, real scans."""

from __future__ import annotations

import numpy as np
import pytest

from xmask3d.data.processed import SCANNET_DEFAULT_INTRINSICS_320x240
from xmask3d.data.projection import (
    in_image,
    point_pixel_map,
    project_points,
    resize_view,
    visible_from_depth,
    visible_from_zbuffer,
)
from xmask3d.data.scene import View
from xmask3d.data.voxelize import voxelize
from xmask3d.errors import DataError

K = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])
HW = (80, 100)


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _view(depth: np.ndarray | None = None, pose: np.ndarray | None = None) -> View:
    return View(name="v", color=np.zeros(HW + (3,), np.uint8),
                pose=np.eye(4) if pose is None else pose, intrinsics=K, depth=depth)


def test_project_known_pixels_identity_pose():
    pts = np.array([[0.0, 0.0, 2.0], [0.1, 0.2, 2.0], [0.0084, -0.0116, 2.0], [0.5, -0.2, 1.0],
                    [0.0, 0.0, -1.0]])
    rc, z = project_points(pts, np.eye(4), K, HW)
    # u = 100 x / z + 50, v = 100 y / z + 40, rounded: (40, 50), (50, 55), (39.42, 50.42)->(39, 50)
    np.testing.assert_array_equal(rc[:3], [[40, 50], [50, 55], [39, 50]])
    np.testing.assert_allclose(z, [2.0, 2.0, 2.0, 1.0, -1.0])
    assert rc[3, 1] == HW[1]  # u = 100 lies exactly one past the last column: clipped band
    np.testing.assert_array_equal(rc[4], [-1, -1])  # behind the camera
    ok = in_image(rc, z, HW, border=0)
    np.testing.assert_array_equal(ok, [True, True, True, False, False])


def test_project_with_general_pose():
    rot = _rot_z(0.7) @ np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rot, [1.0, -2.0, 0.5]
    cam = np.array([[0.3, -0.1, 2.5], [-0.4, 0.25, 1.25]])
    world = cam @ rot.T + pose[:3, 3]
    rc, z = project_points(world, pose, K, HW)
    np.testing.assert_allclose(z, cam[:, 2], atol=1e-12)
    expected = np.round(np.stack([100 * cam[:, 1] / cam[:, 2] + 40,
                                  100 * cam[:, 0] / cam[:, 2] + 50], axis=1))
    np.testing.assert_array_equal(rc, expected)


def test_project_rejects_bad_camera():
    with pytest.raises(DataError, match="intrinsics"):
        project_points(np.zeros((2, 3)), np.eye(4), np.zeros((3, 3)), HW)
    with pytest.raises(DataError, match="points"):
        project_points(np.zeros((2, 2)), np.eye(4), K, HW)


def test_depth_visibility_threshold_edges():
    depth = np.full(HW, 2.0, np.float32)
    depth[40, 60] = 0.0  # invalid depth pixel
    z = np.array([2.5, 1.5, 2.5001, 1.4999, 2.0, 2.0, -2.0])
    x = np.array([0, 0, 0, 0, 0, 0.1, 0])  # point 5 lands on (40, 60), the invalid pixel
    pts = np.stack([x * z, np.zeros_like(z), z], axis=1)
    vis = visible_from_depth(pts, _view(depth), rel_thresh=0.25, border=10)
    np.testing.assert_array_equal(vis, [True, True, False, False, True, False, False])
    vis_tight = visible_from_depth(pts, _view(depth), rel_thresh=0.1, border=10)
    np.testing.assert_array_equal(vis_tight, [False, False, False, False, True, False, False])


def test_border_cut():
    depth = np.full(HW, 1.0, np.float32)
    cols = np.array([0, 9, 10, 89, 90, 99])
    pts = np.stack([(cols - 50) / 100.0, np.zeros(6), np.ones(6)], axis=1)
    np.testing.assert_array_equal(visible_from_depth(pts, _view(depth), border=10),
                                  [False, False, True, True, False, False])
    np.testing.assert_array_equal(visible_from_depth(pts, _view(depth), border=0), [True] * 6)
    zb = visible_from_zbuffer(pts, np.eye(4), K, HW, border=10, splat_radius=0.0)
    np.testing.assert_array_equal(zb, [False, False, True, True, False, False])


def _wall(spacing: float, z: float) -> np.ndarray:
    g = np.arange(-0.3, 0.3 + 1e-9, spacing)
    xx, yy = np.meshgrid(g, g)
    return np.stack([xx.ravel(), yy.ravel(), np.full(xx.size, z)], axis=1)


def test_zbuffer_hides_point_behind_surface():
    wall = _wall(0.01, 2.0)  # 0.5 px spacing: a closed surface
    # behind the wall (hidden), beside it (visible), in front of it (visible)
    probes = np.array([[0.015, 0.015, 3.0], [0.9, 0.0, 3.0], [0.4, 0.0, 1.0]])
    vis = visible_from_zbuffer(np.concatenate([wall, probes]), np.eye(4), K, HW, border=0,
                               abs_tol=0.05, rel_tol=0.0, splat_radius=0.0)
    assert vis[: len(wall)].all()
    np.testing.assert_array_equal(vis[len(wall):], [False, True, True])


def test_zbuffer_splatting_closes_gaps_of_sparse_surfaces():
    wall = _wall(0.06, 2.0)  # 3 px apart at 2 m: gaps between the projected wall points
    probe = np.array([[0.03 * 1.5, 0.03 * 1.5, 3.0]])  # projects between four wall points
    pts = np.concatenate([wall, probe])
    leak = visible_from_zbuffer(pts, np.eye(4), K, HW, border=0, splat_radius=0.0)
    hidden = visible_from_zbuffer(pts, np.eye(4), K, HW, border=0, splat_radius=0.05)
    assert leak[-1] and not hidden[-1]
    assert hidden[:-1].all()  # the wall does not hide itself


def test_zbuffer_points_outside_the_image_splat_only_where_they_fall():
    # u = -50: far left of the image, 4 px footprint; u = 1: just inside, behind it in depth
    near_left = np.array([[-1.0, 0.0, 1.0], [-0.49 * 3, 0.0, 3.0]])
    vis = visible_from_zbuffer(near_left, np.eye(4), K, HW, border=0, splat_radius=0.04)
    np.testing.assert_array_equal(vis, [False, True])
    # u = -2 covers columns 0..2 (radius 4 minus 2): the point at column 1 is hidden
    edge = np.array([[-0.52, 0.0, 1.0], [-0.49 * 3, 0.0, 3.0]])
    vis = visible_from_zbuffer(edge, np.eye(4), K, HW, border=0, splat_radius=0.04)
    np.testing.assert_array_equal(vis, [False, False])


def test_point_pixel_map_picks_depth_or_zbuffer():
    pts = np.array([[0.0, 0.0, 2.0], [0.1, 0.0, 2.0], [0.0, 0.0, 4.0]])
    depth = np.full(HW, 4.0, np.float32)  # the depth map says the far point is the visible one
    m = point_pixel_map(pts, _view(depth))
    np.testing.assert_array_equal(m.point_idx, [2])
    np.testing.assert_array_equal(m.rc, [[40, 50]])
    m = point_pixel_map(pts, _view(None), splat_radius=0.0)
    np.testing.assert_array_equal(m.point_idx, [0, 1])
    np.testing.assert_array_equal(m.rc, [[40, 50], [40, 55]])


def test_resize_view_intrinsics_and_nearest_maps():
    K640 = np.array([[577.870605, 0, 319.5], [0, 577.870605, 239.5], [0, 0, 1]])
    label = np.repeat(np.repeat(np.arange(12).reshape(3, 4), 160, 0), 160, 1)
    depth = label.astype(np.float32) / 4
    color = np.zeros((480, 640, 3), np.uint8)
    color[:, 320:] = 200
    view = View("f", color, np.eye(4), K640, depth=depth, label=label)
    small = resize_view(view, (240, 320))
    np.testing.assert_allclose(small.intrinsics, SCANNET_DEFAULT_INTRINSICS_320x240, atol=1e-3)
    assert small.label.shape == (240, 320) and small.label.dtype == label.dtype
    np.testing.assert_array_equal(small.label, label[::2, ::2])
    np.testing.assert_array_equal(small.depth, depth[::2, ::2])
    assert small.color[:, :150].max() == 0 and small.color[:, 170:].min() == 200
    # points project to matching pixel centres at both resolutions (rounding error <= 0.75 px)
    pts = np.random.default_rng(0).uniform([-0.5, -0.4, 1.0], [0.5, 0.4, 3.0], size=(50, 3))
    rc_big, _ = project_points(pts, np.eye(4), K640, (480, 640))
    rc_small, _ = project_points(pts, np.eye(4), small.intrinsics, (240, 320))
    assert np.abs(rc_small - ((rc_big + 0.5) / 2 - 0.5)).max() <= 0.75
    assert resize_view(small, (240, 320)) is small


# ---- real data -------------------------------------------------------------------------------

def _real_root():
    try:
        from xmask3d.data.real_fixtures import real_data_root
    except ImportError:
        pytest.skip("xmask3d.data.real_fixtures is not available")
    root = real_data_root()
    if root is None:
        pytest.skip("real scan fixtures (../shared/data/real) are absent")
    return root


def _grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_real_scannet_projected_colours_match_frames():
    from xmask3d.data.real_fixtures import load_scannet_fixture

    scene = load_scannet_fixture(_real_root())
    assert len(scene.views) == 3
    wrong = np.eye(4)
    wrong[:3, :3] = _rot_z(0.35) @ np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)],
                                              [0, np.sin(0.3), np.cos(0.3)]])
    wrong[:3, 3] = [0.3, -0.2, 0.3]
    for full in scene.views:
        view = resize_view(full, (240, 320))
        img = _grey(view.color)
        m = point_pixel_map(scene.points, view)
        corr = np.corrcoef(_grey(scene.colors[m.point_idx]), img[m.rc[:, 0], m.rc[:, 1]])[0, 1]
        perturbed = View(view.name, view.color, view.pose @ wrong, view.intrinsics)
        c = point_pixel_map(scene.points, perturbed)
        control = np.corrcoef(_grey(scene.colors[c.point_idx]), img[c.rc[:, 0], c.rc[:, 1]])[0, 1]
        assert len(m) > 2000
        assert corr > 0.4 and corr - control > 0.25, (view.name, corr, control)


def _backproject(view: View, step: int) -> np.ndarray:
    h, w = view.hw
    r, c = np.mgrid[0:h:step, 0:w:step]
    d = view.depth[r, c]
    ok = d > 0
    pix = np.stack([c[ok], r[ok], np.ones(ok.sum())], axis=1)
    cam = pix @ np.linalg.inv(view.intrinsics).T * d[ok][:, None]
    return cam @ view.pose[:3, :3].T + view.pose[:3, 3]


def test_real_sevenscenes_depth_and_zbuffer_visibility():
    from xmask3d.data.real_fixtures import load_sevenscenes

    views = load_sevenscenes(_real_root())
    a, b = views[0], resize_view(views[1], (240, 320))
    dense = _backproject(a, step=2)
    _, _, first = voxelize(dense, 0.02)  # ScanNet-like point spacing
    pts = dense[np.sort(first)]
    rc, z = project_points(pts, b.pose, b.intrinsics, b.hw)
    framed = in_image(rc, z, b.hw, border=10)
    depth_vis = visible_from_depth(pts, b)
    zbuf_vis = visible_from_zbuffer(pts, b.pose, b.intrinsics, b.hw)
    assert framed.sum() > 2000
    assert depth_vis[framed].mean() > 0.85  # frame B sees most of A's surface that it frames
    assert (depth_vis == zbuf_vis)[framed].mean() > 0.85
    # a wrong pose for B breaks the depth agreement
    moved = View(b.name, b.color, b.pose @ np.diag([1.0, 1.0, 1.0, 1.0]) + np.array(
        [[0, 0, 0, 0.4], [0, 0, 0, 0], [0, 0, 0, 0.3], [0, 0, 0, 0]]), b.intrinsics, depth=b.depth)
    assert visible_from_depth(pts, moved).sum() < 0.8 * depth_vis.sum()
