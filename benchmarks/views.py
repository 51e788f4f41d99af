"""Real and synthetic view batches for the speed benchmarks."""

from __future__ import annotations

from xmask3d.config import XMask3DConfig
from xmask3d.data.batch import ViewBatch
from xmask3d.data.dataset import collate_views, label_tables, make_view_sample
from xmask3d.data.projection import point_pixel_map, resize_view
from xmask3d.data.real_fixtures import load_scannet_fixture, real_data_root
from xmask3d.data.splits import get_split


def scannet_view_batch(cfg: XMask3DConfig, *, frame: int = 0, train: bool = True) -> ViewBatch:
    """One real ScanNet view (scene0000_00, z-buffer visibility) as the model sees it."""
    if real_data_root() is None:
        raise FileNotFoundError("../shared/data/real is not present")
    scene = load_scannet_fixture()
    view = resize_view(scene.views[frame], tuple(cfg.data.image_hw))
    pmap = point_pixel_map(scene.points, view, border=cfg.data.border)
    split = get_split(cfg.data.split)
    table, binary = label_tables(split, "train" if train else "eval", "ours")
    full = scene.labels[pmap.point_idx]
    names = split.base_names if train else split.class_names
    sample = make_view_sample(scene, view, pmap, voxel_size=cfg.data.voxel_size,
                              labels=table[full], binary_labels=binary[full], class_names=names,
                              height_channel=cfg.data.height_channel)
    batch = collate_views([sample])
    if batch.labels_2d is None:   # the fixture has no 2D labels: splat the visible points' labels
        import torch

        lab = torch.full((1, *batch.image_hw), 255, dtype=torch.long)
        lab[0, batch.pixel_rc[:, 0], batch.pixel_rc[:, 1]] = batch.labels
        batch.labels_2d = lab
    return batch


def synthetic_view_batch(cfg: XMask3DConfig, root: str | None, *, target: int = 30000,
                         train: bool = True) -> ViewBatch:
    """The validation view of a synthetic dataset whose visible-point count is closest to
    ``target`` (default ``runs/synth_bench``, made by ``xmask3d synth``)."""
    from xmask3d.data.dataset import ViewDataset
    from xmask3d.data.processed import ProcessedLayout

    layout = ProcessedLayout(root or "runs/synth_bench")
    split = get_split(cfg.data.split)
    ds = ViewDataset(layout, "val", category_split=split, mode="eval",
                     image_hw=tuple(cfg.data.image_hw), voxel_size=cfg.data.voxel_size,
                     border=cfg.data.border, min_visible=cfg.data.min_visible)
    best = min(range(len(ds)), key=lambda i: abs(len(ds[i].points) - target))
    sample = ds[best]
    if train:   # eval labels are full-space indices: map them into the base vocabulary
        from dataclasses import replace

        table, binary = label_tables(split, "train", "ours")
        lab2d = None if sample.labels_2d is None else table[sample.labels_2d]
        sample = replace(sample, labels=table[sample.labels], binary_labels=binary[sample.labels],
                         labels_2d=lab2d, class_names=split.base_names)
    return collate_views([sample])
