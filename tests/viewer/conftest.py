"""The app tests' synthetic room and micro checkpoint (tests/apps/conftest.py), for the viewer."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "_xmask3d_apps_conftest", Path(__file__).resolve().parents[1] / "apps" / "conftest.py")
_apps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_apps)

make_room = _apps.make_room
micro_cfg = _apps.micro_cfg
micro_ckpt = _apps.micro_ckpt
room_ply = _apps.room_ply
room_factory = _apps.room_factory


@pytest.fixture(scope="session")
def micro_lm(micro_ckpt):
    """The micro model loaded as the viewer loads a checkpoint."""
    from xmask3d.apps.inference import load_inference_model

    return load_inference_model(micro_ckpt, device="cpu")


def view_args(scan, ckpt, **kw) -> argparse.Namespace:
    """The arguments ``xmask3d view`` parses, with small defaults for the tests."""
    from xmask3d.cli import build_parser

    argv = ["view", str(scan), "--ckpt", str(ckpt), "--device", "cpu", "--virtual-views", "4",
            "--classes", kw.pop("classes", "floor, wall, table"), "--port", "0"]
    args = build_parser().parse_args(argv)
    for k, v in kw.items():
        setattr(args, k, v)
    return args


@pytest.fixture
def view_args_factory():
    return view_args
