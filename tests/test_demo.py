"""``xmask3d demo`` end to end at a toy size: every step runs and every output it names exists."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from xmask3d.apps.bundled import default_checkpoint
from xmask3d.cli import main
from xmask3d.data.real_fixtures import real_data_root

TOY = ["--scenes", "5", "--views", "3", "--steps", "2", "--set", "data.voxel_size=0.08",
       "--set", "mask2d.num_queries=4", "--set", "loss.num_points=256", "--no-progress"]


def _segment_ok(folder: str, ckpt: Path, *, novel: str = "sofa") -> dict:
    summary = json.loads((Path(folder) / "segment.json").read_text())
    assert summary["path"] == "views" and summary["views_used"] >= 1
    assert novel in summary["classes"]
    assert Path(summary["checkpoint"]).resolve() == ckpt.resolve()
    assert sum(summary["point_counts"].values()) == summary["num_points"]
    assert (Path(folder) / "segmentation.png").stat().st_size > 1000
    assert (Path(folder) / "segmentation.ply").stat().st_size > 1000
    return summary


def test_demo_runs_every_step_and_reports_its_outputs(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *TOY]) == 0
    printed = capsys.readouterr().out
    demo = json.loads((out / "demo_summary.json").read_text())
    outputs, trained = demo["outputs"], out / "train" / "last.pt"
    assert Path(outputs["checkpoint"]) == trained and trained.is_file()
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert metrics["category_split"] == "scannet_b15n4" and metrics["step"] == 2
    assert set(metrics["predictions"]) == {"fused", "3d", "2d"}
    synth = _segment_ok(outputs["segment_synth"], trained)
    # the held-out scene: a val scene of the generated data, never trained on
    assert "/val/" in synth["scan"]
    if real_data_root() is not None:
        real = _segment_ok(outputs["segment_real"], trained)
        assert Path(real["scan"]).name == "scene0000_00.ply" and real["views_total"] == 3
    else:
        assert outputs["segment_real"] is None and "5/5 skipped" in printed
    if default_checkpoint().is_file():
        _segment_ok(outputs["segment_synth_bundled"], default_checkpoint())
    for path in (v for v in outputs.values() if v):
        assert path in printed   # the demo prints where every output is
    # the echoed commands are shell-quoted: pasted, the vocabulary is one argument again
    echoed = [shlex.split(line[2:]) for line in printed.splitlines()
              if line.startswith("$ xmask3d segment")]
    assert echoed and all(len(cmd[cmd.index("--classes") + 1].split(", ")) == 19
                          for cmd in echoed)
    assert set(demo["times_s"]) >= {"synth", "train", "eval", "segment_synth"}

