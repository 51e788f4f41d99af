"""The OpenScene/XMask3D processed on-disk layout: reading (safely) and writing.

Layout (method.md §1.1, decisions.md §4)::

    <root>/scannet_3d/<split>/<scene>_vh_clean_2.pth     torch.save((coords, colors[-1,1], labels))
    <root>/scannet_3d_200/<split>/<scene>.txt            raw ScanNet ids, one per point (optional)
    <root>/scannet_2d/<scene>/{color,depth,pose,label,label_200}/<frame>.{jpg,png,txt}
    <root>/scannet_2d/<scene>/intrinsics.txt             optional, else <root>/scannet_2d/intrinsics.txt,
                                                         else the ScanNet default (method §1.6)
    <root>/captions.json                                 {scene: {frame: caption}}

``.pth`` files are loaded with ``torch.load(weights_only=True)`` and an allow-list of the numpy
types such files contain: user files are never unpickled freely.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from xmask3d.data.labels import map_2d_label_ids, raw_to_scannet200
from xmask3d.data.scene import IGNORE_LABEL, Scene, View
from xmask3d.errors import DataError

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
    found += [type(np.dtype(t)) for t in ("f4", "f8", "i4", "i8", "u1", "u2", "u4", "i2", "bool")]
    return found


def safe_torch_load(path: str | Path):
    """``torch.load`` restricted to tensors, containers and numpy arrays."""
    import torch  # here, not at the top: the CLI reads PLY/NPY scans before torch loads

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncation, zip errors, disallowed globals
        raise DataError(path, f"cannot be read as a safe torch file ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from exc


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


def _as_array(x) -> np.ndarray:
    import torch

    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def load_point_file(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a processed ``.pth`` scene.

    Returns:
        points (N, 3) float32, colors (N, 3) uint8, labels (N,) int64 with ``IGNORE_LABEL``
        (values -100 and 255 both mean ignore; an unlabelled file gives all-ignore labels).
    """
    data = safe_torch_load(path)
    if not isinstance(data, (tuple, list)) or len(data) < 2:
        raise DataError(path, "expected a tuple (coords, colors[, labels, ...])")
    points, colors = _as_array(data[0]), _as_array(data[1])
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise DataError(path, f"coords must be a non-empty (N, 3) array, got {points.shape}")
    if not np.all(np.isfinite(points)):
        raise DataError(path, "coords contain NaN or infinite values")
    if colors.shape != points.shape:
        raise DataError(path, f"colors {colors.shape} do not match coords {points.shape}")
    labels = _as_array(data[2]) if len(data) > 2 else np.full(len(points), IGNORE_LABEL)
    if labels.shape != (len(points),):
        raise DataError(path, f"labels length {labels.shape} differs from {len(points)} points")
    labels = labels.astype(np.int64)
    labels[(labels < 0) | (labels == 255)] = IGNORE_LABEL
    rgb = np.clip(np.round((colors.astype(np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return points.astype(np.float32), rgb, labels


def _read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        mat = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(path, f"not a numeric matrix ({exc})") from exc
    if mat.shape == (4, 4) and shape == (3, 3):
        mat = mat[:3, :3]
    if mat.shape != shape:
        raise DataError(path, f"expected a {shape[0]}x{shape[1]} matrix, got {mat.shape}")
    if not np.all(np.isfinite(mat)):
        raise DataError(path, "matrix has NaN or infinite entries (invalid pose?)")
    return mat


def read_pose(path: str | Path) -> np.ndarray:
    """Read a 4x4 camera-to-world pose and check it is a rigid transform."""
    path = Path(path)
    pose = _read_matrix(path, (4, 4))
    rot = pose[:3, :3]
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-3) or not np.allclose(
            pose[3], [0, 0, 0, 1], atol=1e-6):
        raise DataError(path, "pose is not a rigid camera-to-world transform")
    return pose


def read_intrinsics(path: str | Path) -> np.ndarray:
    """Read a 3x3 (or 4x4) pinhole intrinsics matrix."""
    return _read_matrix(Path(path), (3, 3))


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
    merged = json.loads(path.read_text()) if path.is_file() else {}
    for scene, frames in captions.items():
        merged.setdefault(scene, {}).update({str(k): str(v) for k, v in frames.items()})
    atomic_write(path, lambda t: Path(t).write_text(json.dumps(merged, indent=1, sort_keys=True)))


def write_label_200(root: str | Path, split: str, scene: str, raw_ids: np.ndarray) -> None:
    """Write the per-point raw ScanNet ids used for ScanNet200 labels."""
    path = Path(root) / "scannet_3d_200" / split / f"{scene}.txt"
    atomic_write(path, lambda t: np.savetxt(t, np.asarray(raw_ids, dtype=np.int64), "%d"))


def _read_image(path: Path, mode: str | None = None) -> np.ndarray:
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with Image.open(path) as img:
            img.load()
            if mode is not None:
                img = img.convert(mode)
            return np.asarray(img)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"unreadable image ({exc})") from exc


def _frame_key(name: str) -> tuple[int, str]:
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else -1, name)


class ProcessedLayout:
    """Reader of a dataset root in the processed layout (see the module docstring).

    Args:
        root: the dataset root (contains ``scannet_3d/`` and optionally ``scannet_2d/``).
        captions_file: the caption JSON; default ``<root>/captions.json`` (missing = no captions).
    """

    def __init__(self, root: str | Path, *, captions_file: str | Path | None = None) -> None:
        self.root = Path(root)
        if not (self.root / "scannet_3d").is_dir():
            raise DataError(self.root, "not a processed dataset root (no scannet_3d/ folder); "
                                       "create one with `xmask3d synth` or `xmask3d prepare`")
        self.captions_file = Path(captions_file) if captions_file else self.root / "captions.json"
        self._captions: dict[str, dict[str, str]] | None = None
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
            raw = np.loadtxt(txt, dtype=np.int64, ndmin=1)
            if raw.shape != (len(points),):
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
            self._captions = {}
            if self.captions_file.is_file():
                try:
                    self._captions = json.loads(self.captions_file.read_text())
                except json.JSONDecodeError as exc:
                    raise DataError(self.captions_file, f"invalid JSON ({exc})") from exc
        return self._captions.get(scene, {}).get(frame)

    def load_view(self, scene: str, frame: str, *, label_set: str = "scannet20") -> View:
        """Load one frame: colour, depth (if present), pose, intrinsics, labels, caption."""
        base = self.scene_2d_dir(scene)
        color = _read_image(base / "color" / f"{frame}.jpg", "RGB")
        hw = color.shape[:2]
        depth = None
        depth_path = base / "depth" / f"{frame}.png"
        if depth_path.is_file():
            depth = _read_image(depth_path).astype(np.float32) / 1000.0
            if depth.shape != hw:
                raise DataError(depth_path, f"depth size {depth.shape} differs from colour {hw}")
        label = None
        label_dir = "label_200" if label_set == "scannet200" else "label"
        label_path = base / label_dir / f"{frame}.png"
        if label_path.is_file():
            ids = _read_image(label_path).astype(np.int64)
            if ids.shape != hw:
                raise DataError(label_path, f"label size {ids.shape} differs from colour {hw}")
            label = map_2d_label_ids(ids, label_set)
        return View(name=frame, color=color, pose=read_pose(base / "pose" / f"{frame}.txt"),
                    intrinsics=self.intrinsics(scene), depth=depth, label=label,
                    caption=self.caption(scene, frame))
