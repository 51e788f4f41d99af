"""Fuzzing (Hypothesis) and odd-input corpus of the inference readers: ``.npy`` point clouds and
RGB-D view folders (pose files, depth PNGs, colour images, intrinsics).

Property: a reader returns the values written, or raises ``DataError`` naming the file at fault;
never another exception, never a hang.
"""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis: pip install -e '.[test]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from PIL import Image  # noqa: E402

from xmask3d.data.pointcloud import load_point_cloud, load_rgbd_frames  # noqa: E402
from xmask3d.errors import DataError  # noqa: E402

FIXTURE_OK = [HealthCheck.function_scoped_fixture]
K = np.array([[20.0, 0, 7.5], [0, 21.0, 5.5], [0, 0, 1]])


def _refused(fn, path, guard, *, file=None):
    """Run ``fn(path)``; return the result, or ``None`` after checking the DataError names
    ``file`` (default ``path``)."""
    with guard(10.0):
        try:
            return fn(path)
        except DataError as exc:
            assert str(file or path) in str(exc), str(exc)
            return None


# ------------------------------------------------------------------ .npy point clouds

_DTYPES = st.sampled_from(["f4", "f8", "f2", "i1", "u1", "i4", "u8", "i8", "b1", "c8", "U3",
                           "M8[s]"])
_SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7)


def _npy_valid(arr: np.ndarray) -> bool:
    if arr.dtype.kind not in "iuf" or arr.ndim != 2 or arr.shape[1] not in (3, 6):
        return False
    if len(arr) == 0 or not np.isfinite(arr.astype(np.float64)).all():
        return False
    if not np.isfinite(arr[:, :3].astype(np.float64).astype(np.float32)).all():
        return False
    rgb = arr[:, 3:].astype(np.float64)
    return rgb.size == 0 or (rgb.min() >= 0 and rgb.max() <= 255)


@settings(max_examples=250, suppress_health_check=FIXTURE_OK)
@given(arr=hnp.arrays(_DTYPES, _SHAPES))
def test_npy_of_any_shape_and_dtype_loads_exactly_or_is_refused(tmp_path, time_guard, arr):
    path = tmp_path / "scan.npy"
    np.save(path, arr)
    scene = _refused(load_point_cloud, path, time_guard)
    assert (scene is not None) == _npy_valid(arr), (arr.dtype, arr.shape)
    if scene is not None:
        np.testing.assert_array_equal(scene.points, arr[:, :3].astype(np.float64)
                                      .astype(np.float32))
        if arr.shape[1] == 6:
            rgb = arr[:, 3:].astype(np.float64)
            rgb = rgb * 255.0 if rgb.max() <= 1.0 else rgb
            np.testing.assert_array_equal(scene.colors, np.rint(rgb).astype(np.uint8))
        else:
            assert (scene.colors == 128).all()


@settings(max_examples=150, suppress_health_check=FIXTURE_OK)
@given(data=st.data(), six=st.booleans())
def test_mutated_npy_is_read_or_refused(tmp_path, time_guard, mutate, data, six):
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(5, 6 if six else 3)).astype(np.float32)
    if six:
        arr[:, 3:] = rng.integers(0, 256, (5, 3))
    buf = io.BytesIO()
    np.save(buf, arr)
    _, bad = mutate(data.draw, buf.getvalue())
    path = tmp_path / "m.npy"
    path.write_bytes(bad)
    scene = _refused(load_point_cloud, path, time_guard)
    if scene is not None:
        n = scene.num_points
        assert n >= 1 and scene.points.shape == (n, 3) and np.isfinite(scene.points).all()
        assert scene.colors.shape == (n, 3) and scene.colors.dtype == np.uint8


