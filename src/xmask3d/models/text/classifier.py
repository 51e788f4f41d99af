"""Cached class and caption text embeddings, and cosine logits against a vocabulary.

Follows method.md §2.8 (class text embeddings, normalised on use; caption embeddings) with the
prompt-template ensemble of decisions.md §5 item 22.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F

from xmask3d.errors import ConfigError
from xmask3d.models.text.encoders import TextEncoder
from xmask3d.models.text.prompts import (
    embed_phrases,
    mean_over_groups,
    parse_class_names,
    resolve_templates,
)

logger = logging.getLogger(__name__)

SynonymReduce = Literal["mean", "max"]
Templates = bool | Sequence[str] | None
_CACHE_FORMAT = 1


class TextClassifier:
    """Class embeddings for any vocabulary, cached in memory and optionally on disk.

    A class may have synonyms (``"sofa|couch"`` or ``["sofa", "couch"]``). Each phrase is
    embedded as the normalised mean over the prompt templates. Synonyms are combined either
    by ``"mean"`` (mean of the phrase embeddings, renormalised: one vector per class) or by
    ``"max"`` (each synonym keeps its vector; :meth:`logits` takes the best synonym per class,
    as ODISE's ensemble does).

    Returned tensors are shared with the cache: do not modify them in place.

    Args:
        encoder: the frozen text encoder.
        templates: default templates (see :func:`resolve_templates`); ``True`` = defaults.
        synonym_reduce: ``"mean"`` or ``"max"``; how :meth:`logits` combines synonyms.
        cache_dir: folder for ``.pt`` files of class embeddings; ``None`` for memory only.
        max_cached_captions: caption embeddings kept in memory (least recently used dropped).
    """

    def __init__(
        self,
        encoder: TextEncoder,
        *,
        templates: Templates = True,
        synonym_reduce: SynonymReduce = "mean",
        cache_dir: str | Path | None = None,
        max_cached_captions: int = 100_000,
    ) -> None:
        if synonym_reduce not in ("mean", "max"):
            raise ConfigError(f"synonym_reduce={synonym_reduce!r}: expected 'mean' or 'max'")
        self.encoder = encoder
        self.templates = resolve_templates(templates)
        self.synonym_reduce = synonym_reduce
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.max_cached_captions = max_cached_captions
        self._memory: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._captions: OrderedDict[str, torch.Tensor] = OrderedDict()

    @property
    def dim(self) -> int:
        """Size of one embedding."""
        return self.encoder.dim

    def class_embeddings(
        self, names: Sequence[str | Sequence[str]], *, templates: Templates | str = "default"
    ) -> torch.Tensor:
        """One normalised embedding per class (synonyms averaged).

        Args:
            names: C class entries (see :func:`parse_class_names`).
            templates: ``"default"`` for this classifier's templates, else as in
                :func:`resolve_templates` (``False`` for free-text queries).

        Returns:
            (C, dim) float32, L2-normalised rows, on the CPU.
        """
        return self._lookup(names, templates, per_class=True)[0]

    def synonym_embeddings(
        self, names: Sequence[str | Sequence[str]], *, templates: Templates | str = "default"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One normalised embedding per synonym, with the class each belongs to.

        Args:
            names: C class entries.
            templates: as in :meth:`class_embeddings`.

        Returns:
            (S, dim) float32 embeddings and (S,) long class index in [0, C).
        """
        return self._lookup(names, templates, per_class=False)

    def logits(
        self,
        features: torch.Tensor,
        names: Sequence[str | Sequence[str]],
        *,
        templates: Templates | str = "default",
        scale: float = 1.0,
    ) -> torch.Tensor:
        """Scaled cosine similarity of features to every class.

        Args:
            features: (..., dim) features in the text space (normalised here).
            names: C class entries.
            templates: as in :meth:`class_embeddings`.
            scale: multiplies the cosine (a logit scale / inverse temperature).

        Returns:
            (..., C) logits on ``features.device``; with ``synonym_reduce="max"`` the best
            synonym of each class.
        """
        if features.shape[-1] != self.dim:
            raise ConfigError(f"features: last dim {features.shape[-1]} != text dim {self.dim}")
        features = F.normalize(features, dim=-1)
        if self.synonym_reduce == "mean":
            text = self.class_embeddings(names, templates=templates).to(features)
            return scale * features @ text.T
        text, group = self.synonym_embeddings(names, templates=templates)
        sims = features @ text.to(features).T  # (..., S)
        num_classes = int(group.max()) + 1
        index = group.to(features.device).expand(*sims.shape[:-1], -1)
        best = sims.new_full((*sims.shape[:-1], num_classes), float("-inf"))
        best = best.scatter_reduce(-1, index, sims, reduce="amax")
        return scale * best

    def encode_captions(self, captions: Sequence[str]) -> torch.Tensor:
        """Embed free-text captions as they are (no templates), with an in-memory cache.

        Args:
            captions: N strings (an empty caption is allowed).

        Returns:
            (N, dim) float32, L2-normalised rows, on the CPU.
        """
        if isinstance(captions, str):
            raise ConfigError(f"captions: expected a list of strings, got one string {captions!r}")
        captions = list(captions)
        missing = list(dict.fromkeys(c for c in captions if c not in self._captions))
        if missing:
            for caption, row in zip(missing, self.encoder.encode(missing), strict=True):
                self._captions[caption] = row
        if not captions:
            return torch.zeros(0, self.dim)
        rows = []
        for caption in captions:
            self._captions.move_to_end(caption)
            rows.append(self._captions[caption])
        while len(self._captions) > self.max_cached_captions:
            self._captions.popitem(last=False)
        return torch.stack(rows)

    def _lookup(
        self, names: Sequence[str | Sequence[str]], templates: Templates | str, *, per_class: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(templates, str) and templates != "default":
            raise ConfigError(f"templates={templates!r}: expected 'default', a bool or a list")
        vocab = parse_class_names(names)
        temps = self.templates if isinstance(templates, str) else resolve_templates(templates)
        key = (self.encoder.name, vocab, temps, "class" if per_class else "synonym")
        if key not in self._memory:
            self._memory[key] = self._load_or_compute(key, vocab, temps, per_class=per_class)
        return self._memory[key]

    def _load_or_compute(
        self,
        key: tuple,
        vocab: tuple[tuple[str, ...], ...],
        temps: tuple[str, ...],
        *,
        per_class: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        path = None
        if self.cache_dir is not None:
            path = self.cache_dir / f"text-{hashlib.sha256(repr(key).encode()).hexdigest()[:32]}.pt"
            cached = _read_cache(path, key)
            if cached is not None:
                return cached
        phrases = [phrase for synonyms in vocab for phrase in synonyms]
        group = torch.tensor([c for c, synonyms in enumerate(vocab) for _ in synonyms])
        embeds = embed_phrases(self.encoder, phrases, templates=temps)
        if per_class:
            embeds, group = mean_over_groups(embeds, group, len(vocab)), torch.arange(len(vocab))
        if path is not None:
            _write_cache(path, key, embeds, group)
        return embeds, group


def _read_cache(path: Path, key: tuple) -> tuple[torch.Tensor, torch.Tensor] | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        ok = isinstance(blob, dict) and blob.get("format") == _CACHE_FORMAT
        if ok and blob.get("key") == repr(key):
            return blob["embeddings"], blob["index"]
        logger.warning("text cache %s belongs to another key; recomputing", path)
    except (OSError, RuntimeError, EOFError, ValueError, KeyError, pickle.UnpicklingError) as err:
        logger.warning("text cache %s is unreadable (%s); recomputing", path, err)
    return None


def _write_cache(path: Path, key: tuple, embeds: torch.Tensor, index: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": _CACHE_FORMAT, "key": repr(key), "embeddings": embeds, "index": index}
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(blob, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
