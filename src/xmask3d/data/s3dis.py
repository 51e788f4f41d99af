"""S3DIS readers (Annotations txt, N x 8 ``.npy``, mmdet3d ``.bin``) and conversion to the layout.

Follows PLA's ``pcseg/datasets/s3dis/preprocess.py`` (PointNet lineage): class from the
annotation file name, unknown classes such as ``stairs`` -> clutter, split by area
(benchmarks-and-data.md §4.3). Coordinates are kept as stored (no shift to a zero minimum).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmask3d.data.labels import S3DIS_NAMES
from xmask3d.data.processed import POINT_SUFFIX, save_point_file
from xmask3d.data.scene import Scene
from xmask3d.errors import DataError

__all__ = [
    "S3DIS_CLUTTER", "s3dis_class_index", "read_s3dis_room", "read_s3dis_npy", "read_s3dis_bin",
    "S3DISRoom", "find_s3dis_rooms", "convert_s3dis_room",
]

logger = logging.getLogger(__name__)

S3DIS_CLUTTER = S3DIS_NAMES.index("clutter")
_AREA = re.compile(r"Area_(\d+)")
_CONTROL = re.compile(r"[^0-9eE+\-.\s]")  # S3DIS v1.2 has a stray control byte in one file


def s3dis_class_index(name: str) -> int:
    """Class index of an S3DIS class name; unknown names (e.g. ``stairs``) give clutter (12)."""
    name = name.lower()
    return S3DIS_NAMES.index(name) if name in S3DIS_NAMES else S3DIS_CLUTTER


def _parse_xyzrgb(path: Path) -> np.ndarray:
    """Read an ``x y z r g b`` text file as (M, 6) float64, tolerating stray non-numeric bytes."""
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise DataError(path, f"unreadable ({exc})") from exc
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = _CONTROL.sub(" ", line).split()
        if not fields:
            continue
        if len(fields) != 6:
            raise DataError(path, f"line {lineno}: expected 6 values 'x y z r g b', "
                            f"got {len(fields)}")
        try:
            rows.append([float(v) for v in fields])
        except ValueError as exc:
            raise DataError(path, f"line {lineno}: {exc}") from exc
    if not rows:
        raise DataError(path, "no points")
    data = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(data).all():
        raise DataError(path, "NaN/inf values")
    return data


def _scene(name: str, xyz: np.ndarray, rgb: np.ndarray, sem: np.ndarray, inst: np.ndarray,
           path: Path) -> Scene:
    """Validate arrays and build a Scene (colours rounded and clipped to uint8)."""
    if not np.isfinite(xyz).all():
        raise DataError(path, "coordinates contain NaN/inf")
    bad = (sem < 0) | (sem >= len(S3DIS_NAMES))
    if bad.any():
        raise DataError(path, f"semantic labels outside 0..{len(S3DIS_NAMES) - 1}: "
                        f"{np.unique(sem[bad])[:5].tolist()}")
    if rgb.size and rgb.max() <= 1.0:
        rgb = rgb * 255.0
    colors = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    return Scene(name=name, points=xyz.astype(np.float32), colors=colors,
                 labels=sem.astype(np.int64), instances=inst.astype(np.int64))


def read_s3dis_room(room_dir: str | Path, *, name: str | None = None) -> Scene:
    """Read ``<room>/Annotations/<class>_<k>.txt`` files into one labelled scene.

    Args:
        room_dir: an S3DIS room folder (``Area_5/office_1``).
        name: scene name; default ``<area>_<room>``.

    Returns:
        Scene with labels 0..12 (unknown classes -> clutter) and instance ids 1..K (one per file,
        in sorted file order).
    """
    room_dir = Path(room_dir)
    files = sorted((room_dir / "Annotations").glob("*.txt"))
    if not files:
        raise DataError(room_dir / "Annotations", "no <class>_<k>.txt annotation files")
    parts, sems, insts = [], [], []
    for k, f in enumerate(files, start=1):
        cls = f.stem.rsplit("_", 1)[0]
        data = _parse_xyzrgb(f)
        if s3dis_class_index(cls) == S3DIS_CLUTTER and cls.lower() != "clutter":
            logger.info("%s: class %r is not an S3DIS class; labelled clutter", f, cls)
        parts.append(data)
        sems.append(np.full(len(data), s3dis_class_index(cls), dtype=np.int64))
        insts.append(np.full(len(data), k, dtype=np.int64))
    data = np.concatenate(parts)
    name = name or f"{room_dir.parent.name}_{room_dir.name}"
    return _scene(name, data[:, :3], data[:, 3:6], np.concatenate(sems), np.concatenate(insts),
                  room_dir)


def read_s3dis_npy(path: str | Path) -> Scene:
    """Read PLA's N x 8 ``[x, y, z, r, g, b, sem, inst]`` room array (rgb 0..255)."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"not a readable .npy array ({exc})") from exc
    if arr.ndim != 2 or arr.shape[1] != 8 or len(arr) == 0:
        raise DataError(path, f"expected a non-empty (N, 8) array [x y z r g b sem inst], "
                        f"got {arr.shape}")
    arr = arr.astype(np.float64)
    return _scene(path.stem, arr[:, :3], arr[:, 3:6], np.rint(arr[:, 6]).astype(np.int64),
                  np.rint(arr[:, 7]).astype(np.int64), path)


