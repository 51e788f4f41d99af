"""Conversion of raw ScanNet v2 scene folders into the processed (OpenScene) layout.

Follows OpenScene's ``preprocess_3d_scannet.py`` (mesh vertices + ``labels.ply`` nyu40 ids ->
ScanNet20) and Pointcept's ScanNet preprocessing (aggregation + segments -> raw category ids and
instances through ``scannetv2-labels.combined.tsv``), see benchmarks-and-data.md §4.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from xmask3d.data.labels import load_label_tsv, nyu40_to_scannet20
from xmask3d.data.ply import read_ply
from xmask3d.data.processed import POINT_SUFFIX, save_point_file, write_label_200
from xmask3d.data.scene import IGNORE_LABEL, Scene
from xmask3d.data.sens import export_sens
from xmask3d.errors import DataError

__all__ = ["raw_to_nyu40_table", "read_aggregation", "find_scannet_scenes", "convert_scannet_scene"]

logger = logging.getLogger(__name__)

MESH_SUFFIX = "_vh_clean_2.ply"
LABELS_SUFFIX = "_vh_clean_2.labels.ply"
AGGREGATION_SUFFIX = ".aggregation.json"
SEGS_SUFFIX = "_vh_clean_2.0.010000.segs.json"


def raw_to_nyu40_table(tsv: dict[str, tuple[int, int]]) -> np.ndarray:
    """Lookup array ``table[raw_id] = nyu40_id`` (0 for ids absent from the tsv)."""
    pairs = list(tsv.values())
    table = np.zeros(max(raw for raw, _ in pairs) + 1, dtype=np.int64)
    for raw, nyu in pairs:
        table[raw] = nyu
    return table


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"invalid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DataError(path, "expected a JSON object")
    return data


def read_aggregation(
    agg_path: str | Path,
    segs_path: str | Path,
    *,
    num_points: int,
    tsv: dict[str, tuple[int, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex raw category ids and instance ids from ScanNet's aggregation and segments.

    Args:
        agg_path: ``<scene>.aggregation.json`` (``segGroups``: objectId, label, segments).
        segs_path: ``<scene>_vh_clean_2.0.010000.segs.json`` (``segIndices``, one per vertex).
        num_points: vertex count of the mesh, checked against ``segIndices``.
        tsv: raw_category -> (raw id, nyu40 id), from :func:`load_label_tsv`.

    Returns:
        raw_ids (N,) int64, 0 where unannotated or the category is not in the tsv;
        instances (N,) int64, ``objectId + 1``, 0 = none.
    """
    agg_path, segs_path = Path(agg_path), Path(segs_path)
    seg_indices = np.asarray(_load_json(segs_path).get("segIndices", []), dtype=np.int64)
    if seg_indices.shape != (num_points,):
        raise DataError(segs_path, f"{seg_indices.size} segIndices for a mesh of {num_points} "
                        "vertices (wrong file for this mesh?)")
    groups = _load_json(agg_path).get("segGroups")
    if not isinstance(groups, list):
        raise DataError(agg_path, "no 'segGroups' list")
    raw_ids = np.zeros(num_points, dtype=np.int64)
    instances = np.zeros(num_points, dtype=np.int64)
    unknown: set[str] = set()
    for k, group in enumerate(groups):
        try:
            label, segments = str(group["label"]), group["segments"]
            object_id = int(group.get("objectId", group.get("id", k)))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(agg_path, f"segGroup {k} lacks label/segments ({exc})") from exc
        mask = np.isin(seg_indices, np.asarray(segments, dtype=np.int64))
        if label in tsv:
            raw_ids[mask] = tsv[label][0]
        else:
            unknown.add(label)
        instances[mask] = object_id + 1
    if unknown:
        logger.warning("%s: categories not in the label tsv, left unannotated: %s", agg_path,
                       sorted(unknown))
    return raw_ids, instances


