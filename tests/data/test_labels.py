"""Label id mappings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xmask3d.data.labels import (
    SCANNET20_NAMES,
    load_label_tsv,
    nyu40_to_scannet20,
    raw_to_scannet200,
    scannet20_to_nyu40,
    scannet200_names,
    scannet200_raw_ids,
)
from xmask3d.errors import DataError

META = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "meta"


def test_nyu40_mapping_hand_cases():
    ids = np.array([0, 1, 2, 13, 14, 16, 24, 39, 40, 255, 1000])
    assert nyu40_to_scannet20(ids).tolist() == [255, 0, 1, 255, 12, 13, 14, 19, 255, 255, 255]
    assert scannet20_to_nyu40(np.arange(20)).tolist()[-3:] == [34, 36, 39]
    assert scannet20_to_nyu40(np.array([255])).tolist() == [0]


def test_scannet200_mapping():
    raw = scannet200_raw_ids()
    assert len(raw) == 200 and len(set(raw)) == 200
    assert raw_to_scannet200(np.array([raw[0], raw[199], 999999, -1])).tolist() == [0, 199, 255,
                                                                                     255]
    assert scannet200_names()[:3] == ("wall", "chair", "floor")


def test_rejects_fractional_ids():
    with pytest.raises(DataError, match="whole numbers"):
        nyu40_to_scannet20(np.array([1.5]))


@pytest.mark.skipif(not META.is_dir(), reason="../shared/data/real/meta not present")
def test_against_shared_meta():
    d = json.loads((META / "scannet_class_lists.json").read_text())
    assert tuple(d["scannet20"]["names"]) == SCANNET20_NAMES
    assert tuple(d["scannet200"]["raw_ids"]) == scannet200_raw_ids()
    tsv = load_label_tsv(META / "scannetv2-labels.combined.tsv")
    assert tsv["chair"] == (2, 5)
    assert set(scannet200_raw_ids()) <= {v[0] for v in tsv.values()}


def test_tsv_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_label_tsv(tmp_path / "missing.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(DataError, match="columns"):
        load_label_tsv(bad)
