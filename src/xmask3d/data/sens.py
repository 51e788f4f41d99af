"""ScanNet ``.sens`` RGB-D stream reading, writing, and export into the processed 2D layout.

Follows the ScanNet SensorData format (``SensReader/README.md`` of ScanNet/ScanNet): version 4,
strings as uint64 length + bytes, 4x4 float32 matrices, int32 compression enums, per frame a
float32 camera-to-world pose, two uint64 timestamps, two uint64 sizes, then the compressed colour
and depth bytes; IMU frames follow and are ignored. The export follows OpenScene/3DMV: every
k-th frame, colour and depth resized to 320x240.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from xmask3d.data.processed import (
    IMAGE_ERRORS,
    atomic_write,
    rigid_pose_problem,
    write_intrinsics,
    write_view,
)
from xmask3d.errors import DataError, first_line

__all__ = [
    "SENS_VERSION", "SensHeader", "SensFrame", "SensReader", "write_sens", "export_sens",
    "resize_nearest", "scale_intrinsics",
]

logger = logging.getLogger(__name__)

SENS_VERSION = 4
COLOR_COMPRESSION = {-1: "unknown", 0: "raw", 1: "png", 2: "jpeg"}
DEPTH_COMPRESSION = {-1: "unknown", 0: "raw_ushort", 1: "zlib_ushort", 2: "occi_ushort"}
_FRAME_HEAD = struct.Struct("<16f4Q")  # pose, timestamp colour/depth, size colour/depth
MAX_IMAGE_SIDE = 16384  # larger colour/depth sizes in a header mean a corrupt file


@dataclass
class SensHeader:
    """Stream-level fields of a ``.sens`` file.

    Attributes:
        version: format version (4).
        sensor_name: free-text sensor name.
        intrinsic_color / extrinsic_color / intrinsic_depth / extrinsic_depth: (4, 4) float64.
        color_compression: ``"raw"``, ``"png"`` or ``"jpeg"``.
        depth_compression: ``"raw_ushort"`` or ``"zlib_ushort"`` (``"occi_ushort"`` unsupported).
        color_wh / depth_wh: image sizes as (width, height).
        depth_shift: stored depth units per metre (ScanNet: 1000).
        num_frames: number of RGB-D frames.
    """

    version: int
    sensor_name: str
    intrinsic_color: np.ndarray
    extrinsic_color: np.ndarray
    intrinsic_depth: np.ndarray
    extrinsic_depth: np.ndarray
    color_compression: str
    depth_compression: str
    color_wh: tuple[int, int]
    depth_wh: tuple[int, int]
    depth_shift: float
    num_frames: int


@dataclass
class SensFrame:
    """One RGB-D frame with still-compressed images.

    Attributes:
        index: position in the stream (0-based).
        pose: (4, 4) float64 camera-to-world (ScanNet marks lost tracking with -inf entries).
        timestamp_color / timestamp_depth: sensor timestamps.
        color_data / depth_data: compressed bytes.
    """

    index: int
    pose: np.ndarray
    timestamp_color: int
    timestamp_depth: int
    color_data: bytes
    depth_data: bytes


class SensReader:
    """Sequential reader of a ``.sens`` file; frames that are not requested are skipped by seeking.

    Args:
        path: the ``.sens`` file.

    Raises:
        DataError: missing file, wrong version, unknown compression, truncated header.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, ".sens file not found")
        self._fh: BinaryIO = self.path.open("rb")
        self._size = self.path.stat().st_size
        try:
            self.header = self._read_header()
        except BaseException:
            self._fh.close()
            raise
        self._frames_start = self._fh.tell()

    def __enter__(self) -> SensReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    def _read(self, fmt: str, what: str) -> tuple:
        size = struct.calcsize(fmt)
        buf = self._fh.read(size)
        if len(buf) != size:
            raise DataError(self.path, f"truncated .sens file while reading {what}")
        return struct.unpack(fmt, buf)

    def _read_matrix(self, what: str) -> np.ndarray:
        return np.asarray(self._read("<16f", what), dtype=np.float64).reshape(4, 4)

    def _read_header(self) -> SensHeader:
        (version,) = self._read("<I", "version")
        if version != SENS_VERSION:
            raise DataError(self.path, f"unsupported .sens version {version} (expected 4)")
        (name_len,) = self._read("<Q", "sensor name length")
        if name_len > 1 << 16:
            raise DataError(self.path, f"sensor-name length {name_len}: not a .sens file")
        raw_name = self._fh.read(name_len)
        if len(raw_name) != name_len:
            raise DataError(self.path, "truncated .sens file while reading the sensor name")
        name = raw_name.decode("utf-8", errors="replace")
        mats = [self._read_matrix(w) for w in ("colour intr.", "colour extr.", "depth intr.",
                                               "depth extr.")]
        c_comp, d_comp = self._read("<ii", "compression types")
        if c_comp not in (0, 1, 2) or d_comp not in (0, 1):
            raise DataError(self.path, f"unsupported compression: colour "
                            f"{COLOR_COMPRESSION.get(c_comp, c_comp)}, depth "
                            f"{DEPTH_COMPRESSION.get(d_comp, d_comp)}")
        cw, ch, dw, dh = self._read("<4I", "image sizes")
        (shift,) = self._read("<f", "depth shift")
        (num_frames,) = self._read("<Q", "frame count")
        if (min(cw, ch, dw, dh) == 0 or max(cw, ch, dw, dh) > MAX_IMAGE_SIDE
                or not 0 < shift < float("inf")):
            raise DataError(self.path, f"bad header: colour {cw}x{ch}, depth {dw}x{dh}, "
                            f"depth shift {shift}")
        if not all(np.isfinite(m).all() for m in mats):
            raise DataError(self.path, "bad header: camera matrices with NaN/inf entries")
        return SensHeader(version, name, *mats, COLOR_COMPRESSION[c_comp],
                          DEPTH_COMPRESSION[d_comp], (cw, ch), (dw, dh), float(shift), num_frames)

    def frames(self, *, skip: int = 1) -> Iterator[SensFrame]:
        """Yield frames 0, skip, 2*skip, ... (data of the others is seeked over, not read)."""
        if skip < 1:
            raise ValueError(f"skip must be >= 1, got {skip}")
        self._fh.seek(self._frames_start)
        for index in range(self.header.num_frames):
            buf = self._fh.read(_FRAME_HEAD.size)
            if len(buf) != _FRAME_HEAD.size:
                raise DataError(self.path, f"truncated .sens file at frame {index} of "
                                f"{self.header.num_frames}")
            values = _FRAME_HEAD.unpack(buf)
            t_color, t_depth, n_color, n_depth = values[16:]
            if n_color + n_depth > self._size - self._fh.tell():
                raise DataError(self.path, f"truncated .sens file in the images of frame {index} "
                                f"({n_color} + {n_depth} bytes announced)")
            if index % skip:
                self._fh.seek(n_color + n_depth, io.SEEK_CUR)
                continue
            color, depth = self._fh.read(n_color), self._fh.read(n_depth)
            if len(color) != n_color or len(depth) != n_depth:
                raise DataError(self.path, f"truncated .sens file in the images of frame {index}")
            pose = np.asarray(values[:16], dtype=np.float64).reshape(4, 4)
            yield SensFrame(index, pose, t_color, t_depth, color, depth)

    def decode_color(self, frame: SensFrame) -> np.ndarray:
        """Colour image of ``frame`` as (H, W, 3) uint8 RGB."""
        w, h = self.header.color_wh
        try:
            if self.header.color_compression == "raw":
                img = np.frombuffer(frame.color_data, dtype=np.uint8).reshape(h, w, 3)
            else:
                with Image.open(io.BytesIO(frame.color_data)) as pil:
                    img = np.asarray(pil.convert("RGB"))
        except IMAGE_ERRORS as exc:
            raise DataError(self.path, f"frame {frame.index}: undecodable colour "
                            f"({first_line(exc)})") from exc
        if img.shape != (h, w, 3):
            raise DataError(self.path, f"frame {frame.index}: colour is {img.shape[1]}x"
                            f"{img.shape[0]}, header says {w}x{h}")
        return img

    def decode_depth(self, frame: SensFrame) -> np.ndarray:
        """Depth of ``frame`` as (h, w) uint16 in units of ``1 / depth_shift`` metres."""
        w, h = self.header.depth_wh
        data = frame.depth_data
        if self.header.depth_compression == "zlib_ushort":
            try:  # at most one byte more than expected: a corrupt stream cannot inflate further
                data = zlib.decompressobj().decompress(data, w * h * 2 + 1)
            except zlib.error as exc:
                raise DataError(self.path, f"frame {frame.index}: bad zlib depth ({exc})") from exc
        if len(data) != w * h * 2:
            raise DataError(self.path, f"frame {frame.index}: depth has {len(data)} bytes, "
                            f"expected {w}x{h}x2")
        return np.frombuffer(data, dtype="<u2").reshape(h, w).copy()


