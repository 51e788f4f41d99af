"""The written dataset: readers load it, it is deterministic, and its parts agree."""

from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np
import pytest
from scipy.ndimage import minimum_filter
from scipy.spatial import cKDTree

from xmask3d.data.labels import SCANNET20_NAMES, nyu40_to_scannet20
from xmask3d.data.processed import (
    SCANNET_DEFAULT_INTRINSICS_320x240,
    ProcessedLayout,
    load_point_file,
)
from xmask3d.data.synth import SynthConfig, generate_dataset, generate_scan, split_of
from xmask3d.data.synth.cli import add_parser
from xmask3d.errors import ConfigError



def _digest(path):
    if path.suffix == ".pth":  # torch.save embeds the (temporary) file name: hash the arrays
        return hashlib.sha256(b"".join(a.tobytes() for a in load_point_file(path))).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digests(root):
    skip = {"synth_meta/dataset.json"}  # holds timings
    return {str(p.relative_to(root)): _digest(p) for p in sorted(root.rglob("*"))
            if p.is_file() and str(p.relative_to(root)) not in skip}


def test_same_seed_same_bytes_for_any_worker_count(tiny_root, tiny_config, tmp_path):
    generate_dataset(tmp_path / "w1", tiny_config, workers=1, progress=False)
    a, b = _digests(tiny_root), _digests(tmp_path / "w1")
    assert len(a) > 20 and a == b
    other = SynthConfig(**{**tiny_config.__dict__, "seed": tiny_config.seed + 1})
    generate_dataset(tmp_path / "s2", other, workers=1, progress=False)
    c = _digests(tmp_path / "s2")
    pth = "scannet_3d/train/synth_0000_00_vh_clean_2.pth"
    assert c[pth] != a[pth] and c["captions.json"] != a["captions.json"]


def test_readers_load_every_scene_and_view(tiny_root):
    layout = ProcessedLayout(tiny_root)
    train, val = layout.scene_names("train"), layout.scene_names("val")
    assert train == ["synth_0000_00", "synth_0001_00"] and val == ["synth_0002_00"]
    for split, names in (("train", train), ("val", val)):
        for name in names:
            scene = layout.load_scene(split, name)
            s200 = layout.load_scene(split, name, label_set="scannet200")
            assert scene.num_points > 3000 and scene.points.dtype == np.float32
            assert set(np.unique(scene.labels)) <= set(range(20)) | {255}
            assert (s200.labels != 255).mean() > 0.9  # ScanNet200 names almost everything
            assert layout.frame_names(name) == ["0", "20"]
            for frame in layout.frame_names(name):
                v = layout.load_view(name, frame)
                assert v.color.shape == (240, 320, 3) and v.depth.shape == (240, 320)
                assert v.caption and (v.depth > 0).mean() > 0.99
                np.testing.assert_allclose(v.intrinsics, SCANNET_DEFAULT_INTRINSICS_320x240)
                assert layout.load_view(name, frame, label_set="scannet200").label is not None


def _unproject(view):
    K = view.intrinsics
    rows, cols = np.nonzero(view.depth > 0)
    z = view.depth[rows, cols].astype(np.float64)
    cam = np.stack([(cols - K[0, 2]) / K[0, 0] * z, (rows - K[1, 2]) / K[1, 1] * z, z], 1)
    return cam @ view.pose[:3, :3].T + view.pose[:3, 3], rows, cols


