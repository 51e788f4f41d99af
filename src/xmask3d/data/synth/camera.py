"""Camera path of synthetic scans: a loop at eye height looking at objects, slightly downward.

Poses are camera-to-world, OpenCV camera (x right, y down, z forward), world z up (ScanNet).
"""

from __future__ import annotations

import numpy as np

from xmask3d.data.synth.layout import Room

EYE_HEIGHT = (1.3, 1.7)
PITCH_RANGE = (-np.deg2rad(45.0), -np.deg2rad(6.0))


def look_pose(position: np.ndarray, yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world pose of a camera at ``position`` looking along (yaw, pitch).

    Args:
        position: (3,) camera centre in world metres.
        yaw: heading about world z (0 = +x), radians.
        pitch: elevation of the optical axis (negative = looking down), radians.
        roll: rotation about the optical axis, radians.

    Returns:
        (4, 4) float64 camera-to-world matrix (OpenCV camera axes).
    """
    fwd = np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, fwd], axis=1)
    pose[:3, 3] = position
    return pose


def _loop_point(room: Room, frac: float, inset: float) -> np.ndarray:
    """A point at fraction ``frac`` of the perimeter of the room rectangle inset by ``inset``."""
    x0, y0 = min(inset, room.width / 2), min(inset, room.depth / 2)
    x1, y1 = room.width - x0, room.depth - y0
    sides = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0])
    s = (frac % 1.0) * max(sides.sum(), 1e-6)
    for k, length in enumerate(sides):
        if s <= length or k == 3:
            t = s / max(length, 1e-6)
            return np.array(((x0 + t * (x1 - x0), y0), (x1, y0 + t * (y1 - y0)),
                             (x1 - t * (x1 - x0), y1), (x0, y1 - t * (y1 - y0)))[k])
        s -= length
    raise AssertionError("unreachable")


def _is_free(room: Room, p: np.ndarray, clearance: float = 0.25) -> bool:
    return not any(prim.contains(p[None], clearance)[0] for prim in room.primitives)


def _free_position(room: Room, xy: np.ndarray, z: float, rng: np.random.Generator) -> np.ndarray:
    """``xy`` at height ``z`` if free, else the nearest free random spot around it."""
    p = np.array([xy[0], xy[1], z])
    for radius in np.linspace(0.0, max(room.width, room.depth), 40):
        cand = p + np.array([*rng.normal(0.0, 1.0, 2) * radius, 0.0])
        cand[0] = np.clip(cand[0], 0.3, room.width - 0.3)
        cand[1] = np.clip(cand[1], 0.3, room.depth - 0.3)
        if _is_free(room, cand):
            return cand
    return np.array([room.width / 2, room.depth / 2, z])


def _target(room: Room, cam: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A point to look at: an object (by size) or a spot on a wall, across the room.

    Targets closer than ``max(1.2, 0.35 * room diagonal)`` are avoided (the farthest candidate
    is taken if none is that far), so views show several objects rather than one close-up.
    """
    objs = [o for o in room.objects if o.z < room.height - 0.2]
    cands = [np.array([o.x, o.y, o.z + min(o.draft.height * 0.6, 1.2)]) for o in objs]
    weights = [o.draft.width * o.draft.depth + 0.3 for o in objs]
    for k in range(4):
        for s in (0.2, 0.5, 0.8):
            xy = ((s * room.width, 0.0), (room.width, s * room.depth),
                  ((1 - s) * room.width, room.depth), (0.0, (1 - s) * room.depth))[k]
            cands.append(np.array([xy[0], xy[1], 1.0]))
            weights.append(0.15)
    cands, weights = np.stack(cands), np.array(weights)
    dist = np.hypot(cands[:, 0] - cam[0], cands[:, 1] - cam[1])
    far = dist >= max(1.2, 0.35 * np.hypot(room.width, room.depth))
    if not far.any():
        return cands[int(np.argmax(dist))]
    w = np.where(far, weights, 0.0)
    t = cands[int(rng.choice(len(cands), p=w / w.sum()))].copy()
    t[2] += rng.normal(0.0, 0.15)
    return t


def camera_path(room: Room, n_views: int, rng: np.random.Generator) -> np.ndarray:
    """``n_views`` camera-to-world poses along a loop through the room at eye height.

    The loop is the room rectangle inset by about a third of its smaller side; each camera looks
    at an object or a wall point, slightly downward, with a small roll.

    Returns:
        (n_views, 4, 4) float64 poses.
    """
    inset = float(np.clip(0.3 * min(room.width, room.depth), 0.5, 1.2))
    phase, wave = rng.random(), rng.random() * 2 * np.pi
    poses = []
    for k in range(n_views):
        z = np.clip(1.5 + 0.15 * np.sin(2 * np.pi * k / max(n_views, 1) + wave)
                    + rng.normal(0.0, 0.04), *EYE_HEIGHT)
        xy = _loop_point(room, phase + k / max(n_views, 1), inset) + rng.normal(0.0, 0.12, 2)
        cam = _free_position(room, xy, float(z), rng)
        target = _target(room, cam, rng)
        delta = target - cam
        yaw = float(np.arctan2(delta[1], delta[0]) + rng.normal(0.0, 0.12))
        pitch = float(np.clip(np.arctan2(delta[2], np.hypot(delta[0], delta[1]))
                              + rng.normal(0.0, 0.05), *PITCH_RANGE))
        poses.append(look_pose(cam, yaw, pitch, rng.normal(0.0, 0.03)))
    return np.stack(poses)
