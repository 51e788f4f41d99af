"""One synthetic scan in memory: room, sampled point cloud, rendered views and captions.

Points are sampled on the primitives' surfaces (faces hidden by contact with another solid
are dropped, as a scanned mesh would not contain them), coloured with the same function the
renderer uses, then perturbed with sensor-like noise. Everything is drawn from a seed sequence
derived from (seed, scene index), so a scene does not depend on the other scenes or on workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xmask3d.data.labels import (
    SCANNET20_NAMES,
    SCANNET20_NYU40_IDS,
    scannet200_names,
    scannet200_raw_ids,
)
from xmask3d.data.processed import SCANNET_DEFAULT_INTRINSICS_320x240
from xmask3d.data.regions import Region
from xmask3d.data.scene import IGNORE_LABEL
from xmask3d.data.synth.camera import camera_path
from xmask3d.data.synth.captions import make_caption, visible_objects
from xmask3d.data.synth.layout import ROOM_TYPES, STUDIO, Room
from xmask3d.data.synth.primitives import Primitive
from xmask3d.data.synth.reconstruct import ScanSettings, reconstruct
from xmask3d.data.synth.regions import RegionNoise, make_regions
from xmask3d.data.synth.render import render_view, surface_colors
from xmask3d.data.synth.rooms import build_room

K_320x240 = SCANNET_DEFAULT_INTRINSICS_320x240  # the synthetic camera is ScanNet's default
IMAGE_HW = (240, 320)
FRAME_STEP = 20  # frames are named 0, 20, 40, ... like the ScanNet 2D exports
CONTACT_TOL = 0.003  # metres; surface points this close inside another solid are hidden


@dataclass
class SynthView:
    """One rendered frame.

    Attributes:
        name: frame name ("0", "20", ...).
        color: (H, W, 3) uint8.
        depth: (H, W) float32 metres, 0 where nothing was hit.
        pose: (4, 4) camera-to-world.
        nyu40: (H, W) int64 NYU40 ids (0 = unlabelled).
        raw200: (H, W) int64 raw ScanNet ids of ScanNet200 classes (0 = none).
        instance: (H, W) int64 instance ids (0 = nothing).
        caption: the view caption.
        regions: the synthetic dense captioner's boxes and phrases (``synth/regions.py``).
    """

    name: str
    color: np.ndarray
    depth: np.ndarray
    pose: np.ndarray
    nyu40: np.ndarray
    raw200: np.ndarray
    instance: np.ndarray
    caption: str
    regions: list[Region] = field(default_factory=list)


@dataclass
class SynthScan:
    """A generated scene.

    Attributes:
        name: ``synth_XXXX_00``.
        room: the room (primitives, objects, light).
        points: (N, 3) float64 noisy surface points.
        colors: (N, 3) uint8.
        labels: (N,) int64 ScanNet20 indices, 255 = ignore.
        raw200: (N,) int64 raw ScanNet ids (0 = no ScanNet200 class).
        instances: (N,) int64 instance ids (>= 1).
        views: the rendered frames.
    """

    name: str
    room: Room
    points: np.ndarray
    colors: np.ndarray
    labels: np.ndarray
    raw200: np.ndarray
    instances: np.ndarray
    views: list[SynthView] = field(default_factory=list)


def scene_name(index: int) -> str:
    """``synth_XXXX_00`` (ScanNet-style scene id)."""
    return f"synth_{index:04d}_00"


def room_type_of(index: int) -> str:
    """Room type of scene ``index``: a cycle over the five types, shifted by one every five
    scenes, so that a validation split of every fifth scene still sees every type."""
    return ROOM_TYPES[(index + index // len(ROOM_TYPES)) % len(ROOM_TYPES)]


def _streams(index: int, seed: int) -> list[np.random.SeedSequence]:
    """Independent seed sequences of scene ``index``: room, points, camera, views, captions,
    region captions, look (studio draw and colour cast), reconstruction (camera loop and depth
    noise of ``--scan-views``). A child's stream does not depend on how many are spawned, so
    scenes made before the look or the reconstruction existed are unchanged."""
    return np.random.SeedSequence([seed, index]).spawn(8)


@dataclass(frozen=True)
class RoomLook:
    """Per-scene draws of the optional realism options (always drawn, used when enabled).

    Attributes:
        room_type: ``STUDIO`` when the scene's draw falls below ``studio``, else the cycle's type.
        gain: (3,) per-channel colour gain of the whole scene (exposure x white balance); ones
            when ``color_cast`` is 0.
    """

    room_type: str
    gain: np.ndarray


def room_look(index: int, *, seed: int, studio: float = 0.0, color_cast: float = 0.0) -> RoomLook:
    """Room type and colour cast of scene ``index``.

    ``studio``: fraction of scenes that are studios. ``color_cast`` s: exposure ``exp(U(-s, s))``
    times a white balance ``exp(N(0, s/3))`` per channel, one per scene, applied to the scan's
    colours and to its rendered views alike (real reconstructions differ in exposure and colour
    temperature from room to room; the renderer's light alone varies little).
    """
    rng = np.random.default_rng(_streams(index, seed)[6])
    u, e, wb = rng.random(), rng.uniform(-1.0, 1.0), rng.normal(0.0, 1.0, 3)
    room_type = STUDIO if u < studio else room_type_of(index)
    gain = np.exp(color_cast * e + color_cast / 3.0 * wb) if color_cast > 0 else np.ones(3)
    return RoomLook(room_type, gain)


def scene_room(index: int, *, seed: int, studio: float = 0.0) -> Room:
    """The room of scene ``index`` (as ``generate_scan`` builds it), without sampling."""
    return build_room(room_look(index, seed=seed, studio=studio).room_type,
                      np.random.default_rng(_streams(index, seed)[0]))


def primitive_tables(prims: list[Primitive]) -> dict[str, np.ndarray]:
    """Per-primitive label lookups: ScanNet20 index, NYU40 id, raw ScanNet200 id, instance."""
    raw_of = dict(zip(scannet200_names(), scannet200_raw_ids()))
    label = np.array([SCANNET20_NAMES.index(p.category) if p.category else IGNORE_LABEL
                      for p in prims], dtype=np.int64)
    nyu40 = np.array([SCANNET20_NYU40_IDS[i] if i != IGNORE_LABEL else 0 for i in label],
                     dtype=np.int64)
    raw200 = np.array([raw_of[p.name200] if p.name200 else 0 for p in prims], dtype=np.int64)
    instance = np.array([p.instance for p in prims], dtype=np.int64)
    return {"label": label, "nyu40": nyu40, "raw200": raw200, "instance": instance}


def sample_surface(room: Room, density: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points on the visible-able surfaces of the room (noise-free).

    Returns:
        points (N, 3), normals (N, 3) and the (N,) primitive index of every point.
    """
    pts, nrm, idx = [], [], []
    for i, p in enumerate(room.primitives):
        q, n = p.sample_surface(density, rng)
        pts.append(q)
        nrm.append(n)
        idx.append(np.full(len(q), i, dtype=np.int64))
    points, normals, prim = np.concatenate(pts), np.concatenate(nrm), np.concatenate(idx)
    hi = np.array([room.width, room.depth, room.height]) + CONTACT_TOL
    keep = np.all((points >= -CONTACT_TOL) & (points <= hi), axis=1)
    for j, p in enumerate(room.primitives):
        corners = p.corners()
        lo, up = corners.min(0) - CONTACT_TOL, corners.max(0) + CONTACT_TOL
        cand = np.flatnonzero(keep & (prim != j) & np.all((points >= lo) & (points <= up), 1))
        if len(cand):
            keep[cand[p.contains(points[cand], CONTACT_TOL)]] = False
    return points[keep], normals[keep], prim[keep]


def generate_scan(index: int, *, seed: int, n_views: int, density: float,
                  point_noise: float = 0.005, color_noise: float = 0.012,
                  region_noise: RegionNoise | None = None, studio: float = 0.0,
                  color_cast: float = 0.0, scan: ScanSettings | None = None) -> SynthScan:
    """Generate scene ``index`` of the dataset with master seed ``seed``.

    Args:
        index: scene index (fixes the name and the room type).
        seed: dataset seed.
        n_views: number of rendered views.
        density: surface samples per square metre.
        point_noise: standard deviation of the point position noise, metres.
        color_noise: standard deviation of the point colour noise (fraction of full scale).
        region_noise: error rates of the region captions (default :class:`RegionNoise`).
        studio, color_cast: the realism options of :func:`room_look` (0: off).
        scan: with ``scan.views`` >= 1 the point cloud is fused from that many noisy depth
            frames (``synth/reconstruct.py``) instead of sampled on every surface; ``density``
            and ``point_noise`` are then unused.
    """
    room_ss, point_ss, cam_ss, view_ss, cap_ss, region_ss, _, scan_ss = _streams(index, seed)
    look = room_look(index, seed=seed, studio=studio, color_cast=color_cast)
    room = build_room(look.room_type, np.random.default_rng(room_ss))
    tables = primitive_tables(room.primitives)
    rng = np.random.default_rng(point_ss)
    fused = scan is not None and scan.views > 0
    if fused:  # positions already carry the depth noise
        noisy, rgb, prim = reconstruct(room, scan, K_320x240, IMAGE_HW,
                                       np.random.default_rng(scan_ss))
    else:
        points, normals, prim = sample_surface(room, density, rng)
        rgb = surface_colors(room.primitives, prim, points, normals, room.light)
    rgb = rgb * look.gain + rng.normal(0.0, color_noise, rgb.shape)
    if not fused:
        noisy = points + rng.normal(0.0, point_noise, points.shape)
    out = SynthScan(scene_name(index), room, noisy,
                     np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8), tables["label"][prim],
                     tables["raw200"][prim], tables["instance"][prim])
    poses = camera_path(room, n_views, np.random.default_rng(cam_ss))
    view_rng, cap_rng = np.random.default_rng(view_ss), np.random.default_rng(cap_ss)
    region_rng = np.random.default_rng(region_ss)
    inst_name: dict[int, str] = {}
    inst_color: dict[int, str] = {}
    for p in room.primitives:  # the first part of an object is its main body
        inst_name.setdefault(p.instance, p.name)
        inst_color.setdefault(p.instance, p.material.color_name)
    for k, pose in enumerate(poses):
        view = _view(room, tables, pose, str(k * FRAME_STEP), view_rng, cap_rng)
        if color_cast > 0:
            view.color = np.clip(np.round(view.color * look.gain), 0, 255).astype(np.uint8)
        view.regions = [r.region for r in make_regions(view.instance, inst_name, inst_color,
                                                       room.room_type, region_rng, region_noise)]
        out.views.append(view)
    return out


def _view(room: Room, tables: dict[str, np.ndarray], pose: np.ndarray, name: str,
          view_rng: np.random.Generator, cap_rng: np.random.Generator) -> SynthView:
    rv = render_view(room, pose, K_320x240, IMAGE_HW, view_rng)
    hit = rv.prim >= 0
    prim = np.where(hit, rv.prim, 0)
    names = [p.name for p in room.primitives]
    objects = visible_objects(rv.prim, names, tables["instance"], tables["label"] != IGNORE_LABEL,
                              min_pixels=IMAGE_HW[0] * IMAGE_HW[1] // 100)
    colors: dict[str, str] = {}
    for p in room.primitives:  # the first part of an object is its main body
        colors.setdefault(p.name, p.material.color_name)
    wall = next(p.material.color_name for p in room.primitives if p.category == "wall")
    caption = make_caption(objects, room.room_type, cap_rng, colors=colors, wall_color=wall)
    return SynthView(name=name, color=rv.color, depth=rv.depth, pose=pose,
                     nyu40=np.where(hit, tables["nyu40"][prim], 0),
                     raw200=np.where(hit, tables["raw200"][prim], 0),
                     instance=np.where(hit, tables["instance"][prim], 0), caption=caption)