def test_depth_labels_and_points_agree(dense_scan, tmp_path):
    """Every depth pixel back-projects onto the point cloud, with the same label; and no
    point floats in front of the surface the depth map sees."""
    from xmask3d.data.synth.generate import write_scan

    write_scan(tmp_path, dense_scan, "train")
    layout = ProcessedLayout(tmp_path)
    scene = layout.load_scene("train", dense_scan.name)
    tree = cKDTree(scene.points)
    for frame in layout.frame_names(dense_scan.name):
        view = layout.load_view(dense_scan.name, frame)
        world, rows, cols = _unproject(view)
        dist, idx = tree.query(world)
        assert np.mean(dist < 0.03) > 0.95
        lab, pix = scene.labels[idx], view.label[rows, cols]
        close = dist < 0.03
        assert np.mean(lab[close] == pix[close]) > 0.95
        cam = (scene.points - view.pose[:3, 3]) @ view.pose[:3, :3]
        front = cam[:, 2] > 0.1
        u = np.round(288.935 * cam[front, 0] / cam[front, 2] + 159.5).astype(int)
        v = np.round(288.935 * cam[front, 1] / cam[front, 2] + 119.5).astype(int)
        ok = (u >= 0) & (u < 320) & (v >= 0) & (v < 240)
        z, d = cam[front, 2][ok], view.depth[v[ok], u[ok]]
        # at silhouettes a point's rounded pixel may see the background: compare with the
        # nearest depth of the 3x3 neighbourhood
        d_near = minimum_filter(view.depth, size=3)[v[ok], u[ok]]
        assert ok.sum() > 5000 and np.mean(z < d_near - 0.03) < 0.005
        assert np.mean(np.abs(z - d) < 0.015) > 0.3  # a good part of the points is seen


def test_point_labels_cover_all_classes_in_five_scenes():
    counts = np.zeros(256, dtype=np.int64)
    for i in range(5):
        scan = generate_scan(i, seed=1, n_views=1, density=60.0)
        counts += np.bincount(scan.labels, minlength=256)
        assert scan.colors.dtype == np.uint8 and np.unique(scan.instances).size > 10
    missing = [n for k, n in enumerate(SCANNET20_NAMES) if counts[k] == 0]
    assert not missing and counts[255] > 0  # ceiling and clutter are ignore regions


def test_views_and_captions_agree(dense_scan):
    from xmask3d.data.synth.captions import ROOM_WORDS, SYNONYMS

    words = {n: syn for n, syn in SYNONYMS.items()}
    for view in dense_scan.views:
        classes = nyu40_to_scannet20(view.nyu40)
        assert set(np.unique(classes)) <= set(range(20)) | {255}
        names = {p.name for p in dense_scan.room.primitives
                 if p.instance in set(np.unique(view.instance).tolist())}
        mentioned = [w for n in names for w in words.get(n, (n,)) if w in view.caption]
        assert mentioned or "wall" in view.caption, view.caption
    assert any(any(w in v.caption for w in ROOM_WORDS["bedroom"]) for v in dense_scan.views)


def test_split_rule():
    assert [split_of(i, 10, 0.2) for i in range(10)].count("val") == 2
    assert split_of(4, 10, 0.2) == "val" and split_of(9, 10, 0.2) == "val"
    assert [split_of(i, 3, 0.0) for i in range(3)] == ["train"] * 3
    assert [split_of(i, 2, 0.2) for i in range(2)] == ["train", "val"]


def _args(*argv):
    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers())
    return ap.parse_args(["synth", *argv])


def test_cli_runs_refuses_to_clobber_and_validates(tmp_path, capsys):
    out = tmp_path / "cli"
    base = ["--out", str(out), "--scenes", "1", "--views", "1", "--density", "40",
            "--no-progress"]
    args = _args(*base)
    assert args.func(args) == 0 and "wrote 1 scenes x 1 views" in capsys.readouterr().out
    meta = json.loads((out / "synth_meta" / "dataset.json").read_text())
    assert meta["complete"] and meta["config"]["density"] == 40.0
    with pytest.raises(ConfigError, match="--overwrite"):
        args.func(args)
    args = _args(*base, "--overwrite")
    assert args.func(args) == 0
    for bad, msg in ((["--scenes", "0"], "--scenes"), (["--val-fraction", "1.0"], "--val-f"),
                     (["--workers", "0"], "--workers"), (["--density", "-1"], "--density")):
        args = _args(*base, "--overwrite", *bad)
        with pytest.raises(ConfigError, match=msg):
            args.func(args)
    foreign = tmp_path / "foreign"
    (foreign / "scannet_3d").mkdir(parents=True)
    args = _args("--out", str(foreign), "--overwrite")
    with pytest.raises(ConfigError, match="did not write"):
        args.func(args)
