"""Reading the optional JSON side files of a dataset (captions, region captions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xmask3d.errors import DataError, first_line

__all__ = ["read_json"]


def read_json(path: str | Path) -> Any:
    """The parsed JSON of ``path`` (which the caller has checked exists).

    Raises:
        DataError: (naming the file) not UTF-8 or not valid JSON.
    """
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DataError(path, f"invalid JSON ({first_line(exc)})") from exc
