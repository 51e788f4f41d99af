"""Convert the authors' released XMask3D ``state_dict`` into ours, and back.

The published names and shapes are specified in ``published_layout`` (from github.com/wangzy22/
XMask3D and MinkowskiEngine; see its docstring). Every published key maps to exactly one key of
our model (``authors_key_map``), by one of three transforms:

- ``copy``: same shape;
- ``reshape``: same number of elements, another shape (e.g. the time-embedding positional term
  (1, 1, 1280) -> our (1, 1280); the null embedding (1, 768) or (768,) -> our (1, 768));
- ``me_kernel``: a MinkowskiEngine kernel ``(K**3, C_in, C_out)`` whose offsets are x-fastest
  (``k = ix + K*iy + K**2*iz``; centred for odd K, ``{0, 1} * stride`` for K = 2) or a 2-D
  ``(C_in, C_out)`` 1x1x1 stride-1 kernel -> our sparse layout ``(C_out, K, K, K, C_in)`` with
  axes (x, y, z) (``xmask3d.sparse.base.SparseConvLayer``), whose offsets have the same meaning
  (``TorchSubMConv3d`` centred, ``TorchDownConv3d`` / ``TorchInverseConv3d`` ``o * 2 + d``).

Two published tensors are training-only and deliberately unused (``UNUSED``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from xmask3d.errors import CheckpointError
from xmask3d.interop.published_layout import DDP_PREFIX

__all__ = [
    "UNUSED",
    "ConversionReport",
    "KeyMap",
    "authors_key_map",
    "convert_authors_state",
    "export_authors_state",
    "me_kernel_from_ours",
    "me_kernel_to_ours",
    "published_tap_order",
    "strip_ddp_prefix",
]

UNUSED = {
    "criterion.empty_weight": "training-only class weights of the set loss (no-object weight = "
                              "loss.eos_coef); not needed for inference",
    "binary_loss_func.pos_weight": "training-only BCE pos_weight of the binary head (= "
                                   "loss.binary_pos_weight); not needed for inference",
}


@dataclass(frozen=True)
class KeyMap:
    """One published key, the key of ours it fills, and how (``copy``/``reshape``/``me_kernel``)."""

    published: str
    ours: str
    transform: str


@dataclass
class ConversionReport:
    """What happened to every tensor of both sides."""

    loaded: list[KeyMap] = field(default_factory=list)
    unused: dict[str, str] = field(default_factory=dict)        # published key -> reason
    unknown: list[str] = field(default_factory=list)            # published keys we do not know
    missing: dict[str, str] = field(default_factory=dict)       # our key -> where it comes from
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"loaded": [[m.published, m.ours, m.transform] for m in self.loaded],
                "unused": self.unused, "unknown": self.unknown, "missing": self.missing,
                "notes": self.notes}

    def summary(self) -> str:
        """A human-readable report: counts, then every unused, unknown and missing tensor."""
        by_source: dict[str, int] = {}
        for src in self.missing.values():
            by_source[src] = by_source.get(src, 0) + 1
        lines = [f"authors' tensors loaded: {len(self.loaded)}",
                 f"authors' tensors deliberately unused: {len(self.unused)}"]
        lines += [f"  {k}: {why}" for k, why in self.unused.items()]
        lines.append(f"authors' tensors not understood (not loaded): {len(self.unknown)}")
        lines += [f"  {k}" for k in self.unknown]
        lines.append(f"our tensors not in the authors' file: {len(self.missing)}")
        lines += [f"  {n} from {src}" for src, n in by_source.items()]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def strip_ddp_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop DistributedDataParallel's ``module.`` prefix (keys without it pass unchanged)."""
    return {k[len(DDP_PREFIX):] if k.startswith(DDP_PREFIX) else k: v for k, v in state.items()}


