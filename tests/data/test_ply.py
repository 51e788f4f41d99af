"""PLY reading/writing: value-exact round trips, colour conversion, and errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from xmask3d.data.ply import read_ply, write_ply
from xmask3d.errors import DataError


def _cloud(n: int = 7, seed: int = 0):
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3)).astype(np.float32)
    cols = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    return pts, cols


def _write_raw(path, arrays: dict[str, np.ndarray], element: str = "vertex"):
    n = len(next(iter(arrays.values())))
    table = np.empty(n, dtype=[(k, v.dtype) for k, v in arrays.items()])
    for k, v in arrays.items():
        table[k] = v
    PlyData([PlyElement.describe(table, element)]).write(str(path))


@pytest.mark.parametrize("binary", [True, False])
def test_round_trip_with_fields(tmp_path, binary):
    pts, cols = _cloud()
    label = np.array([0, 1, 2, 39, 40, 1000, 65535], dtype=np.int64)
    score = np.linspace(-1, 1, 7).astype(np.float32)
    path = tmp_path / "sub" / "c.ply"
    write_ply(path, pts, cols, binary=binary, label=label, score=score)
    cloud = read_ply(path)
    np.testing.assert_array_equal(cloud.points, pts)
    np.testing.assert_array_equal(cloud.colors, cols)
    np.testing.assert_array_equal(cloud.fields["label"], label)
    assert cloud.fields["label"].dtype == np.int32  # int64 is narrowed to a PLY type
    np.testing.assert_array_equal(cloud.fields["score"], score)
    assert sorted(cloud.fields) == ["label", "score"]
    assert [p.name for p in path.parent.iterdir()] == ["c.ply"]  # no temporary file left


def test_no_colour_gives_none(tmp_path):
    pts, _ = _cloud()
    write_ply(tmp_path / "a.ply", pts)
    cloud = read_ply(tmp_path / "a.ply")
    assert cloud.colors is None and cloud.fields == {}
    np.testing.assert_array_equal(cloud.points, pts)


def test_float_colours_in_unit_range_are_scaled(tmp_path):
    x = np.arange(3, dtype=np.float32)
    # no value * 255 lies near x.5 (0.5, 0.1 and 0.9 would sit on the rounding boundary)
    rgb = np.array([[0.0, 0.502, 1.0], [1.0, 0.0, 0.2], [0.12, 0.88, 0.0]], dtype=np.float32)
    _write_raw(tmp_path / "f.ply", {"x": x, "y": x, "z": x, "r": rgb[:, 0], "g": rgb[:, 1],
                                    "b": rgb[:, 2]})
    cloud = read_ply(tmp_path / "f.ply")
    np.testing.assert_array_equal(cloud.colors, [[0, 128, 255], [255, 0, 51], [31, 224, 0]])


def test_errors_name_the_file(tmp_path):
    x = np.arange(3, dtype=np.float32)
    cases = {
        "face.ply": ({"x": x, "y": x, "z": x}, "face", "no 'vertex' element"),
        "noz.ply": ({"x": x, "y": x}, "vertex", r"lacks \['z'\]"),
        "nan.ply": ({"x": x, "y": x, "z": np.array([0, np.nan, np.inf], np.float32)}, "vertex",
                    "2 vertices have NaN/inf"),
    }
    for name, (arrays, element, message) in cases.items():
        _write_raw(tmp_path / name, arrays, element)
        with pytest.raises(DataError, match=message) as exc:
            read_ply(tmp_path / name)
        assert exc.value.path == tmp_path / name
    empty = np.empty(0, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(empty, "vertex")]).write(str(tmp_path / "zero.ply"))
    with pytest.raises(DataError, match="zero vertices"):
        read_ply(tmp_path / "zero.ply")
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all\n")
    with pytest.raises(DataError, match="not a readable PLY") as exc:
        read_ply(tmp_path / "junk.ply")
    assert exc.value.path == tmp_path / "junk.ply"
    with pytest.raises(DataError, match="not found"):
        read_ply(tmp_path / "missing.ply")


def test_write_rejects_wrong_lengths_without_leaving_a_file(tmp_path):
    pts, cols = _cloud()
    path = tmp_path / "bad.ply"
    with pytest.raises(DataError, match=r"colors must be \(7, 3\)"):
        write_ply(path, pts, cols[:5])
    with pytest.raises(DataError, match="field 'label'"):
        write_ply(path, pts, cols, label=np.zeros(6, dtype=np.int32))
    with pytest.raises(DataError, match=r"points must be \(N, 3\)"):
        write_ply(path, pts[:, :2])
    with pytest.raises(DataError, match="outside the int32 range"):
        write_ply(path, pts, label=np.full(7, 2**40, dtype=np.int64))
    with pytest.raises(DataError, match="NaN/inf"):
        write_ply(path, np.full((7, 3), np.nan))
    assert not path.exists() and list(tmp_path.iterdir()) == []
