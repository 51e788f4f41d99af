"""A user's scan as it comes: detect its unit, up axis, floor and wall directions.

``segment`` and ``query`` run the model in a canonical frame — metres, +z up, the floor at z = 0,
the walls along x and y — whatever frame and unit the scan was saved in. The transform is a
similarity ``q = s · R · p + t`` (R a rotation, s the unit factor), applied to the points and to
the camera poses of the user's views; per-point outputs keep the scan's own point order, so
nothing has to be mapped back. What was detected is written into ``segment.json``.

How each part is detected (heuristics, written fresh for this project; see docs/segment.md):
- **unit**: the robust extent of the scan (1st-99th percentile, largest axis): up to 150 it is
  taken as metres, up to 1500 as centimetres, beyond as millimetres;
- **up axis**: per-point normals from a k-nearest-neighbour PCA (the classic plane-fitting
  normal estimation of Hoppe et al. 1992) on a subsample; of the six directions +-x, +-y, +-z, the
  one that best fits "furniture stands on a floor": horizontal surfaces away from floor and
  ceiling (table tops, seats, bed tops) lie in its lower third rather than its upper third, and
  the points that are not horizontal surfaces have their median below mid-height (plus a weaker
  preference for the axis along which the scan is shortest);
- **floor**: the densest 2 cm slab of upward-facing points in the lowest 0.5 m;
- **walls**: the dominant direction of the horizontal normals modulo 90° (a Manhattan-world
  assumption, as in Coughlan & Yuille 1999); of the four rotations by 90° that align it, the one
  that puts the centroid of the points in the +x +y quadrant of the footprint's box.
Only axis-aligned up axes are detected (a scan lying on its side or upside down, not a tilted one).
A rotation of the scan by multiples of 90° about any axis, or a change of unit, gives the same
canonical points up to floating-point rounding, hence the same labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from xmask3d.data.scene import View

__all__ = ["UNITS", "UP_CHOICES", "ScanFrame", "detect_frame", "quarter_turns"]

UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
UP_CHOICES = ("auto", "+x", "-x", "+y", "-y", "+z", "-z", "keep")

_MAX_SAMPLE = 60_000          # points used for the detection (a fixed stride over the scan order)
_NEIGHBOURS = 12              # k of the normal-estimation PCA
_ALONG = math.cos(math.radians(20.0))  # |normal . axis| above this counts as "along the axis"
_EXTENT_WEIGHT = 2.0          # weight of the "rooms are lower than long" cue
_UNSURE_MARGIN = 0.2          # best and second-best up scores closer than this: say so
_MODE_SHARPNESS = 8.0         # concentration of the weights of the wall-direction mean shift
_MIN_POINTS = 32              # fewer points than this: keep the frame as given


@dataclass
class ScanFrame:
    """The similarity ``q = scale · rotation @ p + translation`` into the canonical frame."""

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    scale: float = 1.0
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    unit: str = "m"
    up: str = "+z"
    floor: float = 0.0            # floor coordinate along the up axis, in the scan's own unit
    wall_angle_deg: float = 0.0   # rotation about up that aligned the walls with x/y
    notes: list[str] = field(default_factory=list)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points of the scan -> (N, 3) float32 canonical points."""
        p = np.asarray(points, dtype=np.float64)
        return (self.scale * (p @ self.rotation.T) + self.translation).astype(np.float32)

    def apply_pose(self, pose: np.ndarray) -> np.ndarray:
        """A 4x4 camera-to-world pose of the scan's frame -> the canonical frame (still rigid:
        the camera keeps metric depth; only its position is scaled)."""
        out = np.eye(4)
        out[:3, :3] = self.rotation @ pose[:3, :3]
        out[:3, 3] = self.scale * (self.rotation @ pose[:3, 3]) + self.translation
        return out

    def apply_views(self, views: list[View]) -> list[View]:
        """The views with their poses in the canonical frame (same images, same depth)."""
        return [replace(v, pose=self.apply_pose(v.pose)) for v in views]

    @property
    def is_identity(self) -> bool:
        return (self.scale == 1.0 and np.allclose(self.rotation, np.eye(3))
                and not np.any(self.translation))

    def to_dict(self) -> dict[str, Any]:
        """What ``segment.json`` says about the frame the model ran in."""
        return {"unit": self.unit, "scale_to_metres": self.scale, "up_axis": self.up,
                "floor_height": round(float(self.floor), 4),
                "wall_rotation_deg": round(float(self.wall_angle_deg), 2),
                "rotation": np.round(self.rotation, 6).tolist(),
                "translation_m": np.round(self.translation, 4).tolist(), "notes": self.notes}


