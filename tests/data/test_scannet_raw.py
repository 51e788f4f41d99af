"""Raw ScanNet scene folders -> processed layout: labels, raw ids, instances, frames, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from xmask3d.data.labels import raw_to_scannet200
from xmask3d.data.ply import write_ply
from xmask3d.data.prepare import add_parser
from xmask3d.data.processed import ProcessedLayout
from xmask3d.data.scannet_raw import convert_scannet_scene
from xmask3d.data.sens import write_sens
from xmask3d.errors import DataError

TSV_ROWS = [  # id, raw_category, nyu40id
    (1, "wall", 1), (2, "chair", 5), (3, "floor", 2), (22, "tv", 25), (1163, "stick", 40),
]
# 8 vertices; segments: vertex i belongs to segment SEGS[i]
SEGS = [10, 10, 11, 12, 12, 13, 14, 14]
GROUPS = [  # objectId, raw category, segments
    (0, "wall", [10]), (1, "chair", [12]), (2, "tv", [13]), (3, "nonsense", [14]),
]
# per vertex: raw id (0 where unannotated / unknown category) and instance (objectId + 1)
RAW_IDS = [1, 1, 0, 2, 2, 22, 0, 0]
INSTANCES = [1, 1, 0, 2, 2, 3, 4, 4]
NYU40 = np.array([1, 1, 0, 5, 5, 25, 2, 39], dtype=np.uint16)  # labels.ply (independent of agg)
SCANNET20 = [0, 0, 255, 4, 4, 255, 1, 19]


def _write_tsv(path):
    lines = ["id\traw_category\tcategory\tcount\tnyu40id"]
    lines += [f"{i}\t{name}\t{name}\t1\t{nyu}" for i, name, nyu in TSV_ROWS]
    path.write_text("\n".join(lines) + "\n")
    return path


def _make_scene(raw_dir, name: str, *, seed: int = 0, sens: bool = False):
    rng = np.random.default_rng(seed)
    d = raw_dir / name
    d.mkdir(parents=True)
    pts = rng.uniform(0, 4, (8, 3)).astype(np.float32)
    cols = rng.integers(0, 256, (8, 3)).astype(np.uint8)
    write_ply(d / f"{name}_vh_clean_2.ply", pts, cols)
    write_ply(d / f"{name}_vh_clean_2.labels.ply", pts, cols, label=NYU40)
    groups = [{"id": k, "objectId": o, "label": lab, "segments": s}
              for k, (o, lab, s) in enumerate(GROUPS)]
    (d / f"{name}.aggregation.json").write_text(json.dumps({"sceneId": name, "segGroups": groups}))
    (d / f"{name}_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": SEGS}))
    if sens:
        yy, xx = np.mgrid[0:48, 0:64]
        color = np.stack([xx * 3, yy * 4, xx + yy], -1).astype(np.uint8)
        depth = np.full((48, 64), 1500, dtype=np.uint16)
        write_sens(d / f"{name}.sens", colors=[color] * 3, depths=[depth] * 3,
                   poses=[np.eye(4)] * 3, intrinsic_color=np.diag([60.0, 60.0, 1.0]),
                   intrinsic_depth=np.diag([60.0, 60.0, 1.0]))
        (d / "label-filt").mkdir()
        for i in range(3):
            Image.fromarray(np.full((48, 64), 2, dtype=np.uint16)).save(d / f"label-filt/{i}.png")
    return d, pts, cols


def test_convert_scene_value_by_value(tmp_path):
    scene_dir, pts, cols = _make_scene(tmp_path / "raw", "scene0001_00", sens=True)
    root = tmp_path / "out"
    scene = convert_scannet_scene(scene_dir, root, split="val", tsv=_write_tsv(tmp_path / "l.tsv"),
                                  frame_skip=2)
    np.testing.assert_array_equal(scene.instances, INSTANCES)
    layout = ProcessedLayout(root)
    assert layout.scene_names("val") == ["scene0001_00"]
    loaded = layout.load_scene("val", "scene0001_00")
    np.testing.assert_array_equal(loaded.points, pts)
    np.testing.assert_array_equal(loaded.colors, cols)
    np.testing.assert_array_equal(loaded.labels, SCANNET20)
    raw = np.loadtxt(root / "scannet_3d_200/val/scene0001_00.txt", dtype=np.int64)
    np.testing.assert_array_equal(raw, RAW_IDS)
    s200 = layout.load_scene("val", "scene0001_00", label_set="scannet200")
    np.testing.assert_array_equal(s200.labels, raw_to_scannet200(np.array(RAW_IDS)))
    assert s200.labels[0] == 0 and s200.labels[3] == 1  # wall, chair
    assert layout.frame_names("scene0001_00") == ["0", "2"]
    view = layout.load_view("scene0001_00", "2")
    assert view.color.shape == (240, 320, 3)
    np.testing.assert_array_equal(view.depth, np.full((240, 320), 1.5, dtype=np.float32))
    np.testing.assert_array_equal(view.label, np.full((240, 320), 4))  # raw 2 = chair -> idx 4
    K = layout.intrinsics("scene0001_00")
    # 64x48 -> 320x240 scales by 5; c' = (c + 0.5) * 5 - 0.5 with c = 0
    np.testing.assert_allclose(K, [[300.0, 0, 2.0], [0, 300.0, 2.0], [0, 0, 1]], atol=1e-6)


def test_nyu40_from_aggregation_when_labels_ply_missing(tmp_path):
    scene_dir, *_ = _make_scene(tmp_path / "raw", "scene0002_00")
    (scene_dir / "scene0002_00_vh_clean_2.labels.ply").unlink()
    scene = convert_scannet_scene(scene_dir, tmp_path / "out", split="train",
                                  tsv=_write_tsv(tmp_path / "l.tsv"), export_images=False)
    # raw 1 wall -> nyu 1 -> 0; raw 2 chair -> nyu 5 -> 4; raw 22 tv -> nyu 25 -> ignore
    np.testing.assert_array_equal(scene.labels, [0, 0, 255, 4, 4, 255, 255, 255])


def test_inconsistent_inputs_name_the_file(tmp_path):
    tsv = _write_tsv(tmp_path / "l.tsv")
    scene_dir, pts, cols = _make_scene(tmp_path / "raw", "scene0003_00")
    segs = scene_dir / "scene0003_00_vh_clean_2.0.010000.segs.json"
    segs.write_text(json.dumps({"segIndices": SEGS[:-1]}))
    with pytest.raises(DataError, match="7 segIndices for a mesh of 8") as exc:
        convert_scannet_scene(scene_dir, tmp_path / "o", split="val", tsv=tsv)
    assert exc.value.path == segs
    segs.write_text(json.dumps({"segIndices": SEGS}))
    labels_ply = scene_dir / "scene0003_00_vh_clean_2.labels.ply"
    write_ply(labels_ply, pts[:6], cols[:6], label=NYU40[:6])
    with pytest.raises(DataError, match="6 vertices but the mesh has 8") as exc:
        convert_scannet_scene(scene_dir, tmp_path / "o", split="val", tsv=tsv)
    assert exc.value.path == labels_ply
    write_ply(labels_ply, pts, cols, category=NYU40)
    with pytest.raises(DataError, match="no vertex field 'label'"):
        convert_scannet_scene(scene_dir, tmp_path / "o", split="val", tsv=tsv)
    agg = scene_dir / "scene0003_00.aggregation.json"
    agg.write_text("{not json")
    with pytest.raises(DataError, match="invalid JSON") as exc:
        convert_scannet_scene(scene_dir, tmp_path / "o", split="val", tsv=tsv)
    assert exc.value.path == agg


def _run(argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_prepare_scannet_cli_with_scene_list(tmp_path):
    raw = tmp_path / "scans"
    for k in range(3):
        _make_scene(raw, f"scene000{k}_00", seed=k)
    _write_tsv(tmp_path / "scannetv2-labels.combined.tsv")  # found in the parent of --raw
    (tmp_path / "list.txt").write_text("scene0002_00\n\nscene0000_00\n")
    out = tmp_path / "out"
    assert _run(["prepare", "scannet", "--raw", str(raw), "--out", str(out), "--split", "train",
                 "--scenes", str(tmp_path / "list.txt")]) == 0
    assert ProcessedLayout(out).scene_names("train") == ["scene0000_00", "scene0002_00"]
    (tmp_path / "bad.txt").write_text("scene0009_00\n")
    with pytest.raises(DataError, match="1 listed scenes have no folder"):
        _run(["prepare", "scannet", "--raw", str(raw), "--out", str(out), "--split", "val",
              "--scenes", str(tmp_path / "bad.txt")])
