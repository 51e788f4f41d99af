"""Write a synthetic dataset in the processed (OpenScene/XMask3D) layout, in parallel.

Layout written (decisions.md §4; readers in ``xmask3d.data.processed``)::

    <out>/scannet_3d/{train,val}/synth_XXXX_00_vh_clean_2.pth
    <out>/scannet_3d_200/{train,val}/synth_XXXX_00.txt          raw ScanNet ids per point
    <out>/scannet_2d/synth_XXXX_00/{color,depth,pose,label,label_200}/<frame>.{jpg,png,txt}
    <out>/scannet_2d/synth_XXXX_00/intrinsics.txt
    <out>/captions.json                                         {scene: {frame: caption}}
    <out>/region_captions.json                       {scene: {frame: [{box, caption}, ...]}}
    <out>/synth_meta/dataset.json, <scene>.json, <scene>_instances.npy   (extras, ours)
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from xmask3d.data.processed import (
    POINT_SUFFIX,
    atomic_write,
    save_point_file,
    write_captions,
    write_intrinsics,
    write_label_200,
    write_view,
)
from xmask3d.data.regions import REGION_CAPTIONS_FILE, write_region_captions
from xmask3d.data.synth.reconstruct import ScanSettings
from xmask3d.data.synth.regions import RegionNoise
from xmask3d.data.synth.scan import K_320x240, SynthScan, generate_scan, scene_name
from xmask3d.errors import ConfigError

logger = logging.getLogger(__name__)
META_DIR = "synth_meta"
OUTPUT_DIRS = ("scannet_3d", "scannet_3d_200", "scannet_2d", META_DIR)


@dataclass(frozen=True)
class SynthConfig:
    """Parameters of a synthetic dataset.

    Attributes:
        scenes: number of scenes.
        views: rendered views per scene.
        seed: master seed; scene i uses the seed sequence (seed, i).
        val_fraction: fraction of scenes in the ``val`` split (every 1/f-th scene).
        density: surface samples per square metre.
        region_noise: error rates of the synthetic dense captioner (region captions).
        studio: fraction of scenes that are large studio rooms (bed, sofa and kitchen in one).
        color_cast: strength of the per-scene exposure and white-balance cast (0 = none).
        scan_views: depth frames fused into each scene's point cloud, like a real
            reconstruction (``synth/reconstruct.py``); 0 samples every surface instead.
    """

    scenes: int
    views: int
    seed: int = 0
    val_fraction: float = 0.2
    density: float = 600.0
    region_noise: RegionNoise = RegionNoise()
    studio: float = 0.0
    color_cast: float = 0.0
    scan_views: int = 0

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the command-line option that is out of range."""
        if self.scenes < 1:
            raise ConfigError(f"--scenes must be at least 1, got {self.scenes}")
        if self.views < 1:
            raise ConfigError(f"--views must be at least 1, got {self.views}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if not self.density > 0:
            raise ConfigError(f"--density must be positive, got {self.density}")
        if not 0.0 <= self.studio <= 1.0:
            raise ConfigError(f"--studio must be in [0, 1], got {self.studio}")
        if not 0.0 <= self.color_cast <= 1.0:
            raise ConfigError(f"--color-cast must be in [0, 1], got {self.color_cast}")
        if self.scan_views < 0:
            raise ConfigError(f"--scan-views must be 0 or more, got {self.scan_views}")
        self.region_noise.validate()


def split_of(index: int, n_scenes: int, val_fraction: float) -> str:
    """``"val"`` for every 1/f-th scene (scene 4, 9, 14, ... for f = 0.2), else ``"train"``.

    With ``f > 0`` and at least two scenes, the last scene is ``val`` if no other one is.
    """
    f = Fraction(str(val_fraction))
    if f == 0:
        return "train"
    if (index + 1) * f.numerator // f.denominator > index * f.numerator // f.denominator:
        return "val"
    no_val = n_scenes * f.numerator // f.denominator == 0
    return "val" if no_val and n_scenes >= 2 and index == n_scenes - 1 else "train"


def _png16(arr: np.ndarray):
    return lambda tmp: Image.fromarray(np.asarray(arr, dtype=np.uint16)).save(tmp, format="PNG")


def write_scan(root: Path, scan: SynthScan, split: str) -> None:
    """Write one scene (points, ScanNet200 ids, views, intrinsics, metadata) under ``root``."""
    save_point_file(root / "scannet_3d" / split / f"{scan.name}{POINT_SUFFIX}", scan.points,
                    scan.colors, scan.labels)
    write_label_200(root, split, scan.name, scan.raw200)
    write_intrinsics(root, scan.name, K_320x240)
    for v in scan.views:
        write_view(root, scan.name, v.name, color=v.color, pose=v.pose, depth=v.depth,
                   label=v.nyu40)
        atomic_write(root / "scannet_2d" / scan.name / "label_200" / f"{v.name}.png",
                     _png16(v.raw200))
    meta = {
        "scene": scan.name, "split": split, "room_type": scan.room.room_type,
        "size": [scan.room.width, scan.room.depth, scan.room.height],
        "objects": [{"name": o.name, "category": o.category, "instance": o.instance,
                     "wall": o.wall, "z": o.z, "height": o.draft.height,
                     "footprint": np.round(o.corners, 4).tolist()} for o in scan.room.objects],
    }
    meta_dir = root / META_DIR
    _write_json(meta_dir / f"{scan.name}.json", meta)
    atomic_write(meta_dir / f"{scan.name}_instances.npy",
                 lambda t: _save_npy(t, scan.instances.astype(np.int32)))


def _save_npy(path: str, arr: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, lambda t: Path(t).write_text(json.dumps(data, indent=1)))


def _make_and_write(root: str, index: int, cfg: SynthConfig) -> dict:
    start = time.perf_counter()
    scan = generate_scan(index, seed=cfg.seed, n_views=cfg.views, density=cfg.density,
                         region_noise=cfg.region_noise, studio=cfg.studio,
                         color_cast=cfg.color_cast, scan=ScanSettings(views=cfg.scan_views))
    split = split_of(index, cfg.scenes, cfg.val_fraction)
    write_scan(Path(root), scan, split)
    return {"index": index, "scene": scan.name, "split": split, "points": len(scan.points),
            "room_type": scan.room.room_type, "seconds": time.perf_counter() - start,
            "captions": {v.name: v.caption for v in scan.views},
            "regions": {v.name: v.regions for v in scan.views}}


@contextmanager
def _single_threaded_children():
    """Worker processes inherit one BLAS/OpenMP thread each (they are already parallel)."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _prepare_output(root: Path, overwrite: bool) -> None:
    existing = [d for d in OUTPUT_DIRS if (root / d).exists()] + [
        f for f in ("captions.json", REGION_CAPTIONS_FILE) if (root / f).exists()]
    if not existing:
        return
    if not overwrite:
        raise ConfigError(f"{root} already holds a dataset ({', '.join(existing)}); "
                          "choose another --out or pass --overwrite")
    if not (root / META_DIR / "dataset.json").is_file():
        raise ConfigError(f"{root} holds data that `xmask3d synth` did not write; refusing to "
                          "overwrite it")
    for d in OUTPUT_DIRS:
        shutil.rmtree(root / d, ignore_errors=True)
    (root / "captions.json").unlink(missing_ok=True)
    (root / REGION_CAPTIONS_FILE).unlink(missing_ok=True)


def generate_dataset(out: str | Path, cfg: SynthConfig, *, workers: int = 2,
                     overwrite: bool = False, progress: bool = True) -> dict:
    """Generate ``cfg.scenes`` scenes into ``out`` using ``workers`` processes.

    The output does not depend on ``workers``: every scene has its own seed sequence.

    Returns:
        A summary: counts per split and room type, points per scene, timings.
    """
    cfg.validate()
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    root = Path(out)
    _prepare_output(root, overwrite)
    root.mkdir(parents=True, exist_ok=True)
    _write_json(root / META_DIR / "dataset.json", {"config": asdict(cfg), "complete": False})
    start = time.perf_counter()
    results = []
    bar = tqdm(total=cfg.scenes, desc="synth scenes", unit="scene", disable=not progress)
    if workers == 1 or cfg.scenes == 1:
        for i in range(cfg.scenes):
            results.append(_make_and_write(str(root), i, cfg))
            bar.update(1)
    else:
        # fork where available: no re-import of the caller's main module (scripts without a
        # __main__ guard work) and no per-worker import cost; the workers only run numpy
        # and torch.save, so forking a process that imported torch is safe here.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with _single_threaded_children(), ProcessPoolExecutor(
                min(workers, cfg.scenes), mp_context=ctx) as pool:
            futures = [pool.submit(_make_and_write, str(root), i, cfg) for i in range(cfg.scenes)]
            for fut in as_completed(futures):
                results.append(fut.result())
                bar.update(1)
    bar.close()
    results.sort(key=lambda r: r["index"])
    write_captions(root, {r["scene"]: r["captions"] for r in results})
    write_region_captions(root, {r["scene"]: r["regions"] for r in results})
    seconds = time.perf_counter() - start
    summary = _summary(results, cfg, workers, seconds)
    _write_json(root / META_DIR / "dataset.json", summary)
    logger.info("wrote %d scenes x %d views to %s in %.1f s", cfg.scenes, cfg.views, root, seconds)
    return summary


def _summary(results: list[dict], cfg: SynthConfig, workers: int, seconds: float) -> dict:
    points = np.array([r["points"] for r in results])
    return {
        "config": asdict(cfg), "complete": True, "workers": workers,
        "seconds": round(seconds, 2),
        "splits": {s: [r["scene"] for r in results if r["split"] == s] for s in ("train", "val")},
        "room_types": {r["scene"]: r["room_type"] for r in results},
        "points_per_scene": {"min": int(points.min()), "median": int(np.median(points)),
                             "max": int(points.max())},
        "scene_seconds": round(float(np.mean([r["seconds"] for r in results])), 3),
    }


__all__ = ["SynthConfig", "generate_dataset", "scene_name", "split_of", "write_scan"]
