"""Offset-batched training/evaluation input: B (scene, view) pairs with the points each view sees.

Every batch element is one posed view of one scene together with the scene points visible in
that view (method.md §1.5-§1.10). Points of all elements are concatenated; ``point_offsets``
delimits them (Pointcept-style offset batching). Voxels are concatenated the same way and carry
their batch index in column 0 of ``voxel_coords``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

from xmask3d.data.scene import IGNORE_LABEL

__all__ = ["ViewBatch", "IGNORE_LABEL"]


@dataclass
class ViewBatch:
    """A batch of B views with their visible points, voxels and 2D targets.

    Label tensors index ``class_names`` (the vocabulary the batch was built for: the base classes
    in training, all benchmark classes at evaluation) and hold ``IGNORE_LABEL`` (255) elsewhere.

    Attributes:
        points: (P, 3) float32 world xyz of the visible points of all views.
        colors: (P, 3) float32 point colours in [-1, 1].
        point_offsets: (B + 1,) int64, points of element b are ``point_offsets[b]:point_offsets[b+1]``.
        point_index: (P,) int64 index of each point in its full scene (for multi-view voting).
        pixel_rc: (P, 2) int64 (row, col) of each point in its view, at the image resolution.
        voxel_coords: (V, 4) int32 ``[batch, x, y, z]`` voxel grid indices (contiguous).
        voxel_feats: (V, 3) float32 voxel colours in [-1, 1]; (V, 4) with the height input.
        point2voxel: (P,) int64 voxel of each point (index into the concatenated voxels).
        images: (B, 3, H, W) float32 RGB in [0, 1].
        labels: (P,) int64 point labels indexing ``class_names``, or ``None`` at inference.
        binary_labels: (P,) int64, 1 = labelled base class, 0 = not base, -1 = excluded from the
            binary loss (only used by the published-behaviour option), or ``None``.
        labels_2d: (B, H, W) int64 pixel labels indexing ``class_names``, or ``None``.
        captions: B view captions (empty string when a view has none).
        scene_names: B scene names.
        view_names: B frame names.
        class_names: the vocabulary the label tensors index.
        point_region: (P,) int64 index of each point's region caption in ``region_captions``,
            -1 for points of no region (``data/regions.py``), or ``None`` without regions.
        region_captions: the phrases of all regions of all views of the batch, view by view.
    """

    points: Tensor
    colors: Tensor
    point_offsets: Tensor
    point_index: Tensor
    pixel_rc: Tensor
    voxel_coords: Tensor
    voxel_feats: Tensor
    point2voxel: Tensor
    images: Tensor
    labels: Tensor | None = None
    binary_labels: Tensor | None = None
    labels_2d: Tensor | None = None
    captions: list[str] = field(default_factory=list)
    scene_names: list[str] = field(default_factory=list)
    view_names: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    point_region: Tensor | None = None
    region_captions: list[str] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    @property
    def point_batch(self) -> Tensor:
        """(P,) int64 batch index of every point."""
        counts = self.point_offsets[1:] - self.point_offsets[:-1]
        return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)

    def to(self, device: torch.device | str) -> ViewBatch:
        """Move every tensor to ``device`` (lists are shared)."""
        kwargs = {}
        for f in fields(self):
            value = getattr(self, f.name)
            kwargs[f.name] = value.to(device) if isinstance(value, Tensor) else value
        return ViewBatch(**kwargs)
