"""Seeded synthetic batches and a very small model config for model tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmask3d.config import XMask3DConfig, load_config
from xmask3d.data.batch import ViewBatch
from xmask3d.data.splits import get_split



@pytest.fixture
def micro_cfg(micro_overrides) -> XMask3DConfig:
    return load_config("tiny/scannet_b15n4", micro_overrides)


@pytest.fixture
def batch_factory():
    return make_batch


def make_batch(cfg: XMask3DConfig, *, batch_size: int = 2, points: int = 400, seed: int = 0,
               train: bool = True) -> ViewBatch:
    """Points on a few boxes, labelled by box, seen by B views (pixel = projected xy)."""
    rng = np.random.default_rng(seed)
    split = get_split(cfg.data.split)
    names = list(split.base_names if train else split.class_names)
    h, w = cfg.data.image_hw
    pts, labels, rcs, batch_idx = [], [], [], []
    for b in range(batch_size):
        xyz = rng.uniform(0, 2.0, (points, 3)).astype(np.float32)
        lab = (np.floor(xyz[:, 0] * 2) + 2 * np.floor(xyz[:, 1] * 2)).astype(np.int64) % 6
        rc = np.stack([np.minimum(xyz[:, 1] / 2 * h, h - 1), np.minimum(xyz[:, 0] / 2 * w, w - 1)],
                      1).astype(np.int64)
        pts.append(xyz), labels.append(lab), rcs.append(rc), batch_idx.append(np.full(points, b))
    pts_t = torch.from_numpy(np.concatenate(pts))
    bidx = torch.from_numpy(np.concatenate(batch_idx))
    vox = torch.div(pts_t, cfg.data.voxel_size, rounding_mode="floor").long()
    uniq, inv = torch.unique(torch.cat([bidx[:, None], vox], 1), dim=0, return_inverse=True)
    lab_t = torch.from_numpy(np.concatenate(labels))
    lab_t[::17] = 255
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(batch_size, 3, h, w, generator=gen)
    labels_2d = torch.full((batch_size, h, w), 255, dtype=torch.long)
    rc_t = torch.from_numpy(np.concatenate(rcs))
    labels_2d[bidx, rc_t[:, 0], rc_t[:, 1]] = lab_t
    colors = (lab_t.clamp(max=6).float()[:, None] / 6.0).expand(-1, 3) * 2 - 1
    feats = colors
    if cfg.data.height_channel:                      # the height input: z - floor (0) - 1
        feats = torch.cat([colors, pts_t[:, 2:] - 1.0], 1)
    return ViewBatch(
        points=pts_t, colors=colors.contiguous(),
        point_offsets=torch.arange(batch_size + 1) * points, point_index=torch.arange(len(pts_t)),
        pixel_rc=rc_t, voxel_coords=uniq.int().contiguous(),
        voxel_feats=torch.zeros(len(uniq), feats.shape[1]).index_reduce_(0, inv, feats, "mean",
                                                                         include_self=False),
        point2voxel=inv, images=images, labels=lab_t,
        binary_labels=(lab_t < 3).long(), labels_2d=labels_2d,
        captions=["a bedroom with a bed and a chair"] * batch_size,
        scene_names=[f"s{b}" for b in range(batch_size)],
        view_names=["0"] * batch_size, class_names=names)
