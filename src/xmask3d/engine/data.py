"""Datasets of a run from its configuration: training views, the selection split, evaluation views.

The checkpoint is chosen on a held-out share of the *training* scenes (``data.select_fraction``),
never on the split whose numbers are reported (decisions.md §5, method.md §8 item 30).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import numpy as np

from xmask3d.config import XMask3DConfig
from xmask3d.data.dataset import ViewDataset
from xmask3d.data.processed import ProcessedLayout
from xmask3d.data.splits import CategorySplit, get_split
from xmask3d.errors import CheckpointError, ConfigError, DataError, XMask3DError

__all__ = ["category_split", "eval_shard", "eval_vocabulary", "loader_batches", "open_layout",
           "selection_scenes", "view_dataset"]


def open_layout(cfg: XMask3DConfig) -> ProcessedLayout:
    """The processed dataset root of ``cfg.data``."""
    return ProcessedLayout(cfg.data.root, captions_file=cfg.data.captions_file or None,
                           region_captions_file=cfg.data.region_captions_file or None)


def category_split(cfg: XMask3DConfig) -> CategorySplit:
    try:
        return get_split(cfg.data.split)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def selection_scenes(scenes: list[str], *, fraction: float,
                     seed: int) -> tuple[list[str], list[str]]:
    """Split training scenes into (training, checkpoint-selection) scenes, reproducibly.

    ``round(fraction * n)`` scenes are held out (at least one when ``fraction > 0``), but never
    all of them: at least one scene remains for training.

    Args:
        scenes: the training split's scene names.
        fraction: share held out, in [0, 1).
        seed: seed of the choice.
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"data.select_fraction must be in [0, 1), got {fraction}")
    n = len(scenes)
    k = 0 if fraction == 0 else min(max(1, round(fraction * n)), n - 1)
    rng = np.random.default_rng([seed, n])
    held = set(rng.choice(n, size=k, replace=False).tolist()) if k else set()
    ordered = sorted(scenes)
    return ([s for i, s in enumerate(ordered) if i not in held],
            [s for i, s in enumerate(ordered) if i in held])


def view_dataset(cfg: XMask3DConfig, layout: ProcessedLayout, *, split: str, mode: str,
                 scenes: list[str] | None = None) -> ViewDataset:
    """A :class:`ViewDataset` with the view, voxel and augmentation settings of ``cfg.data``.

    Args:
        cfg: the run configuration.
        layout: the dataset root.
        split: the folder under ``scannet_3d/`` (``"train"``, ``"val"``, ...).
        mode: ``"train"`` (base labels, random view per item) or ``"eval"`` (every usable view).
        scenes: restrict to these scenes.
    """
    d = cfg.data
    if mode == "train":
        max_visible = d.max_visible
    else:
        max_visible = d.eval_max_visible if d.eval_max_visible > 0 else None
    return ViewDataset(
        layout, split, category_split=category_split(cfg), mode=mode,
        image_hw=(d.image_hw[0], d.image_hw[1]), voxel_size=d.voxel_size,
        rel_thresh=d.rel_thresh, border=d.border, min_visible=d.min_visible,
        max_visible=max_visible, min_valid=d.min_valid, max_retries=d.max_retries,
        loop=d.loop, augment=d.augment, rotate_z=d.rotate_z, rotate_xy=d.rotate_xy,
        scale=(d.scale_min, d.scale_max), jitter=d.jitter, color_contrast=d.color_contrast,
        color_shift=d.color_shift, color_jitter=d.color_jitter, binary_mode=d.binary_mode,
        region_min_margin=d.region_min_margin, region_depth_factor=d.region_depth_factor,
        seed=cfg.train.seed, scenes=scenes, cache_size=d.scene_cache,
        height_channel=d.height_channel)


def eval_vocabulary(split: CategorySplit) -> tuple[list[str], list[int], list[bool]]:
    """The classes the model scores at evaluation: every evaluated (base + novel) class.

    Ignore classes (e.g. ScanNet's otherfurniture) are not offered, as in the published protocol
    (method.md §4.1 step 3).

    Returns:
        names, full-space index of each vocabulary entry, and whether each is novel.
    """
    index = list(split.evaluated)
    novel = set(split.novel)
    return [split.class_names[i] for i in index], index, [i in novel for i in index]


def eval_shard(cfg: XMask3DConfig, layout: ProcessedLayout, *, split: str,
               scenes: list[str] | None = None, rank: int = 0,
               world_size: int = 1) -> ViewDataset | None:
    """The eval-mode dataset of this rank's share of ``scenes`` (``None`` if it gets none).

    Scenes are dealt by their number of frames (a cheap stand-in for the usable views), so
    that no rank has to project every view of every scene first.
    """
    from xmask3d.engine.evaluator import shard_scenes

    names = list(scenes) if scenes is not None else layout.scene_names(split)
    counts = {s: len(layout.frame_names(s)) for s in names}
    mine = shard_scenes(counts, world_size)[rank]
    return view_dataset(cfg, layout, split=split, mode="eval", scenes=mine) if mine else None


_WORKER_ERROR = re.compile(r"Caught (\w+) in DataLoader worker process \d+")
_OUR_ERRORS = {cls.__name__: cls for cls in (DataError, ConfigError, CheckpointError,
                                             XMask3DError)}


def loader_batches(loader: Iterable) -> Iterator:
    """Iterate a DataLoader; an error of ours raised in a worker process comes back as itself.

    PyTorch re-raises a worker's exception as a ``RuntimeError`` holding the worker's traceback
    when it cannot rebuild the exception (``DataError`` takes a path and a problem): the user would
    see a traceback instead of the message naming the file. The message is taken from the last
    line of that traceback.
    """
    it = iter(loader)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return
        except RuntimeError as exc:
            match = _WORKER_ERROR.match(str(exc))
            if match is None or match.group(1) not in _OUR_ERRORS:
                raise
            last = [line for line in str(exc).strip().splitlines() if line.strip()][-1]
            message = last.split(": ", 1)[1] if ": " in last else last
            cls = _OUR_ERRORS[match.group(1)]
            raise (DataError(None, message) if cls is DataError else cls(message)) from None
        yield batch