def me_kernel_to_ours(kernel: Tensor) -> Tensor:
    """MinkowskiEngine ``(K**3, C_in, C_out)`` or 2-D ``(C_in, C_out)`` -> (C_out, K, K, K, C_in).

    ME offset ``k = ix + K*iy + K**2*iz``, so ``reshape(K, K, K, ...)`` has axes (z, y, x).
    """
    if kernel.dim() == 2:
        return kernel.t().reshape(kernel.shape[1], 1, 1, 1, kernel.shape[0]).contiguous()
    k = round(kernel.shape[0] ** (1 / 3))
    if kernel.dim() != 3 or k**3 != kernel.shape[0]:
        raise ValueError(f"not a MinkowskiEngine 3-D kernel: shape {tuple(kernel.shape)}")
    zyx = kernel.reshape(k, k, k, kernel.shape[1], kernel.shape[2])   # (z, y, x, C_in, C_out)
    return zyx.permute(4, 2, 1, 0, 3).contiguous()                    # (C_out, x, y, z, C_in)


def me_kernel_from_ours(weight: Tensor, *, two_d: bool) -> Tensor:
    """Inverse of ``me_kernel_to_ours`` (``two_d`` for a 1x1x1 stride-1 kernel)."""
    c_out, k, c_in = weight.shape[0], weight.shape[1], weight.shape[4]
    if two_d:
        return weight.reshape(c_out, c_in).t().contiguous()
    return weight.permute(3, 2, 1, 4, 0).reshape(k**3, c_in, c_out).contiguous()


def published_tap_order(taps) -> list[str]:
    """Our tap names in the order of the authors' ``feature_projections``.

    The authors' extractor lists VAE encoder taps, then UNet taps, then VAE decoder taps, each
    by block index (``ldm.py``); ``taps`` are our ``TapSpec``s.
    """
    rank = {"vae_encoder": 0, "unet": 1, "vae_decoder": 2}
    chosen = [t for t in taps if t.source in rank]
    return [t.name for t in sorted(chosen, key=lambda t: (rank[t.source], t.block, t.resnet))]


def _unet_rules(pub: str, ours: str) -> list[tuple[str, Callable[[re.Match], str], str]]:
    def block(m: re.Match, rest: str) -> str:
        n = int(m[1])
        side = f"encoder.{n - 1}" if n <= 4 else f"decoder.{n - 5}"
        return f"{ours}{side}.{m[2]}.{rest}"

    p = re.escape(pub)
    return [
        (p + r"conv0p1s1\.kernel", lambda m: f"{ours}stem.0.weight", "me_kernel"),
        (p + r"bn0\.bn\.(\w+)", lambda m: f"{ours}stem.1.{m[1]}", "copy"),
        (p + r"conv([1-4])p\d+s2\.kernel", lambda m: f"{ours}downs.{int(m[1]) - 1}.0.weight",
         "me_kernel"),
        (p + r"bn([1-4])\.bn\.(\w+)", lambda m: f"{ours}downs.{int(m[1]) - 1}.1.{m[2]}", "copy"),
        (p + r"convtr([4-7])p\d+s2\.kernel", lambda m: f"{ours}ups.{int(m[1]) - 4}.0.weight",
         "me_kernel"),
        (p + r"bntr([4-7])\.bn\.(\w+)", lambda m: f"{ours}ups.{int(m[1]) - 4}.1.{m[2]}", "copy"),
        (p + r"block(\d)\.(\d+)\.conv([12])\.kernel",
         lambda m: block(m, f"conv{m[3]}.weight"), "me_kernel"),
        (p + r"block(\d)\.(\d+)\.norm([12])\.bn\.(\w+)",
         lambda m: block(m, f"norm{m[3]}.{m[4]}"), "copy"),
        (p + r"block(\d)\.(\d+)\.downsample\.0\.kernel",
         lambda m: block(m, "shortcut.0.weight"), "me_kernel"),
        (p + r"block(\d)\.(\d+)\.downsample\.1\.bn\.(\w+)",
         lambda m: block(m, f"shortcut.1.{m[3]}"), "copy"),
        (p + r"final\.kernel", lambda m: f"{ours}head.weight", "me_kernel"),
    ]


_D2_CONV = {"weight": "0.weight", "norm.weight": "1.weight", "norm.bias": "1.bias"}
_BOTTLENECK = {"conv1": "body.0", "conv2": "body.3", "conv3": "body.6", "shortcut": "shortcut.0"}
_BOTTLENECK_NORM = {"conv1": "body.1", "conv2": "body.4", "conv3": "body.7",
                    "shortcut": "shortcut.1"}


