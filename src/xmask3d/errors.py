"""Exceptions with messages that name the offending file and the problem."""

from __future__ import annotations

from pathlib import Path


class XMask3DError(Exception):
    """Base class of every error this package raises on purpose."""


class DataError(XMask3DError, ValueError):
    """Malformed or inconsistent input data.

    Args:
        path: the file (or folder) at fault, or ``None`` when the data came from memory.
        problem: what is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class ConfigError(XMask3DError, ValueError):
    """An invalid configuration (unknown key, wrong type, inconsistent values)."""


class CheckpointError(XMask3DError, ValueError):
    """A checkpoint that is corrupt, truncated or does not match the configuration."""


def first_line(exc: BaseException) -> str:
    """``"TypeName: first sentence of the message"`` (at most 200 characters of it)."""
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    line, cut = text[0], text[0].find(". ")
    return f"{type(exc).__name__}: {line[:cut + 1] if 0 < cut < 200 else line[:200]}"
