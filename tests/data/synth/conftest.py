"""Shared fixtures of the synthetic-scene tests: a tiny dataset on disk and one scan in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from xmask3d.data.synth import SynthConfig, generate_dataset, generate_scan

TINY = SynthConfig(scenes=3, views=2, seed=7, val_fraction=0.34, density=150.0)


@pytest.fixture(scope="session")
def tiny_config() -> SynthConfig:
    """The configuration of ``tiny_root``."""
    return TINY


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """3 scenes x 2 views written with two worker processes."""
    root = tmp_path_factory.mktemp("synth_w2")
    generate_dataset(root, TINY, workers=2, progress=False)
    return root


@pytest.fixture(scope="session")
def dense_scan():
    """A bedroom sampled densely (for geometric consistency checks), with 3 views."""
    return generate_scan(0, seed=3, n_views=3, density=2500.0)