def _rules(tap_names: list[str], n_fpn: int) -> list[tuple[str, Callable[[re.Match], str], str]]:
    fe, mg = "backbone.feature_extractor.", "mask_generator."
    cond = f"{mg}diffusion.condition."
    pd, pr = "sem_seg_head.pixel_decoder.", "sem_seg_head.predictor."

    def proj(m: re.Match) -> str:
        i, conv, rest = int(m[1]), m[2], m[3]
        if i >= len(tap_names):
            raise KeyError(f"feature_projections.{i}: our model has {len(tap_names)} taps")
        part = _BOTTLENECK[conv] + ".weight" if rest == "weight" else (
            _BOTTLENECK_NORM[conv] + "." + rest.split(".")[1])
        return f"{mg}tap_projection.proj.{tap_names[i]}.{part}"

    def fpn(m: re.Match, kind: str) -> str:
        idx = n_fpn - int(m[1])   # published adapter_1 is the finest level; ours coarse to fine
        return f"{mg}pixel_decoder.{kind}.{idx}.{_D2_CONV[m[2]]}"

    same = lambda new: (lambda m: new + m[1])  # noqa: E731 - a tiny rule-table helper
    return [
        *_unet_rules("pc_decoder.encoder.", "backbone3d."),
        *_unet_rules("pc_binary_head.encoder.", "binary_net."),
        (r"pc_decoder\.point2text_adapter\.(\w+)", same("global_proj."), "copy"),
        (r"pc_decoder\.decoder\.(\w+)", same("point_proj."), "copy"),
        (r"pc_binary_head\.batch_norm\.(\w+)", same("binary_head.0."), "copy"),
        (r"pc_binary_head\.fc\.(\w+)", same("binary_head.2."), "copy"),
        (re.escape(fe) + r"alpha_cond", lambda m: cond + "context_gate", "copy"),
        (re.escape(fe) + r"alpha_cond_time_embed", lambda m: cond + "time_gate", "copy"),
        (re.escape(fe) + r"clip_project\.positional_embedding", lambda m: cond + "context_pos",
         "copy"),
        (re.escape(fe) + r"clip_project\.linear\.(\w+)", same(cond + "context_proj."), "copy"),
        (re.escape(fe) + r"time_embed_project\.positional_embedding",
         lambda m: cond + "time_pos", "reshape"),
        (re.escape(fe) + r"time_embed_project\.linear\.(\w+)", same(cond + "time_proj."), "copy"),
        (r"backbone\.feature_projections\.(\d+)\.0\.(conv[123]|shortcut)\.(weight|norm\.\w+)",
         proj, "copy"),
        (re.escape(pd) + r"input_proj\.(.+)", same(f"{mg}pixel_decoder.input_proj."), "copy"),
        (re.escape(pd) + r"transformer\.level_embed", lambda m: f"{mg}pixel_decoder.level_embed",
         "copy"),
        (re.escape(pd) + r"transformer\.encoder\.layers\.(.+)", same(f"{mg}pixel_decoder.layers."),
         "copy"),
        (re.escape(pd) + r"mask_features\.(\w+)", same(f"{mg}pixel_decoder.mask_features."),
         "copy"),
        (re.escape(pd) + r"adapter_(\d+)\.(weight|norm\.weight|norm\.bias)",
         lambda m: fpn(m, "lateral_convs"), "copy"),
        (re.escape(pd) + r"layer_(\d+)\.(weight|norm\.weight|norm\.bias)",
         lambda m: fpn(m, "output_convs"), "copy"),
        (re.escape(pr) + r"transformer_self_attention_layers\.(\d+)\.self_attn\.(.+)",
         lambda m: f"{mg}mask_decoder.self_layers.{m[1]}.attn.{m[2]}", "copy"),
        (re.escape(pr) + r"transformer_self_attention_layers\.(\d+\.norm\.\w+)",
         same(f"{mg}mask_decoder.self_layers."), "copy"),
        (re.escape(pr) + r"transformer_cross_attention_layers\.(\d+)\.multihead_attn\.(.+)",
         lambda m: f"{mg}mask_decoder.cross_layers.{m[1]}.attn.{m[2]}", "copy"),
        (re.escape(pr) + r"transformer_cross_attention_layers\.(\d+\.norm\.\w+)",
         same(f"{mg}mask_decoder.cross_layers."), "copy"),
        (re.escape(pr) + r"transformer_ffn_layers\.(.+)", same(f"{mg}mask_decoder.ffn_layers."),
         "copy"),
        (re.escape(pr) + r"(decoder_norm\.\w+|query_feat\.weight|level_embed\.weight|"
                         r"mask_embed\.layers\..+)", same(f"{mg}mask_decoder."), "copy"),
        (re.escape(pr) + r"query_embed\.weight", lambda m: f"{mg}mask_decoder.query_pos.weight",
         "copy"),
        (re.escape(pr) + r"post_mask_embed\.logit_scale",
         lambda m: f"{mg}mask_embed.log_logit_scale", "copy"),
        (re.escape(pr) + r"post_mask_embed\.pool_proj\.(.+)", same(f"{mg}mask_embed.pool_proj."),
         "copy"),
        (re.escape(pr) + r"post_mask_embed\.mask_embed\.(.+)", same(f"{mg}mask_embed.embed."),
         "copy"),
        (r"criterion\.fuser\.linear\.(\w+)", same("fusion.linear."), "copy"),
        (r"category_head\.null_embed", lambda m: f"{mg}mask_embed.null_embed", "reshape"),
    ]


