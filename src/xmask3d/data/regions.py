"""Region captions (dense-captioner boxes with short phrases) and their point association.

The idea of supervising 3D point features with captions of image *regions* comes from PLA
(Ding et al., CVPR 2023: scene-, view- and entity-level captions) and RegionPLC (Yang et al.,
CVPR 2024: region captions from a dense captioner, a point-discriminative contrastive loss).
This module is written fresh for this project; it holds:

- the on-disk format ``<root>/region_captions.json`` (docs/data-formats.md)::

      {"scene0000_00": {"0": [{"box": [x0, y0, x1, y1], "caption": "a grey couch"}, ...], ...}}

  Boxes are in pixels of that frame's colour image, x = column, y = row, with the image spanning
  ``[0, W] x [0, H]`` (pixel (r, c) covers ``[c, c + 1) x [r, r + 1)``, the convention of
  detectors that output ``XYXY`` boxes in absolute coordinates). Other keys of a region (a
  detector's ``"score"``, ...) are ignored. A missing file means no region captions;
- :func:`read_region_captions` / :func:`write_region_captions` (atomic);
- :func:`scale_regions` (boxes follow a resized view);
- :func:`associate_regions`: which region, if any, each visible point of a view belongs to.

Association rule (ours, documented in docs/training.md): a point belongs to a region when its
pixel centre lies in the region's box *and* its camera depth ``z`` is consistent with the
region: ``|z - d| <= max(min_margin, depth_factor * s)``, where ``d`` is the median depth of the
visible points in the central half of the box (a loose box is mostly object in its middle and
background at its rim) and ``s = max(box width, box height) * d / f`` is the box's metric size
(an object is about as deep as it is wide). A point inside several boxes takes the *smallest*
one (by area): loose boxes of large things (walls, beds, tables) contain smaller objects whose
own box is the more specific description, and one region per point keeps the loss a plain
cross-entropy.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmask3d.data.json_files import read_json
from xmask3d.errors import DataError

__all__ = ["REGION_CAPTIONS_FILE", "Region", "associate_regions", "check_region_boxes",
           "read_region_captions", "region_phrases", "scale_regions", "write_region_captions"]

REGION_CAPTIONS_FILE = "region_captions.json"


@dataclass(frozen=True)
class Region:
    """One captioned box of a view.

    Attributes:
        box: ``(x0, y0, x1, y1)`` in pixels of the view's colour image (see module docstring).
        caption: a short phrase ("a grey couch").
    """

    box: tuple[float, float, float, float]
    caption: str

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


def _parse_region(item, path: Path, where: str) -> Region:
    if not isinstance(item, dict):
        raise DataError(path, f"{where}: a region must be an object with 'box' and 'caption', "
                              f"got {type(item).__name__}")
    caption, box = item.get("caption"), item.get("box")
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(path, f"{where}: 'caption' must be a non-empty string, got {caption!r}")
    if (not isinstance(box, list) or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
        raise DataError(path, f"{where}: 'box' must be a list of 4 numbers [x0, y0, x1, y1], "
                              f"got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise DataError(path, f"{where}: box {box} has a non-finite coordinate")
    if x0 < 0 or y0 < 0 or not (x1 > x0 and y1 > y0):
        raise DataError(path, f"{where}: malformed box {box}: need 0 <= x0 < x1 and 0 <= y0 < y1")
    return Region((x0, y0, x1, y1), caption.strip())


def read_region_captions(path: str | Path) -> dict[str, dict[str, list[Region]]]:
    """Read ``region_captions.json``; a missing file means no region captions (``{}``).

    Raises:
        DataError: (naming the file and the scene/frame/region) not UTF-8 JSON, not
            ``{scene: {frame: [region, ...]}}``, a malformed box (not 4 finite numbers,
            negative, empty) or a caption that is not a non-empty string.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(path, 'region captions must be a JSON object {"scene": {"frame": '
                              '[{"box": [x0, y0, x1, y1], "caption": "..."}]}}')
    out: dict[str, dict[str, list[Region]]] = {}
    for scene, frames in data.items():
        if not isinstance(frames, dict):
            raise DataError(path, f"scene {scene!r}: expected an object {{frame: [regions]}}")
        out[scene] = {}
        for frame, regions in frames.items():
            if not isinstance(regions, list):
                raise DataError(path, f"scene {scene!r} frame {frame!r}: expected a list of "
                                      "regions")
            out[scene][str(frame)] = [
                _parse_region(r, path, f"scene {scene!r} frame {frame!r} region {i}")
                for i, r in enumerate(regions)]
    return out