def _as_4x4(K: np.ndarray) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape == (4, 4):
        return K
    out = np.eye(4)
    out[:3, :3] = K
    return out


def _encode_color(img: np.ndarray, compression: str, quality: int) -> bytes:
    if compression == "raw":
        return np.ascontiguousarray(img, dtype=np.uint8).tobytes()
    buf = io.BytesIO()
    fmt = "JPEG" if compression == "jpeg" else "PNG"
    Image.fromarray(np.asarray(img, dtype=np.uint8)).save(buf, fmt, **(
        {"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_sens(
    path: str | Path,
    *,
    colors: Sequence[np.ndarray],
    depths: Sequence[np.ndarray],
    poses: Sequence[np.ndarray],
    intrinsic_color: np.ndarray,
    intrinsic_depth: np.ndarray,
    depth_shift: float = 1000.0,
    color_compression: str = "jpeg",
    depth_compression: str = "zlib_ushort",
    sensor_name: str = "xmask3d",
    jpeg_quality: int = 95,
) -> None:
    """Write a version-4 ``.sens`` file (used to make test inputs), atomically.

    Args:
        path: destination file.
        colors: F images (H, W, 3) uint8, all the same size.
        depths: F images (h, w) uint16 in units of ``1 / depth_shift`` metres, all the same size.
        poses: F (4, 4) camera-to-world matrices (stored as float32).
        intrinsic_color / intrinsic_depth: (3, 3) or (4, 4) pinhole matrices.
        depth_shift: depth units per metre.
        color_compression: ``"jpeg"``, ``"png"`` or ``"raw"``.
        depth_compression: ``"zlib_ushort"`` or ``"raw_ushort"``.
        sensor_name: stored sensor name.
        jpeg_quality: JPEG quality for ``"jpeg"`` colour.
    """
    path = Path(path)
    if not (len(colors) == len(depths) == len(poses)):
        raise DataError(path, f"{len(colors)} colours, {len(depths)} depths, {len(poses)} poses")
    c_code = {v: k for k, v in COLOR_COMPRESSION.items()}.get(color_compression)
    d_code = {v: k for k, v in DEPTH_COMPRESSION.items()}.get(depth_compression)
    if c_code not in (0, 1, 2) or d_code not in (0, 1):
        raise ValueError(f"unsupported compression {color_compression!r}/{depth_compression!r}")
    ch, cw = np.asarray(colors[0]).shape[:2] if colors else (1, 1)
    dh, dw = np.asarray(depths[0]).shape if depths else (1, 1)
    name = sensor_name.encode()
    parts = [struct.pack("<IQ", SENS_VERSION, len(name)), name]
    for mat in (intrinsic_color, np.eye(4), intrinsic_depth, np.eye(4)):
        parts.append(_as_4x4(mat).astype("<f4").tobytes())
    parts.append(struct.pack("<ii4IfQ", c_code, d_code, cw, ch, dw, dh, depth_shift, len(colors)))
    for i, (color, depth, pose) in enumerate(zip(colors, depths, poses)):
        color, depth = np.asarray(color), np.asarray(depth)
        if color.shape != (ch, cw, 3) or depth.shape != (dh, dw):
            raise DataError(path, f"frame {i}: colour {color.shape} / depth {depth.shape} differ "
                            f"from frame 0 ({ch}, {cw}, 3) / ({dh}, {dw})")
        c_bytes = _encode_color(color, color_compression, jpeg_quality)
        d_bytes = np.ascontiguousarray(depth, dtype="<u2").tobytes()
        if depth_compression == "zlib_ushort":
            d_bytes = zlib.compress(d_bytes)
        pose_f = np.asarray(pose, dtype="<f4").reshape(16)
        parts.append(_FRAME_HEAD.pack(*pose_f, i, i, len(c_bytes), len(d_bytes)))
        parts += [c_bytes, d_bytes]
    parts.append(struct.pack("<Q", 0))  # no IMU frames
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(b"".join(parts)))


def resize_nearest(img: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize sampling at pixel centres (exact values, e.g. depth or labels).

    Args:
        img: (H, W) or (H, W, C) array.
        wh: output (width, height).

    Returns:
        (h, w[, C]) array of the same dtype.
    """
    h, w = img.shape[:2]
    rows = np.minimum(((np.arange(wh[1]) + 0.5) * h / wh[1]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(wh[0]) + 0.5) * w / wh[0]).astype(np.int64), w - 1)
    return img[rows[:, None], cols[None, :]]


def scale_intrinsics(K: np.ndarray, src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> np.ndarray:
    """Rescale a 3x3 pinhole matrix to a resized image (pixel-centre convention).

    ``u' = (u + 0.5) * sx - 0.5``, so ``fx' = fx * sx`` and ``cx' = (cx + 0.5) * sx - 0.5``
    (640x480 with cx = 319.5 gives 159.5 at 320x240, as in the OpenScene default).
    """
    sx, sy = dst_wh[0] / src_wh[0], dst_wh[1] / src_wh[1]
    out = np.array(K, dtype=np.float64)[:3, :3].copy()
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[1, 1] *= sy
    out[0, 2] = (out[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (out[1, 2] + 0.5) * sy - 0.5
    return out


def _resize_color(img: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    if img.shape[1::-1] == tuple(wh):
        return img
    return np.asarray(Image.fromarray(img).resize(wh, Image.Resampling.BILINEAR))


def _read_label_png(folder: Path, index: int, wh: tuple[int, int]) -> np.ndarray | None:
    path = folder / f"{index}.png"
    if not path.is_file():
        logger.warning("%s: no label image for frame %d; exported without labels", path, index)
        return None
    try:
        with Image.open(path) as img:
            ids = np.asarray(img).astype(np.int64)
    except OSError as exc:
        raise DataError(path, f"unreadable label image ({exc})") from exc
    if ids.ndim != 2:
        raise DataError(path, f"label image must be single-channel, got shape {ids.shape}")
    return resize_nearest(ids, wh)


def export_sens(
    sens_path: str | Path,
    root: str | Path,
    scene: str,
    *,
    frame_skip: int = 20,
    size: tuple[int, int] = (320, 240),
    label_folder: str | Path | None = None,
    raw_to_nyu40: np.ndarray | None = None,
) -> list[str]:
    """Export every ``frame_skip``-th frame of a ``.sens`` file into ``<root>/scannet_2d/<scene>``.

    Colour is resized bilinearly and depth by nearest neighbour to ``size``; depth is taken as
    registered to the colour frame (as in ScanNet and the OpenScene export). The colour
    intrinsics, rescaled, are written as the scene's ``intrinsics.txt``. Frames whose pose is
    not finite (lost tracking) are skipped. With ``label_folder`` (ScanNet ``label-filt``:
    ``<frame>.png`` of raw ScanNet ids), ``label/`` gets nyu40 ids through ``raw_to_nyu40`` (a
    lookup array indexed by raw id) and ``label_200/`` the raw ids.

    Returns:
        The names of the exported frames (``"0"``, ``"20"``, ...).
    """
    if label_folder is not None and raw_to_nyu40 is None:
        raise ValueError("raw_to_nyu40 is needed to export labels")
    exported: list[str] = []
    with SensReader(sens_path) as reader:
        hdr = reader.header
        write_intrinsics(root, scene, scale_intrinsics(hdr.intrinsic_color, hdr.color_wh, size))
        for frame in reader.frames(skip=frame_skip):
            problem = ("not finite (lost tracking)" if not np.isfinite(frame.pose).all()
                       else rigid_pose_problem(frame.pose))
            if problem is not None:
                logger.warning("%s: frame %d has an invalid pose (%s); skipped", sens_path,
                               frame.index, problem)
                continue
            color = _resize_color(reader.decode_color(frame), size)
            depth = resize_nearest(reader.decode_depth(frame), size)
            raw = None if label_folder is None else _read_label_png(Path(label_folder),
                                                                    frame.index, size)
            nyu = None if raw is None else _lookup_ids(raw, raw_to_nyu40)
            name = str(frame.index)
            write_view(root, scene, name, color=color, pose=frame.pose, label=nyu,
                       depth=depth.astype(np.float32) / np.float32(hdr.depth_shift))
            if raw is not None:
                out = Path(root) / "scannet_2d" / scene / "label_200" / f"{name}.png"
                atomic_write(out, lambda t, r=raw: Image.fromarray(r.astype(np.uint16)).save(
                    t, format="PNG"))
            exported.append(name)
    return exported


def _lookup_ids(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Map ids through ``table``; ids outside it become 0 (unannotated)."""
    out = np.zeros(ids.shape, dtype=np.int64)
    ok = (ids >= 0) & (ids < len(table))
    out[ok] = table[ids[ok]]
    return out
