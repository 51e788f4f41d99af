"""Typed configuration: nested dataclasses filled from YAML, with strict key checking.

A YAML file sets values only; it may name one parent with ``base: <file>`` (resolved relative to
the file, or to the packaged ``configs/`` folder). ``--set key.sub=value`` overrides are parsed as
YAML scalars/lists. Unknown keys and wrongly typed values are errors (``ConfigError``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from xmask3d.errors import ConfigError


@dataclass
class DataCfg:
    root: str = "data/synthetic"          # processed dataset root (scannet_3d/, scannet_2d/, ...)
    split: str = "scannet_b15n4"          # category split (see `xmask3d splits`)
    train_split: str = "train"            # folder under scannet_3d/ used for training
    val_split: str = "val"                # folder whose numbers are reported
    select_fraction: float = 0.1          # share of training scenes held out for checkpoint selection
    captions_file: str = ""               # caption JSON; empty = <root>/captions.json
    region_captions_file: str = ""        # region caption JSON; empty = <root>/region_captions.json
    region_min_margin: float = 0.2        # point-region depth test: |z - d| <= max(this, ...
    region_depth_factor: float = 0.5      # ... this * metric box size), data/regions.py
    image_hw: list[int] = field(default_factory=lambda: [240, 320])  # view size (H, W)
    voxel_size: float = 0.02              # metres
    height_channel: bool = False          # 4th 3D input: height above the scene's floor (ours)
    rel_thresh: float = 0.25              # depth visibility: |D - z| <= rel_thresh * D
    border: int = 10                      # pixels cut at the image border
    min_visible: int = 400                # a usable view sees more points than this
    max_visible: int = 65000              # ... and fewer than this in training
    eval_max_visible: int = 0             # limit at evaluation (0 = none)
    min_valid: int = 10                   # training views need more labelled base points
    max_retries: int = 32                 # bounded view sampling per training item
    loop: int = 1                         # passes over the training scenes per epoch
    augment: bool = False                 # random rotation/scale/jitter in training only
    rotate_z: float = 3.14159265          # max |angle| about z (radians)
    rotate_xy: float = 0.0490873852       # max |angle| about x and y (pi/64)
    scale_min: float = 0.9
    scale_max: float = 1.1
    jitter: float = 0.0                   # std of Gaussian point jitter (metres)
    color_contrast: float = 0.0           # colour contrast factor in [1 - c, 1 + c] (augment only)
    color_shift: float = 0.0              # per-channel colour offset in [-s, s] (colours +-1)
    color_jitter: float = 0.0             # std of per-point Gaussian colour noise
    binary_mode: str = "ours"             # "ours": 1=labelled base, 0=else; "published": -1 ignore
    workers: int = 0                      # DataLoader workers per process
    scene_cache: int = 4                  # loaded scenes kept in memory per dataset (and worker)


@dataclass
class Backbone3DCfg:
    backend: str = "torch"                # sparse conv backend: "torch" or "spconv"
    stem_channels: int = 32
    stem_kernel: int = 5
    enc_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    enc_blocks: list[int] = field(default_factory=lambda: [2, 3, 4, 6])
    dec_channels: list[int] = field(default_factory=lambda: [256, 128, 96, 96])
    dec_blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    out_channels: int = 256               # width of the UNet output before the text projection
    binary_enc_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    binary_enc_blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    binary_dec_channels: list[int] = field(default_factory=lambda: [128, 128, 96, 96])
    binary_dec_blocks: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    binary_out_channels: int = 256        # width of the binary network before its BN/ReLU/Linear
    global_dim: int = 768                 # width of the per-view global feature (condition)
    head_bias: bool = True                # bias of both U-Nets' final 1x1 conv (published: none)


@dataclass
class Mask2DCfg:
    sd_path: str = ""                     # local SD v1.x diffusers folder or single file; "" = random init
    sd_config_path: str = ""              # diffusers config folder for single-file loading
    freeze_unet: bool = False             # UNet weights get no gradients (true with SD weights)
    random_sd: bool = False               # without sd_path: SD v1.x-size UNet + VAE, random weights
                                          # (architecture checks, parameter counts, GPU timing)
    input_size: int = 512                 # the view is resized to input_size x input_size
    block_out_channels: list[int] = field(default_factory=lambda: [320, 640, 1280, 1280])
    layers_per_block: int = 2
    attention_head_dim: int = 8
    cross_attention_dim: int = 768
    context_len: int = 77                 # length of the pseudo-text context from the 3D feature
    taps: list[int] = field(default_factory=lambda: [0, 1, 2, 3])  # up_blocks whose inputs are tapped
    vae_encoder_taps: list[list[int]] = field(default_factory=lambda: [[2, 1], [3, 1]])
    vae_decoder_taps: list[list[int]] = field(default_factory=lambda: [[0, 2], [1, 2]])
    image_tap_strides: list[int] = field(default_factory=list)  # pixel-unshuffled image taps
    projection_dim: int = 512             # width of the stride-grouped tap projections
    projection_mid: int = 128             # their bottleneck width
    gradient_checkpointing: bool = True   # non-reentrant checkpointing of the UNet
    timestep: int = 0
    condition: str = "3d"                 # "3d" | "none" | "text" | "image" (ablation)
    conv_dim: int = 256                   # pixel decoder width
    mask_dim: int = 256
    pixel_heads: int = 8
    pixel_ffn: int = 1024
    pixel_layers: int = 6
    common_stride: int = 4
    hidden_dim: int = 256                 # transformer decoder
    decoder_heads: int = 8
    decoder_ffn: int = 2048
    decoder_layers: int = 9
    num_queries: int = 50
    logit_scale_init: float = 2.659260036932778  # log of the initial cosine temperature (1/0.07)


@dataclass
class TextCfg:
    encoder: str = "minilm"               # "minilm" (offline, 384-d) or "clip" (local weights)
    clip_path: str = ""                   # local CLIP folder (text tower; vision tower if present)
    templates: bool = True                # average prompt templates (decisions §5)
    cache_dir: str = ""                   # on-disk cache of class embeddings ("" = memory only)


@dataclass
class FusionCfg:
    enabled: bool = True                  # 3D-2D mask feature fusion (ablation: off)
    uncovered: str = "fuse"               # "fuse" (ours) | "copy3d" (published, method §8.21)
    base_ratio: float = 0.65              # CLIP ensemble exponents at inference (method §4.2)
    novel_ratio: float = 0.35
    binary_thresh: float = 0.5            # binary head threshold for base/novel gating
    gating: bool = True                   # hard base/novel gating with the binary head


@dataclass
class LossCfg:
    ce: float = 2.0
    mask: float = 5.0
    dice: float = 5.0
    point_fused: float = 4.0
    point_3d: float = 4.0
    caption_fused: float = 1.5
    caption_3d: float = 1.0
    caption_2d: float = 4.0
    binary: float = 16.0
    mask_alignment: float = 0.5
    alignment_start_epoch: int = 50       # mask-level 2D-to-3D regularisation from this epoch
    alignment_selection: str = "ours"     # "ours" | "published" (GT novel locations, method §8.17)
    unlabelled_as_no_object: bool = False  # published: unlabelled region taught as "no object"
    binary_pos_weight: float = 0.267      # data_ratio of the split
    eos_coef: float = 0.1
    num_points: int = 12544               # sampled points for mask losses
    region_3d: float = 0.0                # region-caption contrast (losses/region_contrast.py):
    region_2d: float = 0.0                # 3D, 2D (covered points) and fused terms; off in the
    region_fused: float = 0.0             # paper configs, on in the tiny ones
    region_temperature: float = 0.07      # 0 = the model's learned logit scale
    region_max_points: int = 0            # random cap on the entries of each term (0 = all)
    region_base_weight: float = 1.0       # weight of base-labelled points in those terms
    region_class_candidates: bool = False  # base class names join the phrases as candidates
    region_about_share: float = 0.25      # phrase about class c from this share of c points
    point_balance: float = 0.0            # point CE class weights f_c ** -x from the training
                                          # labels' frequencies (0 = plain CE, as published)


@dataclass
class TrainCfg:
    out_dir: str = "runs/train"
    epochs: int = 150
    max_steps: int = 0                    # stop after this many optimiser steps (0 = no limit)
    batch_size: int = 16                  # views per process
    lr_3d: float = 1e-3                   # 3D networks
    lr: float = 1e-4                      # everything else that trains
    weight_decay: float = 0.01
    warmup_steps: int = 0
    clip_grad: float = 0.0                # max grad norm (0 = off)
    amp: bool = True                      # bf16 autocast on GPU (ignored on CPU)
    seed: int = 5557
    log_every: int = 10
    eval_every: int = 1                   # epochs between selection evaluations (0 = never)
    ckpt_every: int = 1                   # epochs between checkpoints
    threads: int = 0                      # torch threads (0 = leave as is)
    tune_malloc: bool = True              # glibc malloc settings for training (xmask3d.allocator)


@dataclass
class EvalCfg:
    batch_size: int = 4                   # views per forward
    clip_ensemble: bool = True            # use CLIP mask embeddings when a vision tower exists
    max_views: int = 0                    # per scene (0 = every usable view)
    out_dir: str = ""                     # "" = next to the checkpoint


@dataclass
class XMask3DConfig:
    name: str = "xmask3d"
    data: DataCfg = field(default_factory=DataCfg)
    backbone3d: Backbone3DCfg = field(default_factory=Backbone3DCfg)
    mask2d: Mask2DCfg = field(default_factory=Mask2DCfg)
    text: TextCfg = field(default_factory=TextCfg)
    fusion: FusionCfg = field(default_factory=FusionCfg)
    loss: LossCfg = field(default_factory=LossCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)


def _check_type(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, *_) = typing.get_args(tp) or (Any,)
        return [_check_type(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _check_type(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not match {tp}")
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is type(None) and value is None:
        return None
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict; unknown keys and bad types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(map(str, set(data) - names))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
                          f"valid keys here: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_type(value, tp, prefix + key)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts (for YAML/JSON and checkpoints)."""
    return dataclasses.asdict(cfg)


