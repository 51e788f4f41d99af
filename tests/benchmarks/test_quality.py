"""Bookkeeping of the quality benchmark's results file (no training here)."""

from __future__ import annotations

import json

from benchmarks.quality import _keep_runs_on_disk


def _run(seed: int, steps: int = 250, hiou: float = 1.0) -> dict:
    return {"seed": seed, "config": "tiny/scannet_b15n4", "overrides": [], "steps": steps,
            "hIoU": hiou}


def test_runs_written_by_another_invocation_are_kept(tmp_path):
    proto = {"scenes": 30, "steps": 250}
    results = tmp_path / "results.json"
    disk = {"protocol": {**proto, "seeds": [0, 1]},
            "splits": {"B15/N4": [_run(0, hiou=5.0), _run(1)]},
            "ablations": {"no 3D-2D fusion": [_run(1)]},
            "budget": {"1000": [_run(0, steps=1000)]}}
    results.write_text(json.dumps({"quality": disk, "speed": {"x": 1}}))
    mine = {"protocol": {**proto, "seeds": [0]},
            "splits": {"B15/N4": [_run(0, hiou=7.0)]},
            "ablations": {"no 3D-2D fusion": [_run(0)]}, "budget": {}}
    _keep_runs_on_disk(results, mine, ("splits", "ablations", "budget"))
    # this process's own run of seed 0 wins; the other invocation's runs are added, in seed order
    assert [(r["seed"], r["hIoU"]) for r in mine["splits"]["B15/N4"]] == [(0, 7.0), (1, 1.0)]
    assert [r["seed"] for r in mine["ablations"]["no 3D-2D fusion"]] == [0, 1]
    assert mine["budget"] == {"1000": [_run(0, steps=1000)]}


def test_runs_of_another_protocol_are_not_mixed_in(tmp_path):
    results = tmp_path / "results.json"
    disk = {"protocol": {"scenes": 30, "steps": 100, "seeds": [0]},
            "splits": {"B15/N4": [_run(1, steps=100)]}, "ablations": {}, "budget": {}}
    results.write_text(json.dumps({"quality": disk}))
    mine = {"protocol": {"scenes": 30, "steps": 250, "seeds": [0]},
            "splits": {"B15/N4": [_run(0)]}, "ablations": {}, "budget": {}}
    _keep_runs_on_disk(results, mine, ("splits", "ablations", "budget"))
    assert mine["splits"] == {"B15/N4": [_run(0)]}


def test_budget_runs_take_the_first_budget_seeds_and_skip_finished_ones(tmp_path, monkeypatch):
    import benchmarks.quality as Q

    proto = Q.Protocol(steps=250, seeds=(0, 1))
    results = tmp_path / "results.json"
    done = {"config": Q.SPLIT_CONFIGS["B15/N4"], "overrides": [], "seed": 0, "steps": 1000}
    results.write_text(json.dumps({"quality": {
        "protocol": {**Q._protocol_key(proto), "seeds": [0, 1]},
        "splits": {}, "ablations": {}, "budget": {"1000": [done]}}}))
    seen = []
    monkeypatch.setattr(Q, "ensure_data", lambda root, p: root)
    monkeypatch.setattr(Q, "_pool", lambda tasks, **kw: seen.extend(tasks))
    Q.run_quality(tmp_path, results, proto=proto, splits=[], ablations=[], runs_dir=tmp_path,
                  budget=[1000, 500], budget_seeds=2)
    # seed-major, longest budget first within a seed; seed 0 of 1000 steps is already in the file
    assert [(t.steps, t.seed) for t in seen] == [(500, 0), (1000, 1), (500, 1)]
    seen.clear()
    Q.run_quality(tmp_path, results, proto=proto, splits=[], ablations=[], runs_dir=tmp_path,
                  budget=[1000], budget_seeds=1)
    assert seen == []                                  # the default: first seed only, done


def test_claim_rows_get_three_seeds_and_the_others_two(tmp_path, monkeypatch):
    import benchmarks.quality as Q

    proto = Q.Protocol(seeds=(0, 1))
    seen = []
    monkeypatch.setattr(Q, "ensure_data", lambda root, p: root)
    monkeypatch.setattr(Q, "_pool", lambda tasks, **kw: seen.extend(tasks))
    Q.run_quality(tmp_path, tmp_path / "results.json", proto=proto, splits=["B15/N4", "B12/N7"],
                  ablations=list(Q.ABLATIONS), runs_dir=tmp_path)
    seeds: dict[str, list[int]] = {}
    for t in seen:
        seeds.setdefault(t.name, []).append(t.seed)
    # the full model of the ablation table is the B15/N4 split row: trained once, 3 seeds
    assert seeds.pop("B15/N4") == [0, 1, 2] and seeds.pop("B12/N7") == [0, 1]
    assert not any(n.startswith("full") for n in seeds)
    for name, got in seeds.items():
        assert got == ([0, 1, 2] if name in Q.CLAIM_ROWS else [0, 1]), name
    assert {"condition: none", "no 3D-2D fusion", "view captions only (no region-caption "
            "contrast)"} <= set(seeds)
    # seed-major: every row's first seed comes before any row's second
    first_second = next(i for i, t in enumerate(seen) if t.seed == 1)
    assert all(t.seed == 0 for t in seen[:first_second]) and len(seen[:first_second]) == 10


def test_a_section_of_another_protocol_moves_to_quality_previous(tmp_path, monkeypatch):
    import benchmarks.quality as Q

    proto = Q.Protocol(steps=1100, seeds=(0, 1))
    results = tmp_path / "results.json"
    old = {"protocol": {"scenes": 30, "steps": 250, "seeds": [0, 1]},
           "splits": {"B15/N4": [_run(0), _run(1)]}, "ablations": {}, "budget": {}}
    results.write_text(json.dumps({"quality": old, "speed": {"x": 1}}))
    seen = []
    monkeypatch.setattr(Q, "ensure_data", lambda root, p: root)
    monkeypatch.setattr(Q, "_pool", lambda tasks, **kw: seen.extend(tasks))
    Q.run_quality(tmp_path, results, proto=proto, splits=["B12/N7"], ablations=[],
                  runs_dir=tmp_path)
    stored = json.loads(results.read_text())
    assert stored["quality_previous"] == old                 # kept, not dropped
    assert stored["quality"]["splits"] == {}                 # nothing of it counts as the new one
    assert stored["quality"]["protocol"]["steps"] == 1100 and stored["speed"] == {"x": 1}
    assert [(t.name, t.seed) for t in seen] == [("B12/N7", 0), ("B12/N7", 1)]
    # a second invocation under the new protocol leaves quality_previous alone
    Q.run_quality(tmp_path, results, proto=proto, splits=[], ablations=[], runs_dir=tmp_path)
    assert json.loads(results.read_text())["quality_previous"] == old
