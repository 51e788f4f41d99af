"""Tests of the 3D-conditioned diffusion feature extractor and of local SD weight loading."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel

from xmask3d.errors import ConfigError, DataError
from xmask3d.models.mask2d.diffusion_features import (
    DiffusionFeatureExtractor,
    scaled_linear_alphas_cumprod,
)
from xmask3d.models.mask2d.sd_loading import (
    load_sd_empty_context,
    load_sd_unet,
    load_sd_vae,
    sd15_unet_config,
    tiny_unet_config,
)

COND_DIM, CTX_LEN, SIZE = 12, 6, 64


def _unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**tiny_unet_config())


def _vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )


def _extractor(unet=None, **kwargs) -> DiffusionFeatureExtractor:
    kwargs.setdefault("input_size", SIZE)
    return DiffusionFeatureExtractor(
        unet if unet is not None else _unet(), cond_dim=COND_DIM, context_len=CTX_LEN, **kwargs
    )


def _inputs(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, 48, 60, generator=gen), torch.randn(batch, COND_DIM, generator=gen)


def _perturb_gates(ex: DiffusionFeatureExtractor) -> None:
    with torch.no_grad():
        ex.condition.context_gate.normal_()
        ex.condition.time_gate.normal_()


def _record(seen: dict, key: str, pick):
    """A hook storing ``pick(*hook_args)`` under ``key`` once and returning None."""

    def hook(*args) -> None:
        seen.setdefault(key, pick(*args))

    return hook


def _loss(feats) -> torch.Tensor:
    return sum((v * torch.linspace(-1, 1, v.numel()).view_as(v)).sum() for v in feats.values())


# ---------------------------------------------------------------------------------- outputs
def test_keys_shapes_strides_and_channels() -> None:
    ex = _extractor(image_tap_strides=(4,))
    img, g = _inputs()
    out = ex(img, g)
    assert list(out.features) == ["image_s4", "unet_up2_res1", "unet_up1_res1", "unet_up0_res1"]
    assert out.strides == ex.strides == {
        "image_s4": 4, "unet_up2_res1": 8, "unet_up1_res1": 16, "unet_up0_res1": 32
    }
    # Up-block resnet inputs are [h, skip]: (32 + 32), (64 + 32), (64 + 64) channels.
    assert ex.out_channels == {
        "image_s4": 48, "unet_up2_res1": 64, "unet_up1_res1": 96, "unet_up0_res1": 128
    }
    for name, feat in out.features.items():
        s = out.strides[name]
        assert feat.shape == (2, ex.out_channels[name], SIZE // s, SIZE // s)


def test_non_square_input_size_not_divisible_by_unet_depth() -> None:
    ex = _extractor(input_size=(48, 64))  # latent 6 x 8 -> 3 x 4 -> 2 x 2 inside the UNet
    out = ex(*_inputs())
    shapes = {k: tuple(v.shape[-2:]) for k, v in out.features.items()}
    assert shapes == {"unet_up2_res1": (6, 8), "unet_up1_res1": (3, 4), "unet_up0_res1": (2, 2)}


def test_image_tap_is_the_resized_image_in_minus_one_one() -> None:
    ex = _extractor(image_tap_strides=(4,))
    img = torch.rand(1, 3, SIZE, SIZE)  # already input_size: no resampling
    feat = ex(img, torch.zeros(1, COND_DIM)).features["image_s4"]
    torch.testing.assert_close(feat[0, :16].view(4, 4, 16, 16)[0, 0], img[0, 0, ::4, ::4] * 2 - 1)


def test_determinism_and_seeded_noise() -> None:
    img, g = _inputs()
    a, b = _extractor(_unet(3)), _extractor(_unet(3))
    torch.manual_seed(123)  # the global RNG must not matter
    c = _extractor(_unet(3))
    assert torch.equal(a.noise, c.noise) and torch.equal(a.latent_proj, c.latent_proj)
    fa, fb = a(img, g).features, b(img, g).features
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    assert not torch.equal(_extractor(noise_seed=7).noise, a.noise)


def test_schedule_and_unet_input_follow_q_sample() -> None:
    abar = scaled_linear_alphas_cumprod()
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    assert abar[0].item() == pytest.approx(1 - 0.00085, abs=1e-12)
    assert abar[999].item() == pytest.approx(torch.prod(1 - betas).item(), rel=1e-9)
    ex = _extractor(timestep=10)
    assert ex.signal_scale == pytest.approx(abar[10].item() ** 0.5)
    img, g = _inputs()
    seen = {}
    ex.unet.conv_in.register_forward_pre_hook(_record(seen, "x", lambda _m, a: a[0]))
    ex(img, g)
    latent = torch.nn.functional.conv2d(ex.encode_images(img)["latent_input"], ex.latent_proj)
    expect = abar[10].sqrt().item() * latent + (1 - abar[10]).sqrt().item() * ex.noise
    torch.testing.assert_close(seen["x"], expect)


# ---------------------------------------------------------------------------------- condition
def test_zero_gates_equal_unconditioned_run_exactly() -> None:
    unet = _unet()
    ex3d = _extractor(copy.deepcopy(unet))
    exnone = _extractor(copy.deepcopy(unet), cond_mode="none")
    img, g = _inputs()
    f3d, fnone = ex3d(img, g).features, exnone(img, None).features
    assert all(torch.equal(f3d[k], fnone[k]) for k in f3d)
    _perturb_gates(ex3d)
    f3d = ex3d(img, g).features
    assert all(not torch.allclose(f3d[k], fnone[k]) for k in f3d)


def test_context_and_time_offset_reach_the_unet() -> None:
    ex = _extractor()
    _perturb_gates(ex)
    img, g = _inputs()
    seen = {}
    ex.unet.register_forward_pre_hook(
        _record(seen, "ctx", lambda _m, _a, kw: kw["encoder_hidden_states"]), with_kwargs=True
    )
    ex.unet.up_blocks[0].resnets[0].register_forward_pre_hook(
        _record(seen, "temb", lambda _m, a: a[1])
    )
    ex(img, g)
    cond = ex.condition(g)
    torch.testing.assert_close(seen["ctx"], cond.context)
    t = torch.zeros(2, dtype=torch.long)
    emb = ex.unet.time_embedding(ex.unet.time_proj(t))
    torch.testing.assert_close(seen["temb"], emb + cond.time_offset)
    assert cond.time_offset.abs().max() > 1e-3


def test_tap_holds_the_skip_and_unet_stops_after_last_tap() -> None:
    ex = _extractor()
    img, g = _inputs()
    calls = {"conv_out": 0, "last_attn": 0}
    ex.unet.conv_out.register_forward_hook(lambda *_: calls.__setitem__("conv_out", 1))
    ex.unet.up_blocks[2].attentions[1].register_forward_hook(
        lambda *_: calls.__setitem__("last_attn", 1)
    )
    seen = {}
    ex.unet.conv_in.register_forward_hook(_record(seen, "skip", lambda _m, _a, out: out))
    feat = ex(img, g).features["unet_up2_res1"]
    # Input of the last resnet = [h, conv_in output] (the first skip of the UNet).
    torch.testing.assert_close(feat[:, -32:], seen["skip"])
    assert calls == {"conv_out": 0, "last_attn": 0}


# ---------------------------------------------------------------------------------- gradients
def test_frozen_unet_gets_no_grad_but_condition_does() -> None:
    ex = _extractor(freeze_unet=True)
    _perturb_gates(ex)
    img, g = _inputs()
    g.requires_grad_(True)
    _loss(ex(img, g).features).backward()
    assert all(p.grad is None for p in ex.unet.parameters())
    assert g.grad.abs().sum() > 0
    for name, p in ex.condition.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_trainable_unet_every_trainable_parameter_gets_grad() -> None:
    ex = _extractor(freeze_unet=False, pixel_latent="learnable")
    img, g = _inputs()
    _loss(ex(img, g).features).backward()
    no_grad = [n for n, p in ex.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    assert ex.unet.down_blocks[0].resnets[0].conv1.weight.grad.abs().sum() > 0
    assert ex.latent_proj.grad.abs().sum() > 0
    # Layers after the last tap never run: they are frozen, not left without a gradient.
    assert not ex.unet.conv_out.weight.requires_grad
    assert not ex.unet.up_blocks[2].resnets[1].conv1.weight.requires_grad
    assert ex.unet.up_blocks[2].resnets[0].conv1.weight.requires_grad


def test_fixed_pixel_latent_is_a_buffer() -> None:
    ex = _extractor(pixel_latent="fixed")
    assert "latent_proj" in dict(ex.named_buffers())
    assert "latent_proj" not in dict(ex.named_parameters())


@pytest.mark.parametrize("freeze", [True, False])
def test_gradient_checkpointing_same_values_and_grads(freeze: bool) -> None:
    unet = _unet()
    plain = _extractor(copy.deepcopy(unet), freeze_unet=freeze)
    ckpt = _extractor(copy.deepcopy(unet), freeze_unet=freeze, gradient_checkpointing=True)
    _perturb_gates(plain)
    ckpt.load_state_dict(plain.state_dict())
    img, g = _inputs()
    grads = []
    for ex in (plain, ckpt):
        gi = g.clone().requires_grad_(True)
        feats = ex(img, gi).features
        _loss(feats).backward()
        grads.append((feats, gi.grad, ex.condition.context_gate.grad))
    (fa, ga, ca), (fb, gb, cb) = grads
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    torch.testing.assert_close(ga, gb)
    torch.testing.assert_close(ca, cb)
    if not freeze:
        wa = plain.unet.mid_block.resnets[0].conv1.weight.grad
        torch.testing.assert_close(wa, ckpt.unet.mid_block.resnets[0].conv1.weight.grad)


# ---------------------------------------------------------------------------------- VAE + cache
def _vae_extractor(**kwargs) -> DiffusionFeatureExtractor:
    return _extractor(
        vae=_vae(), vae_encoder_taps=((0, 0), (1, 0)), vae_decoder_taps=((0, 1),), **kwargs
    )


def test_vae_taps_latent_and_truncated_decoder() -> None:
    ex = _vae_extractor(input_size=32)  # VAE stride 2: latent 16 x 16
    counts = {"dec_resnets": 0, "dec_conv_out": 0}

    def count(key):
        return lambda *_: counts.__setitem__(key, counts[key] + 1)

    for block in ex.vae.decoder.up_blocks:
        for resnet in block.resnets:
            resnet.register_forward_hook(count("dec_resnets"))
    ex.vae.decoder.conv_out.register_forward_hook(count("dec_conv_out"))
    img, g = _inputs()
    out = ex(img, g)
    assert {k: out.strides[k] for k in out.features if k.startswith("vae")} == {
        "vae_enc_down0_res0": 1, "vae_enc_down1_res0": 2, "vae_dec_up0_res1": 2
    }
    assert out.features["vae_enc_down1_res0"].shape == (2, 8, 16, 16)
    assert out.features["vae_dec_up0_res1"].shape == (2, 16, 16, 16)
    assert out.features["unet_up2_res1"].shape == (2, 64, 16, 16)
    # Decoder: only up_blocks[0].resnets[0] ran to completion (resnets[1] is the tap's target).
    assert counts == {"dec_resnets": 1, "dec_conv_out": 0}
    x = torch.nn.functional.interpolate(img, size=(32, 32), mode="bilinear", antialias=True) * 2 - 1
    with torch.no_grad():
        mean = ex.vae.encode(x).latent_dist.mean
        torch.testing.assert_close(out.features["vae_enc_down0_res0"], ex.vae.encoder.conv_in(x))
    torch.testing.assert_close(ex.encode_images(img)["latent_input"], mean * 0.18215)
    assert all(not p.requires_grad for p in ex.vae.parameters())
    ex.train()
    assert not ex.vae.training and not ex.unet.training and ex.condition.training


def test_cache_identical_and_skips_encoder() -> None:
    ex = _vae_extractor(cache_size=2)
    calls = []
    ex.vae.encoder.register_forward_hook(lambda _m, a, _o: calls.append(a[0].shape[0]))
    img, g = _inputs(batch=2)
    first = ex(img, g, image_ids=["a", "b"]).features
    again = ex(img, g, image_ids=["a", "b"]).features
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert calls == [2]
    swapped = ex(img.flip(0), g.flip(0), image_ids=["b", "c"]).features
    assert calls == [2, 1]  # only "c" was encoded
    torch.testing.assert_close(swapped["vae_enc_down1_res0"][0], first["vae_enc_down1_res0"][1])
    assert list(ex._cache) == ["b", "c"]  # LRU evicted "a"
    with pytest.raises(ValueError, match="image_ids"):
        ex(img, g, image_ids=["a"])


# ---------------------------------------------------------------------------------- errors
def test_bad_inputs_and_configs_raise() -> None:
    ex = _extractor()
    img, g = _inputs()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ex(img * 255, g)
    with pytest.raises(ValueError, match="B, 3, H, W"):
        ex(img[:, :2], g)
    with pytest.raises(ConfigError, match="unet_taps"):
        _extractor(unet_taps=((5, 0),))
    with pytest.raises(ConfigError, match="vae is None"):
        _extractor(vae_decoder_taps=((0, 0),))
    with pytest.raises(ConfigError, match="divisible"):
        _extractor(input_size=60)
    with pytest.raises(ConfigError, match="pixel_latent"):
        _extractor(pixel_latent="random")


@pytest.mark.slow
def test_sd15_unet_size_parameter_count() -> None:
    unet = UNet2DConditionModel(**sd15_unet_config())
    n = sum(p.numel() for p in unet.parameters())
    assert n == 859_520_964
    ex = DiffusionFeatureExtractor(unet, cond_dim=768, input_size=512)
    assert ex.strides == {"unet_up3_res2": 8, "unet_up2_res2": 16, "unet_up1_res2": 32,
                          "unet_up0_res2": 64}
    assert ex.out_channels == {"unet_up3_res2": 640, "unet_up2_res2": 960, "unet_up1_res2": 1920,
                               "unet_up0_res2": 2560}


# ---------------------------------------------------------------------------------- loading
def test_load_unet_from_folder_and_single_file(tmp_path: Path) -> None:
    unet = _unet(5)
    unet.save_pretrained(tmp_path / "sd" / "unet")
    ref = unet.state_dict()
    for source in (tmp_path / "sd", tmp_path / "sd" / "unet"):
        loaded = load_sd_unet(source)
        assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())
        assert not any(p.requires_grad for p in loaded.parameters()) and not loaded.training
    torch.save({"state_dict": ref, "global_step": 3}, tmp_path / "w.ckpt")
    loaded = load_sd_unet(tmp_path / "w.ckpt", config=tmp_path / "sd", frozen=False)
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())
    assert all(p.requires_grad for p in loaded.parameters())


def test_load_vae_from_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    vae = _vae(2)
    vae.save_pretrained(tmp_path / "sd" / "vae")
    save_file(vae.state_dict(), str(tmp_path / "vae.safetensors"))
    loaded = load_sd_vae(tmp_path / "vae.safetensors", config=tmp_path / "sd")
    assert all(torch.equal(v, vae.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_loading_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_sd_unet(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*config.json"):
        load_sd_unet(tmp_path / "empty")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(DataError, match="w.txt.*unknown weight file type"):
        load_sd_unet(tmp_path / "w.txt")
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.ckpt.*cannot read"):
        load_sd_unet(tmp_path / "bad.ckpt")
    unet = _unet()
    unet.save_pretrained(tmp_path / "sd" / "unet")
    partial = {k: v for k, v in unet.state_dict().items() if "conv_out" not in k}
    torch.save(partial, tmp_path / "partial.ckpt")
    with pytest.raises(DataError, match="partial.ckpt.*missing"):
        load_sd_unet(tmp_path / "partial.ckpt", config=tmp_path / "sd")


def _write_tiny_clip(root: Path) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "b</w>": 3, "a": 4, "b": 5}
    (root / "tokenizer").mkdir(parents=True)
    (root / "tokenizer" / "vocab.json").write_text(json.dumps(vocab))
    (root / "tokenizer" / "merges.txt").write_text("#version: 0.2\n")
    (root / "tokenizer" / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8}))
    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=6, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=8, bos_token_id=0,
                         eos_token_id=1, pad_token_id=1)
    CLIPTextModel(cfg).save_pretrained(root / "text_encoder")


def test_empty_prompt_context_and_tokenizer_check(tmp_path: Path) -> None:
    _write_tiny_clip(tmp_path)
    u = load_sd_empty_context(tmp_path, min_vocab_size=2)
    assert u.shape == (1, 8, 16)
    with pytest.raises(DataError, match="tokenizer has 6 tokens"):
        load_sd_empty_context(tmp_path)
    ex = _extractor(uncond_context=torch.zeros(1, CTX_LEN, 64) + 0.5)
    assert torch.equal(ex.condition(torch.zeros(1, COND_DIM)).context, ex.condition.uncond_context)
