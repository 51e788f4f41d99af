"""ViewDataset and collate_views on a tiny hand-built processed root."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmask3d.data.dataset import (
    ViewDataset,
    collate_views,
    height_input,
    label_tables,
    make_view_sample,
)
from xmask3d.data.labels import SCANNET20_NYU40_IDS
from xmask3d.data.processed import (
    ProcessedLayout,
    save_point_file,
    write_captions,
    write_intrinsics,
    write_view,
)
from xmask3d.data.projection import PointPixelMap, point_pixel_map, project_points
from xmask3d.data.scene import IGNORE_LABEL, Scene, View
from xmask3d.data.splits import get_split
from xmask3d.data.voxelize import voxelize
from xmask3d.errors import DataError

SPLIT = get_split("scannet_b15n4")  # novel 5, 9, 12, 16; ignore 19
HW = (60, 80)
K = np.array([[60.0, 0.0, 39.5], [0.0, 60.0, 29.5], [0.0, 0.0, 1.0]])
# full-space class of each of the 5 stripes along x, and the colour of each stripe
STRIPES = np.array([1, 6, 5, 19, IGNORE_LABEL])
COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40], [90, 90, 90]])
BASE = [0, 1, 2, 3, 4, 6, 7, 8, 10, 11, 13, 14, 15, 17, 18]


def _floor_points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys = np.meshgrid(np.arange(40) * 0.04, np.arange(25) * 0.04)
    pts = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1)
    stripe = np.minimum((pts[:, 0] / 0.32).astype(int), 4)
    return pts, COLOURS[stripe].astype(np.uint8), STRIPES[stripe]


def _pose(x: float, y: float, height: float = 2.0, up: bool = False) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = np.diag([1.0, 1.0, 1.0] if up else [1.0, -1.0, -1.0])  # looking down (-z)
    pose[:3, 3] = [x, y, height]
    return pose


def _render(pts, colours, labels, pose):
    """Colour, depth and nyu40 label images made by splatting the points (3x3 px each)."""
    rc, z = project_points(pts, pose, K, HW)
    color = np.full(HW + (3,), 255, np.uint8)
    depth = np.zeros(HW, np.float32)
    nyu = np.zeros(HW, np.int64)
    ids = np.r_[SCANNET20_NYU40_IDS, [0] * 236][np.minimum(labels, 255)]
    ok = (z > 0) & (rc[:, 0] >= 0) & (rc[:, 0] < HW[0]) & (rc[:, 1] >= 0) & (rc[:, 1] < HW[1])
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            r = np.clip(rc[ok, 0] + dr, 0, HW[0] - 1)
            c = np.clip(rc[ok, 1] + dc, 0, HW[1] - 1)
            color[r, c], depth[r, c], nyu[r, c] = colours[ok], z[ok], ids[ok]
    return color, depth, nyu


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("processed")
    pts, cols, labels = _floor_points()
    all_novel = np.where(labels == IGNORE_LABEL, IGNORE_LABEL, 5)
    save_point_file(root / "scannet_3d/train/scene0000_00_vh_clean_2.pth", pts, cols, labels)
    save_point_file(root / "scannet_3d/train/scene0001_00_vh_clean_2.pth", pts, cols, all_novel)
    save_point_file(root / "scannet_3d/train/scene0002_00_vh_clean_2.pth", pts, cols, labels)
    write_intrinsics(root, None, K)
    for scene, lab in (("scene0000_00", labels), ("scene0001_00", all_novel)):
        # "0" sees the whole floor (depth), "20" part of it (no depth: z-buffer), "40" looks away
        for frame, pose, with_depth in (("0", _pose(0.78, 0.48), True),
                                        ("20", _pose(0.3, 0.48, 1.2), False),
                                        ("40", _pose(0.78, 0.48, up=True), True)):
            color, depth, nyu = _render(pts, cols, lab, pose)
            write_view(root, scene, frame, color=color, pose=pose,
                       depth=depth if with_depth else None, label=nyu)
    write_captions(root, {"scene0000_00": {"0": "a floor"}})
    return ProcessedLayout(root)


def _dataset(layout, mode="train", **kw) -> ViewDataset:
    opts = dict(category_split=SPLIT, mode=mode, image_hw=HW, min_visible=50, min_valid=5,
                border=2, voxel_size=0.05, scenes=["scene0000_00"])
    opts.update(kw)
    return ViewDataset(layout, "train", **opts)


def _full_labels(layout, sample):
    return layout.load_scene("train", sample.scene_name).labels[sample.point_index]


def test_label_tables_values():
    labels, binary = label_tables(SPLIT, "train", "ours")
    np.testing.assert_array_equal(labels[BASE], np.arange(15))
    assert (labels[[5, 9, 12, 16, 19, 255]] == IGNORE_LABEL).all()
    assert binary[BASE].tolist() == [1] * 15 and binary[[5, 9, 12, 16, 19, 255]].tolist() == [0] * 6
    labels, binary = label_tables(SPLIT, "eval", "published")
    np.testing.assert_array_equal(labels[:19], np.arange(19))
    assert labels[19] == labels[255] == IGNORE_LABEL
    assert binary[[5, 9, 12, 16]].tolist() == [0] * 4 and binary[[19, 255]].tolist() == [-1, -1]
    with pytest.raises(DataError, match="binary_mode"):
        label_tables(SPLIT, "train", "other")


def test_train_labels_are_base_remapped(layout):
    ds = _dataset(layout, loop=3)
    assert len(ds) == 3 and ds.class_names == SPLIT.base_names
    for i in range(len(ds)):
        s = ds[i]
        full = _full_labels(layout, s)
        # floor(1) -> 1, table(6) -> 5 (after removing novel 5), sofa(5)/other(19)/255 -> ignore
        expected = np.select([full == 1, full == 6], [1, 5], IGNORE_LABEL)
        np.testing.assert_array_equal(s.labels, expected)
        np.testing.assert_array_equal(s.binary_labels, np.isin(full, [1, 6]).astype(int))
        assert s.view_name in ("0", "20")  # "40" sees nothing
        np.testing.assert_array_equal(s.points, layout.load_scene("train", s.scene_name)
                                      .points[s.point_index])


def test_binary_labels_published(layout):
    s = _dataset(layout, binary_mode="published")[0]
    full = _full_labels(layout, s)
    np.testing.assert_array_equal(s.binary_labels, np.select([np.isin(full, [1, 6]), full == 5],
                                                             [1, 0], -1))
    assert set(np.unique(full)) >= {1, 5}


def test_eval_labels_full_space_and_2d_labels(layout):
    ds = _dataset(layout, mode="eval")
    s = ds[ds.scene_views("scene0000_00")[0]]
    assert s.view_name == "0" and s.caption == "a floor" and len(ds.class_names) == 20
    full = _full_labels(layout, s)
    np.testing.assert_array_equal(s.labels, np.where(full == 19, IGNORE_LABEL, full))
    assert {1, 5, 6, IGNORE_LABEL} <= set(np.unique(s.labels))
    # the 2D label at each point's pixel is the point's label, away from stripe boundaries
    pts = layout.load_scene("train", "scene0000_00").points[s.point_index]
    stripe = [np.minimum(((pts[:, 0] + dx) / 0.32).astype(int), 4) for dx in (-0.04, 0.0, 0.04)]
    inner = (stripe[0] == stripe[1]) & (stripe[2] == stripe[1])
    at_px = s.labels_2d[s.pixel_rc[inner, 0], s.pixel_rc[inner, 1]]
    assert inner.sum() > 300
    np.testing.assert_array_equal(at_px, s.labels[inner])
    t = _dataset(layout)[0]  # train space: floor 1, table 6 -> 5, the rest ignored
    assert set(np.unique(t.labels_2d)) == {1, 5, IGNORE_LABEL}


def test_collate_offsets_and_point2voxel(layout):
    ds = _dataset(layout, loop=4)
    samples = [ds[i] for i in range(len(ds))]
    batch = collate_views(samples)
    counts = [len(s.points) for s in samples]
    assert batch.point_offsets.tolist() == np.concatenate([[0], np.cumsum(counts)]).tolist()
    assert batch.voxel_coords.dtype == torch.int32 and batch.voxel_coords.is_contiguous()
    assert batch.images.shape == (4, 3) + HW and 0 <= batch.images.min() <= batch.images.max() <= 1
    assert batch.labels_2d.shape == (4,) + HW and batch.captions[0] in ("a floor", "")
    vox = batch.voxel_coords[batch.point2voxel]
    assert torch.equal(vox[:, 0], batch.point_batch.int())  # each point's voxel is in its element
    for b, s in enumerate(samples):
        lo, hi = batch.point_offsets[b], batch.point_offsets[b + 1]
        cell = np.floor(s.points.astype(np.float64) / 0.05).astype(np.int64)
        np.testing.assert_array_equal(vox[lo:hi, 1:].numpy(), cell - cell.min(axis=0))
        lowest = np.full(len(s.voxel_coords), len(s.points))
        np.minimum.at(lowest, s.point2voxel, np.arange(len(s.points)))
        np.testing.assert_array_equal(s.voxel_feats, s.colors[lowest])  # first point's colour
    np.testing.assert_allclose(batch.colors.numpy(), np.concatenate([s.colors for s in samples]))
    assert batch.colors.min() >= -1 and batch.colors.max() <= 1


def test_pixels_and_image_match_points(layout):
    ds = _dataset(layout, mode="eval")
    for i in range(len(ds)):
        s = ds[i]
        view = layout.load_view("scene0000_00", s.view_name)
        rc, _ = project_points(s.points, view.pose, view.intrinsics, HW)
        np.testing.assert_array_equal(s.pixel_rc, rc)
        rgb = s.image[:, s.pixel_rc[:, 0], s.pixel_rc[:, 1]].T
        assert np.abs(rgb - (s.colors + 1) / 2).mean() < 0.1


def test_determinism_and_epochs(layout):
    a, b = _dataset(layout, loop=4, seed=3), _dataset(layout, loop=4, seed=3)
    names = []
    for epoch in range(4):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        for i in range(len(a)):
            sa, sb = a[i], b[i]
            assert sa.view_name == sb.view_name
            np.testing.assert_array_equal(sa.point_index, sb.point_index)
            names.append(sa.view_name)
    assert set(names) == {"0", "20"}  # both usable views get drawn


def test_augmentation_train_only(layout):
    train = _dataset(layout, augment=True, voxel_size=0.02)
    s = train[0]
    cell = np.floor(s.points.astype(np.float64) / 0.02).astype(np.int64)
    assert not np.array_equal(s.voxel_coords[s.point2voxel], cell - cell.min(axis=0))
    np.testing.assert_array_equal(s.points, layout.load_scene("train", "scene0000_00")
                                  .points[s.point_index])  # returned points are not augmented
    ev = _dataset(layout, mode="eval", augment=True, voxel_size=0.02)
    for i in range(len(ev)):
        e = ev[i]
        cell = np.floor(e.points.astype(np.float64) / 0.02).astype(np.int64)
        np.testing.assert_array_equal(e.voxel_coords[e.point2voxel], cell - cell.min(axis=0))


def test_color_augmentation_train_only(layout):
    plain = _dataset(layout, augment=True)[0]
    aug = _dataset(layout, augment=True, color_contrast=0.3, color_shift=0.2)[0]
    np.testing.assert_array_equal(aug.point_index, plain.point_index)
    np.testing.assert_array_equal(aug.voxel_coords, plain.voxel_coords)  # same geometry draws
    delta = aug.voxel_feats - plain.voxel_feats
    assert np.abs(delta).max() > 1e-3
    np.testing.assert_allclose(aug.voxel_feats, aug.colors[
        np.unique(aug.point2voxel, return_index=True)[1]])  # voxels take augmented colours
    ev_plain = _dataset(layout, mode="eval")[0]
    ev_aug = _dataset(layout, mode="eval", augment=True, color_contrast=0.3, color_shift=0.2)[0]
    np.testing.assert_array_equal(ev_aug.voxel_feats, ev_plain.voxel_feats)


def test_no_usable_view_raises_naming_scene(layout):
    ds = _dataset(layout, scenes=["scene0001_00"])  # every labelled point is novel
    with pytest.raises(DataError, match=r"scene0001_00.*no usable view after all 3 views"):
        ds[0]
    ds = _dataset(layout, scenes=["scene0001_00"], max_retries=2)
    with pytest.raises(DataError, match=r"scene0001_00.*after 2 tries"):
        ds[0]
    ds = _dataset(layout, scenes=["scene0002_00"])  # no 2D frames at all
    with pytest.raises(DataError, match="scene0002_00.*no views"):
        ds[0]
    with pytest.raises(DataError, match="scene9999_00"):
        _dataset(layout, scenes=["scene9999_00"])


def test_eval_enumerates_usable_views(layout):
    ds = _dataset(layout, mode="eval", scenes=["scene0000_00", "scene0001_00", "scene0002_00"])
    items = [(ds[i].scene_name, ds[i].view_name) for i in range(len(ds))]
    assert items == [("scene0000_00", "0"), ("scene0000_00", "20"), ("scene0001_00", "0"),
                     ("scene0001_00", "20")]
    assert ds.scene_views("scene0001_00") == [2, 3] and ds.scene_views("scene0002_00") == []
    assert ds.unusable_scenes == ["scene0002_00"]
    capped = _dataset(layout, mode="eval", max_visible=800)  # view "0" sees all 1000 points
    assert [capped[i].view_name for i in range(len(capped))] == ["20"]
    full = ds.full_scene("scene0000_00")
    raw = layout.load_scene("train", "scene0000_00").labels
    np.testing.assert_array_equal(full.labels, np.where(raw == 19, IGNORE_LABEL, raw))


def test_resized_images(layout):
    ds = _dataset(layout, mode="eval", image_hw=(30, 40), min_visible=20)
    batch = collate_views([ds[i] for i in range(len(ds))])
    assert batch.images.shape[-2:] == (30, 40) and batch.labels_2d.shape[-2:] == (30, 40)
    assert batch.pixel_rc[:, 0].max() < 30 and batch.pixel_rc[:, 1].max() < 40
    assert batch.pixel_rc.min() >= 2


def test_generated_synthetic_scene_through_the_dataset(tmp_path):
    try:
        from xmask3d.data.synth.scan import K_320x240, generate_scan
    except ImportError:
        pytest.skip("the synthetic scene generator (xmask3d.data.synth.scan) is not available")
    scan = generate_scan(0, seed=0, n_views=3, density=400)
    save_point_file(tmp_path / f"scannet_3d/train/{scan.name}_vh_clean_2.pth", scan.points,
                    scan.colors, scan.labels)
    write_intrinsics(tmp_path, None, K_320x240)
    for v in scan.views:
        write_view(tmp_path, scan.name, v.name, color=v.color, pose=v.pose, depth=v.depth,
                   label=v.nyu40)
    write_captions(tmp_path, {scan.name: {v.name: v.caption for v in scan.views}})
    layout = ProcessedLayout(tmp_path)
    ev = ViewDataset(layout, "train", category_split=SPLIT, mode="eval")
    assert len(ev) >= 1
    batch = collate_views([ev[i] for i in range(len(ev))])
    lab = batch.labels
    at_px = batch.labels_2d[batch.point_batch, batch.pixel_rc[:, 0], batch.pixel_rc[:, 1]]
    both = (lab != IGNORE_LABEL) & (at_px != IGNORE_LABEL)
    # the renderer's label at each visible point's pixel is mostly that point's own label
    assert both.sum() > 1000 and (lab[both] == at_px[both]).float().mean() > 0.75
    scene = layout.load_scene("train", scan.name)
    for frame in layout.frame_names(scan.name):  # z-buffer and rendered-depth visibility agree
        view = layout.load_view(scan.name, frame)
        by_depth = set(point_pixel_map(scene.points, view).point_idx.tolist())
        view.depth = None
        by_zbuf = set(point_pixel_map(scene.points, view).point_idx.tolist())
        assert len(by_depth & by_zbuf) > 0.75 * len(by_depth | by_zbuf)
    tr = ViewDataset(layout, "train", category_split=SPLIT, mode="train", augment=True)
    s = tr[0]
    assert s.caption and (s.labels < len(SPLIT.base)).any()


NOVEL_WORDS = {"sofa", "couch", "couches", "settee", "bookshelf", "bookcase", "shelf", "desk",
               "toilet"}


@pytest.fixture(scope="module")
def region_root(tmp_path_factory):
    """Two synthetic scenes (a bedroom and a living room) with 4 views and region captions."""
    from xmask3d.data.synth import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("regions")
    generate_dataset(root, SynthConfig(scenes=2, views=4, seed=3, val_fraction=0.0,
                                       density=200.0), workers=1, progress=False)
    return root


def test_no_novel_label_reaches_a_training_target(region_root):
    """Issue 13 item 5: labels, binary labels, 2D labels and region targets of B15/N4 training
    items carry no novel class, while region phrases do name novel objects whose points are
    ignored by every label target."""
    layout = ProcessedLayout(region_root)
    ds = ViewDataset(layout, "train", category_split=SPLIT, mode="train")
    novel, n_base = set(SPLIT.novel), len(SPLIT.base)
    named_novel_ignored = 0
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            full = layout.load_scene("train", s.scene_name).labels[s.point_index]
            is_novel = np.isin(full, list(novel))
            assert set(np.unique(s.labels).tolist()) <= set(range(n_base)) | {IGNORE_LABEL}
            assert (s.labels[is_novel] == IGNORE_LABEL).all()
            assert (s.binary_labels[is_novel] == 0).all()          # "not base", never a class
            view = layout.load_view(s.scene_name, s.view_name)
            px_novel = np.isin(view.label, list(novel))
            assert px_novel.shape == (240, 320) and s.labels_2d.shape == (240, 320)
            assert (s.labels_2d[px_novel] == IGNORE_LABEL).all()
            assert set(np.unique(s.labels_2d).tolist()) <= set(range(n_base)) | {IGNORE_LABEL}
            # region targets index the view's phrases, which come from the synthetic captioner
            assert s.region_index is not None and len(s.region_captions) > 0
            assert s.region_index.min() >= -1 and s.region_index.max() < len(s.region_captions)
            for k, phrase in enumerate(s.region_captions):
                members = s.region_index == k
                if NOVEL_WORDS & set(phrase.split()) and (members & is_novel).sum() >= 20:
                    assert (s.labels[members & is_novel] == IGNORE_LABEL).all()
                    named_novel_ignored += 1
    assert named_novel_ignored >= 1


def test_region_targets_are_collated_with_offsets(region_root):
    layout = ProcessedLayout(region_root)
    ds = ViewDataset(layout, "train", category_split=SPLIT, mode="train")
    samples = [ds[0], ds[1]]
    batch = collate_views(samples)
    assert batch.region_captions == list(samples[0].region_captions + samples[1].region_captions)
    n0, r0 = len(samples[0].points), len(samples[0].region_captions)
    pr = batch.point_region.numpy()
    assert np.array_equal(pr[:n0], samples[0].region_index)
    second = samples[1].region_index
    assert np.array_equal(pr[n0:], np.where(second >= 0, second + r0, -1))
    words = [batch.region_captions[k] for k in pr[pr >= 0]]
    assert words[0] in samples[0].region_captions
    ev = ViewDataset(layout, "train", category_split=SPLIT, mode="eval")
    assert ev[0].region_index is None                          # training targets only
    assert collate_views([ev[0]]).point_region is None


def _room_with_outliers(floor: float = 0.3) -> Scene:
    """A floor at z = ``floor``, a box from the floor to 1 m above it, and 0.5 % of the points
    far below the floor (sensor noise) that must not move the floor."""
    rng = np.random.default_rng(3)
    floor_pts = np.c_[rng.uniform(0, 3, (3000, 2)), np.full(3000, floor)]
    box = np.c_[rng.uniform(1, 1.5, (1000, 2)), rng.uniform(floor, floor + 1.0, 1000)]
    noise = np.c_[rng.uniform(0, 3, (20, 2)), np.full(20, floor - 5.0)]
    pts = np.concatenate([floor_pts, box, noise]).astype(np.float32)
    cols = rng.integers(0, 256, (len(pts), 3)).astype(np.uint8)
    return Scene(name="room", points=pts, colors=cols, labels=np.zeros(len(pts), np.int64))


def test_height_input_is_height_above_a_robust_floor():
    scene = _room_with_outliers(floor=0.3)
    idx = np.arange(3000, 4000)
    h = height_input(scene, idx)
    assert h.dtype == np.float32
    np.testing.assert_allclose(h, scene.points[idx, 2] - 0.3 - 1.0, atol=1e-6)
    assert h.min() >= -1.0 - 1e-6 and h.max() <= 0.0 + 1e-6


def test_view_sample_height_channel_is_the_first_point_of_each_voxel():
    scene = _room_with_outliers(floor=0.3)
    idx = np.arange(2000, 4000)                 # floor and box points, a "view" of the room
    view = View(name="v", color=np.zeros((4, 4, 3), np.uint8), pose=np.eye(4),
                intrinsics=np.eye(3))
    pmap = PointPixelMap(idx, np.zeros((len(idx), 2), np.int64))
    rgb = make_view_sample(scene, view, pmap, voxel_size=0.1)
    with_h = make_view_sample(scene, view, pmap, voxel_size=0.1, height_channel=True)
    assert rgb.voxel_feats.shape[1] == 3 and with_h.voxel_feats.shape[1] == 4
    np.testing.assert_array_equal(with_h.voxel_feats[:, :3], rgb.voxel_feats)
    _, _, first = voxelize(scene.points[idx], 0.1)
    np.testing.assert_allclose(with_h.voxel_feats[:, 3], scene.points[idx][first, 2] - 1.3,
                               atol=1e-6)
    # the box's top voxels are ~1 m above the floor, the floor's at 0 (before the -1 shift)
    assert with_h.voxel_feats[:, 3].max() > -0.15 and with_h.voxel_feats[:, 3].min() < -0.95


def test_dataset_passes_the_height_channel(layout):
    s = _dataset(layout, height_channel=True)[0]
    assert s.voxel_feats.shape[1] == 4
    np.testing.assert_allclose(s.voxel_feats[:, 3], -1.0, atol=1e-6)   # a flat floor at z = 0