def _deep_update(base: dict, new: dict) -> dict:
    out = dict(base)
    for k, v in new.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k),
                                                                                dict) else v
    return out


def packaged_config_dir() -> Path:
    return Path(str(resources.files("xmask3d").joinpath("configs")))


def resolve_config_path(name: str | Path, relative_to: Path | None = None) -> Path:
    """A config path as given, relative to ``relative_to``, or a packaged name like ``tiny/synthetic``."""
    cand = [Path(name)]
    if relative_to is not None:
        cand.append(relative_to / name)
    stem = str(name)[:-5] if str(name).endswith(".yaml") else str(name)
    cand.append(packaged_config_dir() / f"{stem}.yaml")
    for c in cand:
        if c.is_file():
            return c
    raise ConfigError(f"config {name} not found (looked at {', '.join(str(c) for c in cand)})")


def _read_yaml(path: Path, depth: int = 0) -> dict:
    if depth > 4:
        raise ConfigError(f"{path}: too many nested `base:` references")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    parent = data.pop("base", None)
    if parent is None:
        return data
    return _deep_update(_read_yaml(resolve_config_path(parent, path.parent), depth + 1), data)


def parse_override(text: str) -> dict[str, Any]:
    """``"train.lr=2e-4"`` -> ``{"train": {"lr": 0.0002}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") and value[0].isdigit() else value
        except ValueError:
            pass
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                data: dict | None = None) -> XMask3DConfig:
    """Load a config file (or defaults), apply ``--set`` overrides, and validate it."""
    merged: dict = {} if path is None else _read_yaml(resolve_config_path(path))
    if data:
        merged = _deep_update(merged, data)
    for ov in overrides or []:
        merged = _deep_update(merged, parse_override(ov))
    cfg = from_dict(XMask3DConfig, merged)
    validate(cfg)
    return cfg


def validate(cfg: XMask3DConfig) -> None:
    """Cross-field checks with messages a user can act on."""
    from xmask3d.data.splits import SPLITS

    choices = {
        "data.split": (cfg.data.split, tuple(SPLITS)),
        "data.binary_mode": (cfg.data.binary_mode, ("ours", "published")),
        "backbone3d.backend": (cfg.backbone3d.backend, ("torch", "spconv")),
        "mask2d.condition": (cfg.mask2d.condition, ("3d", "none", "text", "image")),
        "text.encoder": (cfg.text.encoder, ("minilm", "clip")),
        "fusion.uncovered": (cfg.fusion.uncovered, ("fuse", "copy3d")),
        "loss.alignment_selection": (cfg.loss.alignment_selection, ("ours", "published")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key}={value!r}; choose one of {', '.join(allowed)}")
    if len(cfg.data.image_hw) != 2 or min(cfg.data.image_hw) <= 0:
        raise ConfigError(f"data.image_hw must be two positive ints, got {cfg.data.image_hw}")
    if len(cfg.backbone3d.enc_channels) != len(cfg.backbone3d.enc_blocks):
        raise ConfigError("backbone3d.enc_channels and enc_blocks must have the same length")
    if cfg.text.encoder == "clip" and not cfg.text.clip_path:
        raise ConfigError("text.encoder=clip needs text.clip_path (a local CLIP folder)")
    if cfg.train.batch_size < 1 or cfg.eval.batch_size < 1:
        raise ConfigError("train.batch_size and eval.batch_size must be >= 1")
    if cfg.loss.region_temperature < 0 or cfg.loss.region_max_points < 0:
        raise ConfigError("loss.region_temperature and loss.region_max_points must be >= 0 "
                          "(0 = the learned logit scale / no cap)")
    if not 0.0 <= cfg.loss.region_base_weight <= 1.0:
        raise ConfigError(f"loss.region_base_weight must be in [0, 1], got "
                          f"{cfg.loss.region_base_weight}")
    if not 0.0 < cfg.loss.region_about_share <= 1.0:
        raise ConfigError(f"loss.region_about_share must be in (0, 1], got "
                          f"{cfg.loss.region_about_share}")
    if cfg.loss.point_balance < 0:
        raise ConfigError(f"loss.point_balance must be >= 0 (0 = plain CE), got "
                          f"{cfg.loss.point_balance}")
    if cfg.data.region_min_margin < 0 or cfg.data.region_depth_factor < 0:
        raise ConfigError("data.region_min_margin and data.region_depth_factor must be >= 0")


def save_config(cfg: XMask3DConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from xmask3d.data.processed import atomic_write

    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    atomic_write(path, lambda t: Path(t).write_text(text))