def test_npy_corpus(tmp_path):
    pts = np.arange(12, dtype=np.float32).reshape(4, 3)
    good = {"int8.npy": (pts.astype(np.int8), pts), "plane.npy": (pts * [1, 1, 0], pts * [1, 1, 0]),
            "line.npy": (pts * [1, 0, 0], pts * [1, 0, 0]),
            "dupes.npy": (np.repeat(pts[:1], 4, 0), np.repeat(pts[:1], 4, 0))}
    for name, (arr, expected) in good.items():
        np.save(tmp_path / name, arr)
        np.testing.assert_array_equal(load_point_cloud(tmp_path / name).points, expected)
    bad = {
        "n2.npy": (np.zeros((4, 2)), r"got shape \(4, 2\)"),
        "n4.npy": (np.zeros((4, 4)), r"got shape \(4, 4\)"),
        "t.npy": (np.zeros((3, 10)), "transposed"),
        "zero_d.npy": (np.array(1.0), r"got shape \(\)"),
        "three_d.npy": (np.zeros((2, 4, 3)), r"got shape \(2, 4, 3\)"),
        "empty.npy": (np.zeros((0, 3)), r"got shape \(0, 3\)"),
        "bool.npy": (np.zeros((4, 3), bool), "dtype bool"),
        "complex.npy": (np.zeros((4, 3), complex), "dtype complex128"),
        "text.npy": (np.array([["1", "2", "3"]]), "dtype <U1"),
        "object.npy": (np.array([[1.0, None, 2]], dtype=object), "objects or records"),
        "record.npy": (np.zeros(4, [("x", "f4"), ("y", "f4"), ("z", "f4")]), "records"),
    }
    for name, (arr, message) in bad.items():
        np.save(tmp_path / name, arr, allow_pickle=True)
        with pytest.raises(DataError, match=message) as exc:
            load_point_cloud(tmp_path / name)
        assert exc.value.path == tmp_path / name
    raw = {"zero_bytes.npy": (b"", "not a readable .npy"),
           "pickle.npy": (pickle.dumps([1, 2, 3]), "not a readable .npy"),
           "npz.npy": (b"PK\x03\x04" + bytes(40), "not a readable .npy"),
           "huge.npy": (_npy_header("(4000000000, 3)"), "truncated .npy file")}
    for name, (blob, message) in raw.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(DataError, match=message) as exc:
            load_point_cloud(tmp_path / name)
        assert exc.value.path == tmp_path / name


def _npy_header(shape: str) -> bytes:
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(48)


# ------------------------------------------------------------------ RGB-D view folders


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rx = np.array([[1, 0, 0], [0, cc, -sc], [0, sc, cc]])
    return rz @ ry @ rx


