"""The issue-16 levers section: scores read from a run folder, rows by seed, the table."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks.levers import levers_table, main, score_run
from xmask3d.config import load_config, save_config


def _fake_run(root, seed: int, base: float, floor: float):
    """A finished run whose scores are already cached in its folder (nothing is computed)."""
    run = root / f"run_s{seed}"
    (run / "eval_bench").mkdir(parents=True)
    (run / "eval_ungated").mkdir(parents=True)
    save_config(load_config("tiny/scannet_b15n4", [f"train.seed={seed}"]), run / "config.yaml")
    (run / "last.pt").write_bytes(b"")
    pred = {"hIoU": 30.04, "mIoU_base": base, "mIoU_novel": 25.0}
    (run / "eval_bench" / "metrics.json").write_text(json.dumps({"predictions": {
        "fused": pred, "3d": pred, "2d": pred}}))
    ungated = {"hIoU": 20.0, "mIoU_base": base - 4, "mIoU_novel": 15.0,
               "per_class_IoU": {"chair": floor / 2}}
    (run / "eval_ungated" / "metrics.json").write_text(json.dumps({"predictions": {
        "fused": ungated, "3d": ungated, "2d": ungated}}))
    real = {m: {"mIoU_base": base / 2, "mIoU_novel": 0.5, "hIoU": 1.0,
                "per_class_IoU": {"floor": floor, "wall": 30.0, "bed": None}}
            for m in ("virtual", "3d-only")}
    (run / "real_scene0000.json").write_text(json.dumps(real))
    return run


def test_runs_are_stored_by_seed_and_a_seed_scored_again_replaces_its_row(tmp_path):
    out = tmp_path / "docs"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"speed": {"x": 1}}))
    for seed, base, floor in ((1, 50.0, 40.0), (0, 46.0, 60.0), (1, 48.0, 44.0)):
        run = tmp_path / f"run_s{seed}"
        if run.exists():
            shutil.rmtree(run)
        _fake_run(tmp_path, seed, base, floor)
        assert main(["--lever", "augmentation", "--run", str(run), "--data", str(tmp_path),
                     "--out", str(out), *(["--note", "rotation"] if seed == 1 else [])]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["speed"] == {"x": 1}
    entry = data["levers"]["augmentation"]
    assert entry["note"] == "rotation"                 # kept when a later call gives none
    assert [(r["seed"], r["synthetic"]["mIoU_base"], r["3d-only"]["floor"])
            for r in entry["runs"]] == [(0, 46.0, 60.0), (1, 48.0, 44.0)]
    assert entry["runs"][0]["synthetic"]["hIoU"] == 30.0
    lines = levers_table(data["levers"])
    row = next(ln for ln in lines if ln.startswith("| augmentation"))
    cells = row.split(" | ")
    # seeds, generated hIoU / base / novel, no gate hIoU / chair, real virtual base / novel,
    # 3D base, floor, wall
    assert cells[1:] == ["0, 1", "30.0 ± 0.0", "47.0 ± 1.0", "25.0 ± 0.0", "20.0 ± 0.0",
                         "26.0 ± 4.0", "23.5 ± 0.5", "0.5 ± 0.0", "23.5 ± 0.5", "52.0 ± 8.0",
                         "30.0 ± 0.0 |"]
    assert "- **augmentation**: rotation" in lines


def test_an_unfinished_run_is_refused_by_name(tmp_path):
    run = _fake_run(tmp_path, 0, 40.0, 50.0)
    (run / "last.pt").unlink()
    with pytest.raises(FileNotFoundError, match="last.pt"):
        score_run(run, tmp_path)


def test_single_seed_cells_and_missing_values():
    section = {"one seed": {"note": "", "runs": [{
        "seed": 0, "synthetic": {"hIoU": 1.0, "mIoU_base": 2.0, "mIoU_novel": 3.0},
        "virtual": {"mIoU_base": 4.0, "mIoU_novel": None, "floor": 5.0, "wall": 6.0},
        "3d-only": {"mIoU_base": 7.0, "mIoU_novel": 0.0, "floor": 8.0, "wall": 9.0}}]}}
    row = next(ln for ln in levers_table(section) if ln.startswith("| one seed"))
    assert row.split(" | ")[1:] == ["0", "1.0", "2.0", "3.0", "-", "-", "4.0", "-", "7.0",
                                    "8.0", "6.0 |"]
    assert levers_table({}) == []


def test_the_reference_row_comes_first():
    run = {"seed": 0, "synthetic": {}, "virtual": {}, "3d-only": {}}
    section = {"a lever": {"note": "", "runs": [run]},
               "z recipe": {"note": "the reference", "runs": [run], "reference": True}}
    rows = [ln.split(" | ")[0] for ln in levers_table(section) if ln.startswith("| ") and
            "---" not in ln][1:]
    assert rows == ["| z recipe", "| a lever"]