def authors_key_map(published_keys, tap_names: list[str], n_fpn: int = 1) -> tuple[
        dict[str, KeyMap], list[str]]:
    """Map published keys (no ``module.``) to ours.

    Args:
        published_keys: the keys of the authors' state dict.
        tap_names: our tap names in the published order (``published_tap_order``).
        n_fpn: FPN levels of the pixel decoder.

    Returns:
        (published key -> ``KeyMap``, published keys no rule knows). ``UNUSED`` keys are in
        neither.
    """
    rules = [(re.compile(p), f, t) for p, f, t in _rules(tap_names, n_fpn)]
    out, unknown = {}, []
    for key in published_keys:
        if key in UNUSED:
            continue
        for pattern, fn, transform in rules:
            m = pattern.fullmatch(key)
            if m:
                try:
                    out[key] = KeyMap(key, fn(m), transform)
                except KeyError:
                    unknown.append(key)
                break
        else:
            unknown.append(key)
    return out, unknown


def _to_ours(value: Tensor, transform: str, shape: tuple[int, ...]) -> Tensor:
    if transform == "me_kernel":
        value = me_kernel_to_ours(value)
    elif transform == "reshape":
        value = value.reshape(shape)
    return value


def convert_authors_state(
    published: dict[str, Tensor], our_state: dict[str, Tensor], *, tap_names: list[str],
    n_fpn: int = 1, source: str = "the authors' checkpoint",
) -> tuple[dict[str, Tensor], ConversionReport]:
    """Fill a copy of ``our_state`` from the authors' tensors.

    Args:
        published: the authors' state dict (``module.`` prefix allowed).
        our_state: our model's state dict (its values are kept where nothing is loaded).
        tap_names: our tap names in the published order.
        n_fpn: FPN levels of our pixel decoder.
        source: the file name used in error messages.

    Returns:
        The new state dict and the report (``missing`` lists our keys left as they were, with
        "?" as their source; the caller names the real sources).

    Raises:
        CheckpointError: a mapped tensor whose element count differs from ours, or two published
            tensors mapped onto one of ours.
    """
    published = strip_ddp_prefix(published)
    mapping, unknown = authors_key_map(published, tap_names, n_fpn)
    report = ConversionReport(unknown=unknown)
    report.unused = {k: UNUSED[k] for k in published if k in UNUSED}
    state = dict(our_state)
    filled: set[str] = set()
    for key, km in mapping.items():
        if km.ours not in our_state:
            report.unknown.append(key)
            continue
        if km.ours in filled:
            raise CheckpointError(f"{source}: two tensors map onto {km.ours}")
        value, target = published[key], our_state[km.ours]
        if value.numel() != target.numel():
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(value.shape)} but our {km.ours} needs "
                f"{tuple(target.shape)}; the checkpoint does not fit this configuration")
        converted = _to_ours(value, km.transform, tuple(target.shape))
        if tuple(converted.shape) != tuple(target.shape):
            raise CheckpointError(
                f"{source}: {key} of shape {tuple(value.shape)} becomes "
                f"{tuple(converted.shape)}, but our {km.ours} is {tuple(target.shape)}")
        state[km.ours] = converted.to(target.dtype)
        filled.add(km.ours)
        report.loaded.append(km)
    report.missing = {k: "?" for k in our_state if k not in filled}
    return state, report


