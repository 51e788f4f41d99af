"""Shared app pieces: where the views come from, and scan checks."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xmask3d.apps import common, inference
from xmask3d.apps.common import find_views, load_scan
from xmask3d.apps.inference import RENDERED_REL_THRESH, PointScores
from xmask3d.data.processed import save_point_file, write_intrinsics, write_view
from xmask3d.data.scene import Scene, View
from xmask3d.errors import ConfigError, DataError


def _args(scan, **kw) -> argparse.Namespace:
    base = {"scan": str(scan), "views": None, "virtual": False, "no_2d": False}
    return argparse.Namespace(**{**base, **kw})


@pytest.fixture
def processed_scan(tmp_path):
    """A processed-layout scene with two posed RGB-D frames."""
    pts = np.random.default_rng(0).uniform(0, 1, (50, 3))
    scan = tmp_path / "scannet_3d" / "val" / "scene0001_00_vh_clean_2.pth"
    scan.parent.mkdir(parents=True)
    save_point_file(scan, pts, np.full((50, 3), 100, np.uint8), np.zeros(50))
    for k, frame in enumerate(("0", "20")):
        pose = np.eye(4)
        pose[0, 3] = k
        write_view(tmp_path, "scene0001_00", frame, color=np.zeros((24, 32, 3), np.uint8),
                   pose=pose, depth=np.ones((24, 32), np.float32))
    write_intrinsics(tmp_path, "scene0001_00", np.array([[30.0, 0, 16], [0, 30, 12], [0, 0, 1]]))
    return scan


def test_processed_scan_brings_its_frames(processed_scan):
    views, source = find_views(_args(processed_scan))
    assert [v.name for v in views] == ["0", "20"]
    assert source.endswith("scannet_2d/scene0001_00")
    assert views[1].pose[0, 3] == 1.0 and views[0].intrinsics[0, 0] == 30.0
    np.testing.assert_allclose(views[0].depth, 1.0)
    assert find_views(_args(processed_scan, virtual=True)) == ([], "")
    assert find_views(_args(processed_scan, no_2d=True)) == ([], "")
    assert load_scan(processed_scan).num_points == 50


def test_plain_scan_has_no_frames_and_views_conflict(room_ply, tmp_path):
    assert find_views(_args(room_ply)) == ([], "")
    with pytest.raises(ConfigError, match="--views cannot be combined"):
        find_views(_args(room_ply, views=str(tmp_path), virtual=True))


def test_score_scan_picks_the_path_and_its_visibility_tolerance(monkeypatch, micro_cfg,
                                                                 room_factory):
    """Virtual views are tested against their rendered depth at 5 %, frames at data.rel_thresh."""
    calls = {}

    def fake_run_views(lm, scene, views, **kw):
        calls.update(kw, views=len(views))
        acc = PointScores(scene.num_points, 1)
        acc.add(torch.arange(0, scene.num_points, 2), torch.ones(scene.num_points // 2, 1))
        return acc, len(views)

    monkeypatch.setattr(inference, "run_views", fake_run_views)
    pts, cols, _ = room_factory(density=30)
    grey = Scene("grey", pts[: 2 * (len(pts) // 2)], np.full((2 * (len(pts) // 2), 3), 128,
                                                             np.uint8))
    lm = SimpleNamespace(cfg=micro_cfg, device=torch.device("cpu"))
    args = argparse.Namespace(no_2d=False, virtual_views=2, batch_size=None,
                              max_view_points=None, no_progress=True)
    kw = dict(class_embeds=torch.zeros(1, 4), view_fn=None, point_fn=None, width=1)
    res = common.score_scan(args, lm, grey, [], views_source="", **kw)
    assert res.path == common.PATH_VIRTUAL and calls["rel_thresh"] == RENDERED_REL_THRESH
    assert calls["batch_size"] == 1 and calls["max_view_points"] == micro_cfg.data.max_visible
    assert res.views_total == calls["views"] >= 3 and res.seen_fraction == 0.5
    assert any("no colour" in n for n in res.notes)
    np.testing.assert_allclose(res.scores, 1.0)          # unseen points copied from neighbours
    # one colour that is not the reader's grey fill (as a one-point scan with colour has) is
    # colour all the same: no "no colour" note
    red = Scene("red", grey.points, np.tile(np.uint8([200, 30, 30]), (grey.num_points, 1)))
    assert not any("colour" in n for n in common.score_scan(args, lm, red, [], views_source="",
                                                             **kw).notes)
    view = View("f", np.zeros((4, 4, 3), np.uint8), np.eye(4), np.eye(3))
    res = common.score_scan(args, lm, grey, [view], views_source="frames/", **kw)
    assert res.path == common.PATH_VIEWS and calls["rel_thresh"] is None
    assert res.views_source == "frames/" and calls["views"] == 1


def test_load_scan_refuses_empty_tiny_and_non_torch_files(tmp_path):
    empty = tmp_path / "empty.ply"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty \(0 bytes\)"):
        load_scan(empty)
    one = tmp_path / "one.npy"
    np.save(one, np.array([[0.0, 0.0, 0.0, 200, 30, 30]], np.float32))
    assert load_scan(one).num_points == 1            # a 1-point scan is fine for --no-2d ...
    with pytest.raises(DataError, match="the scan has 1 point; at least 10 are needed"):
        load_scan(one, min_points=common.MIN_VIEW_POINTS)      # ... not for the views
    fake = tmp_path / "scene_vh_clean_2.pth"
    fake.write_text("x y z\n")
    with pytest.raises(DataError, match="not a torch file") as info:
        load_scan(fake)
    assert str(fake) in str(info.value)


def test_check_memory_refuses_what_does_not_fit():
    gib = 2**30
    need = common.check_memory("big.ply", 10_000_000, 20, available=64 * gib)
    assert need == common.BASE_MEMORY_BYTES + 10_000_000 * (common.PER_POINT_BYTES + 80)
    with pytest.raises(DataError, match=r"big.ply: the scan has 10,000,000 points; scoring 20 "
                                        r"classes .* needs about [\d.]+ GiB .* 2\.0 GiB are "
                                        r"available: subsample the scan"):
        common.check_memory("big.ply", 10_000_000, 20, available=2 * gib)


def test_command_memory_reports_the_commands_own_peak():
    if not common._reset_peak_rss():
        pytest.skip("this system cannot reset the peak RSS (/proc/self/clear_refs)")
    block = np.ones(300 * 2**20 // 8)            # 300 MiB resident, then freed
    del block
    process_peak = common._proc_status_mb("VmHWM")
    report = common.CommandMemory().to_dict()
    assert set(report) == {"rss_at_command_start_mb", "peak_rss_during_command_mb"}
    # the process peak includes the 300 MiB block; the command's own peak does not
    assert report["peak_rss_during_command_mb"] < process_peak - 200
    assert report["peak_rss_during_command_mb"] >= report["rss_at_command_start_mb"] - 1
