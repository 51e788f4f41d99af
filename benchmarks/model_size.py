"""Parameter counts of the full-size and tiny models, per component, next to the paper's figures.

The full-size model is built on the CPU with random weights (no SD/CLIP weights needed): the SD
v1.x-size UNet from its config, the VAE counted from its config, the 3D networks, decoder and heads.
"""

from __future__ import annotations

import torch
from torch import nn

from xmask3d.config import load_config
from xmask3d.models.build import build_model

# method.md §6 (estimates from the architecture) and decisions.md §2
PAPER = {"backbone3d": 38.3e6, "binary": 15.5e6, "unet": 860e6, "vae": 84e6, "condition": 1.7e6,
         "tap_projection": 5.9e6, "pixel_decoder": None, "mask_decoder": 14e6,
         "mask_embed": 0.4e6, "fusion": 1.18e6, "trainable": 80e6}


def _count(module: nn.Module | None, trainable: bool = False) -> int:
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def component_counts(model) -> dict[str, int]:
    g = model.mask_generator
    return {
        "backbone3d": _count(model.backbone3d) + _count(model.point_proj) + _count(model.global_proj),
        "binary": _count(model.binary_net) + _count(model.binary_head),
        "unet": _count(g.diffusion.unet),
        "vae": _count(g.diffusion.vae),
        "condition": _count(g.diffusion.condition),
        "tap_projection": _count(g.tap_projection),
        "pixel_decoder": _count(g.pixel_decoder),
        "mask_decoder": _count(g.mask_decoder),
        "mask_embed": _count(g.mask_embed),
        "fusion": _count(model.fusion),
        "total": _count(model),
        "trainable": _count(model, trainable=True),
    }


def full_size_counts(text_dim: int = 768) -> dict[str, int]:
    """Counts of the full configuration (scannet/b15n4) with random weights, CLIP-width text space."""
    cfg = load_config("scannet/b15n4", ["mask2d.sd_path=", "text.encoder=minilm", "text.clip_path=",
                                        "mask2d.freeze_unet=true", "backbone3d.backend=torch",
                                        "mask2d.random_sd=true"])
    torch.manual_seed(0)
    model = build_model(cfg, text_dim=text_dim)
    counts = component_counts(model)
    counts["vae"] = _count(model.mask_generator.diffusion.vae)
    return counts


def tiny_counts() -> dict[str, int]:
    cfg = load_config("tiny/scannet_b15n4")
    torch.manual_seed(0)
    return component_counts(build_model(cfg, text_dim=384))


def markdown(full: dict[str, int], tiny: dict[str, int]) -> str:
    rows = ["| component | full size (ours) | paper / method.md | tiny |", "|---|---|---|---|"]
    for key, value in full.items():
        paper = PAPER.get(key)
        rows.append(f"| {key} | {value / 1e6:.2f} M | "
                    f"{'-' if paper is None else f'{paper / 1e6:.1f} M'} | "
                    f"{tiny[key] / 1e6:.3f} M |" if key in tiny else
                    f"| {key} | {value / 1e6:.2f} M | - | - |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown(full_size_counts(), tiny_counts()))
