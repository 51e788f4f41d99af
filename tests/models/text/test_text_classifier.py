"""Tests of TextClassifier: caches (memory, disk), synonyms, logits and caption embeddings."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from xmask3d.errors import ConfigError
from xmask3d.models.text.classifier import TextClassifier
from xmask3d.models.text.encoders import MiniLMTextEncoder, TextEncoder
from xmask3d.models.text.prompts import DEFAULT_TEMPLATES

BASIS = {"sofa": [1.0, 0.0, 0.0], "couch": [0.0, 1.0, 0.0], "bathtub": [0.0, 0.0, 1.0]}


class HashEncoder(TextEncoder):
    """Deterministic fake: a fixed vector for known words, a seeded one for any other text."""

    def __init__(self, name: str = "hash") -> None:
        self._name = name
        self.calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return 3

    @property
    def name(self) -> str:
        return self._name

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        rows = []
        for text in texts:
            if text in BASIS:
                rows.append(torch.tensor(BASIS[text]))
            else:
                seed = sum(ord(c) * (i + 1) for i, c in enumerate(text))
                rows.append(torch.randn(3, generator=torch.Generator().manual_seed(seed)))
        return F.normalize(torch.stack(rows), dim=-1) if rows else torch.zeros(0, 3)


def test_memory_cache_returns_same_object() -> None:
    encoder = HashEncoder()
    classifier = TextClassifier(encoder)
    first = classifier.class_embeddings(["chair", "sofa|couch"])
    assert classifier.class_embeddings(["chair", "sofa|couch"]) is first
    assert classifier.class_embeddings(["chair", ["sofa", "couch"]]) is first
    assert len(encoder.calls) == 1 and len(encoder.calls[0]) == 3 * len(DEFAULT_TEMPLATES)
    other = classifier.class_embeddings(["chair", "sofa|couch"], templates=False)
    assert other is not first and len(encoder.calls) == 2


def test_free_text_and_synonym_mean_values() -> None:
    classifier = TextClassifier(HashEncoder(), templates=False)
    out = classifier.class_embeddings(["sofa|couch", "bathtub"])
    torch.testing.assert_close(out, torch.tensor([[0.5**0.5, 0.5**0.5, 0.0], [0.0, 0.0, 1.0]]))
    query = classifier.class_embeddings(["something to sit on"])
    expected = HashEncoder().encode(["something to sit on"])
    torch.testing.assert_close(query, expected)


def test_logits_mean_and_max_synonyms() -> None:
    features = torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.0, 2.0]])
    names = ["sofa|couch", "bathtub"]
    mean = TextClassifier(HashEncoder(), templates=False).logits(features, names, scale=10.0)
    torch.testing.assert_close(mean, 10.0 * torch.tensor([[1.4 * 0.5**0.5, 0.0], [0.0, 1.0]]))
    best = TextClassifier(HashEncoder(), templates=False, synonym_reduce="max")
    torch.testing.assert_close(best.logits(features, names), torch.tensor([[0.8, 0.0], [0.0, 1.0]]))
    embeds, group = best.synonym_embeddings(names)
    assert embeds.shape == (3, 3) and group.tolist() == [0, 0, 1]
    assert best.logits(features[:, None], names).shape == (2, 1, 2)
    with pytest.raises(ConfigError, match="last dim 2"):
        best.logits(torch.ones(4, 2), names)


def test_disk_cache_round_trip(tmp_path: Path) -> None:
    names = ["chair", "sofa|couch", "table"]
    first = TextClassifier(HashEncoder(), cache_dir=tmp_path).class_embeddings(names)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".pt"  # no temp file left behind
    encoder = HashEncoder()
    again = TextClassifier(encoder, cache_dir=tmp_path).class_embeddings(names)
    assert encoder.calls == []
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    # Another encoder name gives another key, so another file.
    TextClassifier(HashEncoder("other"), cache_dir=tmp_path).class_embeddings(names)
    assert len(list(tmp_path.iterdir())) == 2


def test_corrupt_disk_cache_is_recomputed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    names = ["chair"]
    TextClassifier(HashEncoder(), cache_dir=tmp_path).class_embeddings(names)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not a torch file")
    encoder = HashEncoder()
    with caplog.at_level(logging.WARNING):
        out = TextClassifier(encoder, cache_dir=tmp_path).class_embeddings(names)
    assert "unreadable" in caplog.text and len(encoder.calls) == 1
    reread = TextClassifier(HashEncoder(), cache_dir=tmp_path).class_embeddings(names)
    torch.testing.assert_close(reread, out)


def test_encode_captions_cache() -> None:
    encoder = HashEncoder()
    classifier = TextClassifier(encoder, max_cached_captions=2)
    out = classifier.encode_captions(["a sofa", "sofa", "a sofa"])
    assert encoder.calls == [["a sofa", "sofa"]]
    torch.testing.assert_close(out[0], out[2])
    torch.testing.assert_close(out[1], torch.tensor(BASIS["sofa"]))
    classifier.encode_captions(["sofa", ""])  # "a sofa" is the least recently used: dropped
    classifier.encode_captions(["sofa", "a sofa"])
    assert encoder.calls == [["a sofa", "sofa"], [""], ["a sofa"]]
    assert classifier.encode_captions([]).shape == (0, 3)


def test_errors() -> None:
    classifier = TextClassifier(HashEncoder())
    for names, message in (([], "empty"), ([""], "empty class name"), ("chair", "one string")):
        with pytest.raises(ConfigError, match=message):
            classifier.class_embeddings(names)
    with pytest.raises(ConfigError, match="templates='defaults'"):
        classifier.class_embeddings(["chair"], templates="defaults")
    with pytest.raises(ConfigError, match="synonym_reduce"):
        TextClassifier(HashEncoder(), synonym_reduce="sum")


def test_minilm_class_embeddings_semantics() -> None:
    classifier = TextClassifier(MiniLMTextEncoder())
    names = ["chair", "sofa|couch", "bathtub", "toilet"]
    emb = classifier.class_embeddings(names)
    assert emb.shape == (4, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(4))
    sims = emb @ emb.T
    assert sims[0, 1] > sims[0, 2] and sims[2, 3] > sims[2, 0]
    query = classifier.logits(classifier.encode_captions(["a comfy couch"]), names)
    assert query.argmax().item() == 1
