"""S3DIS readers (Annotations, N x 8 npy, mmdet3d bin) and the area split into the layout."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from xmask3d.data.prepare import add_parser
from xmask3d.data.processed import ProcessedLayout, load_point_file
from xmask3d.data.s3dis import (
    find_s3dis_rooms,
    read_s3dis_bin,
    read_s3dis_npy,
    read_s3dis_room,
    s3dis_class_index,
)
from xmask3d.errors import DataError

# (file stem, expected class index, rows "x y z r g b")
ANNOTATIONS = [
    ("chair_1", 8, [[0.5, 1.25, 0.0, 10, 20, 30], [0.75, 1.0, 0.5, 11, 21, 31]]),
    ("stairs_1", 12, [[3.0, 3.0, 3.0, 255, 0, 128]]),
    ("table_2", 7, [[1.0, 2.0, 0.75, 1, 2, 3], [1.5, 2.5, 0.75, 4, 5, 6], [2, 2, 0.7, 7, 8, 9]]),
    ("wall_1", 2, [[0.0, 0.0, 2.5, 200, 201, 202]]),
]


def _write_room(room_dir, stray_byte: bool = True):
    ann = room_dir / "Annotations"
    ann.mkdir(parents=True)
    for stem, _, rows in ANNOTATIONS:
        lines = [" ".join(f"{v:g}" for v in r) for r in rows]
        (ann / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    if stray_byte:  # S3DIS v1.2 Area_5/hallway_6 has a control byte inside a number line
        (ann / "wall_1.txt").write_bytes(b"0 0 2.5 200 201 202\x10\n")


def _expected():
    rows = np.concatenate([np.asarray(r, dtype=np.float64) for _, _, r in ANNOTATIONS])
    sem = np.concatenate([[c] * len(r) for _, c, r in ANNOTATIONS])
    inst = np.concatenate([[k + 1] * len(r) for k, (_, _, r) in enumerate(ANNOTATIONS)])
    return rows, sem, inst


def test_class_index_by_name():
    assert [s3dis_class_index(n) for n in ("ceiling", "Bookcase", "clutter", "stairs")] == [
        0, 10, 12, 12]


def test_read_annotations_room(tmp_path):
    _write_room(tmp_path / "Area_1" / "office_1")
    scene = read_s3dis_room(tmp_path / "Area_1" / "office_1")
    rows, sem, inst = _expected()
    assert scene.name == "Area_1_office_1"
    np.testing.assert_array_equal(scene.points, rows[:, :3].astype(np.float32))
    np.testing.assert_array_equal(scene.colors, rows[:, 3:].astype(np.uint8))
    np.testing.assert_array_equal(scene.labels, sem)
    np.testing.assert_array_equal(scene.instances, inst)


def test_annotation_errors_name_file_and_line(tmp_path):
    room = tmp_path / "Area_2" / "wc_1"
    _write_room(room, stray_byte=False)
    bad = room / "Annotations" / "table_2.txt"
    bad.write_text("1 2 3 4 5 6\n1 2 3 4 5\n")
    with pytest.raises(DataError, match="line 2: expected 6 values") as exc:
        read_s3dis_room(room)
    assert exc.value.path == bad
    with pytest.raises(DataError, match="no <class>_<k>.txt"):
        read_s3dis_room(tmp_path / "Area_2" / "empty")


def test_npy_and_bin_forms(tmp_path):
    rows, sem, inst = _expected()
    arr = np.concatenate([rows, sem[:, None], inst[:, None]], axis=1)
    np.save(tmp_path / "Area_3_lobby_1.npy", arr)
    scene = read_s3dis_npy(tmp_path / "Area_3_lobby_1.npy")
    np.testing.assert_array_equal(scene.labels, sem)
    np.testing.assert_array_equal(scene.instances, inst)
    np.testing.assert_array_equal(scene.colors, rows[:, 3:].astype(np.uint8))
    rows.astype(np.float32).tofile(tmp_path / "Area_4_office_9_points.bin")
    sem.astype(np.int64).tofile(tmp_path / "Area_4_office_9_semantic_mask.bin")
    scene = read_s3dis_bin(tmp_path / "Area_4_office_9_points.bin")
    assert scene.name == "Area_4_office_9"
    np.testing.assert_array_equal(scene.points, rows[:, :3].astype(np.float32))
    np.testing.assert_array_equal(scene.labels, sem)
    np.testing.assert_array_equal(scene.instances, np.zeros(len(sem)))  # no instance file


def test_npy_and_bin_errors(tmp_path):
    np.save(tmp_path / "Area_1_a.npy", np.zeros((4, 7)))
    with pytest.raises(DataError, match=r"\(N, 8\)") as exc:
        read_s3dis_npy(tmp_path / "Area_1_a.npy")
    assert exc.value.path == tmp_path / "Area_1_a.npy"
    bad_sem = np.zeros((2, 8))
    bad_sem[1, 6] = 13
    np.save(tmp_path / "Area_1_b.npy", bad_sem)
    with pytest.raises(DataError, match=r"outside 0\.\.12: \[13\]"):
        read_s3dis_npy(tmp_path / "Area_1_b.npy")
    np.zeros((5, 6), np.float32).tofile(tmp_path / "Area_1_c_points.bin")
    np.zeros(4, np.int64).tofile(tmp_path / "Area_1_c_semantic_mask.bin")
    with pytest.raises(DataError, match="4 int64 values, expected 5 x 1") as exc:
        read_s3dis_bin(tmp_path / "Area_1_c_points.bin")
    assert exc.value.path == tmp_path / "Area_1_c_semantic_mask.bin"


def test_prepare_s3dis_splits_by_area(tmp_path):
    raw = tmp_path / "raw"
    _write_room(raw / "Area_1" / "office_1")
    rows, sem, inst = _expected()
    np.save(raw / "Area_5_hallway_2.npy", np.concatenate([rows, sem[:, None], inst[:, None]], 1))
    assert [(r.name, r.area, r.kind) for r in find_s3dis_rooms(raw)] == [
        ("Area_1_office_1", 1, "annotations"), ("Area_5_hallway_2", 5, "npy")]
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["prepare", "s3dis", "--raw", str(raw), "--out", str(tmp_path / "o"),
                              "--test-area", "5"])
    assert args.func(args) == 0
    layout = ProcessedLayout(tmp_path / "o")
    assert layout.scene_names("train") == ["Area_1_office_1"]
    assert layout.scene_names("val") == ["Area_5_hallway_2"]
    pts, cols, labels = load_point_file(layout.point_file("val", "Area_5_hallway_2"))
    np.testing.assert_array_equal(labels, sem)
    np.testing.assert_array_equal(cols, rows[:, 3:].astype(np.uint8))
    np.testing.assert_allclose(pts, rows[:, :3], atol=1e-6)
