"""Training checkpoints: atomic writes, safe loading, validation against the configuration.

A checkpoint is one ``torch.save`` dict marked with ``format = "xmask3d-checkpoint"`` holding the
model, optimiser and scheduler states, the RNG states of every rank, the epoch and step counters
and the resolved configuration. Everything is stored as tensors and plain Python values so that it
loads with ``torch.load(weights_only=True)``; a file is never unpickled freely.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xmask3d.config import XMask3DConfig, from_dict, to_dict
from xmask3d.data.processed import TORCH_LOAD_ERRORS, atomic_write
from xmask3d.errors import CheckpointError, ConfigError, first_line

__all__ = [
    "ARCHITECTURE_KEYS", "CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "architecture_diff",
    "capture_rng_state", "checkpoint_config", "export_model_checkpoint", "load_checkpoint",
    "load_model_state", "restore_rng_state", "save_checkpoint",
]

CHECKPOINT_FORMAT = "xmask3d-checkpoint"
CHECKPOINT_VERSION = 1
_REQUIRED = ("model", "config", "epoch", "step")

# Config fields that change the model's parameters; (section, excluded fields).
ARCHITECTURE_KEYS: dict[str, tuple[str, ...]] = {
    "backbone3d": ("backend",),
    "mask2d": ("sd_path", "sd_config_path", "freeze_unet", "timestep"),
    "text": ("clip_path", "templates", "cache_dir"),
    "fusion": ("uncovered", "base_ratio", "novel_ratio", "binary_thresh", "gating"),
}


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the format marker) to ``path`` atomically: temporary file, rename.

    Args:
        path: destination file.
        payload: at least ``model`` (state dict), ``config`` (``to_dict`` of the config),
            ``epoch`` and ``step``.

    Returns:
        The written path.
    """
    missing = [k for k in _REQUIRED if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    data = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(data, tmp))
    return path


def export_model_checkpoint(src: str | Path, dest: str | Path) -> Path:
    """A weights-only copy of a training checkpoint, for bundling or sharing.

    Keeps the model, the config, the epoch/step counters and the best-metric record; drops the
    optimiser, scheduler and RNG states (so it cannot be resumed from, only evaluated and used).

    Returns:
        ``dest``.
    """
    data = load_checkpoint(src)
    payload = {"model": data["model"], "config": to_dict(data["config"]),
               "epoch": data["epoch"], "step": data["step"]}
    if "best" in data:
        payload["best"] = data["best"]
    return save_checkpoint(dest, payload)


def load_checkpoint(path: str | Path, *,
                    expected_config: XMask3DConfig | None = None) -> dict[str, Any]:
    """Read and validate a checkpoint (on CPU, ``weights_only=True``).

    Args:
        path: the checkpoint file.
        expected_config: when given, the checkpoint's architecture fields must equal its own.

    Returns:
        The checkpoint dict, with ``"config"`` turned into an :class:`XMask3DConfig`.

    Raises:
        CheckpointError: missing, truncated, corrupt, foreign or mismatching file (the message
            names the file and the problem).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except TORCH_LOAD_ERRORS as exc:  # zip/pickle/unpickler errors on truncated/foreign bytes
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint, cannot be read "
                              f"({first_line(exc)})") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an xmask3d checkpoint (no "
                              f"format={CHECKPOINT_FORMAT!r} marker)")
    version = data.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version!r} is not supported "
                              f"(this xmask3d reads up to {CHECKPOINT_VERSION})")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks the entries {missing}")
    _check_entries(data, path)
    data["config"] = checkpoint_config(data["config"], path)
    if expected_config is not None:
        diff = architecture_diff(data["config"], expected_config)
        if diff:
            raise CheckpointError(f"{path}: the checkpoint's architecture differs from the "
                                  "config (checkpoint vs config):\n  " + "\n  ".join(diff))
    return data


def _check_entries(data: dict[str, Any], path: Path) -> None:
    """Types of the required entries: a ``{name: tensor}`` model, integer epoch and step."""
    model = data["model"]
    if not isinstance(model, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()):
        raise CheckpointError(f"{path}: the 'model' entry is not a {{name: tensor}} state dict")
    for key in ("epoch", "step"):
        value = data[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise CheckpointError(f"{path}: '{key}' is {value!r}, not a non-negative integer")


def checkpoint_config(raw: Any, path: str | Path) -> XMask3DConfig:
    """The configuration stored in a checkpoint, validated."""
    if isinstance(raw, XMask3DConfig):
        return raw
    try:
        return from_dict(XMask3DConfig, raw)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: the stored config is invalid ({exc})") from exc


def architecture_diff(saved: XMask3DConfig, current: XMask3DConfig) -> list[str]:
    """Architecture-relevant fields that differ, as ``"key: saved vs current"`` lines."""
    a, b = to_dict(saved), to_dict(current)
    lines = []
    for section, excluded in ARCHITECTURE_KEYS.items():
        for key in a[section]:
            if key in excluded or a[section][key] == b[section][key]:
                continue
            lines.append(f"{section}.{key}: {a[section][key]!r} vs {b[section][key]!r}")
    return lines


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor],
                     path: str | Path) -> None:
    """Load a model state dict strictly; missing/unexpected keys or shape changes raise.

    Raises:
        CheckpointError: naming ``path`` and the first offending parameters.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
        if items:
            problems.append(f"{len(items)} {label} (e.g. {', '.join(items[:3])})")
    if problems:
        raise CheckpointError(f"{path}: model weights do not fit this model: "
                              + "; ".join(problems))
    model.load_state_dict(state)


def capture_rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The Python, NumPy, torch (CPU, CUDA) and named generator states, as tensors and numbers."""
    py_version, py_state, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": int(py_version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "cached": float(np_cached)},
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    return state


def restore_rng_state(state: dict[str, Any],
                      generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of :func:`capture_rng_state` (generators are restored in place)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, gen in (generators or {}).items():
        if name not in state.get("generators", {}):
            raise CheckpointError(f"the checkpoint has no state for generator {name!r}")
        gen.set_state(state["generators"][name])
