"""The one place where a config becomes model objects (``build_model``, ``build_text``, ...)."""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from xmask3d.config import XMask3DConfig
from xmask3d.errors import ConfigError
from xmask3d.losses.criterion import LossWeights
from xmask3d.losses.matcher import HungarianMatcher
from xmask3d.models.backbone3d import SparseResUNet
from xmask3d.models.fusion.fuse import MaskFeatureFusion
from xmask3d.models.mask2d.diffusion_features import DiffusionFeatureExtractor
from xmask3d.models.mask2d.mask_decoder import MaskedAttentionDecoder
from xmask3d.models.mask2d.mask_embed import PooledMaskEmbed
from xmask3d.models.mask2d.pixel_decoder import MultiScaleDeformablePixelDecoder
from xmask3d.models.mask2d.sd_loading import (
    load_sd_empty_context,
    load_sd_unet,
    load_sd_vae,
    sd15_unet_config,
    sd15_vae_config,
    tiny_unet_config,
)
from xmask3d.models.mask2d.tap_projection import StrideGroupedProjection
from xmask3d.models.text.classifier import TextClassifier
from xmask3d.models.text.encoders import build_text_encoder
from xmask3d.models.xmask3d import MaskGenerator2D, XMask3D

log = logging.getLogger(__name__)


def build_text(cfg: XMask3DConfig) -> TextClassifier:
    """The text classifier (encoder + prompt templates + embedding cache)."""
    encoder = build_text_encoder(cfg.text.encoder, cfg.text.clip_path or None)
    return TextClassifier(encoder, templates=cfg.text.templates,
                          cache_dir=cfg.text.cache_dir or None)


def _unet(cfg: XMask3DConfig):
    m = cfg.mask2d
    if m.sd_path and m.random_sd:
        raise ConfigError("mask2d.random_sd and mask2d.sd_path exclude each other")
    if m.sd_path:
        unet = load_sd_unet(m.sd_path, config=m.sd_config_path or None, frozen=m.freeze_unet)
        vae = load_sd_vae(m.sd_path, config=m.sd_config_path or None)
        uncond = None
        if Path(m.sd_path).is_dir():
            uncond = load_sd_empty_context(m.sd_path)
        return unet, vae, uncond
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if m.random_sd:
        unet = UNet2DConditionModel(**sd15_unet_config())
        vae = AutoencoderKL(**sd15_vae_config()).eval().requires_grad_(False)
        return unet.requires_grad_(not m.freeze_unet), vae, None
    unet = UNet2DConditionModel(**tiny_unet_config(
        block_out_channels=tuple(m.block_out_channels), layers_per_block=m.layers_per_block,
        cross_attention_dim=m.cross_attention_dim, attention_head_dim=m.attention_head_dim))
    return unet, None, None


def _cond_dim(cfg: XMask3DConfig, text_dim: int, unet) -> int:
    mode = cfg.mask2d.condition
    if mode == "text":
        return text_dim
    if mode == "image":   # mean and std of the latent input (see XMask3D._condition_vector)
        return 2 * (unet.config.in_channels if cfg.mask2d.sd_path else 3 * 8 * 8)
    return cfg.backbone3d.global_dim


def build_mask_generator(cfg: XMask3DConfig, text_dim: int) -> MaskGenerator2D:
    """The 2D branch: diffusion features, tap projection, pixel decoder, decoder, mask embeds."""
    m = cfg.mask2d
    unet, vae, uncond = _unet(cfg)
    if uncond is not None and uncond.shape[1] != m.context_len:
        raise ConfigError(f"mask2d.context_len={m.context_len} but the SD text context has "
                          f"{uncond.shape[1]} tokens")
    taps = [(i, len(unet.up_blocks[i].resnets) - 1) for i in m.taps]
    diffusion = DiffusionFeatureExtractor(
        unet, cond_dim=_cond_dim(cfg, text_dim, unet), vae=vae, unet_taps=taps,
        vae_encoder_taps=[tuple(t) for t in m.vae_encoder_taps] if vae is not None else (),
        vae_decoder_taps=[tuple(t) for t in m.vae_decoder_taps] if vae is not None else (),
        image_tap_strides=m.image_tap_strides, input_size=m.input_size, cond_mode=m.condition,
        context_len=m.context_len, uncond_context=uncond, timestep=m.timestep,
        freeze_unet=m.freeze_unet,
        gradient_checkpointing=m.gradient_checkpointing)
    proj = StrideGroupedProjection(diffusion.out_channels, diffusion.strides,
                                   out_channels=m.projection_dim, mid_channels=m.projection_mid)
    strides = proj.out_strides
    tr = [n for n in strides if strides[n] > m.common_stride][-3:]
    pixel = MultiScaleDeformablePixelDecoder(
        proj.out_channels, strides, transformer_in_features=tr, conv_dim=m.conv_dim,
        mask_dim=m.mask_dim, n_heads=m.pixel_heads, ffn_dim=m.pixel_ffn,
        enc_layers=m.pixel_layers, common_stride=m.common_stride,
        norm_groups=32 if m.conv_dim % 32 == 0 else 8)
    decoder = MaskedAttentionDecoder(
        m.hidden_dim, m.decoder_heads, m.decoder_ffn, m.decoder_layers, m.num_queries,
        m.mask_dim, n_levels=pixel.num_multiscale, in_channels=m.conv_dim)
    embed = PooledMaskEmbed(m.hidden_dim, m.mask_dim, text_dim,
                            logit_scale_init=m.logit_scale_init)
    return MaskGenerator2D(diffusion=diffusion, tap_projection=proj, pixel_decoder=pixel,
                           mask_decoder=decoder, mask_embed=embed)