def _read_bin(path: Path, dtype: type, n: int | None, cols: int = 1) -> np.ndarray:
    if not path.is_file():
        raise DataError(path, "file not found")
    raw = np.fromfile(path, dtype=dtype)
    if raw.size == 0 or raw.size % cols or (n is not None and raw.size != n * cols):
        want = f"{n} x {cols}" if n is not None else f"a multiple of {cols}"
        raise DataError(path, f"{raw.size} {np.dtype(dtype).name} values, expected {want}")
    return raw.reshape(-1, cols) if cols > 1 else raw


def read_s3dis_bin(points_path: str | Path) -> Scene:
    """Read the mmdet3d form: ``<room>_points.bin`` float32 (N, 6) + ``_semantic_mask.bin`` int64.

    ``<room>_instance_mask.bin`` (int64) is read when present.
    """
    points_path = Path(points_path)
    if not points_path.name.endswith("_points.bin"):
        raise DataError(points_path, "expected a file named <room>_points.bin")
    prefix = points_path.name[: -len("_points.bin")]
    pts = _read_bin(points_path, np.float32, None, cols=6).astype(np.float64)
    sem = _read_bin(points_path.with_name(f"{prefix}_semantic_mask.bin"), np.int64, len(pts))
    inst_path = points_path.with_name(f"{prefix}_instance_mask.bin")
    inst = (_read_bin(inst_path, np.int64, len(pts)) if inst_path.is_file()
            else np.zeros(len(pts), dtype=np.int64))
    return _scene(prefix, pts[:, :3], pts[:, 3:6], sem, inst, points_path)


@dataclass
class S3DISRoom:
    """One room found under a raw S3DIS folder.

    Attributes:
        name: scene name ``Area_<k>_<room>``.
        area: area number.
        path: room folder, ``.npy`` file or ``*_points.bin`` file.
        kind: ``"annotations"``, ``"npy"`` or ``"bin"``.
    """

    name: str
    area: int
    path: Path
    kind: str

    def read(self) -> Scene:
        if self.kind == "annotations":
            scene = read_s3dis_room(self.path, name=self.name)
        elif self.kind == "npy":
            scene = read_s3dis_npy(self.path)
        else:
            scene = read_s3dis_bin(self.path)
        scene.name = self.name
        return scene


def find_s3dis_rooms(raw_dir: str | Path) -> list[S3DISRoom]:
    """Rooms under ``raw_dir`` in any of the three forms (searched recursively), sorted by name."""
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise DataError(raw_dir, "raw S3DIS folder not found")
    found: dict[str, S3DISRoom] = {}
    candidates = [(p.parent, "annotations") for p in raw_dir.rglob("Annotations") if p.is_dir()]
    candidates += [(p, "npy") for p in raw_dir.rglob("Area_*.npy")]
    candidates += [(p, "bin") for p in raw_dir.rglob("Area_*_points.bin")]
    for path, kind in candidates:
        if kind == "annotations":
            name = f"{path.parent.name}_{path.name}"
        else:
            name = path.stem if kind == "npy" else path.name[: -len("_points.bin")]
        match = _AREA.match(name)
        if match is None:
            logger.warning("%s: cannot tell the area from the name; skipped", path)
            continue
        found.setdefault(name, S3DISRoom(name, int(match.group(1)), path, kind))
    if not found:
        raise DataError(raw_dir, "no S3DIS rooms (Area_*/<room>/Annotations, Area_*.npy or "
                        "Area_*_points.bin)")
    return [found[n] for n in sorted(found)]


def convert_s3dis_room(
    room: S3DISRoom, root: str | Path, *, test_area: int = 5
) -> tuple[str, Scene]:
    """Convert one room into ``<root>/scannet_3d/<split>/<name>_vh_clean_2.pth`` (labels 0..12).

    Returns:
        The split (``"val"`` for ``test_area``, else ``"train"``) and the scene.
    """
    scene = room.read()
    split = "val" if room.area == test_area else "train"
    out = Path(root) / "scannet_3d" / split / f"{scene.name}{POINT_SUFFIX}"
    save_point_file(out, scene.points, scene.colors, scene.labels)
    return split, scene