def detect_frame(points: np.ndarray, *, up: str = "auto", unit: str = "auto") -> ScanFrame:
    """Detect the canonical frame of a scan (see the module docstring).

    Args:
        points: (N, 3) coordinates in the scan's own frame and unit.
        up: ``"auto"``, one of ``+x -x +y -y +z -z`` (the scan's up direction, given), or
            ``"keep"`` (no rotation, no floor/wall alignment; the unit is still applied).
        unit: ``"auto"`` or one of ``m cm mm``.

    Returns:
        The frame; ``frame.apply(points)`` gives metres, +z up, floor at 0, walls along x/y.

    Raises:
        ValueError: an unknown ``up`` or ``unit`` value.
    """
    if up not in UP_CHOICES:
        raise ValueError(f"up must be one of {', '.join(UP_CHOICES)}, got {up!r}")
    if unit != "auto" and unit not in UNITS:
        raise ValueError(f"unit must be auto or one of {', '.join(UNITS)}, got {unit!r}")
    pts = np.asarray(points, dtype=np.float64)
    frame = ScanFrame()
    if len(pts) < _MIN_POINTS:
        frame.notes.append(f"{len(pts)} points are too few to detect the frame; used as given")
        return frame
    sample = pts[:: max(1, math.ceil(len(pts) / _MAX_SAMPLE))]
    frame.unit = _detect_unit(sample) if unit == "auto" else unit
    frame.scale = UNITS[frame.unit]
    sample = sample * frame.scale
    if up == "keep":
        frame.up = "kept as given"
        return frame
    normals = _normals(sample)
    if up == "auto":
        up, how = _detect_up(sample, normals)
        frame.notes.append(f"up axis {up} detected ({how})")
    frame.up = up
    axis, sign = "xyz".index(up[1]), 1.0 if up[0] == "+" else -1.0
    r_up = _rotation_to_z(axis, sign)
    q, n = sample @ r_up.T, normals @ r_up.T
    angle = _wall_angle(n)
    r_yaw = _rot_z(-angle)
    q = q @ r_yaw.T
    turns = _quadrant_turns(q)
    r_quad = _rot_z(turns * math.pi / 2.0)
    rotation = r_quad @ r_yaw @ r_up
    q = sample @ rotation.T
    floor = _floor_height(q, normals @ rotation.T)
    frame.rotation = rotation
    frame.wall_angle_deg = math.degrees(turns * math.pi / 2.0 - angle)
    frame.floor = sign * floor / frame.scale
    lo = q.min(axis=0)
    frame.translation = np.array([-lo[0], -lo[1], -floor]) * 1.0
    return frame


def quarter_turns() -> list[tuple[str, np.ndarray]]:
    """``("x90", R), ...``: the 9 rotations by 90, 180 and 270 degrees about x, y and z (exact
    signed permutations), the turns under which :func:`detect_frame` is tested and measured."""
    turns = []
    for axis in range(3):
        a, b = [i for i in range(3) if i != axis]
        for k, (c, s) in zip((1, 2, 3), ((0, 1), (-1, 0), (0, -1)), strict=True):
            r = np.eye(3)
            r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
            turns.append((f"{'xyz'[axis]}{90 * k}", r))
    return turns


def _detect_unit(points: np.ndarray) -> str:
    lo, hi = np.percentile(points, [1.0, 99.0], axis=0)
    extent = float(np.max(hi - lo))
    if extent <= 150.0:
        return "m"
    return "cm" if extent <= 1500.0 else "mm"


def _normals(points: np.ndarray) -> np.ndarray:
    """(M, 3) unit normals (sign arbitrary) from the PCA of each point's k nearest neighbours."""
    from scipy.spatial import cKDTree

    k = min(_NEIGHBOURS, len(points))
    _, idx = cKDTree(points).query(points, k=k)
    nb = points[idx] - points[idx].mean(axis=1, keepdims=True)
    cov = np.einsum("mki,mkj->mij", nb, nb)
    _, vecs = np.linalg.eigh(cov)
    return vecs[:, :, 0]


