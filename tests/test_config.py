"""Typed configs: every packaged YAML loads, unknown keys and bad values are rejected."""

from __future__ import annotations

import pytest

from xmask3d.config import (
    XMask3DConfig,
    from_dict,
    load_config,
    packaged_config_dir,
    parse_override,
    save_config,
    to_dict,
)
from xmask3d.errors import ConfigError

ALL = sorted(p.relative_to(packaged_config_dir()).as_posix()
             for p in packaged_config_dir().rglob("*.yaml"))


def test_fourteen_split_configs_plus_bases():
    splits = [p for p in ALL if not p.endswith("base.yaml")]
    assert len(splits) == 14


@pytest.mark.parametrize("name", ALL)
def test_every_packaged_config_loads(name):
    cfg = load_config(name)
    assert isinstance(cfg, XMask3DConfig)
    if name.startswith("tiny/") and name != "tiny/base.yaml":
        assert cfg.mask2d.num_queries < 50 and cfg.text.encoder == "minilm"
        full = load_config(name.replace("tiny/", "").replace("_", "/", 1))
        assert full.data.split == cfg.data.split
        assert full.loss.binary == cfg.loss.binary
        assert full.mask2d.decoder_layers == 9 and full.mask2d.num_queries == 50


def test_split_specific_values():
    assert load_config("scannet/b10n9").fusion.novel_ratio == 0.2
    assert load_config("scannet200/b170n30").loss.alignment_start_epoch == 75
    assert load_config("tiny/scannet_b12n7").loss.binary_pos_weight == 0.583


def test_unknown_and_mistyped_keys():
    with pytest.raises(ConfigError, match="unknown config key.*mask2d.num_querys"):
        load_config("tiny/base", ["mask2d.num_querys=3"])
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        load_config("tiny/base", ["train.epochs=1.5"])
    with pytest.raises(ConfigError, match="data.split"):
        load_config("tiny/base", ["data.split=scannet_b1n1"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no/such/config")


def test_overrides_and_round_trip(tmp_path):
    assert parse_override("train.lr=2e-4") == {"train": {"lr": 2e-4}}
    cfg = load_config("tiny/base", ["train.lr=2e-4", "data.image_hw=[60, 80]",
                                    "fusion.enabled=false"])
    assert cfg.train.lr == 2e-4 and cfg.data.image_hw == [60, 80] and not cfg.fusion.enabled
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert to_dict(again) == to_dict(cfg)
    assert from_dict(XMask3DConfig, to_dict(cfg)) == cfg


def test_inheritance_from_user_file(tmp_path):
    (tmp_path / "mine.yaml").write_text("base: tiny/scannet_b15n4\ntrain:\n  epochs: 3\n")
    cfg = load_config(tmp_path / "mine.yaml")
    assert cfg.train.epochs == 3 and cfg.data.split == "scannet_b15n4"
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "bad.yaml")
