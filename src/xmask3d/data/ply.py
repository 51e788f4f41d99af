"""PLY point-cloud reading and writing (vertices, colours, per-vertex scalar fields) via plyfile."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement, PlyParseError

from xmask3d.data.processed import atomic_write
from xmask3d.errors import DataError

__all__ = ["PlyCloud", "read_ply", "write_ply"]

logger = logging.getLogger(__name__)

# Accepted colour property names, first match wins.
_COLOR_NAMES = (
    ("red", "green", "blue"),
    ("r", "g", "b"),
    ("diffuse_red", "diffuse_green", "diffuse_blue"),
)
_XYZ = ("x", "y", "z")
# A PLY header is a few hundred bytes; a file without "end_header" this early is not a PLY.
_MAX_HEADER_BYTES = 1 << 20
# What plyfile raises on malformed files (fuzz tests: its own parse errors, ValueError from numpy
# on bad counts or values, OverflowError on an ASCII value out of its type's range,
# UnicodeDecodeError (a ValueError) on binary junk in the header).
_PLY_ERRORS = (PlyParseError, ValueError, TypeError, OverflowError, EOFError, OSError)
# Numpy dtypes that PLY can store, and what wider ones are narrowed to on writing.
_PLY_NARROWING = {
    np.dtype(np.int64): np.dtype(np.int32),
    np.dtype(np.uint64): np.dtype(np.uint32),
    np.dtype(np.bool_): np.dtype(np.uint8),
    np.dtype(np.float16): np.dtype(np.float32),
}


@dataclass
class PlyCloud:
    """Vertices of a PLY file.

    Attributes:
        points: (N, 3) float32 xyz.
        colors: (N, 3) uint8 RGB, or ``None`` when the file has no colour properties.
        fields: every other vertex property by name, each (N,) in its stored dtype
            (e.g. ``label`` in ScanNet's ``*_vh_clean_2.labels.ply``).
    """

    points: np.ndarray
    colors: np.ndarray | None
    fields: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])


def read_ply(path: str | Path) -> PlyCloud:
    """Read the ``vertex`` element of an ASCII or binary (either endianness) PLY file.

    Other elements (``face`` of a mesh, ...) are ignored: a mesh gives its vertices.

    Args:
        path: the ``.ply`` file.

    Returns:
        The vertices: xyz (N, 3) float32, optional colours (N, 3) uint8 (float colours in [0, 1]
        are scaled by 255) and the remaining scalar vertex properties in native byte order
        (list-typed extra properties, e.g. per-vertex texture lists, are left out).

    Raises:
        DataError: unreadable file, a header that declares more rows than the file can hold,
            no ``vertex`` element, missing or list-typed x/y/z, zero vertices, or non-finite
            coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "PLY file not found")
    _check_header_counts(path)
    try:
        ply = PlyData.read(str(path))
    except _PLY_ERRORS as exc:
        raise DataError(path, f"not a readable PLY file ({type(exc).__name__}: {exc})") from exc
    names = [el.name for el in ply.elements]
    if "vertex" not in names:
        raise DataError(path, f"PLY has no 'vertex' element (elements: {names})")
    vertex = ply["vertex"].data
    props = list(vertex.dtype.names or ())
    missing = [axis for axis in _XYZ if axis not in props]
    if missing:
        raise DataError(path, f"PLY vertex element lacks {missing} (properties: {props})")
    lists = [n for n in props if vertex.dtype[n].hasobject]
    if lists and any(n in lists for n in _XYZ):
        raise DataError(path, "PLY vertex x/y/z are list properties; they must be scalars")
    if len(vertex) == 0:
        raise DataError(path, "PLY has zero vertices")
    with np.errstate(over="ignore"):  # doubles beyond the float32 range become inf: refused
        points = np.stack([np.asarray(vertex[a], dtype=np.float64) for a in _XYZ],
                          axis=1).astype(np.float32)
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(path, f"{int(bad.sum())} vertices have NaN/inf xyz (first: {first})")
    color_names = next((c for c in _COLOR_NAMES
                        if all(n in props and n not in lists for n in c)), None)
    colors = None
    if color_names is not None:
        colors = _to_uint8_colors(np.stack([vertex[n] for n in color_names], axis=1), path)
    if lists:
        logger.info("%s: list-typed vertex properties %s are ignored", path, lists)
    used = set(_XYZ) | set(color_names or ()) | set(lists)
    fields_ = {n: np.asarray(vertex[n]).astype(vertex.dtype[n].newbyteorder("=")) for n in props
               if n not in used}
    return PlyCloud(points=points, colors=colors, fields=fields_)


