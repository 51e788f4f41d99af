"""The shared inference engine: score averaging, nearest fill, spatial chunks, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmask3d.apps import bundled, inference
from xmask3d.apps.inference import (
    PointScores,
    _with_context,
    load_inference_model,
    make_sample,
    spatial_chunks,
)
from xmask3d.config import to_dict
from xmask3d.data.dataset import collate_views
from xmask3d.data.scene import Scene, View
from xmask3d.engine.checkpoint import load_checkpoint, save_checkpoint
from xmask3d.errors import CheckpointError


def test_point_scores_mean_over_views_and_nearest_fill():
    pts = np.array([[0, 0, 0], [1, 0, 0], [5, 0, 0], [0.9, 0, 0], [4.0, 0, 0]], np.float32)
    acc = PointScores(5, 2)
    acc.add(torch.tensor([0, 1]), torch.tensor([[1.0, 0.0], [0.2, 0.8]]))
    acc.add(torch.tensor([0, 2]), torch.tensor([[0.0, 1.0], [0.3, 0.7]]))
    assert acc.seen.tolist() == [True, True, True, False, False]
    mean = acc.mean(pts)
    np.testing.assert_allclose(mean[:3], [[0.5, 0.5], [0.2, 0.8], [0.3, 0.7]])
    np.testing.assert_allclose(mean[3], mean[1])     # nearest seen point of x=0.9 is x=1
    np.testing.assert_allclose(mean[4], mean[2])     # of x=4 is x=5
    with pytest.raises(ValueError, match="no point was scored"):
        PointScores(3, 2).mean(pts[:3])


def test_spatial_chunks_are_a_bounded_partition():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, [10, 4, 3], (1003, 3))
    chunks = spatial_chunks(pts, max_points=100)
    assert max(len(c) for c in chunks) <= 100 and min(len(c) for c in chunks) >= 50
    allidx = np.sort(np.concatenate(chunks))
    np.testing.assert_array_equal(allidx, np.arange(1003))
    first = spatial_chunks(pts, max_points=600)      # one cut along x, the longest axis
    assert len(first) == 2
    assert pts[first[0], 0].max() <= pts[first[1], 0].min()


def test_context_adds_only_nearby_points():
    pts = np.array([[0, 0, 0], [0.1, 0, 0], [0.5, 0, 0], [3, 0, 0]], np.float32)
    out = _with_context(pts, np.array([0, 1]), margin=0.45, max_extra=10)
    assert out.tolist() == [0, 1, 2]
    assert _with_context(pts, np.array([0]), margin=5.0, max_extra=1).tolist() == [0, 1]


def test_make_sample_voxelises_and_scales_colours():
    scene = Scene("s", np.array([[0, 0, 0], [0.01, 0, 0], [0.5, 0, 0]], np.float32),
                  np.array([[0, 0, 0], [255, 255, 255], [51, 102, 153]], np.uint8))
    s = make_sample(scene, np.array([2, 0, 1]), voxel_size=0.1, class_names=("a",))
    assert s.point_index.tolist() == [2, 0, 1]
    np.testing.assert_allclose(s.colors[0], [51 / 127.5 - 1, 102 / 127.5 - 1, 153 / 127.5 - 1],
                               rtol=1e-6)
    assert len(s.voxel_coords) == 2 and s.point2voxel[1] == s.point2voxel[2]
    assert s.image.shape == (3, 1, 1)


def test_missing_default_checkpoint_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setattr(bundled, "default_checkpoint", lambda: tmp_path / "tiny_synthetic.pt")
    with pytest.raises(CheckpointError, match="make checkpoint"):
        load_inference_model(None)


def test_checkpoint_of_an_incompatible_config_is_refused(micro_ckpt, tmp_path):
    data = load_checkpoint(micro_ckpt)
    cfg = to_dict(data["config"])
    cfg["backbone3d"]["out_channels"] = 32          # the weights were made with 16
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, {"model": data["model"], "config": cfg, "epoch": 0, "step": 0})
    with pytest.raises(CheckpointError, match="do not fit"):
        load_inference_model(bad)
    with pytest.raises(CheckpointError, match="architecture differs"):
        load_inference_model(micro_ckpt, config="tiny/scannet_b15n4")


def test_3d_chunks_equal_the_direct_3d_branch(micro_ckpt, room_factory):
    """One chunk holding the whole scan gives exactly the model's 3D features."""
    pts, cols, _ = room_factory(density=40)
    scene = Scene("room", pts, cols)
    lm = load_inference_model(micro_ckpt)
    feats_seen = []

    def score_fn(feats, binary, scale):
        feats_seen.append(feats)
        return feats[:, :2]

    acc = inference.run_3d_chunks(lm, scene, score_fn=score_fn, width=2,
                                  chunk_points=len(pts), progress=False)
    batch = collate_views([make_sample(scene, np.arange(len(pts)),
                                       voxel_size=lm.cfg.data.voxel_size, class_names=("p",),
                                       height_channel=lm.cfg.data.height_channel)])
    with torch.no_grad():
        ref = lm.model.encode_3d(batch)[0]
    torch.testing.assert_close(feats_seen[0], ref)
    np.testing.assert_allclose(acc.mean(pts), ref[:, :2].numpy(), rtol=1e-6, atol=1e-6)


def test_frame_without_depth_gets_a_zbuffer_of_the_scan():
    """A colour-only frame: the plate in front hides the plate behind (and K is rescaled)."""
    rng = np.random.default_rng(0)
    back = np.concatenate([rng.uniform(-1, 1, (3000, 2)), np.full((3000, 1), 2.4)], 1)
    front = np.concatenate([rng.uniform(-0.3, 0.3, (1000, 2)), np.full((1000, 1), 2.0)], 1)
    scene = Scene("plates", np.concatenate([back, front]).astype(np.float32),
                  np.zeros((4000, 3), np.uint8))
    K = np.array([[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]])
    view = View("f", np.zeros((96, 128, 3), np.uint8), np.eye(4), K)
    out, pmap = inference.prepare_view(scene, view, hw=(48, 64), rel_thresh=0.25, border=2,
                                       spacing=0.03)
    assert view.depth is None and out.depth.shape == (48, 64)        # the input is not changed
    assert out.intrinsics[0, 0] == pytest.approx(50.0)
    x, y = scene.points[:3000, 0], scene.points[:3000, 1]
    hidden = np.flatnonzero((np.abs(x) < 0.25) & (np.abs(y) < 0.25))
    assert not np.isin(hidden, pmap.point_idx).any()                  # 0.4 m behind: hidden
    assert np.isin(np.arange(3000, 4000), pmap.point_idx).mean() > 0.95
    rc = pmap.rc[np.isin(pmap.point_idx, np.arange(3000, 4000))]
    assert (np.abs(rc[:, 1] - 31.75) <= 0.3 * 50 / 2.0 + 1).all()     # pixels at the new size