def write_region_captions(root: str | Path,
                          regions: dict[str, dict[str, list[Region]]]) -> None:
    """Merge ``regions`` into ``<root>/region_captions.json`` (atomic write)."""
    from xmask3d.data.processed import atomic_write

    path = Path(root) / REGION_CAPTIONS_FILE
    merged = {s: {f: [{"box": list(r.box), "caption": r.caption} for r in rs]
                  for f, rs in frames.items()} for s, frames in read_region_captions(path).items()}
    for scene, frames in regions.items():
        merged.setdefault(scene, {}).update({
            str(f): [{"box": [round(float(v), 2) for v in r.box], "caption": r.caption}
                     for r in rs] for f, rs in frames.items()})
    atomic_write(path, lambda t: Path(t).write_text(json.dumps(merged, sort_keys=True)))


def region_phrases(path: str | Path, scenes: list[str]) -> list[str]:
    """The distinct region phrases of ``scenes`` in a region caption file, sorted."""
    data = read_region_captions(path)
    return sorted({r.caption for s in scenes for regions in data.get(s, {}).values()
                   for r in regions})


def check_region_boxes(regions: list[Region], hw: tuple[int, int], path: Path,
                       where: str) -> None:
    """Raise ``DataError`` (naming ``path`` and ``where``) when a box leaves the ``hw`` image
    (a tolerance of half a pixel allows rounded detector output)."""
    h, w = hw
    for i, r in enumerate(regions):
        if r.box[2] > w + 0.5 or r.box[3] > h + 0.5:
            raise DataError(path, f"{where} region {i}: box {list(r.box)} is out of range of the "
                                  f"{w}x{h} colour image")


def scale_regions(regions: list[Region], src_hw: tuple[int, int],
                  dst_hw: tuple[int, int]) -> list[Region]:
    """Boxes of a view resized from ``src_hw`` to ``dst_hw`` (both (H, W))."""
    sx, sy = dst_hw[1] / src_hw[1], dst_hw[0] / src_hw[0]
    return [Region((r.box[0] * sx, r.box[1] * sy, r.box[2] * sx, r.box[3] * sy), r.caption)
            for r in regions]


def associate_regions(pixel_rc: np.ndarray, depth: np.ndarray, regions: list[Region], *,
                      focal: float, min_margin: float = 0.2,
                      depth_factor: float = 0.5) -> np.ndarray:
    """The region of every visible point of a view (rule in the module docstring).

    Args:
        pixel_rc: (n, 2) int (row, col) pixel of each visible point.
        depth: (n,) camera depth of each point (metres along the optical axis).
        regions: the view's regions, boxes at the resolution of ``pixel_rc``.
        focal: focal length in pixels at that resolution.
        min_margin: smallest depth tolerance (metres).
        depth_factor: depth tolerance as a fraction of the box's metric size.

    Returns:
        (n,) int64 index into ``regions``, -1 for points of no region.
    """
    n = len(pixel_rc)
    best = np.full(n, -1, dtype=np.int64)
    if n == 0 or not regions:
        return best
    x = pixel_rc[:, 1].astype(np.float64) + 0.5
    y = pixel_rc[:, 0].astype(np.float64) + 0.5
    depth = np.asarray(depth, dtype=np.float64)
    best_area = np.full(n, np.inf)
    for k, r in enumerate(regions):
        x0, y0, x1, y1 = r.box
        inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
        if not inside.any():
            continue
        cx, cy, hw_, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 4, (y1 - y0) / 4
        core = inside & (np.abs(x - cx) <= hw_) & (np.abs(y - cy) <= hh)
        d = float(np.median(depth[core if core.any() else inside]))
        margin = max(min_margin, depth_factor * max(x1 - x0, y1 - y0) * d / focal)
        take = inside & (np.abs(depth - d) <= margin) & (r.area < best_area)
        best[take], best_area[take] = k, r.area
    return best
