"""``xmask3d segment``: vocabulary parsing, label assignment, refused inputs, end-to-end runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from plyfile import PlyData, PlyElement

from xmask3d.apps.common import parse_names
from xmask3d.apps.inference import load_inference_model, make_sample
from xmask3d.apps.other import DEFAULT_OTHER_BELOW
from xmask3d.apps.segment import class_summary, point_probabilities
from xmask3d.apps.virtual_views import render_virtual_views
from xmask3d.cli import main
from xmask3d.config import FusionCfg
from xmask3d.data.dataset import collate_views
from xmask3d.data.orientation import detect_frame
from xmask3d.data.ply import read_ply, write_ply
from xmask3d.data.scene import Scene
from xmask3d.errors import ConfigError


def test_parse_names():
    assert parse_names(" chair, sofa|couch ,lamp ", what="--classes") == \
        ["chair", "sofa|couch", "lamp"]
    for bad, msg in (("", "empty"), (" , ", "empty"), ("chair,,lamp", "entry 2"),
                     ("chair, chair", "repeated")):
        with pytest.raises(ConfigError, match=msg):
            parse_names(bad, what="--classes")


def test_class_summary_lists_points_and_shares():
    text = class_summary(["floor", "sofa", "lamp"], np.array([30, 60, 10]))
    assert text.splitlines() == ["class      points   share",
                                 "sofa           60   60.0%",
                                 "floor          30   30.0%",
                                 "lamp           10   10.0%"]


def test_point_probabilities_gating_by_binary_head():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    novel = torch.tensor([False, False, True])
    scale = torch.tensor(2.0)
    off = point_probabilities(feats, torch.tensor([5.0, -5.0]), scale, class_embeds=classes,
                              is_novel_class=novel, fusion_cfg=FusionCfg(gating=False))
    cos = torch.tensor([[1.0, 0.0, math.sqrt(0.5)], [0.0, 1.0, math.sqrt(0.5)]])
    torch.testing.assert_close(off, torch.softmax(2.0 * cos, dim=1))
    on = point_probabilities(feats, torch.tensor([5.0, -5.0]), scale, class_embeds=classes,
                             is_novel_class=novel, fusion_cfg=FusionCfg(gating=True))
    # gating masks classes out of the full softmax (as evaluation does); it does not renormalise
    torch.testing.assert_close(on[0], off[0] * torch.tensor([1.0, 1.0, 0.0]))   # base point
    torch.testing.assert_close(on[1], off[1] * torch.tensor([0.0, 0.0, 1.0]))   # novel point


# ---- refused inputs (all through cli.main: exit code 1 and a message naming the problem) ----

def _segment(args, capsys) -> tuple[int, str]:
    code = main(["segment", *args])
    return code, capsys.readouterr().err


def _write_empty_ply(path):
    table = np.empty(0, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    PlyData([PlyElement.describe(table, "vertex")]).write(str(path))


def _write_nan_ply(path):
    table = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    table["y"][1] = np.nan
    PlyData([PlyElement.describe(table, "vertex")]).write(str(path))


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"), ("unreadable", "not a readable PLY"), ("nan", "NaN/inf"),
    ("inf_npy", "NaN/inf"), ("empty", "zero vertices"), ("empty_npy", "non-empty"),
])
def test_bad_scans_are_refused(case, message, tmp_path, capsys):
    path = tmp_path / ("scan.npy" if case.endswith("npy") else "scan.ply")
    if case == "unreadable":
        path.write_bytes(b"ply\nformat nonsense\n\x00\x01")
    elif case == "nan":
        _write_nan_ply(path)
    elif case == "inf_npy":
        np.save(path, np.array([[0, 0, 0], [np.inf, 0, 0]], np.float32))
    elif case == "empty":
        _write_empty_ply(path)
    elif case == "empty_npy":
        np.save(path, np.zeros((0, 3), np.float32))
    code, err = _segment([str(path), "--classes", "chair", "--out", str(tmp_path / "o")], capsys)
    assert code == 1
    assert str(path) in err and message in err


def test_tiny_scan_gets_its_own_message_and_runs_without_2d(micro_ckpt, tmp_path, capsys):
    scan = tmp_path / "one.npy"
    np.save(scan, np.array([[0.5, 0.5, 0.5, 200, 30, 30]], np.float32))
    code, err = _segment([str(scan), "--classes", "chair", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and str(scan) in err
    assert "the scan has 1 point; at least 10 are needed" in err and "sees" not in err.split(
        "needed")[0]
    assert main(["segment", str(scan), "--classes", "chair, sofa|couch", "--ckpt",
                 str(micro_ckpt), "--no-2d", "--no-progress", "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "1 point of one.npy (3d-only path)" in printed and "sofa|couch" not in printed


def test_empty_class_list_is_refused(room_ply, tmp_path, capsys):
    code, err = _segment([str(room_ply), "--classes", " , ", "--out", str(tmp_path)], capsys)
    assert code == 1 and "--classes" in err and "empty" in err
    code, err = _segment([str(room_ply), "--classes", "chair", "--base-classes", "sofa",
                          "--out", str(tmp_path)], capsys)
    assert code == 1 and "sofa not in --classes" in err
    code, err = _segment([str(room_ply), "--classes", "sofa|couch, sofa", "--out",
                          str(tmp_path)], capsys)
    assert code == 1 and "two classes are shown as sofa" in err
    code, err = _segment([str(room_ply), "--classes", "sofa|, chair", "--out", str(tmp_path)],
                         capsys)
    assert code == 1 and "empty class name or synonym" in err


def _frames(folder, views, *, pose_text=None, drop_pose=None):
    """Write views as 7-Scenes frames (colour PNG, depth PNG in mm, pose, intrinsics)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "camera-intrinsics.txt", views[0].intrinsics)
    for k, v in enumerate(views):
        stem = folder / f"frame-{k:06d}"
        Image.fromarray(v.color).save(f"{stem}.color.png")
        Image.fromarray(np.round(v.depth * 1000).astype(np.uint16)).save(f"{stem}.depth.png")
        if k != drop_pose:
            text = pose_text or "\n".join(" ".join(f"{x:.9f}" for x in row) for row in v.pose)
            (folder / f"frame-{k:06d}.pose.txt").write_text(text)
    return folder


