"""The (scene, view) dataset: the points a posed view sees, voxelised, with labels, image, caption.

Follows the XMask3D ``ScannetLoader`` / ``ScannetLoaderFull`` (method.md §1.4-§1.10, §4.1) with
the fixes of decisions.md §5: bounded view sampling with a clear error, a per-item generator
instead of global seeding, deterministic evaluation (no augmentation), and a binary base/novel
target that by default does not tell novel from unannotated points (the published rule is an
option).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from xmask3d.data.batch import ViewBatch
from xmask3d.data.processed import ProcessedLayout
from xmask3d.data.projection import PointPixelMap, point_pixel_map, project_points, resize_view
from xmask3d.data.regions import associate_regions
from xmask3d.data.scene import IGNORE_LABEL, Scene, View
from xmask3d.data.splits import CategorySplit
from xmask3d.data.voxelize import augment_colors, augment_points, voxelize
from xmask3d.errors import DataError

__all__ = ["TRAIN_MAX_VISIBLE", "ViewDataset", "ViewSample", "collate_views", "label_tables"]

logger = logging.getLogger(__name__)

TRAIN_MAX_VISIBLE = 65000  # published upper bound on visible points of a training view (§1.5)


@dataclass
class ViewSample:
    """One (scene, view) item, as numpy arrays (n visible points, v voxels).

    Attributes:
        scene_name, view_name: identifiers of the scene and the frame.
        points: (n, 3) float32 world xyz of the visible points (never augmented).
        colors: (n, 3) float32 point colours in [-1, 1].
        point_index: (n,) int64 index of each point in its full scene.
        pixel_rc: (n, 2) int64 (row, col) of each point at the image resolution.
        voxel_coords: (v, 3) int32 voxel grid indices, minimum 0 per axis.
        voxel_feats: (v, 3) float32 voxel colours in [-1, 1] (first point of each voxel), with a
            4th column, the height input (:func:`height_input`), when the model takes one.
        point2voxel: (n,) int64 voxel of each point.
        image: (3, H, W) float32 RGB in [0, 1].
        labels: (n,) int64 labels indexing ``class_names`` (``IGNORE_LABEL`` elsewhere).
        binary_labels: (n,) int64 1 = base, 0 = not base, -1 = excluded (published option).
        labels_2d: (H, W) int64 pixel labels like ``labels``, or ``None`` without a 2D label.
        caption: the view caption ("" when missing).
        class_names: the vocabulary the labels index.
        region_index: (n,) int64 region of each point in ``region_captions`` (-1 = none), or
            ``None`` when the view has no region captions (or in eval mode).
        region_captions: the phrases of the view's regions.
    """

    scene_name: str
    view_name: str
    points: np.ndarray
    colors: np.ndarray
    point_index: np.ndarray
    pixel_rc: np.ndarray
    voxel_coords: np.ndarray
    voxel_feats: np.ndarray
    point2voxel: np.ndarray
    image: np.ndarray
    labels: np.ndarray
    binary_labels: np.ndarray
    labels_2d: np.ndarray | None
    caption: str
    class_names: tuple[str, ...]
    region_index: np.ndarray | None = None
    region_captions: tuple[str, ...] = ()


def height_input(scene: Scene, idx: np.ndarray) -> np.ndarray:
    """The height channel of points ``idx`` of ``scene``: ``z - floor - 1`` in metres (float32).

    ``floor`` is :attr:`Scene.floor_z` (1st percentile of the whole scene's z, computed once per
    scene), so a view and a chunk of a scene get
    the same heights; the 1 m shift centres the values of a room. The scene must be z-up in
    metres: the processed datasets are, and ``segment`` / ``query`` bring a user's scan into
    that frame first (data/orientation.py). Our addition: the published model reads RGB only.
    """
    return (scene.points[idx, 2] - scene.floor_z - 1.0).astype(np.float32)


def make_view_sample(scene: Scene, view: View, pmap: PointPixelMap, *, voxel_size: float,
                     labels: np.ndarray | None = None, binary_labels: np.ndarray | None = None,
                     labels_2d: np.ndarray | None = None, class_names: tuple[str, ...] = (),
                     augment: dict | None = None, color_augment: dict | None = None,
                     rng: np.random.Generator | None = None,
                     height_channel: bool = False) -> ViewSample:
    """Build the sample of one view: its visible points, their voxels, pixels and the image.

    Args:
        scene: the full scene (points, colours).
        view: the view, already at the model's image size.
        pmap: its visible points and their pixels (:func:`point_pixel_map`).
        voxel_size: voxel edge in metres.
        labels, binary_labels: (n,) per visible point; all-ignore / all-excluded when ``None``.
        labels_2d: (H, W) pixel labels or ``None``.
        class_names: the vocabulary the labels index.
        augment: keyword arguments of :func:`augment_points` (training only), or ``None``.
        color_augment: keyword arguments of :func:`augment_colors` (training only), or ``None``;
            drawn after the geometric augmentation.
        rng: the generator used by the augmentation.
        height_channel: append :func:`height_input` to the voxel features (``data.height_channel``).
    """
    idx = pmap.point_idx
    points = scene.points[idx].astype(np.float32)
    colors = (scene.colors[idx].astype(np.float32) / 127.5 - 1.0).astype(np.float32)
    grid_points = points if augment is None else augment_points(points, rng, **augment)
    if color_augment is not None:
        colors = augment_colors(colors, rng, **color_augment)
    coords, point2voxel, first = voxelize(grid_points, voxel_size)
    voxel_feats = colors[first]
    if height_channel:
        voxel_feats = np.concatenate([voxel_feats, height_input(scene, idx)[first, None]], axis=1)
    n = len(idx)
    return ViewSample(
        scene_name=scene.name, view_name=view.name, points=points, colors=colors,
        point_index=idx, pixel_rc=pmap.rc, voxel_coords=coords, voxel_feats=voxel_feats,
        point2voxel=point2voxel,
        image=np.ascontiguousarray(view.color.transpose(2, 0, 1), dtype=np.float32) / 255.0,
        labels=np.full(n, IGNORE_LABEL, np.int64) if labels is None else labels,
        binary_labels=np.full(n, -1, np.int64) if binary_labels is None else binary_labels,
        labels_2d=labels_2d, caption=view.caption or "", class_names=tuple(class_names))


def label_tables(split: CategorySplit, mode: str,
                 binary_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables from full-space labels (0..C-1, ``IGNORE_LABEL``) to dataset labels.

    Args:
        split: the category split.
        mode: ``"train"`` (base classes -> 0..#base-1 in base order, everything else ignored) or
            ``"eval"`` (full class space, ``split.ignore`` classes -> ``IGNORE_LABEL``).
        binary_mode: ``"ours"`` (1 = base, 0 = everything else) or ``"published"`` (1 = base,
            0 = novel, -1 = ignore classes and unannotated points), method.md §1.8.

    Returns:
        labels: (256,) int64 table; binary: (256,) int64 table.
    """
    if split.num_classes >= IGNORE_LABEL:
        raise DataError(None, f"split {split.name}: {split.num_classes} classes do not fit below "
                              f"the ignore label {IGNORE_LABEL}")
    labels = np.full(IGNORE_LABEL + 1, IGNORE_LABEL, dtype=np.int64)
    if mode == "train":
        labels[list(split.base)] = np.arange(len(split.base))
    elif mode == "eval":
        kept = [i for i in range(split.num_classes) if i not in set(split.ignore)]
        labels[kept] = kept
    else:
        raise DataError(None, f"mode must be 'train' or 'eval', got {mode!r}")
    if binary_mode == "ours":
        binary = np.zeros(IGNORE_LABEL + 1, dtype=np.int64)
    elif binary_mode == "published":
        binary = np.full(IGNORE_LABEL + 1, -1, dtype=np.int64)
        binary[list(split.novel)] = 0
    else:
        raise DataError(None, f"binary_mode must be 'ours' or 'published', got {binary_mode!r}")
    binary[list(split.base)] = 1
    return labels, binary


