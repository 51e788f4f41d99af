"""``torchrun --nproc_per_node 2`` on CPU (gloo): ranks stay in sync; eval equals one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from xmask3d import cli
from xmask3d.engine.checkpoint import load_checkpoint, load_model_state
from xmask3d.engine.fit import weights_digest
from xmask3d.models.build import build_model, build_text


def _torchrun(argv: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "xmask3d", *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def test_two_ranks_hold_identical_weights(train_argv, synth_root, tmp_path):
    out = tmp_path / "ddp"
    _torchrun(train_argv(synth_root, out, "--max-steps", "3", "--set", "train.batch_size=1",
                         "--set", "train.eval_every=0"))
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3
    digests = summary["weight_sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1] and summary["ranks_in_sync"]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["world_size"] == 2 and len(ckpt["rng"]) == 2
    assert ckpt["steps_per_epoch"] == 2           # 4 items / 2 ranks / batch 1
    cfg = ckpt["config"]
    model = build_model(cfg, text_dim=build_text(cfg).dim)
    init = weights_digest(model)
    load_model_state(model, ckpt["model"], out / "last.pt")
    assert weights_digest(model) == digests[0] != init
    train = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in train] == [1, 2, 3]          # rank 0 logs, once per step


def test_distributed_eval_equals_single_process(trained_run, tmp_path):
    ckpt = str(trained_run / "last.pt")
    single, multi = tmp_path / "one", tmp_path / "two"
    common = ["--ckpt", ckpt, "--split", "train", "--device", "cpu", "--no-progress"]
    assert cli.main(["eval", *common, "--out", str(single)]) == 0
    _torchrun(["eval", *common, "--out", str(multi)])
    a = json.loads((single / "metrics.json").read_text())
    b = json.loads((multi / "metrics.json").read_text())
    assert b["world_size"] == 2 and a["num_scenes"] == b["num_scenes"] == 3
    assert a["num_views"] == b["num_views"]
    for kind in ("fused", "3d", "2d"):
        np.testing.assert_array_equal(a["confusion"][kind], b["confusion"][kind])
        assert a["predictions"][kind] == b["predictions"][kind]
