"""Procedurally generated indoor scenes with rendered RGB-D views and captions (`xmask3d synth`).

Rooms (bedroom, living room, kitchen, bathroom, office) are built from box and cylinder
primitives holding all 20 ScanNet20 classes; their surfaces are sampled into a noisy point
cloud and rendered exactly by ray casting, so depth, labels and points agree.
"""

from __future__ import annotations

from xmask3d.data.synth.generate import SynthConfig, generate_dataset, split_of, write_scan
from xmask3d.data.synth.layout import ROOM_TYPES, Room
from xmask3d.data.synth.rooms import build_room
from xmask3d.data.synth.scan import SynthScan, SynthView, generate_scan, room_type_of, scene_name

__all__ = [
    "ROOM_TYPES",
    "Room",
    "SynthConfig",
    "SynthScan",
    "SynthView",
    "build_room",
    "generate_dataset",
    "generate_scan",
    "room_type_of",
    "scene_name",
    "split_of",
    "write_scan",
]
