"""What a person watches during a run: a JSONL log of every logged step and TensorBoard scalars.

TensorBoard is optional: scalars are written when ``torch.utils.tensorboard`` can be imported
(the ``tensorboard`` package is installed), and silently skipped otherwise.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from xmask3d.data.processed import atomic_write
from xmask3d.engine.plots import read_jsonl

__all__ = ["RunLog"]

logger = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
    return value


class RunLog:
    """Appends records ``{"kind", "step", "epoch", ...}`` to ``<out_dir>/log.jsonl``.

    Args:
        out_dir: the run folder.
        enabled: write anything at all (only rank 0 logs).
        tensorboard: also write TensorBoard scalars ``<kind>/<key>`` when available.
    """

    def __init__(self, out_dir: str | Path, *, enabled: bool = True,
                 tensorboard: bool = True) -> None:
        self.path = Path(out_dir) / "log.jsonl"
        self.enabled = enabled
        self._writer = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                self._writer = self._open_tensorboard(Path(out_dir) / "tensorboard")

    @staticmethod
    def _open_tensorboard(folder: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.info("tensorboard is not installed: scalars go to log.jsonl only")
            return None
        return SummaryWriter(log_dir=str(folder))

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run recomputes them)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in read_jsonl(self.path) if int(r.get("step", 0)) <= step]
        text = "".join(json.dumps(r) + "\n" for r in kept)
        atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))

    def write(self, kind: str, *, step: int, epoch: int, values: dict[str, Any]) -> None:
        """Append one record and its numeric values as TensorBoard scalars."""
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, "epoch": epoch,
                  **{k: _jsonable(v) for k, v in values.items()}}
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._writer.add_scalar(f"{kind}/{key}", value, step)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
