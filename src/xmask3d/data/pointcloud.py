"""Inference inputs: point clouds (PLY / NPY / processed ``.pth``) and folders of RGB-D frames.

Frame folders come in two layouts: 7-Scenes (``frame-XXXXXX.{color.jpg,depth.png,pose.txt}`` +
``camera-intrinsics.txt``) and the ScanNet/OpenScene export (``color/ depth/ pose/`` +
``intrinsics.txt``). Intrinsics are taken at the colour resolution; a depth map whose size is an
integer fraction or multiple of the colour size is resized (nearest) to the colour size, and K
is left unchanged.
"""

from __future__ import annotations

import logging
import tokenize
from pathlib import Path

import numpy as np
from PIL import Image

from xmask3d.data.ply import read_ply
from xmask3d.data.processed import (
    IMAGE_ERRORS,
    POINT_SUFFIX,
    SCANNET_DEFAULT_INTRINSICS_320x240,
    first_line,
    load_point_file,
    read_depth_png,
    read_image,
    read_intrinsics,
    read_pose,
)
from xmask3d.data.scene import Scene, View
from xmask3d.data.sens import resize_nearest, scale_intrinsics
from xmask3d.errors import DataError

__all__ = ["load_point_cloud", "load_rgbd_frames", "read_color_image", "read_depth_png"]

logger = logging.getLogger(__name__)

GREY = 128
_COLOR_EXTS = (".jpg", ".jpeg", ".png")


def load_point_cloud(path: str | Path, *, name: str | None = None) -> Scene:
    """Load a point cloud for inference.

    Args:
        path: ``.ply`` (colour optional), ``.npy`` of shape (N, 3) or (N, 6) ``[xyz rgb]`` with
            rgb in 0..255 or 0..1 (detected from the maximum), or a processed-layout ``.pth``.
        name: scene name; default the file stem (without ``_vh_clean_2`` for ``.pth``).

    Returns:
        Scene with float32 points and uint8 colours (grey 128 where the file has none); labels
        only for ``.pth`` input.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "point cloud file not found")
    suffix = path.suffix.lower()
    labels = None
    if suffix == ".ply":
        cloud = read_ply(path)
        points, colors = cloud.points, cloud.colors
    elif suffix == ".npy":
        points, colors = _read_npy_cloud(path)
    elif suffix == ".pth":
        points, colors, labels = load_point_file(path)
    else:
        raise DataError(path, f"unsupported point cloud format {suffix!r}; use .ply, .npy or .pth")
    if colors is None:
        logger.info("%s: no colours; using grey %d", path, GREY)
        colors = np.full((len(points), 3), GREY, dtype=np.uint8)
    if name is None:
        name = path.name[: -len(POINT_SUFFIX)] if path.name.endswith(POINT_SUFFIX) else path.stem
    with np.errstate(over="ignore"):
        points = points.astype(np.float32)
    if not np.isfinite(points).all():
        raise DataError(path, "coordinates beyond the float32 range (|x| > 3.4e38)")
    return Scene(name=name, points=points, colors=colors, labels=labels)


def _read_npy_array(path: Path) -> np.ndarray:
    """Read a ``.npy`` array without pickles, checking the header against the file size first
    (a corrupt header must not make numpy allocate what the file cannot hold)."""
    fmt = np.lib.format
    try:
        with path.open("rb") as fh:
            version = fmt.read_magic(fh)
            if version not in ((1, 0), (2, 0), (3, 0)):
                raise DataError(path, f".npy format version {version} is not supported")
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = fmt.read_array_header_2_0(fh)
            if dtype.hasobject or dtype.names is not None or dtype.subdtype is not None:
                raise DataError(path, f"array of dtype {dtype} (objects or records); expected "
                                "a plain numeric (N, 3) or (N, 6) array")
            need = int(np.prod(shape, dtype=object)) * dtype.itemsize
            have = path.stat().st_size - fh.tell()
            if need > have:
                raise DataError(path, f"truncated .npy file: a {shape} {dtype} array needs "
                                f"{need} bytes, the file holds {have}")
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
    except DataError:
        raise
    except (OSError, ValueError, EOFError, SyntaxError, tokenize.TokenError) as exc:
        # bad magic or header: ValueError; a garbled header dict: SyntaxError/TokenError (fuzz)
        raise DataError(path, f"not a readable .npy array ({first_line(exc)})") from exc


def _read_npy_cloud(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    arr = _read_npy_array(path)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(path, f"array of dtype {arr.dtype}; expected integers or floats")
    if arr.ndim != 2 or arr.shape[1] not in (3, 6) or len(arr) == 0:
        hint = (" (transposed? save it as (N, 3) or (N, 6))"
                if arr.ndim == 2 and arr.shape[0] in (3, 6) and arr.shape[1] > 0 else "")
        raise DataError(path, f"expected a non-empty (N, 3) or (N, 6) [xyz rgb] array, "
                        f"got shape {arr.shape}{hint}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise DataError(path, "array contains NaN/inf")
    if arr.shape[1] == 3:
        return arr, None
    rgb = arr[:, 3:]
    if rgb.min() < 0 or rgb.max() > 255:
        raise DataError(path, f"colours must lie in 0..255 or 0..1, got {rgb.min()}..{rgb.max()}")
    if rgb.max() <= 1.0:
        rgb = rgb * 255.0
    return arr[:, :3], np.rint(rgb).astype(np.uint8)


def read_color_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB."""
    return read_image(path, "RGB", what="colour image")


