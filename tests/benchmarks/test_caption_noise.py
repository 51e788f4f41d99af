"""The region-caption noise ablation: its data, its bookkeeping and its table (no training)."""

from __future__ import annotations

import json

import pytest

import benchmarks.caption_noise as C
from benchmarks.quality import QUICK, Protocol, _protocol_key, ensure_data


def _preds(novel: float, base: float = 40.0) -> dict:
    vals = {"hIoU": 2 * base * novel / (base + novel), "mIoU_base": base, "mIoU_novel": novel}
    return {"fused": vals, "3d": {**vals, "mIoU_novel": novel - 1.0}, "2d": vals}


def test_noise_data_has_the_same_rooms_and_views_and_other_region_captions(tmp_path):
    proto = Protocol(scenes=2, views=2, data_seed=3)
    clean = ensure_data(tmp_path / "n0", proto, region_noise=0.0)
    noisy = ensure_data(tmp_path / "n40", proto, region_noise=0.4)
    points = sorted(p.relative_to(clean) for p in (clean / "scannet_3d").rglob("*.pth"))
    assert len(points) == 2
    for rel in points:
        assert (clean / rel).read_bytes() == (noisy / rel).read_bytes()
    assert (clean / "captions.json").read_text() == (noisy / "captions.json").read_text()
    a = json.loads((clean / "region_captions.json").read_text())
    b = json.loads((noisy / "region_captions.json").read_text())
    assert a.keys() == b.keys() and a != b
    assert json.loads((noisy / "bench_protocol.json").read_text())["region_noise"] == 0.4
    # kept: a second call with the same request does not generate again
    stamp = (noisy / "region_captions.json").stat().st_mtime_ns
    ensure_data(tmp_path / "n40", proto, region_noise=0.4)
    assert (noisy / "region_captions.json").stat().st_mtime_ns == stamp


def test_runs_are_seed_major_on_their_own_data_and_finished_seeds_are_kept(tmp_path,
                                                                           monkeypatch):
    proto = Protocol(steps=4, seeds=(0, 1))
    results = tmp_path / "results.json"
    recipe = {"after (seed 1)": {"run": "runs/x", "points": [
        {"step": 2, "predictions": _preds(5.0)}, {"step": 4, "predictions": _preds(20.0)}]},
        "after, no region-caption loss (seed 0)": {"points": [{"step": 4,
                                                               "predictions": _preds(1.0)}]}}
    results.write_text(json.dumps({"recipe": {"curves": recipe}, "caption_noise": {
        "protocol": {**_protocol_key(proto), "seeds": [0]},
        "rates": {"0.4": [{"seed": 0, "predictions": _preds(9.0), "region_noise": 0.4}]}}}))
    made, seen = [], []
    monkeypatch.setattr(C, "ensure_data", lambda root, p, region_noise: made.append(
        (root.name, region_noise)) or root)

    def fake_pool(tasks, *, on_result, **kw):
        for t in tasks:
            seen.append((t.name, t.seed, t.data.name, t.out(tmp_path).name))
            on_result(t, {"seed": t.seed, "predictions": _preds(10.0 + t.seed)})

    monkeypatch.setattr(C, "_pool", fake_pool)
    sec = C.run_caption_noise(results, tmp_path, proto=proto, rates=[0.0, 0.4])
    assert seen == [("0", 0, "bench_data_region_noise0", "capnoise00_s0"),
                    ("0", 1, "bench_data_region_noise0", "capnoise00_s1"),
                    ("0.4", 1, "bench_data_region_noise0.4", "capnoise40_s1")]
    assert ("bench_data_region_noise0.4", 0.4) in made
    assert [(r["seed"], r["predictions"]["fused"]["mIoU_novel"]) for r in sec["rates"]["0.4"]] \
        == [(0, 9.0), (1, 11.0)]
    assert [r["region_noise"] for r in sec["rates"]["0"]] == [0.0, 0.0]
    # the reference: the recipe's last point of each "after (seed N)" curve, nothing else
    assert [(r["seed"], r["steps"], r["predictions"]["fused"]["mIoU_novel"])
            for r in sec["reference"]] == [(1, 4, 20.0)]
    # another protocol's runs are not mixed in
    seen.clear()
    C.run_caption_noise(results, tmp_path, proto=Protocol(steps=8, seeds=(0,)), rates=[0.4])
    assert seen == [("0.4", 0, "bench_data_region_noise0.4", "capnoise40_s0")]


def test_table_rows_by_rate_with_the_reference_and_the_plot(tmp_path):
    sec = {"protocol": {**_protocol_key(QUICK), "seeds": [0, 1]},
           "default_rates": C.DEFAULT_RATES,
           "reference": [{"seed": 0, "predictions": _preds(24.0)},
                         {"seed": 1, "predictions": _preds(28.0)}],
           "rates": {"0.4": [{"seed": 0, "predictions": _preds(10.0)},
                             {"seed": 1, "predictions": _preds(14.0)}],
                     "0": [{"seed": 0, "predictions": _preds(30.0)}]}}
    lines = C.caption_noise_tables(sec, tmp_path / "img")
    rows = [ln for ln in lines if ln.startswith("| ") and "---" not in ln][1:]
    assert [r.split(" | ")[0] for r in rows] == [
        "| 0 % (all four)", "| default: miss 15 %, wrong noun / merge / hallucinate 10 %",
        "| 40 % (all four)"]
    cells = rows[2].split(" | ")
    assert cells[1] == "0, 1" and cells[4] == "12.0 ± 2.0" and cells[5] == "11.0 ± 2.0 |"
    assert rows[0].split(" | ")[4] == "30.0"
    assert (tmp_path / "img" / "caption_noise.png").stat().st_size > 1000
    assert C.caption_noise_tables({"rates": {}}, None) == []


@pytest.mark.parametrize("rate, name", [(0.0, "bench_data_region_noise0"),
                                        (0.2, "bench_data_region_noise0.2")])
def test_noise_data_root_names(tmp_path, rate, name):
    assert C.noise_data_root(tmp_path, rate).name == name
