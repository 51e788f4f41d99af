"""Object drafts: the primitives of one object in its local frame, and their placement.

Local frame of every draft: origin at the centre of the footprint on the object's base, +x along
its width, +y towards its front (the back, at y = -depth/2, is the side that goes against a wall),
+z up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xmask3d.data.synth.materials import Material
from xmask3d.data.synth.primitives import Primitive

Who = tuple[str | None, str, str | None]  # (ScanNet20 category, caption name, ScanNet200 name)


@dataclass
class Draft:
    """One object before placement.

    Attributes:
        name: caption name of the main object.
        category: its ScanNet20 class name, or ``None`` for unlabelled objects.
        width: extent along local x (metres).
        depth: extent along local y.
        height: top of the object above its base.
        parts: primitives in the local frame; ``Primitive.instance`` holds a sub-object index
            (0 = the main object, 1.. = attached things such as pillows or books).
        top: ``(z, width, depth)`` of a free support surface centred on the footprint, if any.
        keepout: an x-interval of the support surface to keep free (a sink), local frame.
        wall_height: height the object blocks on the wall behind it, when lower than
            ``height`` (a counter blocks up to its top, not up to its faucet).
    """

    name: str
    category: str | None
    width: float
    depth: float
    height: float
    parts: list[Primitive] = field(default_factory=list)
    top: tuple[float, float, float] | None = None
    keepout: tuple[float, float] | None = None
    wall_height: float | None = None


class PartList:
    """Collects the local-frame primitives of one draft.

    Args:
        who: default ``(category, name, name200)`` of the parts.
    """

    def __init__(self, who: Who) -> None:
        self.who = who
        self.parts: list[Primitive] = []

    def box(self, mat: Material, center, size, *, yaw: float = 0.0, sub: int = 0,
            who: Who | None = None) -> None:
        """Add a box with centre ``center`` and full extents ``size`` (local frame)."""
        cat, name, name200 = who or self.who
        self.parts.append(Primitive("box", center, size, yaw, mat, cat, name, name200, sub))

    def box_from(self, mat: Material, lo, hi, *, sub: int = 0, who: Who | None = None) -> None:
        """Add an axis-aligned box given its two opposite corners ``lo`` and ``hi``."""
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        self.box(mat, (lo + hi) / 2, hi - lo, sub=sub, who=who)

    def cyl(self, mat: Material, x: float, y: float, z0: float, z1: float, radius: float, *,
            sub: int = 0, who: Who | None = None) -> None:
        """Add a vertical cylinder on (x, y) from height ``z0`` to ``z1``."""
        cat, name, name200 = who or self.who
        self.parts.append(Primitive("cylinder", (x, y, (z0 + z1) / 2),
                                    (2 * radius, 2 * radius, z1 - z0), 0.0, mat, cat, name,
                                    name200, sub))


def place(draft: Draft, x: float, y: float, yaw: float, *, z: float = 0.0,
          instance_base: int) -> list[Primitive]:
    """Move a draft's parts to the world: rotate by ``yaw`` about z, translate to (x, y, z).

    Args:
        draft: the object.
        x, y, z: world position of the draft's local origin.
        yaw: rotation of the local frame, radians.
        instance_base: world instance id of sub-object 0; sub-object k gets ``instance_base + k``.

    Returns:
        The world-frame primitives.
    """
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    out = []
    for p in draft.parts:
        out.append(Primitive(p.kind, rot @ p.center + (x, y, z), p.size.copy(), p.yaw + yaw,
                             p.material, p.category, p.name, p.name200,
                             instance_base + p.instance))
    return out


def footprint_corners(width: float, depth: float, x: float, y: float, yaw: float) -> np.ndarray:
    """(4, 2) world corners of a ``width`` x ``depth`` footprint placed at (x, y, yaw)."""
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * (width / 2, depth / 2)
    return local @ np.array([[c, s], [-s, c]]) + (x, y)


def normalize(draft: Draft) -> Draft:
    """Re-centre a draft so that its footprint is exactly the x/y extent of its parts.

    Builders may leave small offsets (handles, overhangs); after this call the back of the
    object is at y = -depth/2, which is what placement against a wall relies on.
    """
    if not draft.parts:
        raise ValueError(f"draft {draft.name!r} has no parts")
    corners = np.concatenate([p.corners() for p in draft.parts])
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 0.0])
    for p in draft.parts:
        p.center = p.center - shift
    if draft.keepout is not None:
        draft.keepout = (draft.keepout[0] - shift[0], draft.keepout[1] - shift[0])
    draft.width, draft.depth = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    draft.height = float(hi[2])
    return draft
