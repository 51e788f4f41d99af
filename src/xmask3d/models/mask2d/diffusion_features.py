"""Multi-scale features of a (frozen) diffusion UNet conditioned on a global 3D embedding.

Follows XMask3D (NeurIPS 2024) §3.2 and ODISE (method.md §2.3-§2.4): image -> latent (SD VAE
posterior mean x scaling factor, or a fixed pixel projection without a VAE) -> noised at timestep
t with one seeded noise tensor -> UNet with the condition as cross-attention context and as an
offset on the time embedding -> the inputs of chosen UNet up-block resnets (h concatenated with the
skip), plus condition-independent VAE encoder/decoder taps. Fixes of method.md §8.26-27: frozen
weights never get gradients, the VAE decoder and the UNet stop right after their last tap, and
everything that does not depend on the condition is computed without grad and can be cached.

Mechanism: the UNet is run through diffusers' own ``forward``; a forward hook on
``unet.time_embedding`` adds the time offset to its output, forward pre-hooks on the tapped resnets
record their inputs, and the pre-hook of the last tap raises a private exception that ends the
forward there (so nothing after the last tap is computed).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from xmask3d.errors import ConfigError
from xmask3d.models.mask2d.condition import ImplicitCondition

__all__ = [
    "SD_UNET_TAPS",
    "SD_VAE_DECODER_TAPS",
    "SD_VAE_ENCODER_TAPS",
    "DiffusionFeatureExtractor",
    "DiffusionFeatures",
    "TapSpec",
    "scaled_linear_alphas_cumprod",
]

logger = logging.getLogger(__name__)

# (block, resnet) pairs in diffusers indexing. SD v1.x UNet up_blocks[i].resnets[j] is LDM
# output_blocks[3 i + j]: the paper taps output_blocks 2, 5, 8, 11 (strides 64, 32, 16, 8).
SD_UNET_TAPS = ((0, 2), (1, 2), (2, 2), (3, 2))
# LDM encoder ResnetBlocks 5 and 7 (level 2 / 3, block 1): strides 4 and 8.
SD_VAE_ENCODER_TAPS = ((2, 1), (3, 1))
# LDM decoder ResnetBlocks 2 and 5 (levels 3 and 2, block 2): strides 8 and 4.
SD_VAE_DECODER_TAPS = ((0, 2), (1, 2))
PIXEL_LATENT_MODES = ("fixed", "learnable")


def scaled_linear_alphas_cumprod(
    num_steps: int = 1000, *, beta_start: float = 0.00085, beta_end: float = 0.012
) -> Tensor:
    """Cumulative products of alphas of the LDM "scaled linear" schedule.

    Returns:
        (num_steps,) float64, ``prod_{s<=t} (1 - beta_s)`` with
        ``beta = linspace(sqrt(beta_start), sqrt(beta_end), num_steps) ** 2``.
    """
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64,
                           device="cpu") ** 2
    return torch.cumprod(1.0 - betas, dim=0)


@dataclass(frozen=True)
class TapSpec:
    """One tapped activation: the input of ``<source>.<blocks>[block].resnets[resnet]``.

    ``source`` is ``"unet"``, ``"vae_encoder"``, ``"vae_decoder"`` or ``"image"`` (pixel-unshuffled
    image, no block); ``stride`` is relative to the resized input image.
    """

    name: str
    source: str
    block: int
    resnet: int
    channels: int
    stride: int


@dataclass
class DiffusionFeatures:
    """Multi-scale features, in the order of ``DiffusionFeatureExtractor.taps``.

    Attributes:
        features: name -> (B, C_name, H_in / stride, W_in / stride) (sizes rounded up).
        strides: name -> stride w.r.t. the resized input image.
    """

    features: dict[str, Tensor]
    strides: dict[str, int]


class _TapsComplete(Exception):
    """Raised by the last tap's pre-hook to stop a forward pass early."""