def _full_space(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Clamp anything that is not a class index to ``IGNORE_LABEL``."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.where((labels >= 0) & (labels < num_classes), labels, IGNORE_LABEL)


class ViewDataset(Dataset):
    """Items are (scene, view) pairs with the scene points visible in the view.

    Train mode: ``loop * #scenes`` items; item i uses scene ``i % #scenes`` and a view drawn from
    a generator seeded by ``(seed, epoch, i)``; at most ``max_retries`` distinct views are tried
    until ``min_visible < #visible < max_visible`` and more than ``min_valid`` visible points
    carry a base label. Labels index the base classes. Augmentation only here, when enabled.

    Eval mode: every (scene, view) with ``min_visible <= #visible <= max_visible``, in order,
    labels in the full class space, no augmentation.

    Args:
        layout: the processed dataset root.
        split: the data split folder (``"train"``, ``"val"``, ...).
        category_split: base/novel/ignore classes.
        mode: ``"train"`` or ``"eval"``.
        image_hw: (H, W) at which images, 2D labels and pixel coordinates are produced.
        voxel_size: voxel edge in metres.
        rel_thresh, border: depth visibility test (see
            :func:`~xmask3d.data.projection.point_pixel_map`).
        zbuf_abs_tol, zbuf_rel_tol, splat_radius, max_splat_px: z-buffer test for frames
            without depth.
        min_visible, max_visible: bounds on visible points (``max_visible=None``:
            ``TRAIN_MAX_VISIBLE`` in train mode, no limit in eval mode).
        min_valid: train views need more than this many visible base-labelled points.
        max_retries: views tried per training item before a ``DataError``.
        loop: passes over the scenes per training epoch.
        augment: random rotation/scale of the voxelised coordinates (train mode only).
        rotate_z, rotate_xy, scale, jitter: augmentation ranges (``augment_points``).
        color_contrast, color_shift, color_jitter: colour ranges (``augment_colors``).
        binary_mode: ``"ours"`` or ``"published"`` (see :func:`label_tables`).
        region_min_margin, region_depth_factor: depth test of the point-region association
            (:func:`~xmask3d.data.regions.associate_regions`, train mode only).
        seed: base seed of the per-item generators.
        scenes: restrict to these scene names (default: every scene of ``split``).
        cache_size: number of loaded scenes kept in memory.
        height_channel: append the height input to the voxel features (:func:`height_input`).
    """

    def __init__(self, layout: ProcessedLayout, split: str, *, category_split: CategorySplit,
                 mode: str, image_hw: tuple[int, int] = (240, 320), voxel_size: float = 0.02,
                 rel_thresh: float = 0.25, border: int = 10, zbuf_abs_tol: float = 0.1,
                 zbuf_rel_tol: float = 0.1, splat_radius: float = 0.02, max_splat_px: int = 4,
                 min_visible: int = 400, max_visible: int | None = None, min_valid: int = 10,
                 max_retries: int = 32, loop: int = 1, augment: bool = False,
                 rotate_z: float = np.pi, rotate_xy: float = np.pi / 64,
                 scale: tuple[float, float] = (0.9, 1.1), jitter: float = 0.0,
                 color_contrast: float = 0.0, color_shift: float = 0.0,
                 color_jitter: float = 0.0, binary_mode: str = "ours",
                 region_min_margin: float = 0.2, region_depth_factor: float = 0.5, seed: int = 0,
                 scenes: list[str] | None = None, cache_size: int = 4,
                 height_channel: bool = False) -> None:
        self.label_table, self.binary_table = label_tables(category_split, mode, binary_mode)
        if len(image_hw) != 2 or min(image_hw) <= 0:
            raise DataError(None, f"image_hw must be two positive ints, got {image_hw}")
        if loop < 1 or max_retries < 1 or voxel_size <= 0:
            raise DataError(None, f"need loop >= 1, max_retries >= 1, voxel_size > 0 (got {loop}, "
                                  f"{max_retries}, {voxel_size})")
        self.layout, self.split, self.mode = layout, split, mode
        self.category_split = category_split
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.voxel_size, self.min_visible, self.min_valid = voxel_size, min_visible, min_valid
        self.height_channel = bool(height_channel)
        if max_visible is None:
            max_visible = TRAIN_MAX_VISIBLE if mode == "train" else None
        self.max_visible = max_visible
        self.max_retries, self.loop, self.seed, self.epoch = max_retries, loop, seed, 0
        self.visibility = dict(rel_thresh=rel_thresh, border=border, zbuf_abs_tol=zbuf_abs_tol,
                               zbuf_rel_tol=zbuf_rel_tol, splat_radius=splat_radius,
                               max_splat_px=max_splat_px)
        if augment and mode == "eval":
            logger.info("augmentation requested for an eval dataset: ignored (eval is "
                        "deterministic)")
        self.augment = augment and mode == "train"
        self.aug_params = dict(rotate_z=rotate_z, rotate_xy=rotate_xy, scale=tuple(scale),
                               jitter=jitter)
        self.color_params = dict(contrast=color_contrast, shift=color_shift, jitter=color_jitter)
        self.region_params = dict(min_margin=region_min_margin, depth_factor=region_depth_factor)
        self.scenes = self._resolve_scenes(scenes)
        self.cache_size = max(int(cache_size), 1)
        self._cache: OrderedDict[str, Scene] = OrderedDict()
        self._items: list[tuple[str, str]] | None = None
        self._scene_items: dict[str, list[int]] = {}
        self._unusable: list[str] = []

    def _resolve_scenes(self, scenes: list[str] | None) -> list[str]:
        available = self.layout.scene_names(self.split)
        if scenes is None:
            scenes = available
        else:
            known = set(available)
            missing = [s for s in scenes if s not in known]
            if missing:
                raise DataError(self.layout.point_file(self.split, missing[0]),
                                f"requested scenes not in split {self.split!r}: {missing[:5]}")
        if not scenes:
            raise DataError(self.layout.root / "scannet_3d" / self.split, "no scenes in this split")
        return list(scenes)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The vocabulary the labels index: base names (train) or every class name (eval)."""
        if self.mode == "train":
            return self.category_split.base_names
        return self.category_split.class_names

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose view draws the training items use."""
        self.epoch = int(epoch)

    def label_counts(self) -> np.ndarray:
        """(K,) int64 points per class of :attr:`class_names` over every scene of the dataset
        (whole scans, not views; each scene is read once, outside the cache)."""
        counts = np.zeros(len(self.class_names), np.int64)
        for name in self.scenes:
            lab = self.label_table[self._read_scene(name).labels]
            lab = lab[lab != IGNORE_LABEL]
            counts += np.bincount(lab, minlength=len(counts))[: len(counts)]
        return counts

    def __len__(self) -> int:
        if self.mode == "train":
            return self.loop * len(self.scenes)
        return len(self._eval_items())

    def __getitem__(self, index: int) -> ViewSample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        if self.mode == "eval":
            scene_name, frame = self._eval_items()[index]
            scene = self._scene(scene_name)
            view = self._view(scene_name, frame)
            return self._sample(scene, view, point_pixel_map(scene.points, view, **self.visibility),
                                None)
        return self._train_item(index)

    def _scene(self, name: str) -> Scene:
        if name in self._cache:
            self._cache.move_to_end(name)
            return self._cache[name]
        scene = self._read_scene(name)
        self._cache[name] = scene
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return scene

    def _read_scene(self, name: str) -> Scene:
        """Load a scene from disk with its labels in the split's full class space (all ignore
        when the scan has none)."""
        scene = self.layout.load_scene(self.split, name, label_set=self.category_split.label_set)
        if scene.labels is None:
            scene.labels = np.full(scene.num_points, IGNORE_LABEL, dtype=np.int64)
        scene.labels = _full_space(scene.labels, self.category_split.num_classes)
        return scene

    def _view(self, scene: str, frame: str) -> View:
        view = self.layout.load_view(scene, frame, label_set=self.category_split.label_set)
        return resize_view(view, self.image_hw)

    def _frames(self, scene: str) -> list[str]:
        frames = self.layout.frame_names(scene)
        if not frames:
            raise DataError(self.layout.scene_2d_dir(scene), f"scene {scene!r} has no views")
        return frames

    def _train_item(self, index: int) -> ViewSample:
        name = self.scenes[index % len(self.scenes)]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        scene = self._scene(name)
        frames = self._frames(name)
        order = rng.permutation(len(frames))[: self.max_retries]
        is_base = self.binary_table == 1
        upper = np.inf if self.max_visible is None else self.max_visible
        for k in order:
            view = self._view(name, frames[k])
            pmap = point_pixel_map(scene.points, view, **self.visibility)
            if not self.min_visible < len(pmap) < upper:
                continue
            if int(is_base[scene.labels[pmap.point_idx]].sum()) > self.min_valid:
                return self._sample(scene, view, pmap, rng)
        tried = f"all {len(frames)} views" if len(order) == len(frames) else f"{len(order)} tries"
        raise DataError(self.layout.scene_2d_dir(name),
                        f"scene {name!r}: no usable view after {tried} (need {self.min_visible} < "
                        f"#visible < {upper} and > {self.min_valid} visible base-labelled points)")

    def _sample(self, scene: Scene, view: View, pmap: PointPixelMap,
                rng: np.random.Generator | None) -> ViewSample:
        labels_2d = None
        if view.label is not None:
            labels_2d = self.label_table[_full_space(view.label, self.category_split.num_classes)]
        full = scene.labels[pmap.point_idx]
        augment = self.augment and rng is not None
        sample = make_view_sample(
            scene, view, pmap, voxel_size=self.voxel_size, labels=self.label_table[full],
            binary_labels=self.binary_table[full], labels_2d=labels_2d,
            class_names=self.class_names,
            augment=self.aug_params if augment else None,
            color_augment=self.color_params if augment else None, rng=rng,
            height_channel=self.height_channel)
        if self.mode == "train" and view.regions:
            depth = project_points(sample.points, view.pose, view.intrinsics, view.hw)[1]
            focal = 0.5 * float(view.intrinsics[0, 0] + view.intrinsics[1, 1])
            sample.region_index = associate_regions(pmap.rc, depth, view.regions, focal=focal,
                                                    **self.region_params)
            sample.region_captions = tuple(r.caption for r in view.regions)
        return sample

    # ---- evaluation bookkeeping -------------------------------------------------------------

    def _eval_items(self) -> list[tuple[str, str]]:
        if self._items is None:
            if self.mode != "eval":
                raise DataError(None, "the view enumeration exists only in eval mode")
            self._items, self._scene_items, self._unusable = [], {}, []
            upper = np.inf if self.max_visible is None else self.max_visible
            for name in self.scenes:
                scene = self._scene(name)
                start = len(self._items)
                for frame in self.layout.frame_names(name):
                    count = len(point_pixel_map(scene.points, self._view(name, frame),
                                                **self.visibility))
                    if self.min_visible <= count <= upper:
                        self._items.append((name, frame))
                self._scene_items[name] = list(range(start, len(self._items)))
                if start == len(self._items):
                    self._unusable.append(name)
            logger.info("eval views: %d usable in %d scenes (%d scenes without a usable view)",
                        len(self._items), len(self.scenes), len(self._unusable))
        return self._items

    @property
    def unusable_scenes(self) -> list[str]:
        """Eval scenes without any usable view (their points are seen by no view)."""
        self._eval_items()
        return list(self._unusable)

    def scene_views(self, scene: str) -> list[int]:
        """Item indices of the usable views of ``scene`` (eval mode)."""
        self._eval_items()
        if scene not in self._scene_items:
            raise KeyError(f"scene {scene!r} is not part of this dataset")
        return list(self._scene_items[scene])

    def full_scene(self, scene: str) -> Scene:
        """All points of ``scene`` with labels mapped like the items' labels (for voting)."""
        loaded = self._scene(scene)
        return Scene(name=loaded.name, points=loaded.points, colors=loaded.colors,
                     labels=self.label_table[loaded.labels], instances=loaded.instances)


def _cat(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate(arrays, axis=0))


def collate_views(samples: list[ViewSample]) -> ViewBatch:
    """Offset-batch samples into a :class:`~xmask3d.data.batch.ViewBatch`.

    Voxel coordinates get the batch index in column 0; ``point2voxel`` is offset by the voxel
    counts of the previous elements. A missing 2D label map becomes an all-ignore map.
    """
    if not samples:
        raise ValueError("collate_views needs at least one sample")
    shapes = {s.image.shape for s in samples}
    names = {s.class_names for s in samples}
    if len(shapes) != 1 or len(names) != 1:
        raise DataError(None, f"cannot batch samples with different image sizes {shapes} or "
                              "class vocabularies")
    counts = np.array([len(s.points) for s in samples], dtype=np.int64)
    vcounts = np.array([len(s.voxel_coords) for s in samples], dtype=np.int64)
    voffsets = np.concatenate([[0], np.cumsum(vcounts)[:-1]])
    coords = np.concatenate([np.concatenate([np.full((len(s.voxel_coords), 1), b, np.int32),
                                             s.voxel_coords.astype(np.int32)], axis=1)
                             for b, s in enumerate(samples)], axis=0)
    h, w = samples[0].image.shape[1:]
    point_region = None
    if any(s.region_index is not None for s in samples):
        roffsets = np.cumsum([0] + [len(s.region_captions) for s in samples[:-1]])
        point_region = _cat([np.full(len(s.points), -1, np.int64) if s.region_index is None
                             else np.where(s.region_index >= 0, s.region_index + o, -1)
                             for s, o in zip(samples, roffsets, strict=True)]).long()
    labels_2d = None
    if any(s.labels_2d is not None for s in samples):
        labels_2d = torch.from_numpy(np.stack([
            s.labels_2d if s.labels_2d is not None else np.full((h, w), IGNORE_LABEL, np.int64)
            for s in samples]).astype(np.int64))
    return ViewBatch(
        points=_cat([s.points for s in samples]).float(),
        colors=_cat([s.colors for s in samples]).float(),
        point_offsets=torch.from_numpy(np.concatenate([[0], np.cumsum(counts)])),
        point_index=_cat([s.point_index for s in samples]).long(),
        pixel_rc=_cat([s.pixel_rc for s in samples]).long(),
        voxel_coords=torch.from_numpy(np.ascontiguousarray(coords)),
        voxel_feats=_cat([s.voxel_feats for s in samples]).float(),
        point2voxel=_cat([s.point2voxel + o for s, o in zip(samples, voffsets)]).long(),
        images=torch.from_numpy(np.stack([s.image for s in samples])).float(),
        labels=_cat([s.labels for s in samples]).long(),
        binary_labels=_cat([s.binary_labels for s in samples]).long(),
        labels_2d=labels_2d,
        captions=[s.caption for s in samples],
        scene_names=[s.scene_name for s in samples],
        view_names=[s.view_name for s in samples],
        class_names=list(samples[0].class_names),
        point_region=point_region,
        region_captions=[c for s in samples for c in s.region_captions],
    )
