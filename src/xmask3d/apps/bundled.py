"""The checkpoint a command runs: the bundled one or ``--ckpt``, found without importing torch.

The command line checks that the file is there (and says how to get the bundled one) before any
model code is imported, so that a wrong path is refused at once; reading and validating the
checkpoint stays with :func:`xmask3d.engine.checkpoint.load_checkpoint`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from xmask3d.data.processed import torch_file_problem
from xmask3d.errors import CheckpointError

__all__ = ["DEFAULT_CHECKPOINT", "checkpoint_file", "default_checkpoint"]

DEFAULT_CHECKPOINT = "tiny_synthetic.pt"   # in xmask3d/resources, written by `make checkpoint`


def default_checkpoint() -> Path:
    """The bundled tiny checkpoint (it may not exist in a fresh checkout)."""
    return Path(str(resources.files("xmask3d").joinpath("resources", DEFAULT_CHECKPOINT)))


def checkpoint_file(ckpt: str | Path | None) -> Path:
    """The checkpoint file to load: ``ckpt``, or the bundled one for ``None``.

    Raises:
        CheckpointError: the bundled checkpoint does not exist yet (says how to make it), or
            ``ckpt`` is missing, a folder, empty, or not (or no longer) a whole torch file.
    """
    if ckpt is None:
        path = default_checkpoint()
        if not path.is_file():
            raise CheckpointError(
                f"{path}: the bundled checkpoint does not exist yet; create it with "
                "`make checkpoint` (trains the tiny model on synthetic rooms) or pass --ckpt")
        return path
    path = Path(ckpt)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the checkpoint file is empty (0 bytes)")
    problem = torch_file_problem(path)
    if problem:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint, cannot be read "
                              f"({problem})")
    return path
