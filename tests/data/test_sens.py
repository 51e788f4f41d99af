"""ScanNet ``.sens``: byte layout, writer/reader round trip, export into the processed layout."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from xmask3d.data.processed import ProcessedLayout, read_intrinsics
from xmask3d.data.sens import (
    SensReader,
    export_sens,
    resize_nearest,
    scale_intrinsics,
    write_sens,
)
from xmask3d.errors import DataError

K_COLOR = np.array([[100.0, 0, 63.5], [0, 101.0, 47.5], [0, 0, 1]])
K_DEPTH = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])


def _pose(angle: float, t) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    pose = np.eye(4)
    pose[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
    pose[:3, 3] = t
    return pose


def _frames(n: int = 3, seed: int = 0):
    """Smooth colour (96, 128, 3) images, uint16 depth (48, 64) with holes, rigid poses."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:128]
    colors = [np.stack([xx * 2, yy * 2, (xx + yy) // 2 + 40 * i], -1).astype(np.uint8)
              for i in range(n)]
    depths = []
    for _ in range(n):
        d = rng.integers(300, 6000, (48, 64)).astype(np.uint16)
        d[rng.random((48, 64)) < 0.1] = 0
        depths.append(d)
    poses = [_pose(0.3 * i, [0.5 * i, -1.25, 1.5]) for i in range(n)]
    return colors, depths, poses


@pytest.fixture
def sens_file(tmp_path):
    colors, depths, poses = _frames()
    path = tmp_path / "scene.sens"
    write_sens(path, colors=colors, depths=depths, poses=poses, intrinsic_color=K_COLOR,
               intrinsic_depth=K_DEPTH)
    return path, colors, depths, poses


def test_reader_parses_hand_built_bytes(tmp_path):
    """A file assembled from the ScanNet SensorData spec, independent of our writer."""
    color = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    depth = np.array([[1, 2, 3], [65535, 0, 1000]], dtype="<u2")
    pose = np.arange(16, dtype="<f4")
    name = b"kinect"
    blob = struct.pack("<I", 4) + struct.pack("<Q", len(name)) + name
    for k in range(4):
        blob += (np.eye(4, dtype="<f4") * (k + 1)).tobytes()
    blob += struct.pack("<ii", 0, 0)  # raw colour, raw_ushort depth
    blob += struct.pack("<IIIIf", 3, 2, 3, 2, 1000.0) + struct.pack("<Q", 1)
    blob += pose.tobytes() + struct.pack("<QQQQ", 7, 8, color.nbytes, depth.nbytes)
    blob += color.tobytes() + depth.tobytes() + struct.pack("<Q", 0)
    (tmp_path / "h.sens").write_bytes(blob)
    with SensReader(tmp_path / "h.sens") as reader:
        hdr = reader.header
        assert (hdr.sensor_name, hdr.color_wh, hdr.depth_wh, hdr.num_frames) == ("kinect", (3, 2),
                                                                                   (3, 2), 1)
        np.testing.assert_array_equal(hdr.intrinsic_depth, np.eye(4) * 3)
        (frame,) = list(reader.frames())
        assert (frame.timestamp_color, frame.timestamp_depth) == (7, 8)
        np.testing.assert_array_equal(frame.pose, pose.reshape(4, 4))
        np.testing.assert_array_equal(reader.decode_color(frame), color)
        np.testing.assert_array_equal(reader.decode_depth(frame), depth)


def test_write_read_round_trip(sens_file):
    path, colors, depths, poses = sens_file
    with SensReader(path) as reader:
        hdr = reader.header
        assert (hdr.version, hdr.num_frames, hdr.color_wh, hdr.depth_wh) == (4, 3, (128, 96),
                                                                             (64, 48))
        assert (hdr.color_compression, hdr.depth_compression) == ("jpeg", "zlib_ushort")
        assert hdr.depth_shift == 1000.0
        np.testing.assert_array_equal(hdr.intrinsic_color[:3, :3], K_COLOR.astype(np.float32))
        frames = list(reader.frames())
        assert [f.index for f in frames] == [0, 1, 2]
        for f, c, d, p in zip(frames, colors, depths, poses):
            np.testing.assert_array_equal(f.pose, p.astype(np.float32))
            np.testing.assert_array_equal(reader.decode_depth(f), d)
            err = np.abs(reader.decode_color(f).astype(int) - c.astype(int))
            assert err.mean() < 2.0 and err.max() < 40  # JPEG quality 95 on a smooth image
        assert [f.index for f in reader.frames(skip=2)] == [0, 2]


def test_raw_colour_is_exact(tmp_path):
    colors, depths, poses = _frames(n=2, seed=1)
    write_sens(tmp_path / "r.sens", colors=colors, depths=depths, poses=poses,
               intrinsic_color=K_COLOR, intrinsic_depth=K_DEPTH, color_compression="raw",
               depth_compression="raw_ushort")
    with SensReader(tmp_path / "r.sens") as reader:
        for f, c in zip(reader.frames(), colors):
            np.testing.assert_array_equal(reader.decode_color(f), c)


def test_resize_nearest_and_scale_intrinsics_by_hand():
    img = np.arange(16).reshape(4, 4)
    np.testing.assert_array_equal(resize_nearest(img, (2, 2)), [[5, 7], [13, 15]])
    np.testing.assert_array_equal(resize_nearest(np.array([[1, 2]]), (4, 2)),
                                  [[1, 1, 2, 2], [1, 1, 2, 2]])
    K = scale_intrinsics(np.array([[577.870605, 0, 319.5], [0, 577.870605, 239.5], [0, 0, 1]]),
                         (640, 480), (320, 240))
    np.testing.assert_allclose(K, [[288.9353025, 0, 159.5], [0, 288.9353025, 119.5], [0, 0, 1]])


def test_export_into_processed_layout(sens_file, tmp_path):
    path, colors, depths, poses = sens_file
    root = tmp_path / "root"
    (root / "scannet_3d").mkdir(parents=True)
    labels = tmp_path / "label-filt"
    labels.mkdir()
    raw = np.array([[1, 2], [1163, 9999]], dtype=np.uint16).repeat(48, 0).repeat(64, 1)
    for i in (0, 2):
        Image.fromarray(raw).save(labels / f"{i}.png")
    table = np.zeros(1200, dtype=np.int64)
    table[[1, 2, 1163]] = [1, 5, 40]
    names = export_sens(path, root, "sceneX", frame_skip=2, size=(32, 24), label_folder=labels,
                        raw_to_nyu40=table)
    assert names == ["0", "2"]
    layout = ProcessedLayout(root)
    assert layout.frame_names("sceneX") == ["0", "2"]
    K = read_intrinsics(root / "scannet_2d/sceneX/intrinsics.txt")
    np.testing.assert_allclose(K, [[25.0, 0, 15.5], [0, 25.25, 11.5], [0, 0, 1]], atol=1e-6)
    for i in (0, 2):
        view = layout.load_view("sceneX", str(i))
        np.testing.assert_allclose(view.pose, poses[i].astype(np.float32), atol=1e-9)
        expected_depth = resize_nearest(depths[i], (32, 24)).astype(np.float32) / 1000.0
        np.testing.assert_array_equal(view.depth, expected_depth)
        ref = np.asarray(Image.fromarray(colors[i]).resize((32, 24), Image.Resampling.BILINEAR))
        assert np.abs(view.color.astype(int) - ref.astype(int)).mean() < 3.0
        nyu = np.asarray(Image.open(root / f"scannet_2d/sceneX/label/{i}.png"))
        raw_out = np.asarray(Image.open(root / f"scannet_2d/sceneX/label_200/{i}.png"))
        np.testing.assert_array_equal(raw_out, resize_nearest(raw, (32, 24)))
        np.testing.assert_array_equal(nyu[[0, 0, 23, 23], [0, 31, 0, 31]], [1, 5, 40, 0])
        # label/ holds nyu40 ids -> ScanNet20 on load: wall 0, chair 4, 40 and 0 ignored
        np.testing.assert_array_equal(view.label[[0, 0, 23, 23], [0, 31, 0, 31]],
                                      [0, 4, 255, 255])


def test_export_skips_lost_tracking(tmp_path):
    colors, depths, poses = _frames()
    poses[1] = np.full((4, 4), -np.inf)
    write_sens(tmp_path / "s.sens", colors=colors, depths=depths, poses=poses,
               intrinsic_color=K_COLOR, intrinsic_depth=K_DEPTH)
    names = export_sens(tmp_path / "s.sens", tmp_path / "root", "s", frame_skip=1, size=(32, 24))
    assert names == ["0", "2"]


def test_malformed_files_raise_with_the_path(sens_file, tmp_path):
    path, *_ = sens_file
    blob = path.read_bytes()
    bad_version = tmp_path / "v.sens"
    bad_version.write_bytes(struct.pack("<I", 3) + blob[4:])
    with pytest.raises(DataError, match="unsupported .sens version 3") as exc:
        SensReader(bad_version)
    assert exc.value.path == bad_version
    truncated = tmp_path / "t.sens"
    truncated.write_bytes(blob[:-200])
    with SensReader(truncated) as reader, pytest.raises(DataError, match="truncated") as exc:
        list(reader.frames())
    assert exc.value.path == truncated
    header_only = tmp_path / "h.sens"
    header_only.write_bytes(blob[:50])
    with pytest.raises(DataError, match="truncated"):
        SensReader(header_only)
    with pytest.raises(DataError, match="not found"):
        SensReader(tmp_path / "none.sens")
