"""Shared fixtures of the engine tests: a small synthetic dataset and a trained tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmask3d import cli
from xmask3d.data.synth import SynthConfig, generate_dataset

# Shrinks tiny/scannet_b15n4 further so that a training step takes well under a second.
SMALLER = [
    "data.image_hw=[60,80]", "data.voxel_size=0.08", "data.border=2", "data.min_visible=50",
    "data.select_fraction=0.34", "data.loop=2", "mask2d.input_size=64", "mask2d.num_queries=6",
    "loss.num_points=256", "train.batch_size=2", "train.epochs=3", "train.log_every=1",
    "train.warmup_steps=2", "loss.alignment_start_epoch=1", "eval.batch_size=2",
    "train.threads=1",   # small sparse ops run faster on one thread when cores are shared
]


def _train_argv(root: Path, out: Path, *extra: str) -> list[str]:
    """``xmask3d train`` arguments for the smaller tiny config on ``root``."""
    sets = [f"data.root={root}", *SMALLER]
    argv = ["train", "--config", "tiny/scannet_b15n4", "--out", str(out), "--device", "cpu",
            "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    return argv + list(extra)


@pytest.fixture(scope="session")
def train_argv():
    """``train_argv(root, out, *extra)``: the arguments of a small ``xmask3d train`` run."""
    return _train_argv


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """4 synthetic scenes x 3 views (3 train, 1 val) at a low point density."""
    root = tmp_path_factory.mktemp("engine_synth")
    generate_dataset(root, SynthConfig(scenes=4, views=3, seed=0, val_fraction=0.25,
                                       density=150.0), workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def trained_run(synth_root, tmp_path_factory) -> Path:
    """A run of 4 steps (2 epochs of 2 steps) with selection after every epoch."""
    out = tmp_path_factory.mktemp("engine_run") / "uninterrupted"
    assert cli.main(_train_argv(synth_root, out, "--max-steps", "4")) == 0
    return out
