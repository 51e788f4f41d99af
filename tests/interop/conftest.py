"""Fixtures of tests/interop: a tiny Stable Diffusion v1 single file (original LDM key names).

Key names follow the LDM code of SD v1 (``openaimodel.UNetModel`` with ``SpatialTransformer``,
``autoencoder.AutoencoderKL``, ``FrozenCLIPEmbedder`` = transformers ``CLIPTextModel``); values
are seeded random. Used to test that diffusers' single-file converters run on our side.
"""

from __future__ import annotations

import pytest
import torch

Shapes = dict[str, tuple[int, ...]]


def _gn(p: str, c: int) -> Shapes:
    return {f"{p}.weight": (c,), f"{p}.bias": (c,)}


def _conv(p: str, cin: int, cout: int, k: int) -> Shapes:
    return {f"{p}.weight": (cout, cin, k, k), f"{p}.bias": (cout,)}


def _lin(p: str, cin: int, cout: int, bias: bool = True) -> Shapes:
    return {f"{p}.weight": (cout, cin), **({f"{p}.bias": (cout,)} if bias else {})}


def _res(p: str, cin: int, cout: int, emb: int) -> Shapes:
    out = {**_gn(f"{p}.in_layers.0", cin), **_conv(f"{p}.in_layers.2", cin, cout, 3),
           **_lin(f"{p}.emb_layers.1", emb, cout), **_gn(f"{p}.out_layers.0", cout),
           **_conv(f"{p}.out_layers.3", cout, cout, 3)}
    if cin != cout:
        out.update(_conv(f"{p}.skip_connection", cin, cout, 1))
    return out


def _transformer(p: str, c: int, ctx: int) -> Shapes:
    b = f"{p}.transformer_blocks.0"
    out = {**_gn(f"{p}.norm", c), **_conv(f"{p}.proj_in", c, c, 1)}
    for attn, kv in (("attn1", c), ("attn2", ctx)):
        out.update({**_lin(f"{b}.{attn}.to_q", c, c, False),
                    **_lin(f"{b}.{attn}.to_k", kv, c, False),
                    **_lin(f"{b}.{attn}.to_v", kv, c, False), **_lin(f"{b}.{attn}.to_out.0", c, c)})
    out.update({**_lin(f"{b}.ff.net.0.proj", c, 8 * c), **_lin(f"{b}.ff.net.2", 4 * c, c)})
    for i in (1, 2, 3):
        out.update(_gn(f"{b}.norm{i}", c))
    out.update(_conv(f"{p}.proj_out", c, c, 1))
    return out


def ldm_unet_shapes(channels: tuple[int, ...], layers: int, ctx: int) -> Shapes:
    """``model.diffusion_model.*`` of an SD v1-layout UNet (attention on all but the last level)."""
    p, c0, emb, n = "model.diffusion_model", channels[0], 4 * channels[0], len(channels)
    out = {**_lin(f"{p}.time_embed.0", c0, emb), **_lin(f"{p}.time_embed.2", emb, emb),
           **_conv(f"{p}.input_blocks.0.0", 4, c0, 3)}
    skips, ch, idx = [c0], c0, 0
    for level, width in enumerate(channels):
        for _ in range(layers):
            idx += 1
            out.update(_res(f"{p}.input_blocks.{idx}.0", ch, width, emb))
            ch = width
            if level < n - 1:
                out.update(_transformer(f"{p}.input_blocks.{idx}.1", ch, ctx))
            skips.append(ch)
        if level < n - 1:
            idx += 1
            out.update(_conv(f"{p}.input_blocks.{idx}.0.op", ch, ch, 3))
            skips.append(ch)
    out.update({**_res(f"{p}.middle_block.0", ch, ch, emb),
                **_transformer(f"{p}.middle_block.1", ch, ctx),
                **_res(f"{p}.middle_block.2", ch, ch, emb)})
    idx = 0
    for level in reversed(range(n)):
        width = channels[level]
        for r in range(layers + 1):
            out.update(_res(f"{p}.output_blocks.{idx}.0", ch + skips.pop(), width, emb))
            ch, sub = width, 1
            if level < n - 1:
                out.update(_transformer(f"{p}.output_blocks.{idx}.1", ch, ctx))
                sub = 2
            if level > 0 and r == layers:
                out.update(_conv(f"{p}.output_blocks.{idx}.{sub}.conv", ch, ch, 3))
            idx += 1
    out.update({**_gn(f"{p}.out.0", c0), **_conv(f"{p}.out.2", c0, 4, 3)})
    return out