def _sparse_unet(in_ch: int, out_ch: int, *, enc, enc_blocks, dec, dec_blocks,
                 cfg: XMask3DConfig) -> SparseResUNet:
    b = cfg.backbone3d
    return SparseResUNet(in_ch, out_ch, stem_channels=b.stem_channels, stem_kernel=b.stem_kernel,
                         enc_channels=tuple(enc), enc_blocks=tuple(enc_blocks),
                         dec_channels=tuple(dec), dec_blocks=tuple(dec_blocks),
                         backend=b.backend, head_bias=b.head_bias)


def build_clip_head(cfg: XMask3DConfig) -> nn.Module | None:
    """The CLIP mask-token head when the CLIP folder holds a vision tower, else ``None``."""
    if cfg.text.encoder != "clip" or not (Path(cfg.text.clip_path) / "config.json").is_file():
        return None
    import json

    if "vision_config" not in json.loads((Path(cfg.text.clip_path) / "config.json").read_text()):
        return None
    from transformers import CLIPVisionModelWithProjection

    from xmask3d.models.text.clip_mask_head import CLIPMaskTokenHead

    vision = CLIPVisionModelWithProjection.from_pretrained(
        cfg.text.clip_path, local_files_only=True, attn_implementation="eager")
    return CLIPMaskTokenHead(vision)


def input_channels(cfg: XMask3DConfig) -> int:
    """Width of the 3D networks' voxel input: RGB, plus the height when ``data.height_channel``."""
    return 4 if cfg.data.height_channel else 3


def build_model(cfg: XMask3DConfig, *, text_dim: int) -> XMask3D:
    """Build XMask3D from a validated config; ``text_dim`` is the text encoder's width E."""
    b = cfg.backbone3d
    in_ch = input_channels(cfg)
    backbone = _sparse_unet(in_ch, b.out_channels, enc=b.enc_channels, enc_blocks=b.enc_blocks,
                            dec=b.dec_channels, dec_blocks=b.dec_blocks, cfg=cfg)
    binary_net = _sparse_unet(in_ch, b.binary_out_channels, enc=b.binary_enc_channels,
                              enc_blocks=b.binary_enc_blocks, dec=b.binary_dec_channels,
                              dec_blocks=b.binary_dec_blocks, cfg=cfg)
    binary_head = nn.Sequential(nn.BatchNorm1d(b.binary_out_channels), nn.ReLU(),
                                nn.Linear(b.binary_out_channels, 1))
    return XMask3D(
        backbone3d=backbone, point_proj=nn.Linear(b.out_channels, text_dim),
        global_proj=nn.Linear(backbone.bottleneck_channels, b.global_dim),
        binary_net=binary_net, binary_head=binary_head,
        mask_generator=build_mask_generator(cfg, text_dim),
        fusion=MaskFeatureFusion(text_dim, enabled=cfg.fusion.enabled,
                                 uncovered=cfg.fusion.uncovered),
        condition=cfg.mask2d.condition, clip_head=build_clip_head(cfg),
        binary_thresh=cfg.fusion.binary_thresh)


def loss_weights(cfg: XMask3DConfig) -> LossWeights:
    """Loss weights and options from ``cfg.loss``."""
    c = cfg.loss
    return LossWeights(
        ce=c.ce, mask=c.mask, dice=c.dice, point_fused=c.point_fused, point_3d=c.point_3d,
        caption_fused=c.caption_fused, caption_3d=c.caption_3d, caption_2d=c.caption_2d,
        binary=c.binary, mask_alignment=c.mask_alignment, eos_coef=c.eos_coef,
        num_points=c.num_points, binary_pos_weight=c.binary_pos_weight,
        alignment_selection=c.alignment_selection,
        unlabelled_as_no_object=c.unlabelled_as_no_object, region_3d=c.region_3d,
        region_2d=c.region_2d, region_fused=c.region_fused,
        region_temperature=c.region_temperature, region_max_points=c.region_max_points,
        region_base_weight=c.region_base_weight,
        region_class_candidates=c.region_class_candidates,
        region_about_share=c.region_about_share)


def build_matcher(cfg: XMask3DConfig) -> HungarianMatcher:
    """The Hungarian matcher with the set-loss weights as costs (method §3.2)."""
    c = cfg.loss
    return HungarianMatcher(cost_class=c.ce, cost_mask=c.mask, cost_dice=c.dice,
                            num_points=c.num_points)
