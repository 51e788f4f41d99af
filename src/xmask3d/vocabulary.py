"""Class vocabularies: entries with synonyms (``"sofa|couch"``), parsed without importing torch.

The first phrase of an entry is its display name (legends, JSON, summaries); every phrase is
embedded (see :mod:`xmask3d.models.text.prompts`).
"""

from __future__ import annotations

from collections.abc import Sequence

from xmask3d.errors import ConfigError

__all__ = ["SYNONYM_SEPARATOR", "display_names", "parse_class_names"]

SYNONYM_SEPARATOR = "|"


def parse_class_names(names: Sequence[str | Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    """Split a vocabulary into per-class synonym tuples.

    Args:
        names: C entries; each is ``"name"``, ``"name|synonym|..."`` or a list of synonyms.

    Returns:
        C tuples of stripped, non-empty phrases (the first one is the display name).
    """
    if isinstance(names, str):
        raise ConfigError(f"class names: expected a list of names, got one string {names!r}")
    entries = list(names)
    if not entries:
        raise ConfigError("class names: the vocabulary is empty")
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            parts = entry.split(SYNONYM_SEPARATOR)
        elif isinstance(entry, Sequence) and all(isinstance(p, str) for p in entry):
            parts = list(entry)
        else:
            raise ConfigError(f"class names[{i}]={entry!r}: expected a string or a list of strings")
        phrases = tuple(p.strip() for p in parts)
        if not phrases or any(not p for p in phrases):
            raise ConfigError(f"class names[{i}]={entry!r}: empty class name or synonym")
        out.append(phrases)
    return tuple(out)


def display_names(names: Sequence[str | Sequence[str]]) -> list[str]:
    """The display name (first phrase) of every entry: ``["sofa|couch"]`` -> ``["sofa"]``."""
    return [phrases[0] for phrases in parse_class_names(names)]
