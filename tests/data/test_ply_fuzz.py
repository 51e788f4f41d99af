"""PLY reader fuzzing (Hypothesis) and a corpus of hand-made odd and broken PLY files.

Property: whatever the bytes, :func:`read_ply` returns a well-formed cloud (finite float32
(N, 3) points, uint8 colours, scalar fields in native byte order) or raises ``DataError`` naming
the file; never another exception, never a hang. Unmutated files load exactly, truncated binary
files are always refused.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis: pip install -e '.[test]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from plyfile import PlyData, PlyElement  # noqa: E402

from xmask3d.data.ply import read_ply  # noqa: E402
from xmask3d.errors import DataError  # noqa: E402

N = 6
HEADER_EDITS = [b"element vertex 99999999999", b"element vertex -1", b"element vertex 0",
                b"element vertex 7", b"property list uchar float x", b"property float128 x",
                b"format binary_big_endian 1.0", b"format binary_little_endian 1.0",
                b"format ascii 1.0", b"format ascii 2.0", b"property float x", b"end_header",
                b"comment \xff\xfe", b"ply", b"", b"element face 3"]


def _table(fields: dict[str, np.ndarray]) -> np.ndarray:
    table = np.empty(len(next(iter(fields.values()))), dtype=[(k, v.dtype) for k, v in
                                                            fields.items()])
    for k, v in fields.items():
        table[k] = v
    return table


def _faces() -> np.ndarray:
    faces = np.empty(2, dtype=[("vertex_indices", "O")])
    faces["vertex_indices"] = [np.array([0, 1, 2], np.int32), np.array([2, 3, 4, 5], np.int32)]
    return faces


def make_ply(variant: int) -> tuple[bytes, np.ndarray, np.ndarray | None]:
    """A valid PLY of N vertices (variant 0..3) and its expected points and colours."""
    rng = np.random.default_rng(variant)
    pts = rng.normal(size=(N, 3)).astype(np.float32)
    cols = rng.integers(0, 256, (N, 3)).astype(np.uint8)
    f: dict[str, np.ndarray] = {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]}
    text, order, elements, expect_cols = False, "<", [], cols
    if variant == 0:      # ASCII, uchar colours
        f.update(red=cols[:, 0], green=cols[:, 1], blue=cols[:, 2])
        text = True
    elif variant == 1:    # binary little-endian mesh, an int label, faces
        f.update(red=cols[:, 0], green=cols[:, 1], blue=cols[:, 2],
                 label=np.arange(N, dtype=np.int32))
        elements = [PlyElement.describe(_faces(), "face")]
    elif variant == 2:    # binary big-endian, double xyz, float colours in [0, 1]
        f = {k: v.astype(np.float64) for k, v in f.items()}
        f.update(r=(cols[:, 0] / 255.0).astype(np.float32), g=(cols[:, 1] / 255.0).astype(
            np.float32), b=(cols[:, 2] / 255.0).astype(np.float32),
            intensity=np.linspace(0, 1, N).astype(np.float32))
        order = ">"
    else:                 # ASCII mesh without colour, faces
        elements = [PlyElement.describe(_faces(), "face")]
        expect_cols = None
    buf = io.BytesIO()
    PlyData([PlyElement.describe(_table(f), "vertex"), *elements], text=text,
            byte_order=order).write(buf)
    return buf.getvalue(), pts, expect_cols


def assert_well_formed(cloud) -> None:
    n = cloud.num_points
    assert n >= 1 and cloud.points.shape == (n, 3) and cloud.points.dtype == np.float32
    assert np.isfinite(cloud.points).all()
    assert cloud.colors is None or (cloud.colors.shape == (n, 3)
                                    and cloud.colors.dtype == np.uint8)
    for values in cloud.fields.values():
        assert values.shape == (n,) and not values.dtype.hasobject
        assert values.dtype.isnative


def _load(path, guard):
    with guard(10.0):
        try:
            return read_ply(path), None
        except DataError as exc:
            assert str(path) in str(exc) and exc.path == path
            return None, exc


@pytest.mark.parametrize("variant", range(4))
def test_valid_files_load_exactly(tmp_path, variant):
    blob, pts, cols = make_ply(variant)
    path = tmp_path / "v.ply"
    path.write_bytes(blob)
    cloud = read_ply(path)
    np.testing.assert_array_equal(cloud.points, pts)
    if cols is None:
        assert cloud.colors is None
    else:
        np.testing.assert_array_equal(cloud.colors, cols)
    assert_well_formed(cloud)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), variant=st.integers(0, 3))
def test_mutated_ply_is_read_or_refused_with_the_file_name(tmp_path, time_guard, mutate, data,
                                                           variant):
    blob, pts, _ = make_ply(variant)
    kind, bad = mutate(data.draw, blob, HEADER_EDITS)
    path = tmp_path / "fuzz.ply"
    path.write_bytes(bad)
    cloud, _ = _load(path, time_guard)
    if cloud is None:
        return
    assert_well_formed(cloud)
    if kind == "truncate" and variant in (1, 2):
        pytest.fail(f"a truncated binary PLY ({len(bad)} of {len(blob)} bytes) was accepted")
    if kind == "truncate":  # ASCII: only the last number can be cut short
        np.testing.assert_array_equal(cloud.points[: N - 1], pts[: N - 1])


def _write(path, fields, *elements, text=False, order="<"):
    PlyData([PlyElement.describe(_table(fields), "vertex"), *elements], text=text,
            byte_order=order).write(str(path))
    return path


def test_degenerate_geometry_loads_unchanged(tmp_path):
    """A plane, a line and duplicated points are valid scans: loaded as they are (no dedup)."""
    t = np.linspace(-1, 1, 5, dtype=np.float32)
    zeros = np.zeros(5, np.float32)
    for name, (x, y, z) in {"plane": (t, t[::-1], zeros), "line": (t, zeros, zeros),
                            "dupes": (np.full(5, 0.5, np.float32), zeros, zeros)}.items():
        path = _write(tmp_path / f"{name}.ply", {"x": x, "y": y, "z": z})
        cloud = read_ply(path)
        np.testing.assert_array_equal(cloud.points, np.stack([x, y, z], 1))


def test_extra_list_big_endian_and_mesh_files(tmp_path):
    pts = np.arange(12, dtype=np.float32).reshape(4, 3) / 4
    base = {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]}
    # extra scalar properties are kept with their values, in native byte order
    extra = {**base, "nx": -pts[:, 0], "quality": np.array([3, 1, 4, 1], ">u2")}
    cloud = read_ply(_write(tmp_path / "extra.ply", extra, order=">"))
    np.testing.assert_array_equal(cloud.points, pts)
    np.testing.assert_array_equal(cloud.fields["nx"], -pts[:, 0])
    np.testing.assert_array_equal(cloud.fields["quality"], [3, 1, 4, 1])
    assert all(v.dtype.isnative for v in cloud.fields.values())
    # a list-typed extra property is left out; list-typed xyz is refused
    lst = np.empty(4, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("uv", "O")])
    for k in "xyz":
        lst[k] = base[k]
    lst["uv"] = [np.array([0.5, 0.25], np.float32)] * 4
    path = tmp_path / "list.ply"
    PlyData([PlyElement.describe(lst, "vertex")], text=True).write(str(path))
    cloud = read_ply(path)
    np.testing.assert_array_equal(cloud.points, pts)
    assert cloud.fields == {}
    lxyz = np.empty(4, dtype=[("x", "O"), ("y", "f4"), ("z", "f4")])
    lxyz["x"] = [np.array([v], np.float32) for v in pts[:, 0]]
    lxyz["y"], lxyz["z"] = pts[:, 1], pts[:, 2]
    PlyData([PlyElement.describe(lxyz, "vertex")]).write(str(tmp_path / "listx.ply"))
    with pytest.raises(DataError, match="list properties") as exc:
        read_ply(tmp_path / "listx.ply")
    assert exc.value.path == tmp_path / "listx.ply"
    # a mesh: the faces are ignored, the vertices are the scan
    faces = np.empty(1, dtype=[("vertex_indices", "O")])
    faces["vertex_indices"] = [np.array([0, 1, 2], np.int32)]
    mesh = read_ply(_write(tmp_path / "mesh.ply", base, PlyElement.describe(faces, "face")))
    np.testing.assert_array_equal(mesh.points, pts)


CORPUS = {
    "empty.ply": (b"", "does not start with 'ply'"),
    "text.ply": (b"hello, this is a text file\n", "does not start with 'ply'"),
    "no_end.ply": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n", "end_header"),
    "huge_count.ply": (b"ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\n"
                       b"property float x\nproperty float y\nproperty float z\nend_header\n"
                       + bytes(24), "declares 4000000000 vertex rows"),
    "short_ascii.ply": (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\n"
                        b"property float y\nproperty float z\nend_header\n0 0 0\n1 1\n",
                        "not a readable PLY"),
    "letters.ply": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                    b"property float y\nproperty float z\nend_header\na b c\n",
                    "not a readable PLY"),
    "bad_type.ply": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float16 x\n"
                     b"end_header\n0\n", "not a readable PLY"),
    "nan.ply": (b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                b"property float z\nend_header\n0 0 0\nnan 1 1\n", "1 vertices have NaN/inf"),
    "no_xyz.ply": (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                   b"end_header\n0\n", r"lacks \['y', 'z'\]"),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_broken_corpus_is_refused_with_the_file_name(tmp_path, name):
    blob, message = CORPUS[name]
    path = tmp_path / name
    path.write_bytes(blob)
    with pytest.raises(DataError, match=message) as exc:
        read_ply(path)
    assert exc.value.path == path