def export_authors_state(our_state: dict[str, Tensor], loaded: list[KeyMap],
                         published_shapes: dict[str, tuple[int, ...]]) -> dict[str, Tensor]:
    """The inverse of ``convert_authors_state`` for the loaded keys (used to verify round trips).

    Args:
        our_state: our state dict.
        loaded: ``ConversionReport.loaded``.
        published_shapes: the published shape of every key (2-D ME kernels are told apart by it).
    """
    out = {}
    for km in loaded:
        value, shape = our_state[km.ours], tuple(published_shapes[km.published])
        if km.transform == "me_kernel":
            value = me_kernel_from_ours(value, two_d=len(shape) == 2)
        elif km.transform == "reshape":
            value = value.reshape(shape)
        out[km.published] = value
    return out


def unused_value_notes(published: dict[str, Tensor], *, eos_coef: float,
                       binary_pos_weight: float) -> list[str]:
    """Compare the training-only tensors with our config's loss settings (informative only)."""
    published = strip_ddp_prefix(published)
    notes = []
    ew = published.get("criterion.empty_weight")
    if ew is not None and ew.numel() and abs(float(ew.flatten()[-1]) - eos_coef) > 1e-6:
        notes.append(f"criterion.empty_weight[-1] = {float(ew.flatten()[-1]):g}, config "
                     f"loss.eos_coef = {eos_coef:g} (training only)")
    pw = published.get("binary_loss_func.pos_weight")
    if pw is not None and pw.numel() == 1 and abs(float(pw) - binary_pos_weight) > 1e-6:
        notes.append(f"binary_loss_func.pos_weight = {float(pw):g}, config "
                     f"loss.binary_pos_weight = {binary_pos_weight:g} (training only)")
    return notes


def check_split(published: dict[str, Tensor], *, split: str, expected_classes: int,
                source: str) -> None:
    """Refuse a checkpoint trained on another split than the config's (by its class count)."""
    from xmask3d.interop.published_layout import PUBLISHED_SPLITS, published_arch

    ew = strip_ddp_prefix(published).get("criterion.empty_weight")
    if ew is None:
        return
    classes = ew.numel() - 1
    if classes == expected_classes:
        return
    fits = [s for s in PUBLISHED_SPLITS if published_arch(s).num_classes == classes]
    hint = f"; it fits {', '.join(fits)}" if fits else ""
    raise CheckpointError(
        f"{source}: trained with {classes} base classes (criterion.empty_weight has "
        f"{ew.numel()} entries) but the config's split {split} has {expected_classes}{hint}: "
        "pass the matching --config")


def load_authors_checkpoint(path) -> dict[str, Tensor]:
    """Read the authors' ``torch.save`` file safely and return its ``state_dict``.

    Raises:
        CheckpointError: missing file, a file that is not a checkpoint, or a pickle that would
            run code (refused by ``weights_only=True``).
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: file not found")
    try:
        # numpy scalars (e.g. a ``best_iou`` from numpy) are plain data: allow just those
        with torch.serialization.safe_globals(_numpy_scalar_types()):
            data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unpickling refusals and corrupt files alike
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CheckpointError(
            f"{p}: cannot be read as a weights-only checkpoint ({type(exc).__name__}: {first}); "
            "files that need arbitrary pickled objects are refused") from exc
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if (not isinstance(data, dict) or not data
            or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in data.items())):
        raise CheckpointError(f"{p}: not an XMask3D checkpoint (expected a dict with a "
                              "'state_dict' of named tensors)")
    return data


def _numpy_scalar_types() -> list:
    import numpy as np

    scalar = getattr(np, "_core", np.core).multiarray.scalar
    return [scalar, np.dtype, *(type(np.dtype(t)) for t in ("f8", "f4", "i8", "i4"))]
