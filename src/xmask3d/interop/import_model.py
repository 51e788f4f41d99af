"""``xmask3d import``: the authors' released checkpoint + SD v1.3 + CLIP -> one checkpoint of ours.

The authors' file holds the 3D networks and the 2D head (``authors_checkpoint``); Stable
Diffusion (UNet, VAE and the text encoder's output for "") comes from the original single file
through diffusers' own converters (``diffusers.loaders.single_file_utils``, via
``xmask3d.models.mask2d.sd_loading``); CLIP from an open_clip / OpenAI ViT-L-14 file: the text tower
through diffusers' ``convert_open_clip_checkpoint``, the vision tower (MaskCLIP) by a tested
mapping (or a transformers CLIP folder as it is).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from xmask3d.config import XMask3DConfig, load_config, to_dict
from xmask3d.data.processed import atomic_write
from xmask3d.data.splits import SPLITS
from xmask3d.errors import CheckpointError, DataError
from xmask3d.interop.authors_checkpoint import (
    ConversionReport,
    check_split,
    convert_authors_state,
    load_authors_checkpoint,
    published_tap_order,
    strip_ddp_prefix,
    unused_value_notes,
)
from xmask3d.interop.published_layout import PUBLISHED_SPLITS

log = logging.getLogger(__name__)

__all__ = ["SD_V1_TEXT_CONFIG", "clip_folder", "import_authors", "sd_empty_context",
           "write_report"]

# The SD v1.x text encoder (CLIP ViT-L/14 text tower, as in openai/clip-vit-large-patch14).
SD_V1_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072,
    "num_hidden_layers": 12, "num_attention_heads": 12, "max_position_embeddings": 77,
    "hidden_act": "quick_gelu", "projection_dim": 768, "layer_norm_eps": 1e-5,
    "bos_token_id": 49406, "eos_token_id": 49407, "pad_token_id": 49407,
}
_TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def _load_checked(model, state: dict[str, Tensor], source: Path, what: str):
    """Load ``state`` into ``model`` refusing missing tensors and shape changes (by name)."""
    own = model.state_dict()
    # transformers versions differ on whether CLIPTextModel keys carry "text_model."
    state = {k: state.get(k, state.get(f"text_model.{k}")) for k in own
             if k in state or f"text_model.{k}" in state}
    missing = [k for k in own if k not in state and not k.endswith("position_ids")]
    if missing:
        raise DataError(source, f"{len(missing)} {what} tensors missing, e.g. {missing[:3]}")
    for key, value in own.items():
        if key in state and tuple(state[key].shape) != tuple(value.shape):
            raise DataError(source, f"{what}: {key} has shape {tuple(state[key].shape)}, "
                                    f"expected {tuple(value.shape)}")
    model.load_state_dict(state, strict=False)
    return model.eval()


def _load_text_model(cls, config: dict[str, Any], state: dict[str, Tensor], source: Path):
    from transformers import CLIPTextConfig

    return _load_checked(cls(CLIPTextConfig(**config)), state, source, "CLIP text-encoder")


def sd_empty_context(sd_state: dict[str, Tensor], source: Path,
                     text_config: dict[str, Any] | None = None) -> Tensor:
    """(1, L, D) SD text-encoder output for "" (the unconditional context of the authors' LDM).

    The text encoder comes out of the single file through diffusers'
    ``convert_ldm_clip_checkpoint``.
    "" tokenises to BOS followed by EOS padding (SD v1's CLIP tokenizer pads with EOS), so no
    vocabulary file is needed.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint
    from transformers import CLIPTextModel

    state = convert_ldm_clip_checkpoint(sd_state)
    if not state:
        raise DataError(source, "no SD text encoder (cond_stage_model.transformer.*) in the file")
    cfg = dict(text_config or _text_config_of(state))
    model = _load_text_model(CLIPTextModel, cfg, state, source)
    length = cfg["max_position_embeddings"]
    ids = torch.tensor([[cfg["bos_token_id"]] + [cfg["eos_token_id"]] * (length - 1)])
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state.float()


def _text_config_of(state: dict[str, Tensor]) -> dict[str, Any]:
    """SD v1's text-encoder config with the sizes of the tensors at hand (64-wide heads; BOS
    and EOS are the last two tokens of the vocabulary, 49406 and 49407 for CLIP)."""
    tok = state.get("text_model.embeddings.token_embedding.weight")
    pos = state.get("text_model.embeddings.position_embedding.weight")
    if tok is None or pos is None:
        return dict(SD_V1_TEXT_CONFIG)
    vocab, width = tok.shape
    layers = 1 + max(int(k.split(".")[3]) for k in state
                     if k.startswith("text_model.encoder.layers."))
    return {**SD_V1_TEXT_CONFIG, "vocab_size": vocab, "hidden_size": width,
            "intermediate_size": state["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
            "num_hidden_layers": layers, "num_attention_heads": max(1, width // 64),
            "max_position_embeddings": pos.shape[0], "bos_token_id": vocab - 2,
            "eos_token_id": vocab - 1, "pad_token_id": vocab - 1}


def _read_clip_state(path: Path) -> dict[str, Tensor]:
    from xmask3d.models.mask2d.sd_loading import read_state_dict

    if path.suffix.lower() == ".pt" and _is_torchscript(path):
        # OpenAI's ViT-L-14.pt is a TorchScript archive: its tensors are read without pickle.
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    return read_state_dict(path)


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def _openai_vision_state(raw: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """OpenAI/open_clip ``visual.*`` -> transformers ``CLIPModel`` vision keys, and its config.

    A tested mapping (no maintained offline converter exists for the vision tower):
    ``conv1`` -> patch embedding, ``ln_pre`` -> ``pre_layrnorm``, each resblock's fused
    ``in_proj`` -> q/k/v, ``ln_1/ln_2`` -> ``layer_norm1/2``, ``c_fc/c_proj`` -> ``fc1/fc2``,
    ``ln_post`` -> ``post_layernorm``, ``proj`` (W, P) -> ``visual_projection.weight`` (P, W).
    """
    v, out = "vision_model.", {}
    width, _, patch, _ = raw["visual.conv1.weight"].shape
    tokens = raw["visual.positional_embedding"].shape[0]
    out[v + "embeddings.class_embedding"] = raw["visual.class_embedding"]
    out[v + "embeddings.patch_embedding.weight"] = raw["visual.conv1.weight"]
    out[v + "embeddings.position_embedding.weight"] = raw["visual.positional_embedding"]
    for ours, theirs in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for p in ("weight", "bias"):
            out[f"{v}{ours}.{p}"] = raw[f"visual.{theirs}.{p}"]
    out["visual_projection.weight"] = raw["visual.proj"].t().contiguous()
    layers = 1 + max(int(k.split(".")[3]) for k in raw
                     if k.startswith("visual.transformer.resblocks."))
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1",
             "mlp.c_proj": "mlp.fc2", "attn.out_proj": "self_attn.out_proj"}
    for i in range(layers):
        a, b = f"visual.transformer.resblocks.{i}.", f"{v}encoder.layers.{i}."
        for p in ("weight", "bias"):
            for q, name in zip(raw[f"{a}attn.in_proj_{p}"].chunk(3, 0), "qkv", strict=True):
                out[f"{b}self_attn.{name}_proj.{p}"] = q.contiguous()
            for theirs, ours in names.items():
                out[f"{b}{ours}.{p}"] = raw[f"{a}{theirs}.{p}"]
    config = {"hidden_size": width, "intermediate_size": raw[
        "visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0], "num_hidden_layers": layers,
              "num_attention_heads": width // 64, "patch_size": patch,
              "image_size": patch * round((tokens - 1) ** 0.5), "hidden_act": "quick_gelu",
              "layer_norm_eps": 1e-5, "projection_dim": raw["visual.proj"].shape[1]}
    return out, config


def clip_folder(clip: Path, tokenizer: Path | None, dest: Path) -> Path:
    """A transformers CLIP folder for ``text.clip_path`` (with the vision tower when present).

    Args:
        clip: a transformers CLIP folder (returned as it is), or an open_clip / OpenAI ViT-L-14
            weight file: its text tower is converted with diffusers'
            ``convert_open_clip_checkpoint``, its vision tower (``visual.*``, the authors'
            MaskCLIP) with ``_openai_vision_state``.
        tokenizer: a folder with the CLIP BPE files (``vocab.json``, ``merges.txt``), e.g. the
            ``tokenizer/`` of any SD v1 diffusers folder; needed for a weight file.
        dest: where the converted folder is written (atomically: a temporary folder, renamed).
    """
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModelWithProjection

    if clip.is_dir():
        if not (clip / "config.json").is_file():
            raise DataError(clip, "not a transformers CLIP folder (no config.json)")
        return clip
    if tokenizer is None or not all((tokenizer / f).is_file() for f in _TOKENIZER_FILES[:2]):
        raise DataError(tokenizer or clip, "converting a CLIP weight file needs --clip-tokenizer, "
                        "a folder with the CLIP BPE files vocab.json and merges.txt (e.g. the "
                        "tokenizer/ folder of a Stable Diffusion v1 diffusers download)")
    raw = {k.removeprefix("module."): v for k, v in _read_clip_state(clip).items()}
    if "token_embedding.weight" not in raw or "text_projection" not in raw:
        raise DataError(clip, "not an open_clip/OpenAI CLIP file (no token_embedding.weight / "
                              "text_projection)")
    width = raw["token_embedding.weight"].shape[1]
    layers = 1 + max(int(k.split(".")[2]) for k in raw if k.startswith("transformer.resblocks."))
    text_cfg = {**SD_V1_TEXT_CONFIG, "vocab_size": raw["token_embedding.weight"].shape[0],
                "hidden_size": width, "intermediate_size": 4 * width,
                "num_hidden_layers": layers, "num_attention_heads": width // 64,
                "max_position_embeddings": raw["positional_embedding"].shape[0],
                "projection_dim": raw["text_projection"].shape[1]}
    text = {k: v for k, v in raw.items() if not k.startswith("visual.")}
    shell = CLIPTextModelWithProjection(CLIPTextConfig(**text_cfg))
    state = convert_open_clip_checkpoint(shell, text, prefix="")
    if "visual.conv1.weight" in raw:
        vision, vision_cfg = _openai_vision_state(raw)
        if vision_cfg["projection_dim"] != text_cfg["projection_dim"]:
            raise DataError(clip, "text and vision projections differ in width")
        state = {**state, **vision}
        # CLIP's own temperature; xmask3d never uses it (CLIP's initial value when absent)
        state["logit_scale"] = raw.get("logit_scale", torch.tensor(2.6592)).reshape(())
        config = CLIPConfig(text_config=text_cfg, vision_config=vision_cfg,
                            projection_dim=text_cfg["projection_dim"])
        model = _load_checked(CLIPModel(config), state, clip, "CLIP")
    else:
        model = _load_text_model(CLIPTextModelWithProjection, text_cfg, state, clip)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        model.save_pretrained(tmp)
        for name in _TOKENIZER_FILES:
            if (tokenizer / name).is_file():
                shutil.copy(tokenizer / name, tmp / name)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _import_config(config: str, overrides: list[str], *, sd: Path, clip_dir: Path) -> XMask3DConfig:
    import importlib.util

    extra = [f"mask2d.sd_path={sd.resolve()}", "mask2d.random_sd=false", "text.encoder=clip",
             f"text.clip_path={clip_dir.resolve()}", "fusion.uncovered=copy3d"]
    if importlib.util.find_spec("spconv") is None:
        extra.append("backbone3d.backend=torch")
    cfg = load_config(config, overrides=[*extra, *overrides])
    if cfg.data.split not in PUBLISHED_SPLITS:
        raise CheckpointError(f"config {config}: split {cfg.data.split} has no released "
                              f"checkpoint (released: {', '.join(PUBLISHED_SPLITS)})")
    return cfg


def _name_sources(report: ConversionReport) -> list[str]:
    """Fill ``report.missing`` with where each of our tensors comes from; return the orphans."""
    orphans = []
    for key in report.missing:
        if key.startswith(("mask_generator.diffusion.unet.", "mask_generator.diffusion.vae.")):
            report.missing[key] = "--sd (diffusers single-file conversion)"
        elif key == "mask_generator.diffusion.condition.uncond_context":
            report.missing[key] = "--sd (its text encoder's output for the empty prompt)"
        elif key.startswith("clip_head."):
            report.missing[key] = "--clip (vision tower)"
        else:
            report.missing[key] = "nowhere (left at initialisation)"
            orphans.append(key)
    return orphans


def write_report(report: ConversionReport, out: Path) -> tuple[Path, Path]:
    """``<out>.import.json`` and ``<out>.import.txt`` beside the output, atomically."""
    js, txt = out.with_name(out.name + ".import.json"), out.with_name(out.name + ".import.txt")
    text = json.dumps(report.to_dict(), indent=1)
    atomic_write(js, lambda t: Path(t).write_text(text))
    summary = report.summary() + "\n"
    atomic_write(txt, lambda t: Path(t).write_text(summary))
    return js, txt


def import_authors(authors: Path, *, sd: Path, clip: Path, clip_tokenizer: Path | None,
                   config: str, out: Path, overrides: list[str] = (),
                   allow_unknown: bool = False) -> ConversionReport:
    """Convert and write one checkpoint of ours (``save_checkpoint`` format) plus the report."""
    from xmask3d.engine.checkpoint import save_checkpoint
    from xmask3d.models.build import build_model
    from xmask3d.models.mask2d.sd_loading import read_state_dict

    published = load_authors_checkpoint(authors)
    probe = load_config(config, overrides=list(overrides))
    check_split(published, split=probe.data.split, source=str(authors),
                expected_classes=len(SPLITS[probe.data.split].base))
    clip_dir = clip_folder(clip, clip_tokenizer, out.with_name(out.stem + "-clip"))
    cfg = _import_config(config, list(overrides), sd=sd, clip_dir=clip_dir)
    text_dim = strip_ddp_prefix(published).get("pc_decoder.decoder.weight")
    if text_dim is None:
        raise CheckpointError(f"{authors}: no pc_decoder.decoder.weight: not an XMask3D checkpoint")
    model = build_model(cfg, text_dim=text_dim.shape[0])   # loads the SD UNet and VAE from --sd
    diffusion = model.mask_generator.diffusion
    state, report = convert_authors_state(
        published, model.state_dict(), tap_names=published_tap_order(diffusion.taps),
        n_fpn=len(model.mask_generator.pixel_decoder.fpn_features), source=str(authors))
    uncond = sd_empty_context(read_state_dict(sd), sd)
    key = "mask_generator.diffusion.condition.uncond_context"
    if tuple(uncond.shape) != tuple(state[key].shape):
        raise DataError(sd, f"text encoder output {tuple(uncond.shape)} but the model needs "
                            f"{tuple(state[key].shape)}")
    state[key] = uncond
    orphans = _name_sources(report)
    report.notes += unused_value_notes(published, eos_coef=cfg.loss.eos_coef,
                                       binary_pos_weight=cfg.loss.binary_pos_weight)
    if report.unknown and not allow_unknown:
        raise CheckpointError(f"{authors}: {len(report.unknown)} tensors this importer does not "
                              f"know, e.g. {report.unknown[:3]} (--allow-unknown skips them)")
    if orphans:
        raise CheckpointError(f"{authors}: {len(orphans)} of our tensors would stay random, e.g. "
                              f"{orphans[:3]}; the config does not describe the published model")
    save_checkpoint(out, {"model": state, "config": to_dict(cfg), "epoch": 0, "step": 0,
                          "imported": {"authors": str(authors), "sd": str(sd),
                                       "clip": str(clip)}})
    write_report(report, out)
    return report
