"""Class-balanced point CE (``loss.point_balance``): weights from the training labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.engine.conftest import SMALLER
from xmask3d.config import load_config
from xmask3d.data.scene import IGNORE_LABEL
from xmask3d.engine.data import open_layout, view_dataset
from xmask3d.engine.distributed import DistInfo
from xmask3d.engine.trainer import build_run
from xmask3d.errors import ConfigError
from xmask3d.losses.point_losses import balanced_class_weights


def _cfg(root, tmp_path, *extra):
    return load_config("tiny/scannet_b15n4", [f"data.root={root}", *SMALLER,
                                              f"train.out_dir={tmp_path / 'run'}", *extra])


def test_label_counts_are_the_base_labels_of_every_training_scene(synth_root, tmp_path):
    cfg = _cfg(synth_root, tmp_path)
    ds = view_dataset(cfg, open_layout(cfg), split="train", mode="train")
    want = np.zeros(len(ds.class_names), np.int64)
    for name in ds.scenes:
        scene = ds._scene(name)                  # labels in the split's full class space
        lab = ds.label_table[scene.labels]
        want += np.bincount(lab[lab != IGNORE_LABEL], minlength=len(want))
    got = ds.label_counts()
    np.testing.assert_array_equal(got, want)
    assert got.sum() > 0 and got[ds.class_names.index("wall")] > 0


def test_build_run_weights_the_point_ce_by_label_frequency(synth_root, tmp_path):
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend="")
    plain = build_run(_cfg(synth_root, tmp_path), info)
    assert plain.weights.point_class_weights == ()
    run = build_run(_cfg(synth_root, tmp_path, "loss.point_balance=0.5"), info)
    counts = run.train_set.label_counts()
    assert run.weights.point_class_weights == pytest.approx(balanced_class_weights(counts, 0.5))
    w = dict(zip(run.train_set.class_names, run.weights.point_class_weights, strict=True))
    assert w["wall"] < 1.0 < w["sink"]           # frequent classes weigh less, rare ones more


def test_negative_balance_is_a_config_error(synth_root, tmp_path):
    with pytest.raises(ConfigError, match="point_balance"):
        _cfg(synth_root, tmp_path, "loss.point_balance=-1")
