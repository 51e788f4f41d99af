"""Camera poses and exact ray casting of synthetic rooms."""

from __future__ import annotations

import numpy as np
import pytest

from xmask3d.data.synth.camera import camera_path, look_pose
from xmask3d.data.synth.materials import make_material
from xmask3d.data.synth.primitives import Primitive
from xmask3d.data.synth.render import camera_dirs, raycast
from xmask3d.data.synth.rooms import build_room
from xmask3d.data.synth.scan import K_320x240

HW = (240, 320)


def test_look_pose_axes_hand_checked():
    pose = look_pose(np.array([1.0, 2.0, 1.5]), yaw=0.0, pitch=0.0)
    # looking along +x with z up: camera x (right) = -y, camera y (down) = -z, camera z = +x
    np.testing.assert_allclose(pose[:3, :3], [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)
    np.testing.assert_allclose(pose[:3, 3], [1.0, 2.0, 1.5])
    down = look_pose(np.zeros(3), yaw=np.pi / 2, pitch=-np.pi / 6, roll=0.1)
    np.testing.assert_allclose(down[:3, 2], [0, np.cos(np.pi / 6), -0.5], atol=1e-12)
    np.testing.assert_allclose(down[:3, :3] @ down[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(down[:3, :3]) == pytest.approx(1.0)


def test_single_box_depth_and_coverage():
    mat = make_material(np.random.default_rng(0), "wood", "plain")
    box = Primitive("box", (3.0, 0.0, 1.5), (1.0, 1.0, 1.0), 0.0, mat, "bed", "bed", "bed", 1)
    pose = look_pose(np.array([0.0, 0.0, 1.5]), yaw=0.0, pitch=0.0)
    depth, prim = raycast([box], pose, K_320x240, HW)
    assert depth[120, 160] == pytest.approx(2.5) and prim[120, 160] == 0
    # the front face (x = 2.5, |y|, |z - 1.5| <= 0.5) spans 0.5 / 2.5 * f pixels from the centre
    half_px = 0.5 / 2.5 * K_320x240[0, 0]
    cols = np.flatnonzero(prim[120] == 0)
    assert cols.min() == pytest.approx(159.5 - half_px, abs=1) and cols.max() == pytest.approx(
        159.5 + half_px, abs=1)
    assert np.all(np.isinf(depth[prim < 0])) and (prim == 0).sum() == pytest.approx(
        (2 * half_px) ** 2, rel=0.03)


def _brute_force(prims, pose, hw):
    dirs = (camera_dirs(K_320x240, hw) @ pose[:3, :3].T).reshape(-1, 3).T
    ts = np.stack([p.intersect(pose[:3, 3], dirs) for p in prims])
    best = ts.argmin(axis=0)
    depth = ts.min(axis=0)
    return depth.reshape(hw), np.where(np.isinf(depth), -1, best).reshape(hw)


def test_screen_space_culling_matches_brute_force():
    room = build_room("office", np.random.default_rng(5))
    poses = camera_path(room, 3, np.random.default_rng(2))
    for pose in poses:
        depth, prim = raycast(room.primitives, pose, K_320x240, (60, 80))
        ref_depth, ref_prim = _brute_force(room.primitives, pose, (60, 80))
        np.testing.assert_allclose(depth, ref_depth, rtol=1e-12)
        assert (prim == ref_prim).mean() > 0.999  # ties between coplanar faces may differ


def test_camera_path_eye_height_inside_and_looking_down():
    room = build_room("living room", np.random.default_rng(11))
    poses = camera_path(room, 12, np.random.default_rng(3))
    assert poses.shape == (12, 4, 4)
    pos = poses[:, :3, 3]
    assert np.all((pos[:, 2] >= 1.3) & (pos[:, 2] <= 1.7))
    assert np.all((pos[:, 0] > 0) & (pos[:, 0] < room.width) & (pos[:, 1] > 0)
                  & (pos[:, 1] < room.depth))
    pitch = np.degrees(np.arcsin(poses[:, 2, 2]))  # z component of the optical axis
    assert np.all((pitch <= -5.9) & (pitch >= -45.1))
    for p in pos:  # no camera inside furniture
        assert not any(q.contains(p[None])[0] for q in room.primitives)
    yaws = np.arctan2(poses[:, 1, 2], poses[:, 0, 2])
    assert np.ptp(np.unwrap(np.sort(yaws))) > np.pi  # looks in varied directions
