"""Tests of the synthetic dense captioner: boxes, phrases, error rates, determinism, files, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from xmask3d.data.processed import ProcessedLayout
from xmask3d.data.projection import resize_view
from xmask3d.data.regions import Region
from xmask3d.data.synth.captions import SYNONYMS, _plural
from xmask3d.data.synth.cli import add_parser
from xmask3d.data.synth.regions import RegionNoise, make_regions
from xmask3d.errors import ConfigError, DataError

KINDS = ["chair", "sofa", "desk", "bookshelf", "toilet", "lamp", "bed", "table"]


def _grid_view(seed: int) -> tuple[np.ndarray, dict[int, str], dict[int, str]]:
    """A 120x200 view with a 4x5 grid of 20 objects (20x30 px each, 10 px gaps)."""
    rng = np.random.default_rng(seed)
    image = np.zeros((120, 200), dtype=np.int64)
    names, colors = {}, {}
    for k in range(20):
        r, c = divmod(k, 5)
        image[5 + 30 * r: 25 + 30 * r, 5 + 40 * c: 35 + 40 * c] = k + 1
        names[k + 1] = KINDS[int(rng.integers(len(KINDS)))]
        colors[k + 1] = "grey"
    return image, names, colors


def _words(name: str) -> set[str]:
    forms = SYNONYMS.get(name, (name,))
    return {w for s in forms + tuple(_plural(f) for f in forms) for w in s.split()}


def test_without_noise_every_object_gets_its_own_loose_box_and_name() -> None:
    image, names, colors = _grid_view(0)
    regions = make_regions(image, names, colors, "office", np.random.default_rng(1),
                           RegionNoise.uniform(0.0))
    assert sorted(i for r in regions for i in r.instances) == list(range(1, 21))
    for r in regions:
        (inst,) = r.instances
        rows, cols = np.nonzero(image == inst)
        exact = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        x0, y0, x1, y1 = r.region.box
        inter = max(0, min(x1, exact[2]) - max(x0, exact[0])) * max(
            0, min(y1, exact[3]) - max(y0, exact[1]))
        union = r.region.area + (exact[2] - exact[0]) * (exact[3] - exact[1]) - inter
        assert r.region.box != tuple(float(v) for v in exact)     # never the exact extent
        assert inter / union > 0.6
        assert _words(names[inst]) & set(r.region.caption.split()), r.region.caption
        assert not r.wrong_noun


def test_small_and_structural_things_are_not_captioned() -> None:
    image = np.zeros((100, 100), dtype=np.int64)
    image[:50] = 1                       # a ceiling
    image[60:62, 60:62] = 2              # 4 pixels: below min_area
    image[70:90, 10:40] = 3
    regions = make_regions(image, {1: "ceiling", 2: "cup", 3: "desk"}, {}, "office",
                           np.random.default_rng(0), RegionNoise.uniform(0.0))
    assert [r.instances for r in regions] == [(3,)]


def test_error_rates_roughly_hold() -> None:
    noise = RegionNoise(miss=0.2, wrong_noun=0.15, merge=0.25, hallucinate=0.1)
    objects = kept = groups = merged = wrong = hallucinated = 0
    for seed in range(150):
        image, names, colors = _grid_view(seed)
        regions = make_regions(image, names, colors, "office", np.random.default_rng(seed), noise)
        real = [r for r in regions if r.instances]
        objects += 20
        kept += sum(len(r.instances) for r in real)
        groups += len(real)
        merged += sum(len(r.instances) == 2 for r in real)
        wrong += sum(r.wrong_noun for r in real)
        hallucinated += len(regions) - len(real)
        for r in real:
            if not r.wrong_noun and len(set(names[i] for i in r.instances)) == 1:
                assert _words(names[r.instances[0]]) & set(r.region.caption.split())
    # 3000 objects, ~2000 regions: binomial standard deviations are about 0.01
    assert 0.15 < 1 - kept / objects < 0.25
    assert 0.10 < wrong / groups < 0.20
    assert 0.15 < merged / groups < 0.30     # a merge also removes the neighbour's own region
    assert 0.06 < hallucinated / groups < 0.14


def test_same_seed_same_regions_and_rates_are_validated() -> None:
    image, names, colors = _grid_view(3)
    a = make_regions(image, names, colors, "bedroom", np.random.default_rng(5))
    b = make_regions(image, names, colors, "bedroom", np.random.default_rng(5))
    assert [r.region for r in a] == [r.region for r in b]
    with pytest.raises(ConfigError, match="--region-merge"):
        RegionNoise(merge=1.5).validate()


def test_dataset_files_hold_only_boxes_and_phrases(tiny_root, tiny_config) -> None:
    data = json.loads((tiny_root / "region_captions.json").read_text())
    layout = ProcessedLayout(tiny_root)
    assert len(data) == tiny_config.scenes
    n = 0
    for scene, frames in data.items():
        assert sorted(frames) == layout.frame_names(scene)
        for frame, regions in frames.items():
            view = layout.load_view(scene, frame)
            assert [r.caption for r in view.regions] == [r["caption"] for r in regions]
            for r in regions:
                assert set(r) == {"box", "caption"} and isinstance(r["caption"], str)
                n += 1
    assert n >= tiny_config.scenes * tiny_config.views


def test_cli_region_noise_options(tmp_path) -> None:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["synth", "--out", str(tmp_path / "o"), "--scenes", "1", "--views",
                              "1", "--density", "40", "--no-progress", "--region-noise", "0.4",
                              "--region-miss", "0"])
    assert args.func(args) == 0
    meta = json.loads((tmp_path / "o" / "synth_meta" / "dataset.json").read_text())
    assert meta["config"]["region_noise"] == {**RegionNoise.uniform(0.4).__dict__, "miss": 0.0}
    args = parser.parse_args(["synth", "--out", str(tmp_path / "o"), "--overwrite",
                              "--region-hallucinate", "2"])
    with pytest.raises(ConfigError, match="--region-hallucinate"):
        args.func(args)


def test_layout_checks_boxes_and_resizing_scales_them(tiny_root, tmp_path) -> None:
    layout = ProcessedLayout(tiny_root)
    scene = layout.scene_names("train")[0]
    frame = layout.frame_names(scene)[0]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({scene: {frame: [{"box": [32, 24, 64, 48], "caption": "a lamp"}]}}))
    view = ProcessedLayout(tiny_root, region_captions_file=path).load_view(scene, frame)
    assert view.regions == [Region((32.0, 24.0, 64.0, 48.0), "a lamp")]
    assert resize_view(view, (120, 160)).regions == [Region((16.0, 12.0, 32.0, 24.0), "a lamp")]
    path.write_text(json.dumps({scene: {frame: [{"box": [0, 0, 400, 10], "caption": "a lamp"}]}}))
    with pytest.raises(DataError, match=r"mine\.json: .* region 0: box .* out of range"):
        ProcessedLayout(tiny_root, region_captions_file=path).load_view(scene, frame)
