"""A small synthetic room scan and a random-weight micro checkpoint for the app tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xmask3d.config import load_config, to_dict
from xmask3d.data.ply import write_ply
from xmask3d.engine.checkpoint import save_checkpoint
from xmask3d.models.build import build_model, build_text

# the shared micro model (tests/conftest.py) plus what the app tests need on top
APP_OVERRIDES = ["data.border=2", "mask2d.decoder_layers=2", "eval.batch_size=4"]


def _plane(rng, origin, u, v, n, color) -> tuple[np.ndarray, np.ndarray]:
    ab = rng.uniform(0, 1, (n, 2))
    pts = np.asarray(origin) + ab[:, :1] * np.asarray(u) + ab[:, 1:] * np.asarray(v)
    col = np.clip(np.asarray(color) + rng.normal(0, 8, (n, 3)), 0, 255)
    return pts, col


def make_room(seed: int = 0, *, density: float = 120.0) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """A 4 x 3 x 2.5 m room without ceiling, with a table: points, uint8 colours, part ids.

    Part ids: 0 floor, 1 wall, 2 table. ``density`` is points per square metre.
    """
    rng = np.random.default_rng(seed)
    parts = [  # (origin, u, v, colour, part)
        ((0, 0, 0), (4, 0, 0), (0, 3, 0), (150, 110, 70), 0),
        ((0, 0, 0), (4, 0, 0), (0, 0, 2.5), (220, 220, 210), 1),
        ((0, 3, 0), (4, 0, 0), (0, 0, 2.5), (220, 220, 210), 1),
        ((0, 0, 0), (0, 3, 0), (0, 0, 2.5), (200, 210, 230), 1),
        ((4, 0, 0), (0, 3, 0), (0, 0, 2.5), (200, 210, 230), 1),
        ((1.5, 1.0, 0.75), (1.0, 0, 0), (0, 0.8, 0), (40, 120, 200), 2),
        ((1.5, 1.0, 0.0), (1.0, 0, 0), (0, 0, 0.75), (30, 90, 160), 2),
        ((1.5, 1.8, 0.0), (1.0, 0, 0), (0, 0, 0.75), (30, 90, 160), 2),
    ]
    pts, cols, ids = [], [], []
    for origin, u, v, color, part in parts:
        n = int(density * np.linalg.norm(np.cross(u, v)))
        p, c = _plane(rng, origin, u, v, n, color)
        pts.append(p), cols.append(c), ids.append(np.full(n, part))
    return (np.concatenate(pts).astype(np.float32), np.concatenate(cols).astype(np.uint8),
            np.concatenate(ids))


@pytest.fixture(scope="session")
def room_factory():
    """``make_room(seed, density=...)`` -> points, colours, part ids."""
    return make_room


@pytest.fixture(scope="session")
def micro_cfg(micro_overrides):
    return load_config("tiny/scannet_b15n4", [*micro_overrides, *APP_OVERRIDES])


@pytest.fixture(scope="session")
def micro_ckpt(tmp_path_factory, micro_cfg) -> Path:
    """A checkpoint of a randomly initialised micro model, in the engine's format."""
    torch.manual_seed(0)
    text = build_text(micro_cfg)
    model = build_model(micro_cfg, text_dim=text.dim)
    path = tmp_path_factory.mktemp("ckpt") / "micro.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": to_dict(micro_cfg),
                           "epoch": 0, "step": 7})
    return path


@pytest.fixture(scope="session")
def room_ply(tmp_path_factory) -> Path:
    points, colors, _ = make_room()
    path = tmp_path_factory.mktemp("scan") / "room.ply"
    write_ply(path, points, colors)
    return path