class _TapRecorder:
    """Context manager recording the first positional input of each module, in order.

    With ``stop_after_last`` the forward is ended once all modules have been seen; the exception
    is swallowed on exit, so ``with _TapRecorder(...): model(x)`` simply returns early.
    """

    def __init__(self, modules: Sequence[nn.Module], *, stop_after_last: bool) -> None:
        self.modules = list(modules)
        self.stop_after_last = stop_after_last
        self.outputs: list[Tensor | None] = [None] * len(self.modules)
        self._handles: list = []

    def _hook(self, index: int):
        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            if self.outputs[index] is None:
                self.outputs[index] = args[0] if args else kwargs["input_tensor"]
            if self.stop_after_last and all(o is not None for o in self.outputs):
                raise _TapsComplete

        return hook

    def __enter__(self) -> _TapRecorder:
        for i, module in enumerate(self.modules):
            handle = module.register_forward_pre_hook(self._hook(i), with_kwargs=True)
            self._handles.append(handle)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        if exc_type is None or exc_type is _TapsComplete:
            if any(o is None for o in self.outputs):
                raise RuntimeError("a tapped block was not executed by the forward pass")
            return True
        return False


class DiffusionFeatureExtractor(nn.Module):
    """Condition-dependent multi-scale UNet features (+ condition-independent VAE features).

    Args:
        unet: a diffusers ``UNet2DConditionModel`` (SD v1.x loaded by ``sd_loading``, or tiny).
        cond_dim: width D of the condition vector given to ``forward``.
        vae: SD ``AutoencoderKL`` (always frozen); ``None`` replaces it by a pixel projection.
        unet_taps: (up block, resnet) pairs whose inputs are returned; default: the last resnet of
            every up block (``SD_UNET_TAPS`` for SD v1.x).
        vae_encoder_taps: (down block, resnet) pairs of ``vae.encoder`` (needs ``vae``).
        vae_decoder_taps: (up block, resnet) pairs of ``vae.decoder`` (needs ``vae``).
        image_tap_strides: strides s of extra taps ``image_s{s}`` = pixel-unshuffled input image
            in [-1, 1] (3 s^2 channels); a cheap condition-free high-resolution feature.
        input_size: (H, W) (or an int for a square) the images are resized to, aspect not kept.
        cond_mode: ``ImplicitCondition`` mode (``"3d"``, ``"text"``, ``"image"``, ``"none"``).
        context_len: length L of the context sequence.
        uncond_context: (1, L, Dctx) unconditional context (SD: CLIP encoding of ""), or zeros.
        timestep: diffusion timestep t of the features (method.md §2.3 uses 0).
        noise_seed: seed of the fixed noise tensor shared by all images.
        num_train_timesteps, beta_start, beta_end: the scaled-linear DDPM schedule.
        freeze_unet: no gradients for the UNet weights (gradients still flow through it).
        gradient_checkpointing: run the UNet under non-reentrant ``torch.utils.checkpoint``.
        pixel_latent: without a VAE, ``"fixed"`` (seeded random buffer) or ``"learnable"`` 1x1 conv
            from the pixel-unshuffled image to the UNet's ``in_channels``.
        latent_stride: without a VAE, the pixel-unshuffle factor (the VAE's factor otherwise).
        latent_seed: seed of the fixed pixel projection (and init of the learnable one).
        cache_size: number of per-image condition-free feature sets kept (LRU) when ``forward``
            gets ``image_ids``; 0 disables the cache.
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        *,
        cond_dim: int,
        vae: AutoencoderKL | None = None,
        unet_taps: Sequence[tuple[int, int]] | None = None,
        vae_encoder_taps: Sequence[tuple[int, int]] = (),
        vae_decoder_taps: Sequence[tuple[int, int]] = (),
        image_tap_strides: Sequence[int] = (),
        input_size: int | tuple[int, int] = 512,
        cond_mode: str = "3d",
        context_len: int = 77,
        uncond_context: Tensor | None = None,
        timestep: int = 0,
        noise_seed: int = 42,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        freeze_unet: bool = True,
        gradient_checkpointing: bool = False,
        pixel_latent: str = "fixed",
        latent_stride: int = 8,
        latent_seed: int = 0,
        cache_size: int = 0,
    ) -> None:
        super().__init__()
        self.unet = unet
        self.vae = vae
        self.input_size = _pair(input_size)  # (H, W)
        self.freeze_unet = freeze_unet
        self.gradient_checkpointing = gradient_checkpointing
        self.cache_size = cache_size
        self._cache: OrderedDict[Hashable, dict[str, Tensor]] = OrderedDict()
        if vae is not None:
            vae.eval().requires_grad_(False)
            latent_stride = 2 ** (len(vae.config.block_out_channels) - 1)
        elif vae_encoder_taps or vae_decoder_taps:
            raise ConfigError("DiffusionFeatureExtractor: VAE taps given but vae is None")
        self.latent_stride = latent_stride
        if unet_taps is None:
            unet_taps = [(i, len(b.resnets) - 1) for i, b in enumerate(unet.up_blocks)]
        self.taps = self._tap_specs(
            unet_taps, vae_encoder_taps, vae_decoder_taps, image_tap_strides
        )
        logger.debug("diffusion feature taps: %s", self.taps)
        self._check_unet(timestep, num_train_timesteps)
        self.timestep = timestep
        self.condition = ImplicitCondition(
            cond_dim,
            context_len=context_len,
            context_dim=unet.config.cross_attention_dim,
            time_dim=unet.time_embedding.linear_2.out_features,
            mode=cond_mode,
            uncond_context=uncond_context,
        )
        abars = scaled_linear_alphas_cumprod(
            num_train_timesteps, beta_start=beta_start, beta_end=beta_end
        )
        abar = float(abars[timestep])
        self.signal_scale, self.noise_scale = abar**0.5, (1.0 - abar) ** 0.5
        h, w = (v // self.latent_stride for v in self.input_size)
        gen = torch.Generator().manual_seed(noise_seed)
        noise = torch.randn(1, unet.config.in_channels, h, w, generator=gen)
        self.register_buffer("noise", noise, persistent=False)  # (1, C_lat, h, w)
        self._build_pixel_latent(pixel_latent, latent_seed)
        if freeze_unet:
            unet.requires_grad_(False)
        self._freeze_unused_unet_parts()
        self.train(self.training)

    # ------------------------------------------------------------------ construction helpers
    @property
    def out_channels(self) -> dict[str, int]:
        """Tap name -> channels, in output order."""
        return {t.name: t.channels for t in self.taps}

    @property
    def strides(self) -> dict[str, int]:
        """Tap name -> stride w.r.t. the resized input image, in output order."""
        return {t.name: t.stride for t in self.taps}

    def _tap_specs(self, unet_taps, enc_taps, dec_taps, image_strides) -> tuple[TapSpec, ...]:
        specs = [TapSpec(f"image_s{s}", "image", -1, -1, 3 * s * s, s) for s in image_strides]
        if self.vae is not None:
            enc, dec = self.vae.encoder.down_blocks, self.vae.decoder.up_blocks
            n_vae = len(enc)
            for i, j in _checked_pairs(enc_taps, enc, "vae_encoder_taps"):
                ch = enc[i].resnets[j].conv1.in_channels
                specs.append(TapSpec(f"vae_enc_down{i}_res{j}", "vae_encoder", i, j, ch, 2**i))
            for i, j in _checked_pairs(dec_taps, dec, "vae_decoder_taps"):
                ch, s = dec[i].resnets[j].conv1.in_channels, 2 ** (n_vae - 1 - i)
                specs.append(TapSpec(f"vae_dec_up{i}_res{j}", "vae_decoder", i, j, ch, s))
        ups = self.unet.up_blocks
        for i, j in _checked_pairs(unet_taps, ups, "unet_taps"):
            s = self.latent_stride * 2 ** (len(ups) - 1 - i)
            ch = ups[i].resnets[j].conv1.in_channels
            specs.append(TapSpec(f"unet_up{i}_res{j}", "unet", i, j, ch, s))
        if not any(t.source == "unet" for t in specs):
            raise ConfigError("DiffusionFeatureExtractor: unet_taps is empty")
        for s in image_strides:
            if s <= 0 or self.input_size[0] % s or self.input_size[1] % s:
                raise ConfigError(
                    f"image_tap_strides: {s} does not divide input_size {self.input_size}"
                )
        return tuple(sorted(specs, key=lambda t: (t.stride, t.name)))

    def _check_unet(self, timestep: int, num_steps: int) -> None:
        cfg = self.unet.config
        problems = {
            "unet.cross_attention_dim must be an int": not isinstance(cfg.cross_attention_dim, int),
            "UNets with class/addition embeddings are unsupported": cfg.class_embed_type is not None
            or cfg.addition_embed_type is not None,
            "vae latent_channels != unet in_channels": self.vae is not None
            and self.vae.config.latent_channels != cfg.in_channels,
            f"timestep={timestep} not in [0, {num_steps})": not 0 <= timestep < num_steps,
            f"input_size {self.input_size} must be divisible by the latent stride "
            f"{self.latent_stride}": any(v % self.latent_stride for v in self.input_size),
        }
        for message, failed in problems.items():
            if failed:
                raise ConfigError(f"DiffusionFeatureExtractor: {message}")

    def _build_pixel_latent(self, mode: str, seed: int) -> None:
        self.pixel_latent = mode
        if self.vae is not None:
            return
        if mode not in PIXEL_LATENT_MODES:
            raise ConfigError(f"pixel_latent={mode!r}, expected one of {PIXEL_LATENT_MODES}")
        fan_in = 3 * self.latent_stride**2
        gen = torch.Generator().manual_seed(seed)
        out_ch = self.unet.config.in_channels
        weight = torch.randn(out_ch, fan_in, 1, 1, generator=gen) / fan_in**0.5
        if mode == "learnable":
            self.latent_proj = nn.Parameter(weight)
        else:
            self.register_buffer("latent_proj", weight)

    def _freeze_unused_unet_parts(self) -> None:
        """Freeze what runs after the last UNet tap, so every trainable parameter gets a grad."""
        last_i, last_j = max((t.block, t.resnet) for t in self.taps if t.source == "unet")
        ups = self.unet.up_blocks
        unused: list[nn.Module] = [self.unet.conv_out, *ups[last_i + 1 :]]
        unused.extend(ups[last_i].resnets[last_j:])
        if self.unet.conv_norm_out is not None:
            unused.append(self.unet.conv_norm_out)
        if hasattr(ups[last_i], "attentions"):
            unused.extend(ups[last_i].attentions[last_j:])
        if ups[last_i].upsamplers is not None:
            unused.extend(ups[last_i].upsamplers)
        for module in unused:
            module.requires_grad_(False)

    def train(self, mode: bool = True) -> DiffusionFeatureExtractor:
        """Set training mode; the VAE (and a frozen UNet) always stay in eval mode."""
        super().train(mode)
        if self.vae is not None:
            self.vae.eval()
        if self.freeze_unet:
            self.unet.eval()
        return self

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        images: Tensor,
        cond: Tensor | None = None,
        *,
        image_ids: Sequence[Hashable] | None = None,
    ) -> DiffusionFeatures:
        """Compute the tapped features.

        Args:
            images: (B, 3, H, W) RGB in [0, 1], any H, W (resized to ``input_size``).
            cond: (B, D) condition vectors (3D global features); ``None`` only in mode "none".
            image_ids: B hashable ids of the images; with ``cache_size > 0`` the condition-free
                features are looked up / stored under these ids (the caller guarantees that an id
                always names the same image).

        Returns:
            ``DiffusionFeatures`` with one (B, C, H_in / s, W_in / s) tensor per tap.
        """
        _check_images(images)
        fixed = self._image_features(images, image_ids)
        latent = self._latent(fixed["latent_input"])
        noisy = self.signal_scale * latent + self.noise_scale * self.noise.to(latent.dtype)
        cond_out = self.condition(cond, batch_size=images.shape[0])
        if self.gradient_checkpointing and torch.is_grad_enabled():
            unet_feats = checkpoint(
                self._unet_taps, noisy, cond_out.context, cond_out.time_offset, use_reentrant=False
            )
        else:
            unet_feats = self._unet_taps(noisy, cond_out.context, cond_out.time_offset)
        unet_names = [t.name for t in self.taps if t.source == "unet"]
        feats = {**fixed, **dict(zip(unet_names, unet_feats, strict=True))}
        return DiffusionFeatures({t.name: feats[t.name] for t in self.taps}, self.strides)

    def _unet_taps(
        self, sample: Tensor, context: Tensor, time_offset: Tensor
    ) -> tuple[Tensor, ...]:
        """Run the UNet up to its last tap.

        Args:
            sample: (B, C_lat, h, w) noised latent.
            context: (B, L, Dctx) cross-attention context.
            time_offset: (B, Dtime) added to the output of ``unet.time_embedding``.
        """
        specs = [t for t in self.taps if t.source == "unet"]
        modules = [self.unet.up_blocks[t.block].resnets[t.resnet] for t in specs]
        handle = self.unet.time_embedding.register_forward_hook(
            lambda _m, _inp, emb: emb + time_offset.to(emb.dtype)
        )
        try:
            with _TapRecorder(modules, stop_after_last=True) as rec:
                self.unet(sample, self.timestep, encoder_hidden_states=context, return_dict=False)
        finally:
            handle.remove()
        return tuple(rec.outputs)

    def _latent(self, latent_input: Tensor) -> Tensor:
        """(B, C_in, h, w) cached latent input -> (B, C_lat, h, w) clean latent."""
        if self.vae is not None:
            return latent_input
        return F.conv2d(latent_input, self.latent_proj.to(latent_input.dtype))

    @torch.no_grad()
    def encode_images(self, images: Tensor) -> dict[str, Tensor]:
        """Condition-free part: resized image taps, VAE taps and the latent input (cacheable).

        Args:
            images: (B, 3, H, W) RGB in [0, 1].

        Returns:
            name -> tensor for the ``image``/``vae_*`` taps, plus ``"latent_input"``: the scaled
            VAE posterior mean (B, C_lat, h, w), or the pixel-unshuffled image (B, 3 s^2, h, w).
        """
        x = images
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(
                x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True
            )
        x = x * 2.0 - 1.0
        out = {t.name: F.pixel_unshuffle(x, t.stride) for t in self.taps if t.source == "image"}
        if self.vae is None:
            out["latent_input"] = F.pixel_unshuffle(x, self.latent_stride)
            return out
        enc = [t for t in self.taps if t.source == "vae_encoder"]
        mods = [self.vae.encoder.down_blocks[t.block].resnets[t.resnet] for t in enc]
        with _TapRecorder(mods, stop_after_last=False) as rec:
            mean = self.vae.encode(x).latent_dist.mean  # (B, C_lat, h, w)
        out.update(zip([t.name for t in enc], rec.outputs, strict=True))
        dec = [t for t in self.taps if t.source == "vae_decoder"]
        if dec:
            z = mean if self.vae.post_quant_conv is None else self.vae.post_quant_conv(mean)
            mods = [self.vae.decoder.up_blocks[t.block].resnets[t.resnet] for t in dec]
            with _TapRecorder(mods, stop_after_last=True) as rec:
                self.vae.decoder(z)
            out.update(zip([t.name for t in dec], rec.outputs, strict=True))
        out["latent_input"] = mean * self.vae.config.scaling_factor
        return out

    def _image_features(self, images: Tensor, ids: Sequence[Hashable] | None) -> dict[str, Tensor]:
        """``encode_images`` through the per-image LRU cache."""
        if self.cache_size <= 0 or ids is None:
            return self.encode_images(images)
        if len(ids) != images.shape[0]:
            raise ValueError(f"image_ids has {len(ids)} entries for {images.shape[0]} images")
        missing = [k for k, key in enumerate(ids) if key not in self._cache]
        if missing:
            computed = self.encode_images(images[missing])
            for row, k in enumerate(missing):
                self._cache[ids[k]] = {n: v[row].clone() for n, v in computed.items()}
        for key in ids:
            self._cache.move_to_end(key)
        entries = [self._cache[key] for key in ids]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return {n: torch.stack([e[n] for e in entries]).to(images.device) for n in entries[0]}

    def clear_cache(self) -> None:
        """Drop all cached condition-free features."""
        self._cache.clear()


def _checked_pairs(pairs, blocks: nn.ModuleList, arg: str) -> list[tuple[int, int]]:
    """Validate (block, resnet) indices against ``blocks[i].resnets``."""
    out = []
    for pair in pairs:
        i, j = (int(v) for v in pair)
        if not (0 <= i < len(blocks) and 0 <= j < len(blocks[i].resnets)):
            raise ConfigError(f"{arg}: ({i}, {j}) is not a (block, resnet) index of this model")
        out.append((i, j))
    if len(set(out)) != len(out):
        raise ConfigError(f"{arg}: duplicate entries in {out}")
    return out


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(v) for v in size)
    return h, w


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise ValueError(
            f"images must be float (B, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    lo, hi = torch.aminmax(images.detach())
    if lo.item() < -1e-3 or hi.item() > 1.0 + 1e-3:
        raise ValueError(
            f"images must be in [0, 1], got values in [{lo.item():.3g}, {hi.item():.3g}]"
        )
