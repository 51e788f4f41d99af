"""Solid primitives of synthetic scenes: yaw-rotated boxes and vertical cylinders.

Each primitive supports exact ray intersection (for rendering), a point-inside test (to drop
hidden contact faces) and uniform surface sampling (for the point cloud). Walls, floor and
ceiling are boxes whose room-facing face plays the role of a plane.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmask3d.data.synth.materials import Material

RAY_EPS = 1e-6


@dataclass
class Primitive:
    """One solid part of an object.

    Attributes:
        kind: ``"box"`` or ``"cylinder"`` (vertical axis).
        center: (3,) centre in world metres.
        size: (3,) full extents along the local x, y, z axes (cylinder: (2r, 2r, height)).
        yaw: rotation about the world z axis, radians (local x -> world).
        material: colour recipe.
        category: ScanNet20 class name, or ``None`` for unlabelled parts (ceiling, clutter).
        name: object name used in captions ("couch", "trash can", "lamp").
        name200: ScanNet200 class name, or ``None``.
        instance: instance id (>= 1), shared by the parts of one object.
    """

    kind: str
    center: np.ndarray
    size: np.ndarray
    yaw: float
    material: Material
    category: str | None
    name: str
    name200: str | None
    instance: int

    def __post_init__(self) -> None:
        if self.kind not in ("box", "cylinder"):
            raise ValueError(f"unknown primitive kind {self.kind!r}")
        self.center = np.asarray(self.center, dtype=np.float64)
        self.size = np.asarray(self.size, dtype=np.float64)
        if np.any(self.size <= 0):
            raise ValueError(f"primitive {self.name!r} has a non-positive size {self.size}")

    @property
    def half(self) -> np.ndarray:
        """(3,) half extents."""
        return self.size / 2.0

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) local-to-world rotation."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    @property
    def rotation_t(self) -> np.ndarray:
        """(3, 3) world-to-local rotation, C-contiguous (``x @ R.T`` on a transposed view
        misses numpy's BLAS path and is ~100x slower for large ``x``)."""
        return np.ascontiguousarray(self.rotation.T)

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """(M, 3) world points -> (M, 3) local coordinates."""
        return (points - self.center) @ self.rotation

    def corners(self) -> np.ndarray:
        """(8, 3) world corners of the (bounding) box."""
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
        return (signs * self.half) @ self.rotation_t + self.center

    def contains(self, points: np.ndarray, tol: float = 0.0) -> np.ndarray:
        """(M,) bool: points inside the solid grown by ``tol`` metres."""
        q = self.to_local(points)
        h = self.half
        if self.kind == "box":
            return np.all(np.abs(q) <= h + tol, axis=1)
        radial = q[:, 0] ** 2 + q[:, 1] ** 2 <= (h[0] + tol) ** 2
        return radial & (np.abs(q[:, 2]) <= h[2] + tol)

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Ray parameter of the first hit of rays ``origin + t * dirs`` from outside the solid.

        Args:
            origin: (3,) ray origin (the camera centre).
            dirs: (3, M) ray directions, one per column (not necessarily unit length).

        Returns:
            (M,) ray parameter of the hit, ``inf`` where the ray misses.
        """
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        rel = origin - self.center
        o = (c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2])
        d = (c * dirs[0] + s * dirs[1], -s * dirs[0] + c * dirs[1], dirs[2])
        if self.kind == "box":
            return _intersect_box(o, d, self.half)
        return _intersect_cylinder(o, d, self.half)

    def normal_at(self, points: np.ndarray) -> np.ndarray:
        """(M, 3) outward world normals at ``points`` lying on the surface."""
        q = self.to_local(points)
        h = self.half
        n = np.zeros_like(q)
        if self.kind == "box":
            axis = np.argmin(h - np.abs(q), axis=1)
            rows = np.arange(len(q))
            n[rows, axis] = np.sign(q[rows, axis])
        else:
            radial = np.hypot(q[:, 0], q[:, 1])
            side = (h[0] - radial) < (h[2] - np.abs(q[:, 2]))
            n[:, :2] = np.where(side[:, None], q[:, :2] / np.maximum(radial, 1e-12)[:, None], 0.0)
            n[:, 2] = np.where(side, 0.0, np.sign(q[:, 2]))
        return n @ self.rotation_t

    def areas(self) -> np.ndarray:
        """Areas of the sampled surface patches (box: 6 faces; cylinder: side, top, bottom)."""
        sx, sy, sz = self.size
        if self.kind == "box":
            return np.array([sy * sz, sy * sz, sx * sz, sx * sz, sx * sy, sx * sy])
        r = self.half[0]
        return np.array([2 * np.pi * r * sz, np.pi * r * r, np.pi * r * r])

    def sample_surface(self, density: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sample the surface uniformly with ``density`` points per square metre (Poisson count).

        Returns:
            points: (K, 3) world points on the surface.
            normals: (K, 3) world unit normals.
        """
        counts = rng.poisson(self.areas() * density)
        if self.kind == "box":
            q, n = _sample_box(self.half, counts, rng)
        else:
            q, n = _sample_cylinder(self.half, counts, rng)
        rot_t = self.rotation_t
        return q @ rot_t + self.center, n @ rot_t


def _intersect_box(o: tuple, d: tuple, h: np.ndarray) -> np.ndarray:
    """Slab test in the box frame; ``o`` scalars and ``d`` (M,) arrays per axis."""
    t_near = np.full(d[0].shape, -np.inf)
    t_far = np.full(d[0].shape, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for oi, di, hi in zip(o, d, h):
            inv = 1.0 / di
            t1, t2 = (-hi - oi) * inv, (hi - oi) * inv
            t_near = np.fmax(t_near, np.minimum(t1, t2))
            t_far = np.fmin(t_far, np.maximum(t1, t2))
    return np.where((t_near <= t_far) & (t_near > RAY_EPS), t_near, np.inf)


def _intersect_cylinder(o: tuple, d: tuple, h: np.ndarray) -> np.ndarray:
    """Vertical cylinder (side and both caps) in its frame; ``d`` holds (M,) arrays."""
    r, hz = h[0], h[2]
    a = d[0] ** 2 + d[1] ** 2
    b = 2 * (o[0] * d[0] + o[1] * d[1])
    c = o[0] ** 2 + o[1] ** 2 - r * r
    disc = b * b - 4 * a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * a)
        ok = (disc >= 0) & (a > 1e-12) & (t > RAY_EPS) & (np.abs(o[2] + t * d[2]) <= hz)
        t = np.where(ok, t, np.inf)
        for zc in (hz, -hz):
            tc = (zc - o[2]) / d[2]
            inside = (o[0] + tc * d[0]) ** 2 + (o[1] + tc * d[1]) ** 2 <= r * r
            okc = (np.abs(d[2]) > 1e-12) & (tc > RAY_EPS) & inside
            t = np.where(okc & (tc < t), tc, t)
    return t


def _sample_box(h: np.ndarray, counts: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    qs, ns = [], []
    for face, k in enumerate(counts):
        axis, sign = face // 2, (1.0 if face % 2 == 0 else -1.0)
        q = (rng.random((k, 3)) * 2 - 1) * h
        q[:, axis] = sign * h[axis]
        n = np.zeros((k, 3))
        n[:, axis] = sign
        qs.append(q)
        ns.append(n)
    return np.concatenate(qs), np.concatenate(ns)


def _sample_cylinder(h: np.ndarray, counts: np.ndarray,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    r, hz = h[0], h[2]
    k_side, k_top, k_bot = (int(c) for c in counts)
    ang = rng.random(k_side) * 2 * np.pi
    side = np.stack([r * np.cos(ang), r * np.sin(ang), (rng.random(k_side) * 2 - 1) * hz], 1)
    side_n = np.stack([np.cos(ang), np.sin(ang), np.zeros(k_side)], 1)
    caps, caps_n = [], []
    for k, z in ((k_top, hz), (k_bot, -hz)):
        rad = r * np.sqrt(rng.random(k))
        a = rng.random(k) * 2 * np.pi
        caps.append(np.stack([rad * np.cos(a), rad * np.sin(a), np.full(k, z)], 1))
        caps_n.append(np.tile([0.0, 0.0, np.sign(z)], (k, 1)))
    return np.concatenate([side] + caps), np.concatenate([side_n] + caps_n)
