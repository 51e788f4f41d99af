"""The 3D-only learning-curve diagnostic (benchmarks/learning3d.py) at a toy size."""

from __future__ import annotations

import math

import pytest

from benchmarks.learning3d import Curve, train_curve
from xmask3d.data.synth.generate import SynthConfig, generate_dataset


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning3d_synth")
    generate_dataset(root, SynthConfig(scenes=4, views=3, seed=0, val_fraction=0.25,
                                       density=150.0), workers=1, progress=False)
    return root


def test_curve_trains_the_3d_branch_and_scores_held_out_and_training_views(
        small_root, micro_overrides, one_thread):
    overrides = ["data.loop=4", "data.select_fraction=0", "data.min_visible=50",
                 *micro_overrides]
    res = train_curve(Curve(steps=12, every=4, lr_3d=0.01, overrides=overrides), small_root)
    assert [p["step"] for p in res["points"]] == [4, 8, 12]
    assert res["lr_3d"] == 0.01 and res["config"] == "tiny/scannet_b15n4"
    for scores in [*(p["val"] for p in res["points"]), res["train_scenes"]]:
        assert set(scores) == {"mIoU_base", "mIoU_novel"}
        assert 0.0 <= scores["mIoU_base"] <= 100.0
    losses = [p["train_loss"] for p in res["points"]]
    assert all(math.isfinite(v) for v in losses)
    # the point cross-entropy goes down: the 3D branch really trains
    assert losses[-1] < losses[0]


def test_curve_default_learning_rate_is_the_configs(small_root, micro_overrides, one_thread):
    overrides = ["data.loop=4", "data.select_fraction=0", "data.min_visible=50",
                 *micro_overrides]
    res = train_curve(Curve(steps=1, every=1, overrides=overrides), small_root)
    assert res["lr_3d"] == 0.002          # tiny/base.yaml train.lr_3d
    assert len(res["points"]) == 1
