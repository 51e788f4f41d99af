"""The OpenScene/XMask3D processed on-disk layout: reading (safely) and writing.

Layout (method.md §1.1, decisions.md §4)::

    <root>/scannet_3d/<split>/<scene>_vh_clean_2.pth     torch.save((coords, colors[-1,1], labels))
    <root>/scannet_3d_200/<split>/<scene>.txt            raw ScanNet ids, one per point (optional)
    <root>/scannet_2d/<scene>/{color,depth,pose,label,label_200}/<frame>.{jpg,png,txt}
    <root>/scannet_2d/<scene>/intrinsics.txt             optional, else <root>/scannet_2d/intrinsics.txt,
                                                         else the ScanNet default (method §1.6)
    <root>/captions.json                                 {scene: {frame: caption}}
    <root>/region_captions.json                          {scene: {frame: [{box, caption}]}}
                                                         (optional; see data/regions.py)

``.pth`` files are loaded with ``torch.load(weights_only=True)`` and an allow-list of the numpy
types such files contain: user files are never unpickled freely.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from xmask3d.data.json_files import read_json
from xmask3d.data.labels import map_2d_label_ids, raw_to_scannet200
from xmask3d.data.regions import (
    REGION_CAPTIONS_FILE,
    Region,
    check_region_boxes,
    read_region_captions,
)
from xmask3d.data.scene import IGNORE_LABEL, Scene, View
from xmask3d.errors import DataError, first_line

POINT_SUFFIX = "_vh_clean_2.pth"
SCANNET_DEFAULT_INTRINSICS_320x240 = np.array(
    [[288.935, 0.0, 159.5], [0.0, 288.935, 119.5], [0.0, 0.0, 1.0]], dtype=np.float64
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write_fn) -> None:
    """Write a file through ``write_fn(tmp_path)`` into a temporary file, then rename it.

    A crash mid-way never leaves a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _numpy_safe_globals() -> list:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed core -> _core
    found = [np.ndarray, np.dtype, core.multiarray._reconstruct, bytes]
    # dtype classes only (no code): every numeric kind, so that a float16/complex/text array is
    # refused by the shape and dtype checks with a clear message, not as an "unsafe" file
    found += [type(np.dtype(t)) for t in ("f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2",
                                          "u4", "u8", "bool", "c8", "c16", "U1", "S1")]
    return found


# What ``torch.load(weights_only=True)`` raises on truncated, corrupt or foreign bytes (zip
# reader: RuntimeError/OSError; restricted unpickler: UnpicklingError, UnicodeDecodeError,
# KeyError, IndexError, TypeError, ...), as seen by the fuzz tests in tests/data and tests/engine.
TORCH_LOAD_ERRORS: tuple[type[BaseException], ...] = (
    RuntimeError, OSError, EOFError, pickle.UnpicklingError, ValueError, LookupError, TypeError,
    AttributeError, OverflowError,
)


