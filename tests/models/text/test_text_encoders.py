"""Tests of the text encoders: offline MiniLM semantics and the CLIP text tower checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTokenizer

from xmask3d.errors import ConfigError
from xmask3d.models.text import encoders
from xmask3d.models.text.encoders import (
    CLIPTextEncoder,
    MiniLMTextEncoder,
    build_text_encoder,
)

WORDS = ["a", "chair", "sofa", "table", "on", "the", "floor", "red"]


def _tiny_bpe(folder: Path) -> tuple[Path, Path, int]:
    """Write a tiny CLIP-style vocab.json/merges.txt: letters, whole words, two specials."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {c: i for i, c in enumerate(letters)}
    vocab.update({f"{c}</w>": len(vocab) + i for i, c in enumerate(letters)})
    merges = []
    for word in WORDS:
        current = word[0]
        for k, char in enumerate(word[1:], start=1):
            right = char + ("</w>" if k == len(word) - 1 else "")
            merges.append(f"{current} {right}")
            current += right
            vocab.setdefault(current, len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    return folder / "vocab.json", folder / "merges.txt", len(vocab)


def _tiny_clip(tmp_path: Path, seed: int = 0) -> tuple[CLIPTextEncoder, int]:
    vocab_file, merges_file, size = _tiny_bpe(tmp_path / "bpe")
    config = CLIPTextConfig(
        vocab_size=size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=16, projection_dim=16,
        bos_token_id=size - 2, eos_token_id=size - 1, pad_token_id=size - 1,
    )  # fmt: skip
    torch.manual_seed(seed)
    encoder = CLIPTextEncoder.from_config(
        config, vocab_file=vocab_file, merges_file=merges_file, expected_vocab_size=size
    )
    return encoder, size


@pytest.fixture(scope="module")
def minilm() -> MiniLMTextEncoder:
    return MiniLMTextEncoder()


def test_minilm_shape_norm_and_determinism(minilm: MiniLMTextEncoder) -> None:
    texts = ["chair", "a photo of a sofa in a room.", "bathtub"]
    first = minilm.encode(texts)
    assert first.shape == (3, 384) and first.dtype == torch.float32 and minilm.dim == 384
    torch.testing.assert_close(first.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(minilm.encode(texts), first, rtol=0, atol=1e-6)
    assert not first.requires_grad
    # Batching with a longer text (padding) must not change an embedding.
    alone = minilm.encode(["chair"])
    torch.testing.assert_close(alone[0], first[0], rtol=0, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_minilm_matches_sentence_transformers(minilm: MiniLMTextEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    texts = ["chair", "a photo of a sofa in a room.", "there is a bathtub in the room."]
    model = st.SentenceTransformer(str(encoders._minilm_default_path()), device="cpu")
    reference = torch.from_numpy(model.encode(texts, normalize_embeddings=True))
    torch.testing.assert_close(minilm.encode(texts), reference, rtol=0, atol=1e-5)


def test_minilm_semantics(minilm: MiniLMTextEncoder) -> None:
    chair, sofa, bathtub, toilet = minilm.encode(["chair", "sofa", "bathtub", "toilet"])
    assert chair @ sofa > chair @ bathtub + 0.2
    assert bathtub @ toilet > bathtub @ chair + 0.1


def test_minilm_loaded_once_per_process(minilm: MiniLMTextEncoder) -> None:
    minilm.encode(["x"])
    other = MiniLMTextEncoder()
    assert other._components()[1] is minilm._components()[1]
    assert other.name == minilm.name and "minilm" in minilm.name


def test_minilm_rejects_placeholder_tokenizer(tmp_path: Path) -> None:
    # A model folder whose vocab.txt lost its words: transformers returns a tiny tokenizer.
    source = encoders._minilm_default_path()
    for name in ("config.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, tmp_path / name)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nchair\n")
    with pytest.raises(ConfigError, match="only 6 tokens"):
        MiniLMTextEncoder(model_path=tmp_path).encode(["chair"])


def test_minilm_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        MiniLMTextEncoder(model_path=tmp_path / "nope")


def test_encode_rejects_a_single_string(minilm: MiniLMTextEncoder) -> None:
    with pytest.raises(ConfigError, match="one string"):
        minilm.encode("chair")


def test_clip_random_encoder_values(tmp_path: Path) -> None:
    encoder, _ = _tiny_clip(tmp_path)
    out = encoder.encode(["a chair", "a red sofa on the floor", "table"])
    assert out.shape == (3, 16) and encoder.dim == 16
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))
    # Causal attention + pooling at the end token: padding a short text changes nothing.
    torch.testing.assert_close(encoder.encode(["a chair"])[0], out[0], rtol=0, atol=1e-6)
    assert (out[0] - out[2]).abs().max() > 1e-3
    again, _ = _tiny_clip(tmp_path / "again")
    torch.testing.assert_close(again.encode(["a chair"]), out[:1], rtol=0, atol=1e-6)
    assert again.name == encoder.name
    assert _tiny_clip(tmp_path / "other", seed=1)[0].name != encoder.name


def test_clip_vocab_size_check(tmp_path: Path) -> None:
    vocab_file, merges_file, size = _tiny_bpe(tmp_path)
    config = CLIPTextConfig(vocab_size=size, hidden_size=8, intermediate_size=16,
                            num_hidden_layers=1, num_attention_heads=2, projection_dim=4)
    with pytest.raises(ConfigError, match=f"has {size} tokens, expected 49408"):
        CLIPTextEncoder.from_config(config, vocab_file=vocab_file, merges_file=merges_file)


def test_clip_from_local_folder(tmp_path: Path) -> None:
    encoder, size = _tiny_clip(tmp_path)
    folder = tmp_path / "clip"
    encoder._model.save_pretrained(folder)
    CLIPTokenizer(vocab=str(tmp_path / "bpe/vocab.json"), merges=str(tmp_path / "bpe/merges.txt")
                  ).save_pretrained(folder)  # fmt: skip
    loaded = CLIPTextEncoder(folder, expected_vocab_size=size)
    texts = ["a chair", "the floor"]
    torch.testing.assert_close(loaded.encode(texts), encoder.encode(texts), rtol=0, atol=1e-6)
    assert str(folder.resolve()) in loaded.name


def test_clip_folder_without_tokenizer_files_is_the_2_token_trap(tmp_path: Path) -> None:
    encoder, size = _tiny_clip(tmp_path)
    folder = tmp_path / "weights-only"
    encoder._model.save_pretrained(folder)
    with pytest.raises(ConfigError, match=f"has 2 tokens, expected {size}"):
        CLIPTextEncoder(folder, expected_vocab_size=size)
    with pytest.raises(ConfigError, match="does not exist"):
        CLIPTextEncoder(tmp_path / "missing")


def test_build_text_encoder(tmp_path: Path) -> None:
    assert isinstance(build_text_encoder("minilm"), MiniLMTextEncoder)
    with pytest.raises(ConfigError, match="needs path"):
        build_text_encoder("clip")
    with pytest.raises(ConfigError, match="unknown text encoder kind 'bert'"):
        build_text_encoder("bert")
    with pytest.raises(ConfigError, match="does not exist"):
        build_text_encoder("clip", str(tmp_path / "nope"))