@pytest.fixture(scope="module")
def room_views(room_factory):
    pts, cols, _ = room_factory()
    return render_virtual_views(pts, cols, hw=(48, 64), num_ring=2, num_top=1, num_extra=0,
                                border=2)


@pytest.mark.parametrize("problem, message", [
    ("missing", "missing pose file"), ("malformed", "pose"),
])
def test_views_with_bad_poses_are_refused(problem, message, room_ply, room_views, tmp_path,
                                          capsys):
    kw = {"drop_pose": 1} if problem == "missing" else {"pose_text": "1 0 0\n0 1"}
    folder = _frames(tmp_path / "frames", room_views, **kw)
    code, err = _segment([str(room_ply), "--classes", "chair", "--views", str(folder),
                          "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "frame-00000" in err and message in err


def test_incompatible_checkpoint_is_refused(room_ply, micro_ckpt, tmp_path, capsys):
    code, err = _segment([str(room_ply), "--classes", "chair", "--ckpt", str(micro_ckpt),
                          "--config", "tiny/scannet_b15n4", "--out", str(tmp_path)], capsys)
    assert code == 1 and str(micro_ckpt) in err and "architecture" in err
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a checkpoint")
    code, err = _segment([str(room_ply), "--classes", "chair", "--ckpt", str(bad),
                          "--out", str(tmp_path)], capsys)
    assert code == 1 and "corrupt or truncated" in err


# ---- end to end ----

def _read_outputs(out):
    summary = json.loads((out / "segment.json").read_text())
    cloud = read_ply(out / "segmentation.ply")
    with Image.open(out / "segmentation.png") as img:
        assert img.size[0] > 800 and img.size[1] > 400
    return summary, cloud


def test_segment_end_to_end_virtual_views(room_ply, micro_ckpt, tmp_path, capsys):
    out = tmp_path / "seg"
    code = main(["segment", str(room_ply), "--classes", "floor, wall, table|desk",
                 "--ckpt", str(micro_ckpt), "--virtual-views", "2", "--other-below", "0.34",
                 "--no-other", "--no-progress", "--out", str(out)])
    assert code == 0
    summary, cloud = _read_outputs(out)
    # stdout: a per-class table (points, share) with the first name of each class
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("points of room.ply (virtual-views path):")
    assert printed[1].split() == ["class", "points", "share"] and printed[-1].startswith("wrote")
    counts = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in printed[2:-1]}
    assert counts == summary["point_counts"]
    assert "table|desk" not in "\n".join(printed)
    assert summary["peak_rss_during_command_mb"] >= summary["rss_at_command_start_mb"] > 0
    n = read_ply(room_ply).num_points
    assert summary["path"] == "virtual-views" and summary["views_used"] >= 3
    # a class is shown by the first name of its entry (the JSON keeps the entries too)
    assert summary["classes"] == ["floor", "wall", "table", "other"]
    assert summary["class_entries"] == ["floor", "wall", "table|desk", "other"]
    assert sum(summary["point_counts"].values()) == n == cloud.num_points
    ids, score = cloud.fields["class_id"], cloud.fields["score"]
    assert ids.min() >= 0 and ids.max() <= 3
    assert ((score >= 1 / 3 - 1e-6) & (score <= 1)).all()       # best of 3 probabilities
    assert ((ids == 3) == (score < 0.34)).all()
    assert 0.3 < summary["seen_fraction"] <= 1.0 and summary["gating"] is False
    # --no-other: no background words were scored, only the cut makes "other"
    assert summary["background_words"] == [] and summary["other_below"] == 0.34


def test_segment_end_to_end_with_views_and_3d_only(room_ply, room_views, micro_ckpt, tmp_path):
    folder = _frames(tmp_path / "frames", room_views)
    out = tmp_path / "seg_views"
    assert main(["segment", str(room_ply), "--classes", "floor, wall, table", "--ckpt",
                 str(micro_ckpt), "--views", str(folder), "--base-classes", "floor, wall",
                 "--no-progress", "--out", str(out)]) == 0
    summary, _ = _read_outputs(out)
    assert summary["path"] == "views" and summary["views_used"] == len(room_views)
    assert summary["views_source"] == str(folder) and summary["gating"] is True
    out3 = tmp_path / "seg3d"
    assert main(["segment", str(room_ply), "--classes", "floor, wall, table", "--ckpt",
                 str(micro_ckpt), "--no-2d", "--chunk-points", "100000", "--no-progress",
                 "--out", str(out3)]) == 0
    summary, cloud = _read_outputs(out3)
    assert summary["path"] == "3d-only" and summary["views_used"] == 0
    # by default the background words the user did not name are scored after the classes and
    # points that pick one are "other" (id 3); the user's "floor" and "wall" stay classes
    assert summary["background_words"] == ["ceiling", "door", "window"]
    assert summary["other_below"] == DEFAULT_OTHER_BELOW
    assert summary["classes"] == ["floor", "wall", "table", "other"]
    assert sum(summary["point_counts"].values()) == cloud.num_points
    # one chunk holds the scan: the labels are the argmax of the model's own 3D logits over the
    # classes and the background words, computed in the scan's canonical frame (metres, +z up,
    # floor at 0)
    lm = load_inference_model(micro_ckpt)
    scene = Scene("room", detect_frame(cloud.points).apply(cloud.points),
                  read_ply(room_ply).colors)
    batch = collate_views([make_sample(scene, np.arange(scene.num_points),
                                       voxel_size=lm.cfg.data.voxel_size, class_names=("p",),
                                       height_channel=lm.cfg.data.height_channel)])
    embeds = lm.text.class_embeddings(["floor", "wall", "table", "ceiling", "door", "window"])
    with torch.no_grad():
        feats = lm.model.encode_3d(batch)[0]
        probs = point_probabilities(feats, torch.zeros(len(feats)),
                                    lm.model.mask_generator.mask_embed.logit_scale(),
                                    class_embeds=embeds, fusion_cfg=FusionCfg(gating=False),
                                    is_novel_class=torch.ones(6, dtype=torch.bool))
    best, win = (t.numpy() for t in probs.max(1))
    clear = np.abs(best - DEFAULT_OTHER_BELOW) > 1e-4          # not on the cut's rounding edge
    np.testing.assert_array_equal(cloud.fields["class_id"][clear], np.where(
        best < DEFAULT_OTHER_BELOW, 3, np.minimum(win, 3))[clear])
    np.testing.assert_allclose(cloud.fields["score"], probs.max(1).values.numpy(), rtol=1e-5)
    # --no-other: the old behaviour, every point takes one of the three classes
    out4 = tmp_path / "seg3d_no_other"
    assert main(["segment", str(room_ply), "--classes", "floor, wall, table", "--ckpt",
                 str(micro_ckpt), "--no-2d", "--chunk-points", "100000", "--no-other",
                 "--no-progress", "--out", str(out4)]) == 0
    summary, cloud = _read_outputs(out4)
    assert summary["classes"] == ["floor", "wall", "table"]
    assert summary["background_words"] == [] and summary["other_below"] is None
    three = probs[:, :3] / probs[:, :3].sum(1, keepdim=True)   # a softmax over three classes
    np.testing.assert_array_equal(cloud.fields["class_id"], three.argmax(1).numpy())
    np.testing.assert_allclose(cloud.fields["score"], three.max(1).values.numpy(), rtol=1e-5)


@pytest.mark.parametrize("extra", [["--no-2d"], ["--virtual-views", "2"]])
def test_a_turned_scan_in_millimetres_gets_the_same_scores(room_ply, micro_ckpt, tmp_path, extra):
    cloud = read_ply(room_ply)
    turned = tmp_path / "turned_mm.ply"   # rotated by 90 degrees about x (z-up -> y-down), in mm
    pts = cloud.points.astype(np.float64)
    write_ply(turned, (np.stack([pts[:, 0], -pts[:, 2], pts[:, 1]], axis=1) * 1000.0)
              .astype(np.float32), cloud.colors)
    runs = []
    for scan, name in ((room_ply, "a"), (turned, "b")):
        assert main(["segment", str(scan), "--classes", "floor, wall, table", "--ckpt",
                     str(micro_ckpt), *extra, "--no-progress", "--out", str(tmp_path / name)]) == 0
        runs.append(_read_outputs(tmp_path / name))
    (first, a), (second, b) = runs
    assert first["frame"]["unit"] == "m" and first["frame"]["up_axis"] == "+z"
    assert second["frame"]["unit"] == "mm" and second["frame"]["up_axis"] == "-y"
    # the model ran on the same canonical points: scores agree except where float rounding moved
    # a point across a voxel boundary
    same = np.abs(a.fields["score"] - b.fields["score"]) < 1e-3
    assert same.mean() > 0.99


def test_a_scan_too_large_for_the_grid_is_refused_with_the_unit_hint(room_ply, micro_ckpt,
                                                                     tmp_path, capsys):
    cloud = read_ply(room_ply)
    big = tmp_path / "mm.ply"     # twice as large as the micro model's voxel grid can hold
    voxel = load_inference_model(micro_ckpt).cfg.data.voxel_size
    factor = 2 * 65536 * voxel / float(np.ptp(cloud.points, axis=0).max())
    write_ply(big, cloud.points * np.float32(factor), cloud.colors)
    assert main(["segment", str(big), "--classes", "floor, wall", "--ckpt", str(micro_ckpt),
                 "--units", "m", "--no-2d", "--no-progress", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "mm.ply" in err and "when read as m" in err and "--units" in err
