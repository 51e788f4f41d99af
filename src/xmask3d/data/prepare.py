"""``xmask3d prepare``: convert raw ScanNet, S3DIS or a point cloud into the processed layout."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from xmask3d.errors import DataError

__all__ = ["add_parser", "run_scannet", "run_s3dis", "run_pointcloud"]

logger = logging.getLogger(__name__)

TSV_NAME = "scannetv2-labels.combined.tsv"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``prepare`` with the sub-commands ``scannet``, ``s3dis`` and ``pointcloud``."""
    parser = subparsers.add_parser(
        "prepare", help="convert raw ScanNet / S3DIS / point clouds into the processed layout",
        description="Convert raw data into the OpenScene/XMask3D processed layout "
                    "(<out>/scannet_3d, scannet_3d_200, scannet_2d).")
    parser.set_defaults(func=lambda args: _usage(parser))
    sub = parser.add_subparsers(dest="source", metavar="SOURCE")

    p = sub.add_parser("scannet", help="raw ScanNet v2 scene folders (mesh, labels, .sens)")
    p.add_argument("--raw", type=Path, required=True,
                   help="ScanNet scans/ folder (one sub-folder per scene) or one scene folder")
    p.add_argument("--out", type=Path, required=True, help="processed dataset root")
    p.add_argument("--split", required=True, choices=("train", "val", "test"))
    p.add_argument("--scenes", type=Path, help="text file of scene names to convert (default all)")
    p.add_argument("--frame-skip", type=int, default=20, help="export every k-th .sens frame")
    p.add_argument("--no-images", action="store_true", help="skip the .sens frame export")
    p.add_argument("--label-folder", default="label-filt",
                   help="per-scene folder of 2D label PNGs (raw ids) exported with the frames")
    p.add_argument("--tsv", type=Path,
                   help=f"{TSV_NAME} (default: looked for in --raw and its parent)")
    p.set_defaults(func=run_scannet)

    p = sub.add_parser("s3dis", help="S3DIS rooms (Annotations txt, N x 8 .npy or mmdet3d .bin)")
    p.add_argument("--raw", type=Path, required=True, help="folder holding the Area_* data")
    p.add_argument("--out", type=Path, required=True, help="processed dataset root")
    p.add_argument("--test-area", type=int, default=5, help="this area becomes the val split")
    p.set_defaults(func=run_s3dis)

    p = sub.add_parser("pointcloud", help="one .ply / .npy point cloud (unlabelled)")
    p.add_argument("--in", dest="input", type=Path, required=True, help=".ply, .npy or .pth")
    p.add_argument("--out", type=Path, required=True, help="processed dataset root")
    p.add_argument("--name", required=True, help="scene name in the layout")
    p.add_argument("--split", default="val", help="split folder to write into (default val)")
    p.add_argument("--frames", type=Path,
                   help="optional RGB-D frame folder (7-Scenes or color/depth/pose) to export")
    p.set_defaults(func=run_pointcloud)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _read_scene_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(path, "scene list not found")
    names = [ln.strip() for ln in path.read_text().splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise DataError(path, "scene list is empty")
    return names


def _find_tsv(args: argparse.Namespace) -> Path:
    if args.tsv is not None:
        return args.tsv
    for folder in (args.raw, args.raw.parent, args.raw.parent.parent):
        cand = folder / TSV_NAME
        if cand.is_file():
            return cand
    raise DataError(args.raw, f"no {TSV_NAME} here or in the parent folders; pass --tsv")


def run_scannet(args: argparse.Namespace) -> int:
    """Convert raw ScanNet scenes (``prepare scannet``)."""
    from xmask3d.data.labels import load_label_tsv
    from xmask3d.data.scannet_raw import convert_scannet_scene, find_scannet_scenes

    if args.frame_skip < 1:
        raise DataError(None, f"--frame-skip must be >= 1, got {args.frame_skip}")
    tsv = load_label_tsv(_find_tsv(args))
    names = _read_scene_list(args.scenes) if args.scenes is not None else None
    scenes = find_scannet_scenes(args.raw, names=names)
    total = 0
    for scene_dir in tqdm(scenes, desc="scannet scenes", unit="scene"):
        scene = convert_scannet_scene(scene_dir, args.out, split=args.split, tsv=tsv,
                                      frame_skip=args.frame_skip, export_images=not args.no_images,
                                      label_folder=args.label_folder)
        total += scene.num_points
    logger.info("wrote %d ScanNet scenes (%d points) to %s/scannet_3d/%s", len(scenes), total,
                args.out, args.split)
    return 0


def run_s3dis(args: argparse.Namespace) -> int:
    """Convert S3DIS rooms (``prepare s3dis``); the test area becomes ``val``."""
    from xmask3d.data.s3dis import convert_s3dis_room, find_s3dis_rooms

    rooms = find_s3dis_rooms(args.raw)
    counts = {"train": 0, "val": 0}
    for room in tqdm(rooms, desc="s3dis rooms", unit="room"):
        split, _ = convert_s3dis_room(room, args.out, test_area=args.test_area)
        counts[split] += 1
    if counts["val"] == 0:
        logger.warning("no rooms of Area_%d found: the val split is empty", args.test_area)
    logger.info("wrote %d train / %d val S3DIS rooms to %s", counts["train"], counts["val"],
                args.out)
    return 0


def run_pointcloud(args: argparse.Namespace) -> int:
    """Write one point cloud (all-ignore labels) and optionally its RGB-D frames."""
    from xmask3d.data.pointcloud import load_point_cloud, load_rgbd_frames
    from xmask3d.data.processed import POINT_SUFFIX, save_point_file, write_intrinsics, write_view
    from xmask3d.data.scene import IGNORE_LABEL

    scene = load_point_cloud(args.input, name=args.name)
    out = args.out / "scannet_3d" / args.split / f"{args.name}{POINT_SUFFIX}"
    labels = scene.labels if scene.labels is not None else np.full(
        scene.num_points, IGNORE_LABEL, dtype=np.int64)
    save_point_file(out, scene.points, scene.colors, labels)
    if args.frames is not None:
        views = load_rgbd_frames(args.frames)
        if any(not np.allclose(v.intrinsics, views[0].intrinsics) for v in views):
            raise DataError(args.frames, "frames have different intrinsics; the layout holds one")
        write_intrinsics(args.out, args.name, views[0].intrinsics)
        for view in tqdm(views, desc="frames", unit="frame"):
            write_view(args.out, args.name, view.name, color=view.color, pose=view.pose,
                       depth=view.depth)
    logger.info("wrote %s (%d points)", out, scene.num_points)
    return 0