def find_scannet_scenes(raw_dir: str | Path, *, names: list[str] | None = None) -> list[Path]:
    """Scene folders under ``raw_dir`` (or ``raw_dir`` itself if it is one), sorted by name.

    Args:
        raw_dir: a ScanNet ``scans/`` folder or a single scene folder.
        names: only these scenes (each must exist).
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(raw_dir, "raw ScanNet folder not found")
    if (raw_dir / f"{raw_dir.name}{MESH_SUFFIX}").is_file():
        found = {raw_dir.name: raw_dir}
    else:
        found = {p.name: p for p in raw_dir.iterdir() if (p / f"{p.name}{MESH_SUFFIX}").is_file()}
    if names is not None:
        missing = [n for n in names if n not in found]
        if missing:
            raise DataError(raw_dir, f"{len(missing)} listed scenes have no folder with a "
                            f"{MESH_SUFFIX} mesh, e.g. {missing[:3]}")
        found = {n: found[n] for n in names}
    if not found:
        raise DataError(raw_dir, f"no scene folders with a <scene>{MESH_SUFFIX} mesh")
    return [found[n] for n in sorted(found)]


def _nyu40_labels(scene_dir: Path, num_points: int, raw_ids: np.ndarray | None,
                  raw_nyu: np.ndarray) -> np.ndarray | None:
    """nyu40 ids from ``labels.ply``, else from the raw ids, else ``None``."""
    path = scene_dir / f"{scene_dir.name}{LABELS_SUFFIX}"
    if path.is_file():
        cloud = read_ply(path)
        if "label" not in cloud.fields:
            raise DataError(path, f"no vertex field 'label' (fields: {sorted(cloud.fields)})")
        if cloud.num_points != num_points:
            raise DataError(path, f"{cloud.num_points} vertices but the mesh has {num_points}")
        return cloud.fields["label"].astype(np.int64)
    if raw_ids is not None:
        logger.info("%s: no %s; nyu40 ids taken from the aggregation", scene_dir, LABELS_SUFFIX)
        return raw_nyu[np.clip(raw_ids, 0, len(raw_nyu) - 1)]
    return None


def convert_scannet_scene(
    scene_dir: str | Path,
    root: str | Path,
    *,
    split: str,
    tsv: str | Path | dict[str, tuple[int, int]],
    frame_skip: int = 20,
    export_images: bool = True,
    label_folder: str = "label-filt",
) -> Scene:
    """Convert one raw ScanNet scene folder into ``root`` (processed layout).

    Writes ``scannet_3d/<split>/<scene>_vh_clean_2.pth`` (mesh vertices, colours, ScanNet20
    labels; all-ignore when the scene has no annotation), ``scannet_3d_200/<split>/<scene>.txt``
    (raw ids, when aggregation + segments exist), and, when ``<scene>.sens`` exists and
    ``export_images``, every ``frame_skip``-th frame into ``scannet_2d/<scene>/`` (with label
    PNGs when the ``label_folder`` sub-folder of the scene exists).

    Returns:
        The scene with ScanNet20 labels and instance ids (``None`` without aggregation).
    """
    scene_dir = Path(scene_dir)
    name = scene_dir.name
    table = tsv if isinstance(tsv, dict) else load_label_tsv(tsv)
    raw_nyu = raw_to_nyu40_table(table)
    mesh = read_ply(scene_dir / f"{name}{MESH_SUFFIX}")
    colors = mesh.colors
    if colors is None:
        logger.warning("%s: mesh has no colours; using grey", scene_dir)
        colors = np.full((mesh.num_points, 3), 128, dtype=np.uint8)
    raw_ids = instances = None
    agg, segs = scene_dir / f"{name}{AGGREGATION_SUFFIX}", scene_dir / f"{name}{SEGS_SUFFIX}"
    if agg.is_file() and segs.is_file():
        raw_ids, instances = read_aggregation(agg, segs, num_points=mesh.num_points, tsv=table)
        write_label_200(root, split, name, raw_ids)
    nyu40 = _nyu40_labels(scene_dir, mesh.num_points, raw_ids, raw_nyu)
    if nyu40 is None:
        logger.warning("%s: no labels.ply or aggregation; points written unlabelled", scene_dir)
        labels = np.full(mesh.num_points, IGNORE_LABEL, dtype=np.int64)
    else:
        labels = nyu40_to_scannet20(nyu40)
    out = Path(root) / "scannet_3d" / split / f"{name}{POINT_SUFFIX}"
    save_point_file(out, mesh.points, colors, labels)
    sens = scene_dir / f"{name}.sens"
    if export_images and sens.is_file():
        labels_dir = scene_dir / label_folder
        export_sens(sens, root, name, frame_skip=frame_skip,
                    label_folder=labels_dir if labels_dir.is_dir() else None,
                    raw_to_nyu40=raw_nyu)
    return Scene(name=name, points=mesh.points, colors=colors, labels=labels, instances=instances)
