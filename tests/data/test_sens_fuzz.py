"""Fuzzing (Hypothesis) of the ScanNet ``.sens`` reader and export.

Property: reading every frame of a corrupt file returns images of the header's sizes, or
raises ``DataError`` naming the file; never another exception, a hang or a huge allocation
(sizes in headers are checked against the file before anything is read).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis: pip install -e '.[test]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from xmask3d.data.sens import SensReader, export_sens, write_sens  # noqa: E402
from xmask3d.errors import DataError  # noqa: E402

FIXTURE_OK = [HealthCheck.function_scoped_fixture]
K = np.array([[10.0, 0, 3.5], [0, 10.0, 2.5], [0, 0, 1]])
# byte offsets of the header fields (sensor name "xmask3d", 7 bytes)
_NAME_LEN, _COMP, _SIZES, _COUNT = 4, 12 + 7 + 256, 12 + 7 + 264, 12 + 7 + 284
_FIELDS = {"name length": (_NAME_LEN, "<Q"), "colour compression": (_COMP, "<i"),
           "depth compression": (_COMP + 4, "<i"), "colour width": (_SIZES, "<I"),
           "depth height": (_SIZES + 12, "<I"), "depth shift": (_SIZES + 16, "<f"),
           "frame count": (_COUNT, "<Q"), "frame 0 colour size": (_COUNT + 8 + 64 + 16, "<Q"),
           "frame 0 depth size": (_COUNT + 8 + 64 + 24, "<Q")}
_VALUES = st.sampled_from([0, 1, 2, 3, 7, 255, 2**31 - 1, 2**32 - 1])


def _make(path, color_compression: str) -> tuple[list, list]:
    rng = np.random.default_rng(0)
    colors = [rng.integers(0, 256, (6, 8, 3)).astype(np.uint8) for _ in range(2)]
    depths = [rng.integers(0, 5000, (3, 4)).astype(np.uint16) for _ in range(2)]
    poses = [np.eye(4), np.diag([1.0, -1.0, -1.0, 1.0])]
    write_sens(path, colors=colors, depths=depths, poses=poses, intrinsic_color=K,
               intrinsic_depth=K, color_compression=color_compression)
    return colors, depths


def _read_all(path):
    with SensReader(path) as reader:
        out = [(reader.decode_color(f), reader.decode_depth(f)) for f in reader.frames()]
        return reader.header, out


@pytest.mark.parametrize("compression", ["png", "raw", "jpeg"])
def test_unmutated_file_and_field_offsets(tmp_path, compression):
    colors, depths = _make(tmp_path / "a.sens", compression)
    hdr, frames = _read_all(tmp_path / "a.sens")
    assert (hdr.color_wh, hdr.depth_wh, hdr.num_frames) == ((8, 6), (4, 3), 2)
    blob = (tmp_path / "a.sens").read_bytes()
    assert struct.unpack_from("<Q", blob, _COUNT)[0] == 2   # the offsets above are right
    assert struct.unpack_from("<f", blob, _SIZES + 16)[0] == 1000.0
    for (c, d), c0, d0 in zip(frames, colors, depths, strict=True):
        np.testing.assert_array_equal(d, d0)
        if compression != "jpeg":
            np.testing.assert_array_equal(c, c0)


@settings(max_examples=150, suppress_health_check=FIXTURE_OK)
@given(data=st.data(), compression=st.sampled_from(["png", "raw"]),
       field=st.sampled_from([None, *_FIELDS]))
def test_corrupt_sens_is_read_or_refused_with_the_file_name(tmp_path, time_guard, mutate, data,
                                                            compression, field):
    path = tmp_path / "f.sens"
    _make(path, compression)
    blob = path.read_bytes()
    if field is None:
        _, blob = mutate(data.draw, blob)
    else:
        offset, fmt = _FIELDS[field]
        value = data.draw(_VALUES) if fmt != "<f" else data.draw(st.sampled_from(
            [0.0, -1.0, float("nan"), float("inf"), 1e-30]))
        if fmt == "<i" and value >= 2**31:
            value -= 2**32
        blob = blob[:offset] + struct.pack(fmt, value) + blob[offset + struct.calcsize(fmt):]
    path.write_bytes(blob)
    with time_guard(10.0):
        try:
            hdr, frames = _read_all(path)
        except DataError as exc:
            assert exc.path == path and str(path) in str(exc)
            return
    cw, ch = hdr.color_wh
    dw, dh = hdr.depth_wh
    for color, depth in frames:
        assert color.shape == (ch, cw, 3) and color.dtype == np.uint8
        assert depth.shape == (dh, dw) and depth.dtype == np.uint16


@settings(max_examples=40, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_export_of_a_corrupt_sens_succeeds_or_is_refused(tmp_path, time_guard, mutate, data):
    path = tmp_path / "e.sens"
    _make(path, "png")
    _, bad = mutate(data.draw, path.read_bytes())
    path.write_bytes(bad)
    with time_guard(10.0):
        try:
            names = export_sens(path, tmp_path / "out", "s", frame_skip=1, size=(8, 6))
        except DataError as exc:
            assert str(path) in str(exc)
            return
    assert set(names) <= {"0", "1"}
