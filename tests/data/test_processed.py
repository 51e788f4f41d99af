"""The processed layout: value-exact round trips, safe loading and clear errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from xmask3d.data.processed import (
    SCANNET_DEFAULT_INTRINSICS_320x240,
    ProcessedLayout,
    load_point_file,
    save_point_file,
    write_captions,
    write_intrinsics,
    write_label_200,
    write_view,
)
from xmask3d.data.labels import scannet200_raw_ids
from xmask3d.errors import DataError


@pytest.fixture
def root(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(50, 3))
    cols = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    labels = rng.integers(0, 20, 50)
    labels[:5] = 255
    save_point_file(tmp_path / "scannet_3d/train/sceneA_vh_clean_2.pth", pts, cols, labels)
    return tmp_path, pts, cols, labels


def test_point_file_round_trip(root):
    tmp, pts, cols, labels = root
    p, c, lab = load_point_file(tmp / "scannet_3d/train/sceneA_vh_clean_2.pth")
    np.testing.assert_allclose(p, pts.astype(np.float32))
    np.testing.assert_array_equal(c, cols)
    np.testing.assert_array_equal(lab, labels)
    data = torch.load(tmp / "scannet_3d/train/sceneA_vh_clean_2.pth", weights_only=False)
    assert data[1].min() >= -1 and data[1].max() <= 1          # OpenScene colour convention


def test_openscene_minus100_and_tensor_files(tmp_path):
    f = tmp_path / "x.pth"
    torch.save((torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, 3),
                torch.tensor([-100.0, 3.0, 255.0])), f)
    assert load_point_file(f)[2].tolist() == [255, 3, 255]


def test_unsafe_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))
    f = tmp_path / "evil_vh_clean_2.pth"
    f.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataError, match="safe torch file"):
        load_point_file(f)


def test_malformed_point_files(tmp_path):
    cases = {
        "nan": (np.array([[0, 0, np.nan]]), np.zeros((1, 3)), np.zeros(1)),
        "len": (np.zeros((4, 3)), np.zeros((4, 3)), np.zeros(3)),
        "empty": (np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)),
    }
    messages = {"nan": "NaN", "len": "labels length", "empty": "non-empty"}
    for key, data in cases.items():
        f = tmp_path / f"{key}.pth"
        torch.save(data, f)
        with pytest.raises(DataError, match=messages[key]) as err:
            load_point_file(f)
        assert str(f) in str(err.value)
    with pytest.raises(DataError, match="not found"):
        load_point_file(tmp_path / "none.pth")
    trunc = tmp_path / "trunc.pth"
    torch.save(cases["len"], trunc)
    trunc.write_bytes(trunc.read_bytes()[:50])
    with pytest.raises(DataError, match="safe torch file"):
        load_point_file(trunc)


def test_views_round_trip(root):
    tmp, *_ = root
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:24, 0:32]
    color = np.stack([xx * 8, yy * 10, (xx + yy) * 4], -1).astype(np.uint8)   # smooth: JPEG-safe
    depth = rng.uniform(0.5, 4, (24, 32)).round(3)
    nyu = rng.choice([0, 1, 5, 39, 40], (24, 32))
    pose = np.eye(4)
    pose[:3, 3] = [1, 2, 3]
    for frame in ("40", "0", "100"):
        write_view(tmp, "sceneA", frame, color=color, pose=pose, depth=depth, label=nyu)
    layout = ProcessedLayout(tmp)
    assert layout.frame_names("sceneA") == ["0", "40", "100"]
    np.testing.assert_array_equal(layout.intrinsics("sceneA"), SCANNET_DEFAULT_INTRINSICS_320x240)
    write_intrinsics(tmp, "sceneA", np.diag([100.0, 100.0, 1.0]))
    write_captions(tmp, {"sceneA": {"40": "a room with a chair"}})
    layout = ProcessedLayout(tmp)
    v = layout.load_view("sceneA", "40")
    assert np.abs(v.color.astype(int) - color).mean() < 3        # JPEG
    np.testing.assert_allclose(v.depth, depth, atol=1e-6)
    expected = np.select([nyu == 1, nyu == 5, nyu == 39], [0, 4, 19], 255)
    np.testing.assert_array_equal(v.label, expected)
    np.testing.assert_array_equal(v.pose, pose)
    assert v.intrinsics[0, 0] == 100.0 and v.caption == "a room with a chair"
    assert layout.load_view("sceneA", "0").caption is None


def test_view_errors(root):
    tmp, *_ = root
    write_view(tmp, "sceneA", "0", color=np.zeros((24, 32, 3), np.uint8), pose=np.eye(4))
    layout = ProcessedLayout(tmp)
    (tmp / "scannet_2d/sceneA/pose/0.txt").write_text("1 0 0\n0 1 0\n")
    with pytest.raises(DataError, match="4x4"):
        layout.load_view("sceneA", "0")
    bad = np.eye(4)
    bad[0, 0] = 3
    np.savetxt(tmp / "scannet_2d/sceneA/pose/0.txt", bad)
    with pytest.raises(DataError, match="rigid"):
        layout.load_view("sceneA", "0")
    write_view(tmp, "sceneA", "1", color=np.zeros((24, 32, 3), np.uint8), pose=np.eye(4),
               depth=np.ones((12, 16)))
    with pytest.raises(DataError, match="depth size") as err:
        layout.load_view("sceneA", "1")
    assert "depth/1.png" in str(err.value)
    with pytest.raises(DataError, match="not a processed dataset root"):
        ProcessedLayout(tmp / "scannet_2d")


def test_scannet200_labels(root):
    tmp, pts, *_ = root
    raw = np.array([scannet200_raw_ids()[i % 200] for i in range(len(pts))])
    raw[0] = 999999
    write_label_200(tmp, "train", "sceneA", raw)
    s = ProcessedLayout(tmp).load_scene("train", "sceneA", label_set="scannet200")
    assert s.labels[0] == 255 and s.labels[1:4].tolist() == [1, 2, 3]
    write_label_200(tmp, "train", "sceneA", raw[:-1])
    with pytest.raises(DataError, match="labels for"):
        ProcessedLayout(tmp).load_scene("train", "sceneA", label_set="scannet200")


def test_torch_file_problem_without_torch(tmp_path):
    import torch

    from xmask3d.data.processed import torch_file_problem

    good = tmp_path / "good.pt"
    torch.save({"a": torch.arange(1000)}, good)
    assert torch_file_problem(good) is None
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:-300])
    assert "incomplete zip archive" in torch_file_problem(cut)
    text = tmp_path / "text.pt"
    text.write_text("hello")
    assert "starts with b'hell'" in torch_file_problem(text)
