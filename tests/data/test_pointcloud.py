"""Inference inputs: point clouds in PLY/NPY/PTH and RGB-D frame folders in two layouts."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from PIL import Image

from xmask3d.data.ply import write_ply
from xmask3d.data.pointcloud import load_point_cloud, load_rgbd_frames
from xmask3d.data.prepare import add_parser
from xmask3d.data.processed import (
    SCANNET_DEFAULT_INTRINSICS_320x240,
    ProcessedLayout,
    save_point_file,
    write_intrinsics,
    write_view,
)
from xmask3d.errors import DataError

K = np.array([[20.0, 0, 7.5], [0, 21.0, 5.5], [0, 0, 1]])


def _pose(angle: float, t) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    pose = np.eye(4)
    pose[:3, :3] = [[1, 0, 0], [0, c, -s], [0, s, c]]
    pose[:3, 3] = t
    return pose


def _cloud(n: int = 9):
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, 3)).astype(np.float32), rng.integers(0, 256, (n, 3)).astype(np.uint8)


def test_point_cloud_formats(tmp_path):
    pts, cols = _cloud()
    write_ply(tmp_path / "c.ply", pts, cols)
    write_ply(tmp_path / "g.ply", pts)
    np.save(tmp_path / "a.npy", pts)
    np.save(tmp_path / "b.npy", np.concatenate([pts, cols], 1).astype(np.float64))
    np.save(tmp_path / "u.npy", np.concatenate([pts, cols / 255.0], 1))
    labels = np.arange(9) % 3
    save_point_file(tmp_path / "s_vh_clean_2.pth", pts, cols, labels)
    grey = np.full_like(cols, 128)
    for name, colors in [("c.ply", cols), ("g.ply", grey), ("a.npy", grey), ("b.npy", cols),
                         ("u.npy", cols), ("s_vh_clean_2.pth", cols)]:
        scene = load_point_cloud(tmp_path / name)
        np.testing.assert_allclose(scene.points, pts, atol=1e-6)
        np.testing.assert_array_equal(scene.colors, colors, err_msg=name)
    scene = load_point_cloud(tmp_path / "s_vh_clean_2.pth")
    assert scene.name == "s"
    np.testing.assert_array_equal(scene.labels, labels)
    assert load_point_cloud(tmp_path / "c.ply", name="room").name == "room"


def test_point_cloud_errors(tmp_path):
    np.save(tmp_path / "four.npy", np.zeros((3, 4)))
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan, 1.0]]))
    np.save(tmp_path / "col.npy", np.array([[0.0, 0, 0, 300, 0, 0]]))
    (tmp_path / "x.xyz").write_text("0 0 0\n")
    for name, message in [("four.npy", r"\(N, 3\) or \(N, 6\)"), ("nan.npy", "NaN/inf"),
                          ("col.npy", "0..255 or 0..1"), ("x.xyz", "unsupported point cloud"),
                          ("none.ply", "not found")]:
        with pytest.raises(DataError, match=message) as exc:
            load_point_cloud(tmp_path / name)
        assert exc.value.path == tmp_path / name


def _write_7scenes(folder, n: int = 3, depth_hw=(12, 16)):
    """Frames of 16x12 colour; depth uint16 mm with 0 and 65535 holes."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "camera-intrinsics.txt", K)
    rng = np.random.default_rng(5)
    depths, poses = [], []
    for i in range(n):
        stem = f"frame-{i * 20:06d}"
        Image.fromarray(np.full((12, 16, 3), 40 * i + 20, np.uint8)).save(
            folder / f"{stem}.color.jpg", quality=98)
        d = rng.integers(400, 5000, depth_hw).astype(np.uint16)
        d[0, 0], d[1, 1] = 0, 65535
        Image.fromarray(d).save(folder / f"{stem}.depth.png")
        poses.append(_pose(0.2 * i, [i, 0.5, -2.0]))
        np.savetxt(folder / f"{stem}.pose.txt", poses[-1])
        depths.append(d)
    return depths, poses


def test_sevenscenes_layout(tmp_path):
    depths, poses = _write_7scenes(tmp_path / "seq")
    views = load_rgbd_frames(tmp_path / "seq")
    assert [v.name for v in views] == ["frame-000000", "frame-000020", "frame-000040"]
    for i, view in enumerate(views):
        expected = depths[i].astype(np.float32) / 1000.0
        expected[(depths[i] == 0) | (depths[i] == 65535)] = 0.0
        np.testing.assert_array_equal(view.depth, expected)
        assert view.depth[1, 1] == 0.0 and view.depth.dtype == np.float32
        np.testing.assert_allclose(view.pose, poses[i], atol=1e-12)
        np.testing.assert_array_equal(view.intrinsics, K)
        assert np.abs(view.color.astype(int) - (40 * i + 20)).max() <= 2


