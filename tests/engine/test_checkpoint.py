"""Checkpoints: atomic round trip, RNG states, and refusal of corrupt or mismatching files."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from xmask3d.config import load_config, to_dict
from xmask3d.engine.checkpoint import (
    architecture_diff,
    capture_rng_state,
    export_model_checkpoint,
    load_checkpoint,
    load_model_state,
    restore_rng_state,
    save_checkpoint,
)
from xmask3d.engine.fit import config_changes
from xmask3d.errors import CheckpointError


def _payload(cfg) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "rng": [capture_rng_state({"loss": torch.Generator().manual_seed(3)})],
            "epoch": 2, "step": 17, "config": to_dict(cfg)}


@pytest.fixture
def cfg():
    return load_config("tiny/scannet_b15n4")


@pytest.fixture
def ckpt_path(tmp_path, cfg):
    return save_checkpoint(tmp_path / "last.pt", _payload(cfg))


def test_round_trip_is_exact_and_atomic(ckpt_path, cfg):
    data = load_checkpoint(ckpt_path, expected_config=cfg)
    ref = _payload(cfg)
    assert data["step"] == 17 and data["epoch"] == 2
    for k, v in ref["model"].items():
        assert torch.equal(data["model"][k], v)
    assert data["config"] == cfg
    # no temporary file is left next to the checkpoint
    assert sorted(p.name for p in ckpt_path.parent.iterdir()) == ["last.pt"]
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    load_model_state(model, data["model"], ckpt_path)
    assert torch.equal(model[0].weight, ref["model"]["0.weight"])


def test_rng_state_round_trip():
    gen = torch.Generator().manual_seed(11)
    random.random()
    np.random.normal()     # leaves a cached Gaussian in NumPy's state
    state = capture_rng_state({"loss": gen})
    first = (random.random(), np.random.normal(), torch.rand(3), torch.rand(2, generator=gen))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    gen.manual_seed(99)
    restore_rng_state(state, {"loss": gen})
    second = (random.random(), np.random.normal(), torch.rand(3), torch.rand(2, generator=gen))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2]) and torch.equal(first[3], second[3])


def test_truncated_file_is_refused(ckpt_path):
    raw = ckpt_path.read_bytes()
    ckpt_path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt: corrupt or truncated"):
        load_checkpoint(ckpt_path)


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match=r"noise\.pt: corrupt or truncated"):
        load_checkpoint(path)


def test_foreign_and_unsafe_files_are_refused(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(CheckpointError, match=r"plain\.pt: not an xmask3d checkpoint"):
        load_checkpoint(plain)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"format": "xmask3d-checkpoint", "obj": nn.Linear(1, 1)}, unsafe)
    with pytest.raises(CheckpointError, match=r"unsafe\.pt: corrupt or truncated"):
        load_checkpoint(unsafe)
    with pytest.raises(CheckpointError, match=r"missing\.pt: checkpoint file not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_architecture_mismatch_is_refused_with_a_diff(ckpt_path):
    other = load_config("tiny/scannet_b15n4", ["backbone3d.out_channels=48",
                                                "train.lr=0.1", "mask2d.num_queries=7"])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(ckpt_path, expected_config=other)
    msg = str(info.value)
    assert "last.pt" in msg and "backbone3d.out_channels: 64 vs 48" in msg
    assert "mask2d.num_queries: 12 vs 7" in msg and "train.lr" not in msg
    # training-only fields and the sparse backend do not count as architecture
    same = load_config("tiny/scannet_b15n4", ["train.lr=0.1", "backbone3d.backend=spconv"])
    saved = load_checkpoint(ckpt_path)["config"]
    assert architecture_diff(saved, same) == []
    # ... but a resumed run lists them
    assert config_changes(saved, same) == ["backbone3d.backend: 'torch' -> 'spconv'",
                                           "train.lr: 0.0005 -> 0.1"]


def test_model_state_mismatch_names_the_file(ckpt_path):
    data = load_checkpoint(ckpt_path)
    with pytest.raises(CheckpointError, match=r"last\.pt: model weights do not fit.*shape"):
        load_model_state(nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5)), data["model"],
                         ckpt_path)
    with pytest.raises(CheckpointError, match=r"missing"):
        load_model_state(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)),
                         data["model"], ckpt_path)


def test_export_keeps_weights_and_drops_training_state(ckpt_path, tmp_path, cfg):
    out = export_model_checkpoint(ckpt_path, tmp_path / "bundle" / "model.pt")
    data = load_checkpoint(out, expected_config=cfg)
    full = load_checkpoint(ckpt_path)
    assert "optimizer" not in data and "rng" not in data and data["step"] == 17
    assert all(torch.equal(data["model"][k], v) for k, v in full["model"].items())
    assert out.stat().st_size < ckpt_path.stat().st_size
