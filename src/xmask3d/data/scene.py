"""Typed containers for one scan and its posed camera views.

Conventions used across the project:
- coordinates are metres in the scan's world frame, float32;
- colours are uint8 RGB, (N, 3) for points and (H, W, 3) for images;
- per-point and per-pixel semantic labels are *benchmark class indices* (0..C-1) as int64 with
  ``IGNORE_LABEL`` (255) for unannotated / excluded points, as in the OpenScene ``.pth`` files;
- poses are 4x4 camera-to-world (OpenCV camera: x right, y down, z forward), float64;
- intrinsics are 3x3 pinhole matrices *at the resolution of the colour image*, float64;
- depth maps are float32 metres at the colour resolution, 0 where invalid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from xmask3d.data.regions import Region

IGNORE_LABEL = 255


@dataclass
class View:
    """One posed camera frame of a scene.

    Attributes:
        name: frame identifier (the file stem, e.g. ``"40"`` or ``"frame-000040"``).
        color: (H, W, 3) uint8 RGB image.
        pose: (4, 4) float64 camera-to-world matrix.
        intrinsics: (3, 3) float64 pinhole matrix at the colour resolution.
        depth: (H, W) float32 metres, 0 = invalid; ``None`` when the frame has no depth.
        label: (H, W) int64 benchmark class indices (``IGNORE_LABEL`` elsewhere), or ``None``.
        caption: a free-text caption of the frame, or ``None``.
        regions: captioned boxes of the frame (``data/regions.py``), in its pixels; may be empty.
    """

    name: str
    color: np.ndarray
    pose: np.ndarray
    intrinsics: np.ndarray
    depth: np.ndarray | None = None
    label: np.ndarray | None = None
    caption: str | None = None
    regions: list[Region] = field(default_factory=list)

    @property
    def hw(self) -> tuple[int, int]:
        """Image height and width."""
        return int(self.color.shape[0]), int(self.color.shape[1])


# robust floor of a scene: this quantile of its z (metres); a few points below the floor (sensor
# noise, reflections) do not move it
FLOOR_QUANTILE = 0.01


@dataclass
class Scene:
    """One scan: points with colours and optional labels, plus its views.

    Attributes:
        name: scene identifier (e.g. ``"scene0000_00"``).
        points: (N, 3) float32 world coordinates in metres.
        colors: (N, 3) uint8 RGB.
        labels: (N,) int64 benchmark class indices with ``IGNORE_LABEL``, or ``None``.
        instances: (N,) int64 instance ids (0 = none), or ``None``.
        views: the posed frames loaded with the scene (may be empty).
    """

    name: str
    points: np.ndarray
    colors: np.ndarray
    labels: np.ndarray | None = None
    instances: np.ndarray | None = None
    views: list[View] = field(default_factory=list)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @cached_property
    def floor_z(self) -> float:
        """A robust floor height: the ``FLOOR_QUANTILE`` quantile of the points' z (0.0 for an
        empty scene). Computed once per scene; the points are not expected to change after."""
        if self.num_points == 0:
            return 0.0
        return float(np.quantile(self.points[:, 2], FLOOR_QUANTILE))