def test_depth_at_half_resolution_is_upsampled(tmp_path):
    depths, _ = _write_7scenes(tmp_path / "seq", n=1, depth_hw=(6, 8))
    (view,) = load_rgbd_frames(tmp_path / "seq")
    small = depths[0].astype(np.float32) / 1000.0
    small[(depths[0] == 0) | (depths[0] == 65535)] = 0
    np.testing.assert_array_equal(view.depth, small.repeat(2, 0).repeat(2, 1))
    np.testing.assert_array_equal(view.intrinsics, K)  # K stays at the colour resolution


def test_frame_folder_errors_name_the_file(tmp_path):
    seq = tmp_path / "seq"
    _write_7scenes(seq, n=2)
    bad_depth = seq / "frame-000020.depth.png"
    Image.fromarray(np.ones((7, 10), np.uint16)).save(bad_depth)
    with pytest.raises(DataError, match="depth is 10x7 but colour is 16x12") as exc:
        load_rgbd_frames(seq)
    assert exc.value.path == bad_depth
    bad_depth.unlink()
    pose = seq / "frame-000020.pose.txt"
    for content, message in [(np.eye(4)[:3], "expected a 4x4"),
                             (np.where(np.eye(4) == 1, np.nan, 0.0), "NaN or infinite"),
                             (np.diag([2.0, 2.0, 2.0, 1.0]), "not a rigid"),
                             (np.diag([1.0, 1.0, -1.0, 1.0]), "reflection")]:
        np.savetxt(pose, content)
        with pytest.raises(DataError, match=message) as exc:
            load_rgbd_frames(seq)
        assert exc.value.path == pose
    pose.unlink()
    with pytest.raises(DataError, match="missing pose file for colour frame") as exc:
        load_rgbd_frames(seq)
    assert exc.value.path == pose
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no RGB-D frames") as exc:
        load_rgbd_frames(tmp_path / "empty")
    assert exc.value.path == tmp_path / "empty"


def test_scannet_export_layout(tmp_path):
    root = tmp_path / "root"
    rng = np.random.default_rng(2)
    depth = (rng.integers(1, 4000, (12, 16)) / 1000.0).astype(np.float32)
    for frame in ("100", "0", "20"):
        write_view(root, "s", frame, color=np.full((12, 16, 3), 90, np.uint8),
                   pose=_pose(0.1, [0, 0, 1]), depth=depth if frame != "20" else None)
    views = load_rgbd_frames(root / "scannet_2d" / "s")
    assert [v.name for v in views] == ["0", "20", "100"]
    np.testing.assert_array_equal(views[0].depth, depth)
    assert views[1].depth is None
    # no intrinsics.txt: the ScanNet default scaled from 320x240 to 16x12
    np.testing.assert_allclose(views[0].intrinsics[0, 0],
                               SCANNET_DEFAULT_INTRINSICS_320x240[0, 0] / 20)
    write_intrinsics(root, "s", K)
    np.testing.assert_allclose(load_rgbd_frames(root / "scannet_2d" / "s")[2].intrinsics, K)


def test_prepare_pointcloud_with_frames(tmp_path):
    pts, cols = _cloud()
    write_ply(tmp_path / "room.ply", pts, cols)
    _, poses = _write_7scenes(tmp_path / "seq", n=2)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "out"
    args = parser.parse_args(["prepare", "pointcloud", "--in", str(tmp_path / "room.ply"),
                              "--out", str(out), "--name", "room", "--frames",
                              str(tmp_path / "seq")])
    assert args.func(args) == 0
    layout = ProcessedLayout(out)
    scene = layout.load_scene("val", "room")
    np.testing.assert_allclose(scene.points, pts, atol=1e-6)
    np.testing.assert_array_equal(scene.colors, cols)
    assert (scene.labels == 255).all()
    assert layout.frame_names("room") == ["frame-000000", "frame-000020"]
    view = layout.load_view("room", "frame-000020")
    np.testing.assert_allclose(view.pose, poses[1], atol=1e-8)
    np.testing.assert_allclose(view.intrinsics, K)