def _vae_res(p: str, cin: int, cout: int) -> Shapes:
    out = {**_gn(f"{p}.norm1", cin), **_conv(f"{p}.conv1", cin, cout, 3),
           **_gn(f"{p}.norm2", cout), **_conv(f"{p}.conv2", cout, cout, 3)}
    if cin != cout:
        out.update(_conv(f"{p}.nin_shortcut", cin, cout, 1))
    return out


def _vae_mid(p: str, c: int) -> Shapes:
    out = {**_vae_res(f"{p}.block_1", c, c), **_gn(f"{p}.attn_1.norm", c)}
    for name in ("q", "k", "v", "proj_out"):
        out.update(_conv(f"{p}.attn_1.{name}", c, c, 1))
    out.update(_vae_res(f"{p}.block_2", c, c))
    return out


def ldm_vae_shapes(channels: tuple[int, ...], layers: int, z: int = 4) -> Shapes:
    """``first_stage_model.*`` of an SD v1-layout KL autoencoder."""
    e, d, n = "first_stage_model.encoder", "first_stage_model.decoder", len(channels)
    out = _conv(f"{e}.conv_in", 3, channels[0], 3)
    ch = channels[0]
    for i, width in enumerate(channels):
        for j in range(layers):
            out.update(_vae_res(f"{e}.down.{i}.block.{j}", ch, width))
            ch = width
        if i < n - 1:
            out.update(_conv(f"{e}.down.{i}.downsample.conv", ch, ch, 3))
    out.update({**_vae_mid(f"{e}.mid", ch), **_gn(f"{e}.norm_out", ch),
                **_conv(f"{e}.conv_out", ch, 2 * z, 3)})
    out.update({**_conv(f"{d}.conv_in", z, ch, 3), **_vae_mid(f"{d}.mid", ch)})
    for i in reversed(range(n)):
        for j in range(layers + 1):
            out.update(_vae_res(f"{d}.up.{i}.block.{j}", ch, channels[i]))
            ch = channels[i]
        if i > 0:
            out.update(_conv(f"{d}.up.{i}.upsample.conv", ch, ch, 3))
    out.update({**_gn(f"{d}.norm_out", ch), **_conv(f"{d}.conv_out", ch, 3, 3),
                **_conv("first_stage_model.quant_conv", 2 * z, 2 * z, 1),
                **_conv("first_stage_model.post_quant_conv", z, z, 1)})
    return out


def clip_text_shapes(prefix: str, width: int, layers: int, vocab: int, length: int) -> Shapes:
    """transformers ``CLIPTextModel`` keys (as in SD v1's ``cond_stage_model.transformer``)."""
    t = f"{prefix}text_model"
    out = {f"{t}.embeddings.token_embedding.weight": (vocab, width),
           f"{t}.embeddings.position_embedding.weight": (length, width)}
    for i in range(layers):
        q = f"{t}.encoder.layers.{i}"
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            out.update(_lin(f"{q}.self_attn.{proj}", width, width))
        out.update({**_gn(f"{q}.layer_norm1", width), **_lin(f"{q}.mlp.fc1", width, 4 * width),
                    **_lin(f"{q}.mlp.fc2", 4 * width, width), **_gn(f"{q}.layer_norm2", width)})
    out.update(_gn(f"{t}.final_layer_norm", width))
    return out


def random_state(shapes: Shapes, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen) * 0.05 for k, s in shapes.items()}


UNET_CH, VAE_CH, CTX, TEXT_LEN, TEXT_VOCAB = (32, 64, 64), (32, 64), 32, 8, 100


@pytest.fixture
def tiny_sd(tmp_path):
    """``make(name, ctx=32) -> (file, config folder, state)``: a tiny SD v1 .ckpt and the
    diffusers configs (``unet/``, ``vae/``) of the architecture it should fit."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from xmask3d.models.mask2d.sd_loading import tiny_unet_config

    cfg = tmp_path / "sd-config"
    UNet2DConditionModel(**tiny_unet_config(block_out_channels=UNET_CH, cross_attention_dim=CTX,
                                            layers_per_block=1)).save_config(cfg / "unet")
    AutoencoderKL(block_out_channels=VAE_CH, layers_per_block=1, latent_channels=4,
                  down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2).save_config(cfg / "vae")

    def make(name: str, ctx: int = CTX):
        shapes = {**ldm_unet_shapes(UNET_CH, 1, ctx), **ldm_vae_shapes(VAE_CH, 1),
                  **clip_text_shapes("cond_stage_model.transformer.", CTX, 2, TEXT_VOCAB,
                                     TEXT_LEN)}
        state = random_state(shapes, seed=3)
        path = tmp_path / name
        torch.save({"state_dict": state, "global_step": 1}, path)
        return path, cfg, state

    return make
