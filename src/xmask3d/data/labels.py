"""Label id conventions: NYU40 -> ScanNet20, raw ScanNet ids -> ScanNet200, S3DIS class names.

Follows the OpenScene remapper (NYU40 ids in ``VALID_CLASS_IDS_20`` order) and the ScanNet200
benchmark constants (``VALID_CLASS_IDS_200``), see benchmarks-and-data.md §4.4.
"""

from __future__ import annotations

import csv
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from xmask3d.data.scene import IGNORE_LABEL
from xmask3d.errors import DataError

SCANNET20_NYU40_IDS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39,
)
SCANNET20_NAMES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
    "bathtub", "otherfurniture",
)
S3DIS_NAMES: tuple[str, ...] = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa",
    "bookcase", "board", "clutter",
)


@lru_cache(maxsize=1)
def _scannet200() -> dict:
    text = resources.files("xmask3d").joinpath("resources/scannet200.json").read_text()
    return json.loads(text)


def scannet200_raw_ids() -> tuple[int, ...]:
    """The 200 raw ScanNet category ids of the ScanNet200 benchmark, in class-index order."""
    return tuple(_scannet200()["raw_ids"])


def scannet200_names() -> tuple[str, ...]:
    """The 200 ScanNet200 class names, in class-index order."""
    return tuple(_scannet200()["names"])


def scannet200_trainonly_names() -> tuple[str, ...]:
    """The 11 ScanNet200 classes that RegionPLC drops from the metric (benchmarks §2.4)."""
    return tuple(_scannet200()["trainonly"])


def _lookup(ids: np.ndarray, valid: tuple[int, ...]) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        if not np.all(np.isfinite(ids)) or np.any(ids != np.round(ids)):
            raise DataError(None, "label ids must be whole numbers")
        ids = ids.astype(np.int64)
    table = np.full(max(max(valid), int(ids.max(initial=0))) + 1, IGNORE_LABEL, dtype=np.int64)
    table[list(valid)] = np.arange(len(valid))
    out = np.full(ids.shape, IGNORE_LABEL, dtype=np.int64)
    ok = ids >= 0
    out[ok] = table[ids[ok].astype(np.int64)]
    return out


def nyu40_to_scannet20(ids: np.ndarray) -> np.ndarray:
    """Map NYU40 ids to ScanNet20 class indices 0..19, everything else to ``IGNORE_LABEL``."""
    return _lookup(ids, SCANNET20_NYU40_IDS)


def scannet20_to_nyu40(labels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`nyu40_to_scannet20` (ignore -> 0, "unannotated")."""
    table = np.zeros(IGNORE_LABEL + 1, dtype=np.int64)
    table[: len(SCANNET20_NYU40_IDS)] = SCANNET20_NYU40_IDS
    return table[np.clip(np.asarray(labels, dtype=np.int64), 0, IGNORE_LABEL)]


def raw_to_scannet200(ids: np.ndarray) -> np.ndarray:
    """Map raw ScanNet category ids to ScanNet200 class indices 0..199, others to ignore."""
    return _lookup(ids, scannet200_raw_ids())


def load_label_tsv(path: str | Path) -> dict[str, tuple[int, int]]:
    """Read ``scannetv2-labels.combined.tsv``: raw_category -> (raw id, nyu40 id)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "label mapping file not found")
    table: dict[str, tuple[int, int]] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        needed = {"id", "raw_category", "nyu40id"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise DataError(path, f"expected tab-separated columns {sorted(needed)}")
        for row in reader:
            try:
                table[row["raw_category"]] = (int(row["id"]), int(row["nyu40id"] or 0))
            except ValueError as exc:
                raise DataError(path, f"bad row for {row.get('raw_category')!r}: {exc}") from exc
    if not table:
        raise DataError(path, "no rows")
    return table


LABEL_SETS = ("scannet20", "scannet200", "s3dis")


def label_set_names(label_set: str) -> tuple[str, ...]:
    """Class names of a label set, in index order."""
    if label_set == "scannet20":
        return SCANNET20_NAMES
    if label_set == "scannet200":
        return scannet200_names()
    if label_set == "s3dis":
        return S3DIS_NAMES
    raise ValueError(f"unknown label set {label_set!r}; choose one of {LABEL_SETS}")


def map_2d_label_ids(ids: np.ndarray, label_set: str) -> np.ndarray:
    """Map the ids stored in a 2D label PNG to class indices of ``label_set``."""
    if label_set == "scannet20":
        return nyu40_to_scannet20(ids)
    if label_set == "scannet200":
        return raw_to_scannet200(ids)
    if label_set == "s3dis":
        out = np.asarray(ids, dtype=np.int64).copy()
        out[(out < 0) | (out >= len(S3DIS_NAMES))] = IGNORE_LABEL
        return out
    raise ValueError(f"unknown label set {label_set!r}; choose one of {LABEL_SETS}")
