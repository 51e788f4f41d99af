"""Loaders for the small real-scan fixtures kept beside the project (``../shared/data/real``).

The fixtures are research-licensed data read in place, never copied into the repository
(ScanNet scene0000_00 vertices + 3 posed colour frames, 50 7-Scenes RGB-D frames, 100 S3DIS
points). See that folder's README for their formats.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from xmask3d.data.labels import nyu40_to_scannet20
from xmask3d.data.pointcloud import load_rgbd_frames, read_color_image
from xmask3d.data.s3dis import read_s3dis_bin
from xmask3d.data.scene import Scene, View
from xmask3d.errors import DataError

__all__ = ["REAL_DATA_ENV", "real_data_root", "load_scannet_fixture", "load_sevenscenes",
           "load_s3dis_fixture"]

REAL_DATA_ENV = "XMASK3D_REAL_DATA"
SCANNET_SCENE = "scene0000_00"


def real_data_root() -> Path | None:
    """The real-fixture folder: ``$XMASK3D_REAL_DATA`` if set, else ``<repo>/../shared/data/real``.

    Returns ``None`` when the folder does not exist (e.g. an installed package without it).
    """
    env = os.environ.get(REAL_DATA_ENV)
    if env:
        return Path(env) if Path(env).is_dir() else None
    # src/xmask3d/data/real_fixtures.py -> parents[3] is the repository root.
    cand = (Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "real").resolve()
    return cand if cand.is_dir() else None


def _root(root: str | Path | None) -> Path:
    if root is not None:
        return Path(root)
    found = real_data_root()
    if found is None:
        raise DataError(None, f"real fixtures not found; set {REAL_DATA_ENV} to their folder")
    return found


def _matrix(value, path: Path, what: str) -> np.ndarray:
    mat = np.asarray(value, dtype=np.float64)
    if mat.shape != (4, 4) or not np.isfinite(mat).all():
        raise DataError(path, f"{what} must be a finite 4x4 matrix, got shape {mat.shape}")
    return mat


def _scannet_views(folder: Path, cameras_path: Path) -> tuple[list[View], np.ndarray]:
    """The posed colour frames of the fixture, and its axis-alignment matrix."""
    try:
        meta = json.loads(cameras_path.read_text())
        K4 = _matrix(meta["intrinsics_color_4x4"], cameras_path, "intrinsics_color_4x4")
        poses = meta["cam_to_world_4x4"]
        align = _matrix(meta["axis_align_matrix_4x4"], cameras_path, "axis_align_matrix_4x4")
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(cameras_path, f"unexpected camera file ({exc})") from exc
    views = []
    for fname in sorted(poses):
        color = read_color_image(folder / "posed_images" / SCANNET_SCENE / fname)
        pose = _matrix(poses[fname], cameras_path, f"pose of {fname}")
        views.append(View(name=Path(fname).stem, color=color, pose=pose,
                          intrinsics=K4[:3, :3].copy()))
    return views, align


def load_scannet_fixture(root: str | Path | None = None, *, with_views: bool = True) -> Scene:
    """ScanNet scene0000_00 in the ScanNet world frame, with ScanNet20 labels and 3 posed views.

    The fixture stores axis-aligned vertices; they are mapped back with ``inv(axis_align)`` so
    that the camera poses (ScanNet world frame) apply directly. Views carry the colour image
    (968, 1296, 3), camera-to-world pose and colour intrinsics; they have no depth.

    Args:
        root: the real-fixture folder; default :func:`real_data_root`.
        with_views: also load the 3 colour frames.

    Returns:
        Scene with 81,369 points, uint8 colours, ScanNet20 labels (255 = ignore) and instances.
    """
    folder = _root(root) / "scannet_mmdet3d"
    verts_path = folder / f"{SCANNET_SCENE}_vert_all.npy"
    verts = np.load(verts_path, allow_pickle=False).astype(np.float64)
    nyu40 = np.load(folder / f"{SCANNET_SCENE}_sem_label_all.npy", allow_pickle=False)
    inst = np.load(folder / f"{SCANNET_SCENE}_ins_label_all.npy", allow_pickle=False)
    if verts.ndim != 2 or verts.shape[1] != 6 or not len(nyu40) == len(verts) == len(inst):
        raise DataError(verts_path, f"inconsistent fixture arrays {verts.shape}, {nyu40.shape}")
    views, align = _scannet_views(folder, folder / f"{SCANNET_SCENE}_cameras.json")
    homog = np.concatenate([verts[:, :3], np.ones((len(verts), 1))], axis=1)
    world = (np.linalg.inv(align) @ homog.T).T[:, :3]
    return Scene(
        name=SCANNET_SCENE,
        points=world.astype(np.float32),
        colors=np.clip(np.rint(verts[:, 3:6]), 0, 255).astype(np.uint8),
        labels=nyu40_to_scannet20(nyu40.astype(np.int64)),
        instances=inst.astype(np.int64),
        views=views if with_views else [],
    )


def load_sevenscenes(root: str | Path | None = None) -> list[View]:
    """The 50 real 7-Scenes RGB-D frames (640x480, depth in metres, camera-to-world poses)."""
    return load_rgbd_frames(_root(root) / "sevenscenes_tsdf_subset")


def load_s3dis_fixture(root: str | Path | None = None) -> Scene:
    """The 100-point S3DIS Area_1/office_2 sample (labels 0..12, instances)."""
    return read_s3dis_bin(_root(root) / "s3dis_mmdet3d_tiny" / "Area_1_office_2_points.bin")