def torch_file_problem(path: str | Path) -> str | None:
    """What is wrong with a file meant to be a ``torch.save`` file, found without torch: ``None``
    when it starts like one (a zip archive, or a pre-1.6 pickle) and a zip archive is whole,
    else the reason in words. ``torch.load`` stays the authority on the rest."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):   # the central directory at the end is missing
            return "an incomplete zip archive; torch.save writes a whole one"
        return None
    if head[:1] == b"\x80":
        return None
    return f"it starts with {head!r}, not with the zip or pickle header that torch.save writes"




def safe_torch_load(path: str | Path):
    """``torch.load`` restricted to tensors, containers and numpy arrays."""
    import torch  # here, not at the top: the CLI reads PLY/NPY scans before torch loads

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except TORCH_LOAD_ERRORS as exc:
        raise DataError(path, f"cannot be read as a safe torch file ({first_line(exc)})") from exc


def save_point_file(path: str | Path, points: np.ndarray, colors: np.ndarray,
                    labels: np.ndarray) -> None:
    """Write a scene in the OpenScene ``.pth`` convention, atomically."""
    points = np.asarray(points, dtype=np.float64)
    colors = np.asarray(colors)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(points)
    if points.ndim != 2 or points.shape[1] != 3 or colors.shape != (n, 3) or labels.shape != (n,):
        raise DataError(path, f"inconsistent shapes points {points.shape}, colors {colors.shape}, "
                              f"labels {labels.shape}")
    data = (points, (colors.astype(np.float32) / 127.5 - 1.0).astype(np.float32),
            labels.astype(np.float32))
    atomic_write(path, lambda tmp: _save_torch(data, tmp))


def _save_torch(obj, tmp: str) -> None:
    """``torch.save`` through a file handle: the bytes do not depend on the temporary name."""
    import torch

    with open(tmp, "wb") as f:
        torch.save(obj, f)


def numeric_array(x, path: str | Path, what: str) -> np.ndarray:
    """``x`` (numpy array, dense tensor or nested list) as a numpy array of real numbers.

    Raises:
        DataError: (naming ``path`` and ``what``) for anything else: strings, objects, ragged
            lists, complex, bool, structured or sparse data.
    """
    import torch  # here, not at the top: the CLI reads PLY/NPY scans before torch loads

    if isinstance(x, torch.Tensor):
        if x.layout != torch.strided:
            raise DataError(path, f"{what} is a {x.layout} tensor; expected a dense array")
        if x.is_complex() or x.dtype == torch.bool:
            raise DataError(path, f"{what} has dtype {x.dtype}; expected integers or floats")
        x = x.detach().cpu()
        arr = (x.float() if x.is_floating_point() and x.element_size() < 4 else x).numpy()
    elif isinstance(x, np.ndarray):
        arr = x
    elif isinstance(x, (list, tuple)):
        try:
            arr = np.asarray(x)
        except ValueError as exc:  # ragged nesting
            raise DataError(path, f"{what} is a ragged list ({first_line(exc)})") from exc
    else:
        raise DataError(path, f"{what} is a {type(x).__name__}; expected an array or tensor")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(path, f"{what} has dtype {arr.dtype}; expected integers or floats")
    return arr


def load_point_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a processed ``.pth`` scene.

    Returns:
        points (N, 3) float32, colors (N, 3) uint8, labels (N,) int64 with ``IGNORE_LABEL``
        (values -100 and 255 both mean ignore; an unlabelled file gives all-ignore labels).

    Raises:
        DataError: unreadable file, not a tuple, arrays of the wrong type, shape or length,
            non-finite coordinates, colours or labels.
    """
    data = safe_torch_load(path)
    if not isinstance(data, (tuple, list)) or len(data) < 2:
        raise DataError(path, "expected a tuple (coords, colors[, labels, ...])")
    points = numeric_array(data[0], path, "coords")
    colors = numeric_array(data[1], path, "colors")
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise DataError(path, f"coords must be a non-empty (N, 3) array, got {points.shape}")
    with np.errstate(over="ignore"):
        points = points.astype(np.float32)
    if not np.all(np.isfinite(points)):
        raise DataError(path, "coords contain NaN or infinite values (or beyond float32)")
    if colors.shape != points.shape:
        raise DataError(path, f"colors {colors.shape} do not match coords {points.shape}")
    if not np.all(np.isfinite(colors)):
        raise DataError(path, "colors contain NaN or infinite values")
    labels = (numeric_array(data[2], path, "labels") if len(data) > 2
              else np.full(len(points), IGNORE_LABEL))
    if labels.shape != (len(points),):
        raise DataError(path, f"labels length {labels.shape} differs from {len(points)} points")
    if not np.all(np.isfinite(labels)):
        raise DataError(path, "labels contain NaN or infinite values")
    labels = np.clip(labels, -1, 2**31).astype(np.int64)
    labels[(labels < 0) | (labels == 255)] = IGNORE_LABEL
    rgb = np.clip(np.round((colors.astype(np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return points, rgb, labels


def _read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": the shape check says it
            mat = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise DataError(path, f"not a numeric matrix ({first_line(exc)})") from exc
    if mat.shape == (4, 4) and shape == (3, 3):
        mat = mat[:3, :3]
    if mat.shape != shape:
        raise DataError(path, f"expected a {shape[0]}x{shape[1]} matrix, got {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise DataError(path, "matrix has NaN or infinite entries (invalid pose?)")
    return mat


# Tolerance of the rigidity check: |R R^T - I| and |det R - 1| (poses are often saved with 6
# decimals or as float32) and of the last row (0, 0, 0, 1).
RIGID_TOL = 1e-3


def rigid_pose_problem(pose: np.ndarray) -> str | None:
    """Why a finite 4x4 matrix is not a rigid camera-to-world transform, or ``None`` if it is.

    Rigid: the last row is (0, 0, 0, 1) and the 3x3 block is a rotation (orthonormal, det +1),
    both within :data:`RIGID_TOL`.
    """
    rot = pose[:3, :3]
    if not np.allclose(pose[3], [0, 0, 0, 1], atol=RIGID_TOL):
        return f"pose last row is {np.round(pose[3], 4).tolist()}, not [0, 0, 0, 1]"
    err = float(np.abs(rot @ rot.T - np.eye(3)).max())
    if err > RIGID_TOL:
        return (f"pose rotation is not orthonormal (|R R^T - I| = {err:.3g} > {RIGID_TOL}); "
                "not a rigid camera-to-world transform (scaled or sheared?)")
    det = float(np.linalg.det(rot))
    if abs(det - 1.0) > RIGID_TOL:
        return (f"pose rotation has determinant {det:.3f} (a reflection, not rigid)" if det < 0
                else f"pose rotation has determinant {det:.4f}, not 1; not rigid")
    return None


def read_pose(path: str | Path) -> np.ndarray:
    """Read a 4x4 camera-to-world pose: finite and rigid (see :func:`rigid_pose_problem`)."""
    path = Path(path)
    pose = _read_matrix(path, (4, 4))
    problem = rigid_pose_problem(pose)
    if problem is not None:
        raise DataError(path, problem)
    return pose


def read_intrinsics(path: str | Path) -> np.ndarray:
    """Read a 3x3 (or 4x4) pinhole intrinsics matrix: fx, fy > 0 and last row (0, 0, 1)."""
    path = Path(path)
    K = _read_matrix(path, (3, 3))
    if not (K[0, 0] > 0 and K[1, 1] > 0) or not np.allclose(K[2], [0, 0, 1], atol=1e-6):
        raise DataError(path, f"not pinhole intrinsics (need fx, fy > 0 and last row 0 0 1): "
                        f"{np.round(K, 4).tolist()}")
    return K


def _write_png16(arr: np.ndarray, path: str) -> None:
    Image.fromarray(np.asarray(arr, dtype=np.uint16)).save(path, format="PNG")


def write_view(root: str | Path, scene: str, frame: str, *, color: np.ndarray, pose: np.ndarray,
               depth: np.ndarray | None = None, label: np.ndarray | None = None,
               label_dir: str = "label") -> None:
    """Write one frame of ``scene`` into ``<root>/scannet_2d/<scene>/``."""
    base = Path(root) / "scannet_2d" / scene
    atomic_write(base / "color" / f"{frame}.jpg",
                 lambda t: Image.fromarray(np.asarray(color, np.uint8)).save(t, "JPEG", quality=95, subsampling=0))
    atomic_write(base / "pose" / f"{frame}.txt", lambda t: np.savetxt(t, np.asarray(pose), "%.9f"))
    if depth is not None:
        mm = np.clip(np.round(np.nan_to_num(np.asarray(depth)) * 1000.0), 0, 65535)
        atomic_write(base / "depth" / f"{frame}.png", lambda t: _write_png16(mm, t))
    if label is not None:
        atomic_write(base / label_dir / f"{frame}.png", lambda t: _write_png16(label, t))


def write_intrinsics(root: str | Path, scene: str | None, K: np.ndarray) -> None:
    """Write per-scene (or, with ``scene=None``, global) intrinsics at the colour resolution."""
    base = Path(root) / "scannet_2d" / (scene or "")
    atomic_write(base / "intrinsics.txt", lambda t: np.savetxt(t, np.asarray(K), "%.9f"))


def write_captions(root: str | Path, captions: dict[str, dict[str, str]]) -> None:
    """Merge ``captions`` into ``<root>/captions.json``."""
    path = Path(root) / "captions.json"
    merged = read_captions(path)
    for scene, frames in captions.items():
        merged.setdefault(scene, {}).update({str(k): str(v) for k, v in frames.items()})
    atomic_write(path, lambda t: Path(t).write_text(json.dumps(merged, indent=1, sort_keys=True)))


def write_label_200(root: str | Path, split: str, scene: str, raw_ids: np.ndarray) -> None:
    """Write the per-point raw ScanNet ids used for ScanNet200 labels."""
    path = Path(root) / "scannet_3d_200" / split / f"{scene}.txt"
    atomic_write(path, lambda t: np.savetxt(t, np.asarray(raw_ids, dtype=np.int64), "%d"))


# What Pillow raises on a truncated, corrupt or hostile image file (fuzz tests: OSError and its
# UnidentifiedImageError, ValueError, SyntaxError "broken PNG file", decompression bombs).
IMAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
)


def read_image(path: str | Path, mode: str | None = None, *, what: str = "image") -> np.ndarray:
    """Read an image file fully (optionally converted to a PIL ``mode``) as a numpy array.

    Raises:
        DataError: missing or unreadable file (naming it and ``what`` it should be).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, f"{what} file not found")
    try:
        with Image.open(path) as img:
            img.load()
            if mode is not None:
                img = img.convert(mode)
            return np.asarray(img)
    except IMAGE_ERRORS as exc:
        raise DataError(path, f"unreadable {what} ({first_line(exc)})") from exc


def read_depth_png(path: str | Path, *, scale: float = 1000.0) -> np.ndarray:
    """Read a 16-bit depth PNG as (H, W) float32 metres; 0 and 65535 mean invalid (-> 0).

    Raises:
        DataError: unreadable file, or not a single-channel image of 16-bit (or wider) integers.
    """
    raw = read_image(path, what="depth image")
    if raw.ndim != 2 or not np.issubdtype(raw.dtype, np.integer) or raw.dtype.itemsize < 2:
        raise DataError(path, f"depth must be a single-channel 16-bit PNG (millimetres), got "
                        f"{raw.dtype} {raw.shape}")
    raw = raw.astype(np.int64)
    depth = (raw / scale).astype(np.float32)
    depth[(raw <= 0) | (raw == 65535)] = 0.0
    return depth


def read_captions(path: str | Path) -> dict[str, dict[str, str]]:
    """Read a caption JSON ``{scene: {frame: caption}}``; a missing file means no captions.

    Raises:
        DataError: not UTF-8, not JSON, or not an object of objects of strings.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    data = read_json(path)
    if not isinstance(data, dict) or not all(
            isinstance(frames, dict) and all(isinstance(c, str) for c in frames.values())
            for frames in data.values()):
        raise DataError(path, 'captions must be a JSON object {"scene": {"frame": "caption"}}')
    return data


def _frame_key(name: str) -> tuple[int, str]:
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else -1, name)


class ProcessedLayout:
    """Reader of a dataset root in the processed layout (see the module docstring).

    Args:
        root: the dataset root (contains ``scannet_3d/`` and optionally ``scannet_2d/``).
        captions_file: the caption JSON; default ``<root>/captions.json`` (missing = no captions).
        region_captions_file: the region caption JSON; default ``<root>/region_captions.json``
            (missing = no region captions).
    """

    def __init__(self, root: str | Path, *, captions_file: str | Path | None = None,
                 region_captions_file: str | Path | None = None) -> None:
        self.root = Path(root)
        if not (self.root / "scannet_3d").is_dir():
            raise DataError(self.root, "not a processed dataset root (no scannet_3d/ folder); "
                                       "create one with `xmask3d synth` or `xmask3d prepare`")
        self.captions_file = Path(captions_file) if captions_file else self.root / "captions.json"
        self._captions: dict[str, dict[str, str]] | None = None
        self.region_captions_file = (Path(region_captions_file) if region_captions_file
                                     else self.root / REGION_CAPTIONS_FILE)
        self._regions: dict[str, dict[str, list[Region]]] | None = None
        self._intrinsics: dict[str, np.ndarray] = {}

    def scene_names(self, split: str) -> list[str]:
        folder = self.root / "scannet_3d" / split
        if not folder.is_dir():
            raise DataError(folder, f"split {split!r} not found")
        return sorted(p.name[: -len(POINT_SUFFIX)] for p in folder.glob(f"*{POINT_SUFFIX}"))

    def point_file(self, split: str, scene: str) -> Path:
        return self.root / "scannet_3d" / split / f"{scene}{POINT_SUFFIX}"

    def load_scene(self, split: str, scene: str, *, label_set: str = "scannet20") -> Scene:
        """Load the points of ``scene`` (no views) with labels of ``label_set``."""
        path = self.point_file(split, scene)
        points, colors, labels = load_point_file(path)
        if label_set == "scannet200":
            txt = self.root / "scannet_3d_200" / split / f"{scene}.txt"
            if not txt.is_file():
                raise DataError(txt, "ScanNet200 labels requested but the label file is missing")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # an empty file: the length check says it
                    raw = np.loadtxt(txt, dtype=np.int64, ndmin=1)
            except ValueError as exc:  # includes UnicodeDecodeError
                raise DataError(txt, f"not one integer label per line ({first_line(exc)})") from exc
            if raw.ndim != 1 or raw.shape != (len(points),):
                raise DataError(txt, f"{len(raw)} labels for {len(points)} points")
            labels = raw_to_scannet200(raw)
        return Scene(name=scene, points=points, colors=colors, labels=labels)

    def scene_2d_dir(self, scene: str) -> Path:
        return self.root / "scannet_2d" / scene

    def frame_names(self, scene: str) -> list[str]:
        """Frames of ``scene`` that have a colour image, sorted numerically (empty if none)."""
        folder = self.scene_2d_dir(scene) / "color"
        if not folder.is_dir():
            return []
        return sorted((p.stem for p in folder.glob("*.jpg")), key=_frame_key)

    def intrinsics(self, scene: str) -> np.ndarray:
        if scene not in self._intrinsics:
            for cand in (self.scene_2d_dir(scene) / "intrinsics.txt",
                         self.root / "scannet_2d" / "intrinsics.txt"):
                if cand.is_file():
                    self._intrinsics[scene] = read_intrinsics(cand)
                    break
            else:
                self._intrinsics[scene] = SCANNET_DEFAULT_INTRINSICS_320x240.copy()
        return self._intrinsics[scene]

    def caption(self, scene: str, frame: str) -> str | None:
        if self._captions is None:
            self._captions = read_captions(self.captions_file)
        return self._captions.get(scene, {}).get(frame)

    def regions(self, scene: str, frame: str) -> list[Region]:
        """The region captions of a frame (empty without any)."""
        if self._regions is None:
            self._regions = read_region_captions(self.region_captions_file)
        return self._regions.get(scene, {}).get(frame, [])

    def load_view(self, scene: str, frame: str, *, label_set: str = "scannet20") -> View:
        """Load one frame: colour, depth (if present), pose, intrinsics, labels, captions."""
        base = self.scene_2d_dir(scene)
        color = read_image(base / "color" / f"{frame}.jpg", "RGB", what="colour image")
        hw = color.shape[:2]
        depth = None
        depth_path = base / "depth" / f"{frame}.png"
        if depth_path.is_file():
            depth = read_depth_png(depth_path)
            if depth.shape != hw:
                raise DataError(depth_path, f"depth size {depth.shape} differs from colour {hw}")
        label = None
        label_dir = "label_200" if label_set == "scannet200" else "label"
        label_path = base / label_dir / f"{frame}.png"
        if label_path.is_file():
            ids = read_image(label_path, what="label image")
            if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
                raise DataError(label_path, f"label image must be single-channel integer ids, got "
                                f"{ids.dtype} {ids.shape}")
            ids = ids.astype(np.int64)
            if ids.shape != hw:
                raise DataError(label_path, f"label size {ids.shape} differs from colour {hw}")
            label = map_2d_label_ids(ids, label_set)
        regions = self.regions(scene, frame)
        check_region_boxes(regions, hw, self.region_captions_file,
                           f"scene {scene!r} frame {frame!r}")
        return View(name=frame, color=color, pose=read_pose(base / "pose" / f"{frame}.txt"),
                    intrinsics=self.intrinsics(scene), depth=depth, label=label,
                    caption=self.caption(scene, frame), regions=regions)