def _write_frames(folder, n: int = 2) -> list[np.ndarray]:
    """A 7-Scenes folder: 16x12 colour, uint16 depth, rigid poses; returns the depths."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "camera-intrinsics.txt", K)
    depths = []
    for i in range(n):
        stem = f"frame-{i:06d}"
        Image.fromarray(np.full((12, 16, 3), 60 * i + 30, np.uint8)).save(
            folder / f"{stem}.color.png")
        depths.append(np.arange(192, dtype=np.uint16).reshape(12, 16) * (i + 3))
        Image.fromarray(depths[-1]).save(folder / f"{stem}.depth.png")
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = _rotation(0.3 * i, 0.1, 0.2), [i, 0.5, -1.0]
        np.savetxt(folder / f"{stem}.pose.txt", pose, "%.9f")
    return depths


_ANGLES = st.floats(-np.pi, np.pi)
_RIGID = st.tuples(_ANGLES, _ANGLES, _ANGLES, st.lists(st.floats(-50, 50), min_size=3,
                                                         max_size=3))


@settings(max_examples=60, suppress_health_check=FIXTURE_OK)
@given(rigid=_RIGID, distortion=st.sampled_from(["none", "scale", "reflect", "shear", "row"]),
       amount=st.floats(0.01, 2.0))
def test_pose_files_load_exactly_when_rigid_and_are_refused_otherwise(tmp_path, time_guard,
                                                                      rigid, distortion,
                                                                      amount):
    folder = tmp_path / "seq"
    _write_frames(folder, n=1)
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = _rotation(*rigid[:3]), rigid[3]
    if distortion == "scale":
        pose[:3, :3] *= 1.0 + amount
    elif distortion == "reflect":
        pose[:3, 0] *= -1
    elif distortion == "shear":
        pose[:3, :3] = pose[:3, :3] @ np.array([[1, amount, 0], [0, 1, 0], [0, 0, 1]])
    elif distortion == "row":
        pose[3, 0] = amount
    path = folder / "frame-000000.pose.txt"
    np.savetxt(path, pose, "%.9f")
    views = _refused(load_rgbd_frames, folder, time_guard, file=path)
    assert (views is not None) == (distortion == "none")
    if views is not None:
        np.testing.assert_allclose(views[0].pose, pose, atol=1e-8)


@settings(max_examples=50, suppress_health_check=FIXTURE_OK)
@given(text=st.one_of(st.text(max_size=80), st.binary(max_size=80).map(
    lambda b: b.decode("latin-1")), st.lists(st.sampled_from(
        ["1", "0", "-0.5", "nan", "inf", "1e308", "x", " ", "\n", "0 0 0 1"]), max_size=24)
    .map(" ".join)))
def test_any_pose_text_loads_or_is_refused(tmp_path, time_guard, text):
    folder = tmp_path / "seq"
    _write_frames(folder, n=1)
    path = folder / "frame-000000.pose.txt"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    views = _refused(load_rgbd_frames, folder, time_guard, file=path)
    if views is not None:   # only a valid rigid 4x4 matrix text can get here
        assert views[0].pose.shape == (4, 4) and np.isfinite(views[0].pose).all()


@settings(max_examples=120, suppress_health_check=FIXTURE_OK)
@given(data=st.data(), which=st.sampled_from(["depth.png", "color.png",
                                              "camera-intrinsics.txt"]))
def test_mutated_frame_files_load_or_are_refused_naming_them(tmp_path, time_guard, mutate,
                                                              data, which):
    folder = tmp_path / "seq"
    depths = _write_frames(folder, n=2)
    path = folder / which if which.startswith("camera") else folder / f"frame-000001.{which}"
    _, bad = mutate(data.draw, path.read_bytes())
    path.write_bytes(bad)
    views = _refused(load_rgbd_frames, folder, time_guard, file=path)
    if views is None:
        return
    assert len(views) == 2
    np.testing.assert_array_equal(views[0].depth, depths[0] / np.float32(1000.0))
    for v in views:
        assert v.color.shape == (12, 16, 3) and v.color.dtype == np.uint8
        assert v.depth.shape == (12, 16) and v.depth.dtype == np.float32
        assert np.isfinite(v.depth).all() and (v.depth >= 0).all()
        assert np.isfinite(v.intrinsics).all() and v.intrinsics[0, 0] > 0


def test_views_with_missing_depth_load_without_it(tmp_path, caplog):
    folder = tmp_path / "seq"
    depths = _write_frames(folder, n=3)
    (folder / "frame-000001.depth.png").unlink()
    views = load_rgbd_frames(folder)
    assert views[1].depth is None
    np.testing.assert_array_equal(views[2].depth, depths[2] / np.float32(1000.0))
    assert "1 of 3 frames have no depth map" in caplog.text


def test_view_folder_corpus(tmp_path):
    folder = tmp_path / "seq"
    _write_frames(folder, n=1)
    pose = folder / "frame-000000.pose.txt"
    depth = folder / "frame-000000.depth.png"
    intr = folder / "camera-intrinsics.txt"
    scaled = np.diag([1.5, 1.5, 1.5, 1.0])
    cases = [
        (pose, lambda p: np.savetxt(p, scaled), "not orthonormal"),
        (pose, lambda p: np.savetxt(p, np.diag([1.0, -1.0, 1.0, 1.0])), "reflection"),
        (pose, lambda p: np.savetxt(p, np.full((4, 4), np.inf)), "NaN or infinite"),
        (pose, lambda p: p.write_text(""), "expected a 4x4"),
        (depth, lambda p: Image.fromarray(np.zeros((12, 16), np.uint8)).save(p), "16-bit"),
        (depth, lambda p: Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(p), "16-bit"),
        (depth, lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(30)), "unreadable depth"),
        (intr, lambda p: np.savetxt(p, np.zeros((3, 3))), "not pinhole intrinsics"),
    ]
    for path, write, message in cases:
        _write_frames(folder, n=1)
        write(path)
        with pytest.raises(DataError, match=message) as exc:
            load_rgbd_frames(folder)
        assert exc.value.path == path


def test_export_layout_with_an_unreadable_first_colour_image(tmp_path):
    from xmask3d.data.processed import write_view

    write_view(tmp_path, "s", "0", color=np.zeros((12, 16, 3), np.uint8), pose=np.eye(4))
    write_view(tmp_path, "s", "1", color=np.zeros((12, 16, 3), np.uint8), pose=np.eye(4))
    folder = tmp_path / "scannet_2d" / "s"
    assert [v.name for v in load_rgbd_frames(folder)] == ["0", "1"]
    bad = folder / "color" / "0.jpg"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(DataError, match="unreadable colour image") as exc:
        load_rgbd_frames(folder)
    assert exc.value.path == bad
