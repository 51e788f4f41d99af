"""Offline loading of Stable Diffusion v1.x UNet / VAE weights and their architecture configs.

Follows method.md §2.3 and dependencies.md §4: a diffusers-format folder is read with
``from_pretrained(..., local_files_only=True)``; an original single-file checkpoint
(``.ckpt``/``.safetensors``) is read safely (``weights_only=True`` / safetensors), converted with
diffusers' LDM-to-diffusers key mapping and loaded strictly, so that missing weights are an error
instead of silently random. Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import Tensor, nn

from xmask3d.errors import DataError

__all__ = [
    "load_sd_empty_context",
    "load_sd_unet",
    "load_sd_vae",
    "sd15_unet_config",
    "sd15_vae_config",
    "tiny_unet_config",
]

logger = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".bin")
_LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError)


def sd15_unet_config() -> dict[str, Any]:
    """``UNet2DConditionModel`` kwargs of the SD v1.x UNet (about 860 M parameters)."""
    return {
        "sample_size": 64,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        "block_out_channels": (320, 640, 1280, 1280),
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }


def sd15_vae_config() -> dict[str, Any]:
    """``AutoencoderKL`` kwargs of the SD v1.x VAE (about 84 M parameters)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    }


def tiny_unet_config(
    *,
    block_out_channels: tuple[int, ...] = (32, 64, 64),
    cross_attention_dim: int = 64,
    layers_per_block: int = 1,
    attention_head_dim: int = 8,
    in_channels: int = 4,
    sample_size: int = 16,
    norm_num_groups: int = 32,
) -> dict[str, Any]:
    """``UNet2DConditionModel`` kwargs of a small UNet with the SD block layout.

    Every level has cross-attention except the lowest-resolution one, as in SD v1.x.
    ``attention_head_dim`` follows diffusers' legacy meaning (number of heads).
    """
    n = len(block_out_channels)
    if n < 2:
        raise ValueError(f"tiny_unet_config: need >= 2 levels, got {block_out_channels}")
    return {
        "sample_size": sample_size,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "down_block_types": ("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        "block_out_channels": tuple(block_out_channels),
        "layers_per_block": layers_per_block,
        "cross_attention_dim": cross_attention_dim,
        "attention_head_dim": attention_head_dim,
        "norm_num_groups": norm_num_groups,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }


def load_sd_unet(
    path: str | Path, *, config: str | Path | None = None, frozen: bool = True
) -> UNet2DConditionModel:
    """Load the SD UNet from a local diffusers folder or an original single-file checkpoint.

    Args:
        path: a diffusers pipeline folder (with ``unet/``), a ``unet`` folder itself, or a
            ``.ckpt``/``.safetensors`` file (LDM keys ``model.diffusion_model.*`` or diffusers
            keys).
        config: for a single file, a local diffusers folder whose ``unet/config.json`` describes
            the architecture; ``sd15_unet_config()`` when ``None``.
        frozen: put the model in eval mode with ``requires_grad=False``.

    Raises:
        DataError: naming ``path`` when it is missing, of an unknown kind, or does not hold a
            complete, matching UNet.
    """
    model = _load_component(
        UNet2DConditionModel, path, "unet", config, sd15_unet_config, "convert_ldm_unet_checkpoint"
    )
    return _maybe_freeze(model, frozen)


def load_sd_vae(
    path: str | Path, *, config: str | Path | None = None, frozen: bool = True
) -> AutoencoderKL:
    """Load the SD VAE (``AutoencoderKL``) like ``load_sd_unet`` (subfolder ``vae``).

    Args:
        path: a diffusers pipeline folder (with ``vae/``), a ``vae`` folder, or a single file
            (LDM keys ``first_stage_model.*`` or diffusers keys).
        config: for a single file, a local diffusers folder with ``vae/config.json``;
            ``sd15_vae_config()`` when ``None``.
        frozen: put the model in eval mode with ``requires_grad=False``.

    Raises:
        DataError: naming ``path`` as in ``load_sd_unet``.
    """
    model = _load_component(
        AutoencoderKL, path, "vae", config, sd15_vae_config, "convert_ldm_vae_checkpoint"
    )
    return _maybe_freeze(model, frozen)


def load_sd_empty_context(path: str | Path, *, min_vocab_size: int = 10000) -> Tensor:
    """Encode the empty prompt "" with the SD CLIP text encoder of a local diffusers folder.

    This is the unconditional context ``u`` of ``ImplicitCondition`` (method.md §2.3).

    Args:
        path: a diffusers pipeline folder with ``tokenizer/`` and ``text_encoder/``.
        min_vocab_size: sanity bound on the tokenizer vocabulary (CLIP has 49 408 tokens); a
            broken offline tokenizer silently comes back with a handful of tokens.

    Returns:
        (1, L, D) float32 last hidden state (L = 77, D = 768 for SD v1.x).
    """
    from transformers import CLIPTextModel, CLIPTokenizer

    root = _existing(path)
    for sub in ("tokenizer", "text_encoder"):
        if not (root / sub).is_dir():
            raise DataError(root, f"no {sub}/ folder: not a diffusers Stable Diffusion folder")
    try:
        tokenizer = CLIPTokenizer.from_pretrained(
            root, subfolder="tokenizer", local_files_only=True
        )
        encoder = CLIPTextModel.from_pretrained(
            root, subfolder="text_encoder", local_files_only=True
        )
    except _LOAD_ERRORS as exc:
        raise DataError(root, f"cannot load the CLIP tokenizer/text encoder: {exc}") from exc
    if len(tokenizer) < min_vocab_size:
        raise DataError(
            root / "tokenizer", f"tokenizer has {len(tokenizer)} tokens (< {min_vocab_size})"
        )
    tokens = tokenizer(
        [""], padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
    )
    with torch.no_grad():
        out = encoder.eval()(input_ids=tokens.input_ids)
    return out.last_hidden_state.float()


def _load_component(
    cls: type,
    path: str | Path,
    subfolder: str,
    config: str | Path | None,
    default_config: Callable[[], dict[str, Any]],
    convert_name: str,
) -> nn.Module:
    """Dispatch between a diffusers folder and a single-file checkpoint.

    ``convert_name`` names diffusers' LDM-to-diffusers key converter in
    ``diffusers.loaders.single_file_utils`` (imported only when needed: the import is slow).
    """
    p = _existing(path)
    if p.is_dir():
        return _load_folder(cls, p, subfolder)
    if p.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise DataError(
            p, f"unknown weight file type {p.suffix!r}; expected one of {SINGLE_FILE_SUFFIXES}"
        )
    if config is None:
        model = cls(**default_config())
    else:
        cfg_root = _existing(config)
        sub = subfolder if (cfg_root / subfolder / "config.json").is_file() else None
        try:
            model = cls.from_config(cls.load_config(cfg_root, subfolder=sub, local_files_only=True))
        except _LOAD_ERRORS as exc:
            raise DataError(cfg_root, f"cannot read the {subfolder} config: {exc}") from exc
    state = read_state_dict(p)
    expected = set(model.state_dict())
    if not expected <= set(state):
        from diffusers.loaders import single_file_utils

        convert = getattr(single_file_utils, convert_name)
        try:
            converted = convert(state, config=dict(model.config))
        except _LOAD_ERRORS as exc:
            logger.debug("LDM conversion of %s failed: %s", p, exc)
            converted = {}
        # Keep whichever key layout (diffusers as stored, or converted LDM) covers more weights.
        if len(expected - set(converted)) < len(expected - set(state)):
            state = converted
    missing = sorted(expected - set(state))
    if missing:
        raise DataError(
            p, f"{len(missing)} of {len(expected)} {subfolder} weights missing, e.g. {missing[:3]}"
        )
    own = model.state_dict()
    for key in own:  # the first differing tensor names the version mismatch (e.g. SD 2.x)
        if tuple(state[key].shape) != tuple(own[key].shape):
            raise DataError(
                p, f"not a Stable Diffusion v1.x {subfolder}: {key} has shape "
                f"{tuple(state[key].shape)} in the file but {tuple(own[key].shape)} here "
                "(SD 2.x/XL files do not fit; the authors used sd-v1-3.ckpt)")
    try:
        model.load_state_dict({k: state[k] for k in expected}, strict=True)
    except RuntimeError as exc:
        raise DataError(p, f"{subfolder} weights do not match the architecture: {exc}") from exc
    logger.info("loaded %s weights from %s", subfolder, p)
    return model


def _load_folder(cls: type, root: Path, subfolder: str) -> nn.Module:
    """``from_pretrained`` on a pipeline folder or a component folder, refusing missing weights."""
    if (root / subfolder / "config.json").is_file():
        sub: str | None = subfolder
    elif (root / "config.json").is_file():
        sub = None
    else:
        raise DataError(root, f"no {subfolder}/config.json or config.json: not a diffusers folder")
    try:
        model, info = cls.from_pretrained(
            root,
            subfolder=sub,
            local_files_only=True,
            output_loading_info=True,
            low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
        )
    except _LOAD_ERRORS as exc:
        raise DataError(root, f"cannot load the {subfolder}: {exc}") from exc
    bad = list(info.get("missing_keys", [])) + list(info.get("mismatched_keys", []))
    if bad:
        raise DataError(root, f"{len(bad)} {subfolder} weights missing or mismatched: {bad[:3]}")
    return model


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read a single-file checkpoint without executing pickled code."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means an unusable file
        raise DataError(
            path,
            f"cannot read the checkpoint safely ({exc}); if it holds pickled objects, convert it "
            "to .safetensors",
        ) from exc
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise DataError(path, "not a state dict of tensors")
    return state


def _existing(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(p, "does not exist")
    return p


def _maybe_freeze(model: nn.Module, frozen: bool) -> nn.Module:
    if frozen:
        model.eval().requires_grad_(False)
    return model
