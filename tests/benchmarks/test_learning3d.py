"""The 3D-only learning-curve diagnostic (benchmarks/learning3d.py) at a toy size."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks.learning3d import Curve, novel_diagnosis, train_curve
from xmask3d import cli
from xmask3d.config import to_dict
from xmask3d.data.synth.generate import SynthConfig, generate_dataset
from xmask3d.engine.checkpoint import load_checkpoint, save_checkpoint


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


@pytest.fixture(scope="module")
def small_ckpt(small_root, micro_overrides, tmp_path_factory):
    out = tmp_path_factory.mktemp("learning3d_run")
    argv = ["train", "--config", "tiny/scannet_b15n4", "--out", str(out), "--device", "cpu",
            "--no-progress", "--max-steps", "1"]
    for s in [f"data.root={small_root}", "data.loop=4", "data.select_fraction=0",
              "data.min_visible=50", "train.eval_every=0", *micro_overrides]:
        argv += ["--set", s]
    assert cli.main(argv) == 0
    return out / "last.pt"


@pytest.mark.parametrize("bias, base_pct, novel_pct", [(1e4, 100.0, 0.0), (-1e4, 0.0, 100.0)])
def test_novel_diagnosis_counts_the_binary_gate(small_root, small_ckpt, tmp_path, bias,
                                                base_pct, novel_pct):
    # a binary head that calls every point base (or none): the gate shares are exact
    ck = load_checkpoint(small_ckpt)
    state = dict(ck["model"])
    state["binary_head.2.weight"] = torch.zeros_like(state["binary_head.2.weight"])
    state["binary_head.2.bias"] = torch.full_like(state["binary_head.2.bias"], bias)
    path = save_checkpoint(tmp_path / "forced.pt", {**ck, "model": state,
                                                    "config": to_dict(ck["config"])})
    res = novel_diagnosis(path, small_root)
    assert res["base_called_base"] == base_pct and res["novel_called_novel"] == novel_pct
    assert res["chance"] == 25.0                          # B15/N4: 4 novel classes
    assert 0.0 <= res["novel_choice_acc"] <= 100.0
    per = res["novel_choice_per_class"]
    assert set(per) == {"sofa", "bookshelf", "desk", "toilet"}
    seen = [v for v in per.values() if v is not None]
    assert seen and res["novel_choice_class_mean"] == pytest.approx(sum(seen) / len(seen))
    # the point-weighted accuracy is a weighted mean of the per-class recalls
    assert min(seen) - 1e-9 <= res["novel_choice_acc"] <= max(seen) + 1e-9