def _fit_depth(depth: np.ndarray, hw: tuple[int, int], path: Path) -> np.ndarray:
    """Resize depth (nearest) to the colour size when the sizes differ by one integer factor."""
    dh, dw = depth.shape
    h, w = hw
    if (dh, dw) == (h, w):
        return depth
    up = h % dh == 0 and w % dw == 0 and h // dh == w // dw
    down = dh % h == 0 and dw % w == 0 and dh // h == dw // w
    if not (up or down):
        raise DataError(path, f"depth is {dw}x{dh} but colour is {w}x{h}; sizes must match or "
                        "differ by one integer factor")
    return resize_nearest(depth, (w, h))


def _frame_key(name: str) -> tuple[int, str]:
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else -1, name)


def _make_view(name: str, color_path: Path, pose_path: Path, depth_path: Path | None,
               K: np.ndarray) -> View:
    if not pose_path.is_file():
        raise DataError(pose_path, f"missing pose file for colour frame {color_path.name}")
    color = read_color_image(color_path)
    depth = None
    if depth_path is not None and depth_path.is_file():
        depth = _fit_depth(read_depth_png(depth_path), color.shape[:2], depth_path)
    return View(name=name, color=color, pose=read_pose(pose_path), intrinsics=K.copy(),
                depth=depth)


def _load_sevenscenes(folder: Path, color_files: list[Path]) -> list[View]:
    k_path = folder / "camera-intrinsics.txt"
    if not k_path.is_file():
        raise DataError(k_path, "missing camera intrinsics (3x3 matrix) for the frames")
    K = read_intrinsics(k_path)
    views = []
    for cpath in color_files:
        stem = cpath.name.split(".color.")[0]
        views.append(_make_view(stem, cpath, folder / f"{stem}.pose.txt",
                                folder / f"{stem}.depth.png", K))
    return views


def _export_intrinsics(folder: Path, color_wh: tuple[int, int]) -> np.ndarray:
    for cand in (folder / "intrinsics.txt", folder / "intrinsic" / "intrinsic_color.txt",
                 folder.parent / "intrinsics.txt"):
        if cand.is_file():
            return read_intrinsics(cand)
    logger.warning("%s: no intrinsics.txt; using the ScanNet default scaled to %dx%d", folder,
                   *color_wh)
    return scale_intrinsics(SCANNET_DEFAULT_INTRINSICS_320x240, (320, 240), color_wh)


def _load_export(folder: Path) -> list[View]:
    color_files = sorted((p for p in (folder / "color").iterdir()
                          if p.suffix.lower() in _COLOR_EXTS), key=lambda p: _frame_key(p.stem))
    if not color_files:
        raise DataError(folder / "color", "no colour images (.jpg/.png)")
    try:
        with Image.open(color_files[0]) as first:
            size = first.size
    except IMAGE_ERRORS as exc:
        raise DataError(color_files[0], f"unreadable colour image ({first_line(exc)})") from exc
    K = _export_intrinsics(folder, size)
    return [_make_view(c.stem, c, folder / "pose" / f"{c.stem}.txt",
                       folder / "depth" / f"{c.stem}.png", K) for c in color_files]


def load_rgbd_frames(folder: str | Path) -> list[View]:
    """Load every posed frame of a folder (7-Scenes or ScanNet-export layout), sorted by number.

    Args:
        folder: the frame folder.

    Returns:
        Views with colour (H, W, 3) uint8, camera-to-world pose, 3x3 intrinsics at the colour
        resolution and, where a depth PNG exists, depth in metres (0 = invalid).

    Raises:
        DataError: empty or missing folder, a colour frame without a pose file, a malformed pose
            (not 4x4, non-finite, not rigid), or a depth map of an incompatible size.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "frame folder not found")
    if (folder / "color").is_dir():
        views = _load_export(folder)
    else:
        color_files = sorted(
            (p for p in folder.glob("*.color.*") if p.suffix.lower() in _COLOR_EXTS),
            key=lambda p: _frame_key(p.name.split(".color.")[0]))
        if not color_files:
            raise DataError(folder, "no RGB-D frames: expected color/ depth/ pose/ sub-folders or "
                            "frame-*.color.jpg files with .pose.txt and .depth.png")
        views = _load_sevenscenes(folder, color_files)
    no_depth = sum(v.depth is None for v in views)
    if no_depth:
        logger.warning("%s: %d of %d frames have no depth map; their visibility comes from a "
                       "z-buffer of the scan's own points", folder, no_depth, len(views))
    return views