def _check_header_counts(path: Path) -> None:
    """Refuse a header whose element counts exceed the file size (every row takes >= 1 byte),
    before plyfile allocates arrays of that many rows."""
    with path.open("rb") as fh:
        head = fh.read(_MAX_HEADER_BYTES)
    if not head.startswith(b"ply"):
        raise DataError(path, "not a readable PLY file (it does not start with 'ply')")
    end = head.find(b"end_header")
    if end < 0:
        raise DataError(path, "not a readable PLY file (no 'end_header' line in the first "
                        f"{_MAX_HEADER_BYTES} bytes)")
    size = path.stat().st_size
    for line in head[:end].splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == b"element" and words[2].isdigit():
            if int(words[2]) > size:
                raise DataError(path, f"PLY header declares {int(words[2])} "
                                f"{words[1].decode('ascii', 'replace')} rows but the file has "
                                f"only {size} bytes (truncated or corrupt)")


def _to_uint8_colors(raw: np.ndarray, path: Path) -> np.ndarray:
    """Convert (N, 3) stored colours to uint8: floats in [0, 1] scale by 255, others clip."""
    if np.issubdtype(raw.dtype, np.floating):
        if not np.isfinite(raw).all():
            raise DataError(path, "PLY colours contain NaN/inf")
        if raw.max(initial=0.0) <= 1.0:
            raw = raw * 255.0
        return np.clip(np.rint(raw), 0, 255).astype(np.uint8)
    if raw.max(initial=0) > 255 or raw.min(initial=0) < 0:
        logger.warning("%s: integer colours outside 0..255 were clipped", path)
    return np.clip(raw, 0, 255).astype(np.uint8)


def write_ply(
    path: str | Path,
    points: np.ndarray,
    colors: np.ndarray | None = None,
    *,
    binary: bool = True,
    **scalar_fields: np.ndarray,
) -> None:
    """Write a point cloud as a PLY ``vertex`` element, atomically (temporary file + rename).

    Args:
        path: destination ``.ply``; parent folders are created.
        points: (N, 3) float xyz, stored as float32.
        colors: (N, 3) uint8 RGB stored as ``red/green/blue``, or ``None``.
        binary: binary little-endian (default) or ASCII.
        **scalar_fields: extra (N,) per-vertex properties (e.g. ``label=...``). int64/uint64 are
            stored as int32/uint32 (values must fit), bool as uint8.

    Raises:
        DataError: wrong shapes or lengths, non-finite points, or values that do not fit.
    """
    path = Path(path)
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise DataError(path, f"points must be (N, 3), got shape {points.shape}")
    if not np.isfinite(points).all():
        raise DataError(path, "points contain NaN/inf")
    n = points.shape[0]
    columns = [(a, points[:, i].astype(np.float32)) for i, a in enumerate(_XYZ)]
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (n, 3):
            raise DataError(path, f"colors must be ({n}, 3) to match points, got {colors.shape}")
        columns += [(c, colors[:, i].astype(np.uint8)) for i, c in enumerate(_COLOR_NAMES[0])]
    for name, values in scalar_fields.items():
        columns.append((name, _ply_column(path, name, np.asarray(values), n)))
    table = np.empty(n, dtype=[(name, col.dtype) for name, col in columns])
    for name, col in columns:
        table[name] = col
    element = PlyElement.describe(table, "vertex")
    ply = PlyData([element], text=not binary)
    atomic_write(path, lambda tmp: ply.write(tmp))


def _ply_column(path: Path, name: str, values: np.ndarray, n: int) -> np.ndarray:
    """Check one scalar field's length and narrow its dtype to one PLY can store."""
    if values.shape != (n,):
        raise DataError(path, f"field {name!r} must have shape ({n},), got {values.shape}")
    target = _PLY_NARROWING.get(values.dtype, values.dtype)
    if target != values.dtype and np.issubdtype(target, np.integer) and n > 0:
        info = np.iinfo(target)
        if values.min() < info.min or values.max() > info.max:
            raise DataError(path, f"field {name!r} has values outside the {target} range")
    return values.astype(target)
