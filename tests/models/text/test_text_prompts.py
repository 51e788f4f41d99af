"""Tests of prompt templates, synonym parsing and template-averaged phrase embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
import torch.nn.functional as F

from xmask3d.errors import ConfigError
from xmask3d.models.text.encoders import TextEncoder
from xmask3d.models.text.prompts import (
    DEFAULT_TEMPLATES,
    embed_phrases,
    expand_prompts,
    mean_over_groups,
    parse_class_names,
    resolve_templates,
)


class TableEncoder(TextEncoder):
    """Looks each text up in a fixed table (then normalises), recording every call."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return len(next(iter(self.table.values())))

    @property
    def name(self) -> str:
        return "table"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        return F.normalize(torch.tensor([self.table[t] for t in texts]), dim=-1)


def test_default_templates() -> None:
    assert 8 <= len(DEFAULT_TEMPLATES) <= 16
    assert all(t.count("{}") == 1 for t in DEFAULT_TEMPLATES)
    assert len(set(DEFAULT_TEMPLATES)) == len(DEFAULT_TEMPLATES)
    assert "there is a chair in the room." in expand_prompts("chair", DEFAULT_TEMPLATES)


def test_resolve_templates() -> None:
    assert resolve_templates(True) == DEFAULT_TEMPLATES
    assert resolve_templates(False) == () and resolve_templates(None) == ()
    assert resolve_templates(["a {}", "the {}"]) == ("a {}", "the {}")
    for bad in (["no slot"], ["{} and {}"], [], "a {}"):
        with pytest.raises(ConfigError, match="templates"):
            resolve_templates(bad)


def test_parse_class_names() -> None:
    parsed = parse_class_names(["chair", " sofa | couch ", ["bath tub", "bathtub"]])
    assert parsed == (("chair",), ("sofa", "couch"), ("bath tub", "bathtub"))
    cases = [
        ([], "empty"),
        ([""], "names\\[0\\]"),
        (["a", "b||c"], "names\\[1\\]"),
        (["ok", 3], "names\\[1\\]"),
        ("chair", "one string"),
        ([["a", ""]], "empty"),
    ]
    for names, message in cases:
        with pytest.raises(ConfigError, match=message):
            parse_class_names(names)


def test_expand_prompts() -> None:
    assert expand_prompts("something to sit on", ()) == ["something to sit on"]
    assert expand_prompts("a {b}", ["x {} y"]) == ["x a {b} y"]


def test_embed_phrases_averages_templates_then_normalises() -> None:
    table = {"A chair": [3.0, 4.0, 0.0], "B chair": [0.0, 0.0, 2.0], "A desk": [1.0, 0.0, 0.0],
             "B desk": [1.0, 0.0, 0.0]}  # fmt: skip
    encoder = TableEncoder(table)
    out = embed_phrases(encoder, ["chair", "desk"], templates=["A {}", "B {}"])
    assert len(encoder.calls) == 1  # one batched call
    # chair: mean of (0.6, 0.8, 0) and (0, 0, 1) = (0.3, 0.4, 0.5), norm sqrt(0.5).
    expected = torch.tensor([[0.3, 0.4, 0.5], [1.0, 0.0, 0.0]])
    expected[0] /= 0.5**0.5
    torch.testing.assert_close(out, expected)


def test_mean_over_groups() -> None:
    embeds = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    out = mean_over_groups(embeds, torch.tensor([0, 0, 1]), 2)
    torch.testing.assert_close(out, torch.tensor([[0.5**0.5, 0.5**0.5], [0.0, -1.0]]))
