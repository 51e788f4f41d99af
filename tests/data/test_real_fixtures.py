"""Real sensor fixtures (ScanNet scene0000_00, 7-Scenes, S3DIS): loaders agree with known facts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xmask3d.data.labels import S3DIS_NAMES, SCANNET20_NAMES
from xmask3d.data.real_fixtures import (
    load_s3dis_fixture,
    load_scannet_fixture,
    load_sevenscenes,
    real_data_root,
)

ROOT = real_data_root()
pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(ROOT is None, reason="real fixtures not found (neither $XMASK3D_REAL_DATA "
                       "nor ../shared/data/real beside the repository is a folder)"),
]

SCANNET20_HISTOGRAM = {
    "wall": 13899, "floor": 10234, "cabinet": 9809, "bed": 2954, "sofa": 5099, "table": 4479,
    "door": 1414, "window": 824, "counter": 462, "desk": 1897, "curtain": 5519,
    "refrigerator": 1404, "toilet": 454, "sink": 362, "otherfurniture": 642, "ignore": 21917,
}


def _assert_rigid(pose: np.ndarray, atol: float) -> None:
    rot = pose[:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=atol)
    assert abs(np.linalg.det(rot) - 1.0) < atol
    np.testing.assert_array_equal(pose[3], [0, 0, 0, 1])


def test_default_root_is_the_shared_folder(monkeypatch):
    monkeypatch.delenv("XMASK3D_REAL_DATA", raising=False)
    expected = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real").resolve()
    assert real_data_root() == (expected if expected.is_dir() else None)
    monkeypatch.setenv("XMASK3D_REAL_DATA", str(ROOT))
    assert real_data_root() == ROOT


@pytest.fixture(scope="module")
def scannet():
    return load_scannet_fixture(ROOT)


def test_scannet_scannet20_histogram_is_exact(scannet):
    assert scannet.num_points == 81369
    ids, counts = np.unique(scannet.labels, return_counts=True)
    hist = {(SCANNET20_NAMES[i] if i < 20 else "ignore"): int(c) for i, c in zip(ids, counts)}
    assert hist == SCANNET20_HISTOGRAM


def test_scannet_points_are_in_the_world_frame_of_the_poses(scannet):
    folder = ROOT / "scannet_mmdet3d"
    aligned = np.load(folder / "scene0000_00_vert_all.npy")[:, :3].astype(np.float64)
    align = np.asarray(json.loads((folder / "scene0000_00_cameras.json").read_text())[
        "axis_align_matrix_4x4"])
    back = scannet.points.astype(np.float64) @ align[:3, :3].T + align[:3, 3]
    np.testing.assert_allclose(back, aligned, atol=1e-4)
    assert [v.name for v in scannet.views] == ["00000", "00011", "00102"]
    for view in scannet.views:
        assert view.hw == (968, 1296) and view.depth is None
        np.testing.assert_allclose(view.intrinsics[[0, 1, 0, 1], [0, 1, 2, 2]],
                                   [1169.621094, 1167.105103, 646.295044, 489.927032])
        _assert_rigid(view.pose, 1e-4)
        # projected vertex colours match the image (no z-buffer: measured 0.43-0.66; the
        # axis-aligned points give < 0 and a pose shifted by 30 cm 0.18-0.28)
        cam = (scannet.points.astype(np.float64) - view.pose[:3, 3]) @ view.pose[:3, :3]
        front = cam[:, 2] > 0.1
        uv = cam[front] @ view.intrinsics.T
        uv = (uv[:, :2] / uv[:, 2:]).astype(int)
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < 1296) & (uv[:, 1] >= 0) & (uv[:, 1] < 968)
        assert inside.sum() > 2000
        pixel_grey = view.color[uv[inside, 1], uv[inside, 0]].mean(1)
        vertex_grey = scannet.colors[front][inside].mean(1)
        assert np.corrcoef(pixel_grey, vertex_grey)[0, 1] > 0.35


def test_s3dis_sample_names_and_counts():
    names = (ROOT / "meta" / "s3dis_class_names.txt").read_text().split()
    assert tuple(names) == S3DIS_NAMES
    scene = load_s3dis_fixture(ROOT)
    sem = np.fromfile(ROOT / "s3dis_mmdet3d_tiny" / "Area_1_office_2_semantic_mask.bin", np.int64)
    assert scene.num_points == 100 and scene.labels.max() < len(S3DIS_NAMES)
    np.testing.assert_array_equal(np.bincount(scene.labels, minlength=13),
                                  np.bincount(sem, minlength=13))
    for inst in np.unique(scene.instances):  # every instance carries a single class
        assert len(np.unique(scene.labels[scene.instances == inst])) == 1
    z = scene.points[:, 2]
    ceiling, floor = S3DIS_NAMES.index("ceiling"), S3DIS_NAMES.index("floor")
    assert z[scene.labels == ceiling].min() > z[scene.labels == floor].max() + 2.0


@pytest.fixture(scope="module")
def sevenscenes():
    return load_sevenscenes(ROOT)


def test_sevenscenes_frames_are_plausible(sevenscenes):
    assert len(sevenscenes) == 50
    assert [v.name for v in sevenscenes[:2]] == ["frame-000000", "frame-000020"]
    for view in sevenscenes:
        assert view.hw == (480, 640) and view.depth.shape == (480, 640)
        valid = view.depth[view.depth > 0]
        assert valid.size > 0.5 * view.depth.size
        assert 0.3 < np.median(valid) < 5.0 and valid.max() < 10.0
        _assert_rigid(view.pose, 1e-3)  # 7-Scenes rotations deviate up to 4e-4
        np.testing.assert_array_equal(view.intrinsics, [[585, 0, 320], [0, 585, 240], [0, 0, 1]])


def test_sevenscenes_depth_and_poses_agree_across_frames(sevenscenes):
    """Back-project frame 0 with its pose; frame 1's depth sees the same surfaces."""
    a, b = sevenscenes[0], sevenscenes[1]
    v, u = np.nonzero(a.depth > 0)
    z = a.depth[v, u].astype(np.float64)
    rays = np.stack([(u - 320) / 585 * z, (v - 240) / 585 * z, z], 1)
    world = rays @ a.pose[:3, :3].T + a.pose[:3, 3]
    cam = (world - b.pose[:3, 3]) @ b.pose[:3, :3]
    uv = np.rint(cam[:, :2] / cam[:, 2:] * 585 + [320, 240]).astype(int)
    ok = (cam[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 640) & (uv[:, 1] >= 0) & (uv[:, 1] < 480)
    seen = b.depth[uv[ok, 1], uv[ok, 0]]
    diff = np.abs(seen[seen > 0] - cam[ok, 2][seen > 0])
    assert diff.size > 50_000 and np.median(diff) < 0.03