def _detect_up(points: np.ndarray, normals: np.ndarray) -> tuple[str, str]:
    """The up direction among +-x, +-y, +-z that best fits "furniture stands on a floor".

    Two cues, both in coordinates relative to the scan's extent along the candidate axis (0 at
    the candidate floor end): horizontal surfaces away from floor and ceiling (table tops, seats,
    bed tops) lie in the lower third rather than the upper one, and everything that is not a
    horizontal surface (walls, furniture sides) has its median below mid-height.
    """
    along = np.abs(normals) > _ALONG
    lo3, hi3 = np.percentile(points, [0.5, 99.5], axis=0)
    extent = np.maximum(hi3 - lo3, 1e-9)
    ranked: list[tuple[float, str]] = []
    scores = []
    for axis in range(3):
        low_room = _EXTENT_WEIGHT * (float(extent.min() / extent[axis]) - 1.0)
        rel = (points[:, axis] - lo3[axis]) / extent[axis]
        flat = along[:, axis]
        for sign in (1.0, -1.0):
            r = rel if sign > 0 else 1.0 - rel
            inner = flat & (r > 0.06) & (r < 0.94)
            surfaces = (float(np.mean(r[inner] < 1 / 3) - np.mean(r[inner] > 2 / 3))
                        if inner.any() else 0.0)
            rest = r[~flat]
            mass = 2.0 * (0.5 - float(np.median(rest))) if rest.size else 0.0
            name = ("+" if sign > 0 else "-") + "xyz"[axis]
            score = surfaces + mass + low_room
            scores.append(f"{name} {score:.2f}")
            ranked.append((score, name))
    ranked.sort(reverse=True)
    how = "scores " + ", ".join(scores)
    if ranked[0][0] - ranked[1][0] < _UNSURE_MARGIN:
        how += f"; UNCERTAIN against {ranked[1][1]}: pass --up if the labels look wrong"
    return ranked[0][1], how


def _rotation_to_z(axis: int, sign: float) -> np.ndarray:
    """A proper rotation (a signed permutation) taking ``sign · e_axis`` to +z."""
    if axis == 2:
        return np.diag([1.0, sign, sign])
    r = np.zeros((3, 3))
    other = 3 - axis - 2  # the remaining non-z axis: x->y, y->x
    r[2, axis] = sign             # new z = sign * old axis
    r[0, 2] = sign                # new x = sign * old z
    r[1, other] = 1.0             # new y = old other axis
    if np.linalg.det(r) < 0:
        r[1] *= -1.0
    return r


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _wall_angle(normals: np.ndarray) -> float:
    """Angle in [0, pi/2) of the dominant horizontal normal direction modulo 90 degrees."""
    wall = np.abs(normals[:, 2]) < math.sin(math.radians(20.0))
    if wall.sum() < _MIN_POINTS:
        return 0.0
    theta = np.arctan2(normals[wall, 1], normals[wall, 0])
    # the walls of a Manhattan room agree modulo 90 degrees: find the mode of 4 theta, from the
    # histogram peak, refined by a smoothly weighted circular mean (a few mean-shift steps, so a
    # tiny change of the points, e.g. a change of unit, moves the answer only a tiny amount)
    z = np.exp(4j * theta)
    hist, edges = np.histogram(np.angle(z), bins=72, range=(-math.pi, math.pi))
    mode = 0.5 * (edges[np.argmax(hist)] + edges[np.argmax(hist) + 1])
    for _ in range(8):
        weights = np.exp(_MODE_SHARPNESS * (np.cos(np.angle(z) - mode) - 1.0))
        mode = float(np.angle((weights * z).sum()))
    return float(mode % (2 * math.pi)) / 4.0


def _quadrant_turns(q: np.ndarray) -> int:
    """Quarter turns about z putting the points' centroid in the +x +y quadrant of their box."""
    lo, hi = q[:, :2].min(axis=0), q[:, :2].max(axis=0)
    dx, dy = q[:, :2].mean(axis=0) - 0.5 * (lo + hi)
    # rotating by k quarter turns maps (dx, dy) to: 0 (dx, dy), 1 (-dy, dx), 2 (-dx, -dy),
    # 3 (dy, -dx); pick the k that makes both components non-negative
    for k, (x, y) in enumerate(((dx, dy), (-dy, dx), (-dx, -dy), (dy, -dx))):
        if x > 0 and y >= 0:
            return k
    return 0


def _floor_height(q: np.ndarray, normals: np.ndarray) -> float:
    """Height of the densest 2 cm slab of horizontal points in the lowest 0.5 m."""
    z = q[:, 2]
    low = z < z.min() + 0.5
    cand = z[low & (np.abs(normals[:, 2]) > _ALONG)]
    if cand.size < _MIN_POINTS:
        return float(np.percentile(z, 1.0))
    bins = np.arange(cand.min(), cand.max() + 0.02, 0.02)
    if len(bins) < 2:
        return float(np.median(cand))
    hist, edges = np.histogram(cand, bins=bins)
    i = int(np.argmax(hist))
    slab = cand[(cand >= edges[i]) & (cand <= edges[i + 1])]
    return float(np.median(slab))
