"""``xmask3d import`` end to end on tiny stand-ins of the three released files.

An authors'-layout checkpoint (published key names, a small architecture, seeded values), a tiny
SD v1 single file with the original key names and a tiny open_clip text tower go through the CLI;
the written checkpoint loads like one of ours and holds the authors' values.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from xmask3d.cli import main
from xmask3d.config import load_config
from xmask3d.data.ply import write_ply
from xmask3d.interop.authors_checkpoint import (
    UNUSED,
    authors_key_map,
    export_authors_state,
    me_kernel_to_ours,
    published_tap_order,
)
from xmask3d.interop.published_layout import MinkUNetSpec, PublishedArch, published_shapes
from xmask3d.models.build import build_model

TEXT_DIM = 48
# the micro model with the published structure (no head bias, global feature = text width),
# the tiny SD of the tiny_sd fixture (UNet 32/64/64, 2-level VAE, 8-token context)
OVERRIDES = [
    "data.image_hw=[48, 64]", "mask2d.input_size=64", "backbone3d.backend=torch",
    "backbone3d.enc_channels=[8, 16, 16, 16]", "backbone3d.dec_channels=[16, 16, 8, 8]",
    "backbone3d.stem_channels=8", "backbone3d.out_channels=16",
    "backbone3d.binary_enc_channels=[8, 8, 8, 8]", "backbone3d.binary_dec_channels=[8, 8, 8, 8]",
    "backbone3d.binary_out_channels=8", f"backbone3d.global_dim={TEXT_DIM}",
    "backbone3d.head_bias=false",
    "mask2d.block_out_channels=[32, 64, 64]", "mask2d.cross_attention_dim=32",
    "mask2d.layers_per_block=1", "mask2d.context_len=8", "mask2d.freeze_unet=true",
    "mask2d.taps=[0, 1, 2]", "mask2d.image_tap_strides=[]",
    "mask2d.vae_encoder_taps=[[1, 0]]", "mask2d.vae_decoder_taps=[[0, 1], [1, 1]]",
    "mask2d.projection_dim=32", "mask2d.projection_mid=16", "mask2d.conv_dim=32",
    "mask2d.mask_dim=32", "mask2d.hidden_dim=32", "mask2d.pixel_ffn=64",
    "mask2d.decoder_ffn=64", "mask2d.num_queries=6",
]


def _arch(cfg, model) -> PublishedArch:
    b, m = cfg.backbone3d, cfg.mask2d
    spec = lambda enc, eb, dec, db: MinkUNetSpec(  # noqa: E731
        tuple(enc) + tuple(dec), tuple(eb) + tuple(db), b.stem_channels, b.stem_kernel)
    taps = dict(model.mask_generator.diffusion.out_channels)
    pix = model.mask_generator.pixel_decoder
    return PublishedArch(
        num_classes=15, backbone=spec(b.enc_channels, b.enc_blocks, b.dec_channels, b.dec_blocks),
        binary=spec(b.binary_enc_channels, b.binary_enc_blocks, b.binary_dec_channels,
                    b.binary_dec_blocks),
        out_3d=b.out_channels, binary_out=b.binary_out_channels, global_dim=b.global_dim,
        text_dim=TEXT_DIM,
        tap_channels=tuple(taps[n] for n in published_tap_order(
            model.mask_generator.diffusion.taps)),
        projection_dim=m.projection_dim, projection_mid=m.projection_mid,
        context_len=m.context_len, context_dim=m.cross_attention_dim,
        time_dim=4 * m.block_out_channels[0], conv_dim=m.conv_dim, mask_dim=m.mask_dim,
        pixel_layers=m.pixel_layers, pixel_ffn=m.pixel_ffn, pixel_heads=m.pixel_heads,
        pixel_levels=len(pix.transformer_in_features), fpn_levels=len(pix.fpn_features),
        hidden_dim=m.hidden_dim, decoder_layers=m.decoder_layers, decoder_ffn=m.decoder_ffn,
        num_queries=m.num_queries, decoder_levels=pix.num_multiscale)


def _clip_file(tmp_path):
    gen = torch.Generator().manual_seed(11)
    w, vocab, length = 64, 49408, 8
    r = lambda *s: torch.randn(*s, generator=gen) * 0.05  # noqa: E731
    st = {"token_embedding.weight": r(vocab, w), "positional_embedding": r(length, w),
          "ln_final.weight": 1 + r(w), "ln_final.bias": r(w), "text_projection": r(w, TEXT_DIM)}
    b = "transformer.resblocks.0."
    st.update({b + "ln_1.weight": 1 + r(w), b + "ln_1.bias": r(w),
               b + "attn.in_proj_weight": r(3 * w, w), b + "attn.in_proj_bias": r(3 * w),
               b + "attn.out_proj.weight": r(w, w), b + "attn.out_proj.bias": r(w),
               b + "ln_2.weight": 1 + r(w), b + "ln_2.bias": r(w),
               b + "mlp.c_fc.weight": r(4 * w, w), b + "mlp.c_fc.bias": r(4 * w),
               b + "mlp.c_proj.weight": r(w, 4 * w), b + "mlp.c_proj.bias": r(w)})
    v = "visual."                                      # a 32 px, patch-8 vision tower
    st.update({v + "class_embedding": r(w), v + "conv1.weight": r(w, 3, 8, 8),
               v + "positional_embedding": r(17, w), v + "proj": r(w, TEXT_DIM),
               v + "ln_pre.weight": 1 + r(w), v + "ln_pre.bias": r(w),
               v + "ln_post.weight": 1 + r(w), v + "ln_post.bias": r(w)})
    st.update({f"{v}{k}": t.clone() for k, t in st.items() if k.startswith(b)})
    torch.save(st, tmp_path / "ViT-tiny.pt")
    tok = tmp_path / "tokenizer"
    tok.mkdir()
    chars = "abcdefghijklmnopqrstuvwxyz"
    names = [*chars, *(c + "</w>" for c in chars)]
    names += [f"x{i}</w>" for i in range(49406 - len(names))]
    vocab_json = {**{n: i for i, n in enumerate(names)},
                  "<|startoftext|>": 49406, "<|endoftext|>": 49407}   # CLIP's vocabulary size
    (tok / "vocab.json").write_text(json.dumps(vocab_json))
    (tok / "merges.txt").write_text("#version: 0.2\n")
    return tmp_path / "ViT-tiny.pt", tok


def test_import_writes_a_checkpoint_our_commands_load(tmp_path, tiny_sd):
    from xmask3d.apps.inference import load_inference_model

    sd, sd_cfg, _ = tiny_sd("tiny-sd.ckpt")
    overrides = [*OVERRIDES, f"mask2d.sd_path={sd}", f"mask2d.sd_config_path={sd_cfg}"]
    cfg = load_config("tiny/scannet_b15n4", overrides=overrides)
    model = build_model(cfg, text_dim=TEXT_DIM)
    shapes = published_shapes(_arch(cfg, model))
    taps = published_tap_order(model.mask_generator.diffusion.taps)
    mapping, unknown = authors_key_map(shapes, taps, len(model.mask_generator.pixel_decoder
                                                         .fpn_features))
    assert unknown == []
    gen = torch.Generator().manual_seed(5)
    ours = {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
            for k, v in model.state_dict().items()}
    pub = export_authors_state(ours, list(mapping.values()), shapes)
    pub["criterion.empty_weight"] = torch.tensor([1.0] * 15 + [0.1])
    pub["binary_loss_func.pos_weight"] = torch.tensor([0.267])
    assert set(pub) == set(shapes)
    authors = tmp_path / "xmask3d_scannet_B15N4.pth"
    torch.save({"epoch": 150, "state_dict": {f"module.{k}": v for k, v in pub.items()},
                "optimizer": {}, "best_iou": 0.5}, authors)
    clip, tok = _clip_file(tmp_path)
    out = tmp_path / "imported" / "model.pt"
    args = ["import", str(authors), "--sd", str(sd), "--clip", str(clip), "--clip-tokenizer",
            str(tok), "--config", "tiny/scannet_b15n4", "--out", str(out)]
    for o in OVERRIDES + [f"mask2d.sd_config_path={sd_cfg}"]:
        args += ["--set", o]
    assert main(args) == 0
    report = json.loads(out.with_name("model.pt.import.json").read_text())
    assert len(report["loaded"]) == len(shapes) - len(UNUSED)
    assert set(report["unused"]) == set(UNUSED) and report["unknown"] == []
    assert "loaded" in out.with_name("model.pt.import.txt").read_text()
    lm = load_inference_model(out, device="cpu")
    state = lm.model.state_dict()
    assert torch.equal(state["backbone3d.stem.0.weight"],
                       me_kernel_to_ours(pub["pc_decoder.encoder.conv0p1s1.kernel"]))
    assert torch.equal(state["mask_generator.mask_embed.null_embed"],
                       pub["category_head.null_embed"])
    for km in mapping.values():
        assert torch.equal(state[km.ours], ours[km.ours]), km.ours
    assert lm.cfg.fusion.uncovered == "copy3d" and lm.cfg.text.encoder == "clip"
    assert lm.model.mask_generator.diffusion.condition.uncond_context.abs().sum() > 0
    assert lm.model.clip_head is not None          # the MaskCLIP vision tower came along
    # `segment` runs the imported model (2D branch, SD taps and MaskCLIP included)
    rng = np.random.default_rng(0)
    floor = np.c_[rng.uniform(0, 3, (3000, 2)), np.zeros(3000)]
    box = rng.uniform([1, 1, 0], [1.6, 1.5, 0.8], (1500, 3))
    points = np.concatenate([floor, box]).astype(np.float32)
    colors = np.concatenate([np.full((3000, 3), 90), np.full((1500, 3), 200)]).astype(np.uint8)
    write_ply(tmp_path / "room.ply", points, colors)
    assert main(["segment", str(tmp_path / "room.ply"), "--classes", "floor, table",
                 "--ckpt", str(out), "--virtual-views", "2", "--out", str(tmp_path / "seg")]) == 0
    assert any((tmp_path / "seg").iterdir())
