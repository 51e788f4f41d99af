"""Fuzzing (Hypothesis) of the processed layout: ``.pth`` scenes (any structure, corrupt bytes),
2D frame folders (colour, depth, label, pose, intrinsics), the caption JSON and ScanNet200
label files.

Property: the loaders return the values written, or raise ``DataError`` naming the file;
never another exception, never a hang.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis: pip install -e '.[test]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from xmask3d.data.processed import (  # noqa: E402
    IGNORE_LABEL,
    ProcessedLayout,
    load_point_file,
    read_captions,
    save_point_file,
    write_intrinsics,
    write_label_200,
    write_view,
)
from xmask3d.errors import DataError  # noqa: E402

FIXTURE_OK = [HealthCheck.function_scoped_fixture]


def _refused(fn, path, guard, *, file=None):
    with guard(10.0):
        try:
            return fn()
        except DataError as exc:
            assert str(file or path) in str(exc), str(exc)
            return None


# ------------------------------------------------------------------ .pth scenes

_DT = st.sampled_from(["f4", "f8", "f2", "i2", "i8", "u1", "b1", "c8", "U2"])


@st.composite
def _entry(draw, n: int, cols: int | None):
    """An array (sometimes a tensor) of mostly the right shape, sometimes anything else."""
    kind = draw(st.sampled_from(["right", "right", "right", "shape", "other"]))
    if kind == "other":
        return draw(st.sampled_from(["text", 3, None, {"a": 1}, [[1, 2, 3]], (1.0, 2.0),
                                     [[1.0], [2.0, 3.0]]]))
    shape = (n,) if cols is None else (n, cols)
    if kind == "shape":
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    arr = draw(hnp.arrays(_DT, shape, elements=None))
    if draw(st.booleans()) and arr.dtype.kind in "fiub" and arr.dtype != np.uint16:
        return torch.from_numpy(np.ascontiguousarray(arr))
    return arr


def _np(x):
    if isinstance(x, (list, tuple)):
        try:
            return np.asarray(x)
        except ValueError:
            return None
    return x.numpy() if isinstance(x, torch.Tensor) else x


def _expected(entries) -> tuple | None:
    """The values load_point_file must return, or None when it must refuse."""
    if not isinstance(entries, tuple) or len(entries) < 2:
        return None
    arrs = [_np(e) for e in entries[:3]]  # later entries are ignored
    if not all(isinstance(a, np.ndarray) and a.dtype.kind in "iuf" for a in arrs):
        return None
    pts, cols = arrs[0], arrs[1]
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0 or cols.shape != pts.shape:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        p32 = pts.astype(np.float32)
    if not np.isfinite(p32).all() or not np.isfinite(cols.astype(np.float64)).all():
        return None
    if len(arrs) > 2:
        lab = arrs[2]
        if lab.shape != (len(pts),) or not np.isfinite(lab.astype(np.float64)).all():
            return None
        lab = np.clip(lab.astype(np.float64), -1, 2**31).astype(np.int64)
        lab[(lab < 0) | (lab == 255)] = IGNORE_LABEL
    else:
        lab = np.full(len(pts), IGNORE_LABEL)
    rgb = np.clip(np.round((cols.astype(np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return p32, rgb, lab


@settings(max_examples=150, suppress_health_check=FIXTURE_OK)
@given(data=st.data(), n=st.integers(0, 5), length=st.integers(0, 4))
def test_pth_of_any_structure_loads_exactly_or_is_refused(tmp_path, time_guard, data, n,
                                                          length):
    entries = tuple(data.draw(_entry(n, 3 if i < 2 else None)) for i in range(length))
    obj = entries if data.draw(st.booleans()) else data.draw(st.sampled_from(
        [entries, list(entries), {"coords": 1}, "scene", 7]))
    path = tmp_path / "s_vh_clean_2.pth"
    torch.save(obj, path)
    got = _refused(lambda: load_point_file(path), path, time_guard)
    want = _expected(obj if not isinstance(obj, list) else tuple(obj))
    assert (got is None) == (want is None), (type(obj), [getattr(e, "dtype", e)
                                                        for e in entries])
    if got is not None:
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)


@settings(max_examples=100, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_mutated_pth_is_read_or_refused(tmp_path, time_guard, mutate, data):
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    torch.save((rng.normal(size=(6, 3)), rng.uniform(-1, 1, (6, 3)).astype(np.float32),
                np.arange(6, dtype=np.float32)), buf)
    _, bad = mutate(data.draw, buf.getvalue())
    path = tmp_path / "m_vh_clean_2.pth"
    path.write_bytes(bad)
    got = _refused(lambda: load_point_file(path), path, time_guard)
    if got is not None:
        pts, rgb, lab = got
        n = len(pts)
        assert n >= 1 and pts.shape == (n, 3) and pts.dtype == np.float32
        assert np.isfinite(pts).all() and rgb.shape == (n, 3) and rgb.dtype == np.uint8
        assert lab.shape == (n,) and lab.dtype == np.int64


# ------------------------------------------------------------------ 2D frame folders

K = np.array([[20.0, 0, 7.5], [0, 21.0, 5.5], [0, 0, 1]])


def _layout(root):
    rng = np.random.default_rng(2)
    save_point_file(root / "scannet_3d/val/s_vh_clean_2.pth", rng.normal(size=(5, 3)),
                    np.zeros((5, 3), np.uint8), np.arange(5))
    depth = (np.arange(192).reshape(12, 16) + 1) / 1000.0
    label = (np.arange(192).reshape(12, 16) % 41).astype(np.uint16)
    write_view(root, "s", "0", color=np.full((12, 16, 3), 90, np.uint8), pose=np.eye(4),
               depth=depth, label=label)
    write_intrinsics(root, "s", K)
    write_label_200(root, "val", "s", np.arange(5) + 1)
    return depth


@settings(max_examples=120, suppress_health_check=FIXTURE_OK)
@given(data=st.data(), which=st.sampled_from(["color/0.jpg", "depth/0.png", "label/0.png",
                                              "pose/0.txt", "intrinsics.txt"]))
def test_mutated_frame_files_load_or_are_refused(tmp_path, time_guard, mutate, data, which):
    depth = _layout(tmp_path)
    path = tmp_path / "scannet_2d/s" / which
    _, bad = mutate(data.draw, path.read_bytes())
    path.write_bytes(bad)
    view = _refused(lambda: ProcessedLayout(tmp_path).load_view("s", "0"), path, time_guard)
    if view is None:
        return
    assert view.color.shape == (12, 16, 3) and view.color.dtype == np.uint8
    assert view.depth.shape == (12, 16) and np.isfinite(view.depth).all()
    if which != "depth/0.png":
        np.testing.assert_allclose(view.depth, depth.astype(np.float32), atol=1e-6)
    assert view.label.shape == (12, 16)
    assert np.isfinite(view.pose).all() and view.intrinsics[0, 0] > 0


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)


@settings(max_examples=120, suppress_health_check=FIXTURE_OK)
@given(doc=st.one_of(_JSON.map(json.dumps).map(str.encode), st.binary(max_size=40),
                     st.dictionaries(st.text(max_size=3), st.dictionaries(
                         st.text(max_size=3), st.text(max_size=8), max_size=2), max_size=2)
                     .map(json.dumps).map(str.encode)))
def test_caption_json_loads_exactly_or_is_refused(tmp_path, time_guard, doc):
    path = tmp_path / "captions.json"
    path.write_bytes(doc)
    got = _refused(lambda: read_captions(path), path, time_guard)
    try:
        value = json.loads(doc.decode("utf-8"))
    except ValueError:
        value = None
    valid = isinstance(value, dict) and all(
        isinstance(f, dict) and all(isinstance(c, str) for c in f.values())
        for f in value.values())
    assert (got is not None) == valid
    if valid:
        assert got == value


@settings(max_examples=60, suppress_health_check=FIXTURE_OK)
@given(text=st.lists(st.sampled_from(["1", "7", "-3", "x", "1.5", "", " ", "99999999999999999999"]),
                     max_size=8).map("\n".join))
def test_scannet200_label_file_loads_or_is_refused(tmp_path, time_guard, text):
    _layout(tmp_path)
    path = tmp_path / "scannet_3d_200/val/s.txt"
    path.write_text(text)
    scene = _refused(lambda: ProcessedLayout(tmp_path).load_scene(
        "val", "s", label_set="scannet200"), path, time_guard)
    if scene is not None:
        assert scene.labels.shape == (5,) and scene.labels.dtype == np.int64
