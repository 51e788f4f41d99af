"""The state dict of the authors' released XMask3D checkpoints, built from the architecture.

Specification of ``checkpoint["state_dict"]`` in the five files released with Wang et al.,
"XMask3D" (NeurIPS 2024, github.com/wangzy22/XMask3D, MIT), read from that repository's
``models/xmask3d.py``, ``pc_processor.py``, ``mink_unet.py`` (MinkowskiEngine's ``MinkUNetBase``),
``ldm.py``, ``odise.py``, ``feature_extractor.py`` (detectron2 ``BottleneckBlock``),
``criterion.py``, ``fuser.py`` and its Mask2Former copy (``msdeformattn.py``,
``mask2former_transformer_decoder.py``); see ``shared/docs/checkpoint-layout.md``. Key names
here carry no DDP ``module.`` prefix (``DDP_PREFIX``).

Not in the file (their modules' ``state_dict()`` returns nothing): the Stable Diffusion
VAE/UNet/text encoder (with the ``shared_noise`` and ``uncond_inputs`` buffers of the LDM
extractor) and the CLIP models. Order: PyTorch's (own parameters and buffers, then children in
registration order).

MinkowskiEngine kernels: ``(K**3, C_in, C_out)`` for K > 1 or a strided conv, ``(C_in, C_out)``
for a 1x1x1 stride-1 conv; no conv has a bias (``final`` included: ``has_bias`` is commented out
in the authors' ``mink_unet.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from xmask3d.data.splits import SPLITS

__all__ = [
    "DDP_PREFIX",
    "NOT_IN_FILE",
    "PUBLISHED_SPLITS",
    "MinkUNetSpec",
    "MINKUNET34C_SPEC",
    "MINKUNET18A_SPEC",
    "PublishedArch",
    "minkunet_shapes",
    "published_arch",
    "published_shapes",
]

DDP_PREFIX = "module."
NOT_IN_FILE = ("Stable Diffusion v1.3 VAE, UNet and text encoder (sd-v1-3.ckpt)",
               "open_clip ViT-L-14 (openai weights): text tower and MaskCLIP vision tower")
PUBLISHED_SPLITS = ("scannet_b15n4", "scannet_b12n7", "scannet_b10n9", "scannet200_b170n30",
                    "scannet200_b150n50")

Shapes = dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class MinkUNetSpec:
    """MinkowskiEngine ``MinkUNetBase`` sizes: ``PLANES``, ``LAYERS``, ``INIT_DIM``, stem kernel."""

    planes: tuple[int, ...]
    layers: tuple[int, ...]
    init_dim: int = 32
    stem_kernel: int = 5


MINKUNET34C_SPEC = MinkUNetSpec((32, 64, 128, 256, 256, 128, 96, 96), (2, 3, 4, 6, 2, 2, 2, 2))
MINKUNET18A_SPEC = MinkUNetSpec((32, 64, 128, 256, 128, 128, 96, 96), (2, 2, 2, 2, 2, 2, 2, 2))


@dataclass(frozen=True)
class PublishedArch:
    """Hyper-parameters of the published model (``models/xmask3d.py``) that shape its weights.

    ``tap_channels`` are the inputs of the tapped SD blocks in the extractor's order: VAE
    encoder blocks 5, 7; UNet output blocks 2, 5, 8, 11; VAE decoder blocks 2, 5.
    """

    num_classes: int                       # base classes of the split (``cfg.classes``)
    backbone: MinkUNetSpec = MINKUNET34C_SPEC
    binary: MinkUNetSpec = MINKUNET18A_SPEC
    in_channels: int = 3
    out_3d: int = 256                      # MinkUNet output width (``last_dim``)
    binary_out: int = 256                  # binary MinkUNet output width
    global_dim: int = 768                  # ``point2text_adapter`` width = ``dim_latent``
    text_dim: int = 768                    # CLIP ViT-L/14 joint space
    tap_channels: tuple[int, ...] = (512, 512, 2560, 1920, 960, 640, 512, 512)
    projection_dim: int = 512
    projection_mid: int = 128              # BottleneckBlock width (projection_dim // 4)
    context_len: int = 77
    context_dim: int = 768                 # SD v1 cross-attention width
    time_dim: int = 1280                   # SD v1 time-embedding width
    conv_dim: int = 256
    mask_dim: int = 256
    pixel_layers: int = 6
    pixel_ffn: int = 1024
    pixel_heads: int = 8
    pixel_levels: int = 3
    pixel_points: int = 4
    fpn_levels: int = 1                    # log2(8) - log2(common_stride 4)
    hidden_dim: int = 256
    decoder_layers: int = 9
    decoder_ffn: int = 2048
    num_queries: int = 50
    decoder_levels: int = 3


def published_arch(split: str) -> PublishedArch:
    """The published architecture of one released split (``"scannet_b15n4"``, ...)."""
    if split not in PUBLISHED_SPLITS:
        raise ValueError(f"no released XMask3D checkpoint for split {split!r}; the authors "
                         f"released {', '.join(PUBLISHED_SPLITS)}")
    return PublishedArch(num_classes=len(SPLITS[split].base))


def _bn(prefix: str, c: int, *, me: bool) -> Shapes:
    p = f"{prefix}.bn." if me else f"{prefix}."
    return {p + "weight": (c,), p + "bias": (c,), p + "running_mean": (c,),
            p + "running_var": (c,), p + "num_batches_tracked": ()}


def _me_kernel(k: int, cin: int, cout: int, *, stride: int = 1) -> tuple[int, ...]:
    return (cin, cout) if k == 1 and stride == 1 else (k**3, cin, cout)


def _me_layer(prefix: str, inplanes: int, planes: int, blocks: int) -> tuple[Shapes, int]:
    """``ResNetBase._make_layer`` with MinkowskiEngine ``BasicBlock``s (expansion 1)."""
    out: Shapes = {}
    for i in range(blocks):
        b = f"{prefix}.{i}"
        out[f"{b}.conv1.kernel"] = _me_kernel(3, inplanes, planes)
        out.update(_bn(f"{b}.norm1", planes, me=True))
        out[f"{b}.conv2.kernel"] = _me_kernel(3, planes, planes)
        out.update(_bn(f"{b}.norm2", planes, me=True))
        if i == 0 and inplanes != planes:
            out[f"{b}.downsample.0.kernel"] = _me_kernel(1, inplanes, planes)
            out.update(_bn(f"{b}.downsample.1", planes, me=True))
        inplanes = planes
    return out, inplanes


def minkunet_shapes(spec: MinkUNetSpec, in_channels: int, out_channels: int,
                    prefix: str = "") -> Shapes:
    """Keys and shapes of a MinkowskiEngine ``MinkUNetBase`` (``mink_unet.py``)."""
    p = prefix
    out: Shapes = {f"{p}conv0p1s1.kernel": _me_kernel(spec.stem_kernel, in_channels,
                                                      spec.init_dim)}
    out.update(_bn(f"{p}bn0", spec.init_dim, me=True))
    inplanes = spec.init_dim
    skips = [spec.init_dim]
    for level, name in enumerate(("conv1p1s2", "conv2p2s2", "conv3p4s2", "conv4p8s2")):
        out[f"{p}{name}.kernel"] = _me_kernel(2, inplanes, inplanes, stride=2)
        out.update(_bn(f"{p}bn{level + 1}", inplanes, me=True))
        layer, inplanes = _me_layer(f"{p}block{level + 1}", inplanes, spec.planes[level],
                                    spec.layers[level])
        out.update(layer)
        skips.append(inplanes)
    skips.pop()
    for level, name in enumerate(("convtr4p16s2", "convtr5p8s2", "convtr6p4s2", "convtr7p2s2")):
        planes = spec.planes[4 + level]
        out[f"{p}{name}.kernel"] = _me_kernel(2, inplanes, planes, stride=2)
        out.update(_bn(f"{p}bntr{4 + level}", planes, me=True))
        layer, inplanes = _me_layer(f"{p}block{5 + level}", planes + skips.pop(), planes,
                                    spec.layers[4 + level])
        out.update(layer)
    out[f"{p}final.kernel"] = _me_kernel(1, inplanes, out_channels)
    return out


def _linear(prefix: str, cin: int, cout: int, *, bias: bool = True) -> Shapes:
    out: Shapes = {f"{prefix}.weight": (cout, cin)}
    if bias:
        out[f"{prefix}.bias"] = (cout,)
    return out


def _layer_norm(prefix: str, c: int) -> Shapes:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,)}


def _d2_conv(prefix: str, cin: int, cout: int, k: int) -> Shapes:
    """detectron2 ``Conv2d(bias=False, norm="GN")``: weight and ``norm.{weight,bias}``."""
    return {f"{prefix}.weight": (cout, cin, k, k), **_layer_norm(f"{prefix}.norm", cout)}


def _bottleneck(prefix: str, cin: int, cout: int, mid: int) -> Shapes:
    """detectron2 ``BottleneckBlock`` with GroupNorm (bottleneck width ``mid``)."""
    out: Shapes = _d2_conv(f"{prefix}.shortcut", cin, cout, 1) if cin != cout else {}
    out.update(_d2_conv(f"{prefix}.conv1", cin, mid, 1))
    out.update(_d2_conv(f"{prefix}.conv2", mid, mid, 3))
    out.update(_d2_conv(f"{prefix}.conv3", mid, cout, 1))
    return out


def _mlp(prefix: str, dims: list[int]) -> Shapes:
    out: Shapes = {}
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        out.update(_linear(f"{prefix}.layers.{i}", a, b))
    return out


def _mha(prefix: str, d: int) -> Shapes:
    return {f"{prefix}.in_proj_weight": (3 * d, d), f"{prefix}.in_proj_bias": (3 * d,),
            **_linear(f"{prefix}.out_proj", d, d)}


def _pixel_decoder(a: PublishedArch, p: str) -> Shapes:
    """Mask2Former ``MSDeformAttnPixelDecoder`` (s5, s4, s3 in the encoder; s2 in the FPN)."""
    d = a.conv_dim
    out: Shapes = {}
    for i in range(a.pixel_levels):
        out.update({f"{p}.input_proj.{i}.0.weight": (d, a.projection_dim, 1, 1),
                    f"{p}.input_proj.{i}.0.bias": (d,), **_layer_norm(f"{p}.input_proj.{i}.1", d)})
    out[f"{p}.transformer.level_embed"] = (a.pixel_levels, d)
    n = a.pixel_heads * a.pixel_levels * a.pixel_points
    for i in range(a.pixel_layers):
        q = f"{p}.transformer.encoder.layers.{i}"
        out.update(_linear(f"{q}.self_attn.sampling_offsets", d, 2 * n))
        out.update(_linear(f"{q}.self_attn.attention_weights", d, n))
        out.update(_linear(f"{q}.self_attn.value_proj", d, d))
        out.update(_linear(f"{q}.self_attn.output_proj", d, d))
        out.update(_layer_norm(f"{q}.norm1", d))
        out.update(_linear(f"{q}.linear1", d, a.pixel_ffn))
        out.update(_linear(f"{q}.linear2", a.pixel_ffn, d))
        out.update(_layer_norm(f"{q}.norm2", d))
    out.update({f"{p}.mask_features.weight": (a.mask_dim, d, 1, 1),
                f"{p}.mask_features.bias": (a.mask_dim,)})
    for i in range(1, a.fpn_levels + 1):
        out.update(_d2_conv(f"{p}.adapter_{i}", a.projection_dim, d, 1))
        out.update(_d2_conv(f"{p}.layer_{i}", d, d, 3))
    return out


def _predictor(a: PublishedArch, p: str) -> Shapes:
    """``ODISEMultiScaleMaskedTransformerDecoder`` with ``post_mask_embed`` (no class Linear)."""
    h = a.hidden_dim
    out: Shapes = {}
    for i in range(a.decoder_layers):
        out.update(_mha(f"{p}.transformer_self_attention_layers.{i}.self_attn", h))
        out.update(_layer_norm(f"{p}.transformer_self_attention_layers.{i}.norm", h))
    for i in range(a.decoder_layers):
        out.update(_mha(f"{p}.transformer_cross_attention_layers.{i}.multihead_attn", h))
        out.update(_layer_norm(f"{p}.transformer_cross_attention_layers.{i}.norm", h))
    for i in range(a.decoder_layers):
        f = f"{p}.transformer_ffn_layers.{i}"
        out.update({**_linear(f"{f}.linear1", h, a.decoder_ffn),
                    **_linear(f"{f}.linear2", a.decoder_ffn, h), **_layer_norm(f"{f}.norm", h)})
    out.update(_layer_norm(f"{p}.decoder_norm", h))
    out[f"{p}.query_feat.weight"] = (a.num_queries, h)
    out[f"{p}.query_embed.weight"] = (a.num_queries, h)
    out[f"{p}.level_embed.weight"] = (a.decoder_levels, h)
    out.update(_mlp(f"{p}.mask_embed", [h, h, h, a.mask_dim]))
    out[f"{p}.post_mask_embed.logit_scale"] = ()
    out.update(_layer_norm(f"{p}.post_mask_embed.pool_proj.0", h))
    out.update(_linear(f"{p}.post_mask_embed.pool_proj.1", h, h))
    out.update(_layer_norm(f"{p}.post_mask_embed.mask_embed.0", a.mask_dim))
    out.update(_mlp(f"{p}.post_mask_embed.mask_embed.1", [a.mask_dim, h, h, a.text_dim]))
    return out


def published_shapes(arch: PublishedArch) -> Shapes:
    """Every key (without ``module.``) of the released ``state_dict`` and its shape, in order."""
    a = arch
    out: Shapes = {}
    out.update(minkunet_shapes(a.backbone, a.in_channels, a.out_3d, "pc_decoder.encoder."))
    # the adapter reads the bottleneck (block4, planes[3] wide; 256 = last_dim in the release)
    out.update(_linear("pc_decoder.point2text_adapter", a.backbone.planes[3], a.global_dim))
    out.update(_linear("pc_decoder.decoder", a.out_3d, a.text_dim))
    out.update(minkunet_shapes(a.binary, a.in_channels, a.binary_out, "pc_binary_head.encoder."))
    out.update(_bn("pc_binary_head.batch_norm", a.binary_out, me=False))
    out.update(_linear("pc_binary_head.fc", a.binary_out, 1))
    out["binary_loss_func.pos_weight"] = (1,)
    fe = "backbone.feature_extractor"
    out[f"{fe}.alpha_cond"] = (1, a.context_len, a.context_dim)
    out[f"{fe}.alpha_cond_time_embed"] = (a.time_dim,)
    out[f"{fe}.clip_project.positional_embedding"] = (1, a.context_len, a.context_dim)
    out.update(_linear(f"{fe}.clip_project.linear", a.global_dim, a.context_dim))
    out[f"{fe}.time_embed_project.positional_embedding"] = (1, 1, a.time_dim)
    out.update(_linear(f"{fe}.time_embed_project.linear", a.global_dim, a.time_dim))
    for i, c in enumerate(a.tap_channels):
        out.update(_bottleneck(f"backbone.feature_projections.{i}.0", c, a.projection_dim,
                               a.projection_mid))
    out.update(_pixel_decoder(a, "sem_seg_head.pixel_decoder"))
    out.update(_predictor(a, "sem_seg_head.predictor"))
    out["criterion.empty_weight"] = (a.num_classes + 1,)
    out.update(_linear("criterion.fuser.linear", 2 * a.text_dim, a.text_dim))
    out["category_head.null_embed"] = (1, a.text_dim)
    return out
