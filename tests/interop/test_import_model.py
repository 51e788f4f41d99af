"""SD v1 single file and CLIP weight file conversion for ``xmask3d import`` (tiny widths)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from xmask3d.errors import DataError
from xmask3d.interop.import_model import SD_V1_TEXT_CONFIG, clip_folder, sd_empty_context
from xmask3d.models.mask2d.sd_loading import load_sd_unet, load_sd_vae

CTX = 32
TEXT = {**SD_V1_TEXT_CONFIG, "vocab_size": 100, "hidden_size": CTX, "intermediate_size": 4 * CTX,
        "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 8,
        "bos_token_id": 98, "eos_token_id": 99, "pad_token_id": 99}


def test_tiny_sd_single_file_converts_and_loads(tiny_sd):
    path, cfg, state = tiny_sd("tiny-sd.ckpt")
    unet = load_sd_unet(path, config=cfg)
    vae = load_sd_vae(path, config=cfg)
    p = "model.diffusion_model."
    assert torch.equal(unet.conv_in.weight, state[p + "input_blocks.0.0.weight"])
    assert torch.equal(unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2.to_k.weight,
                       state[p + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"])
    assert torch.equal(unet.up_blocks[0].resnets[1].conv1.weight,
                       state[p + "output_blocks.1.0.in_layers.2.weight"])
    assert torch.equal(vae.decoder.conv_out.weight,
                       state["first_stage_model.decoder.conv_out.weight"])
    assert torch.equal(vae.encoder.mid_block.attentions[0].to_q.weight,
                       state["first_stage_model.encoder.mid.attn_1.q.weight"][:, :, 0, 0])
    ctx = sd_empty_context(state, path, text_config=TEXT)
    assert ctx.shape == (1, 8, CTX) and torch.isfinite(ctx).all()
    # the context is the file's text encoder run on BOS + EOS padding: moving its final
    # LayerNorm bias by one moves every output by one
    bias = "cond_stage_model.transformer.text_model.final_layer_norm.bias"
    ctx2 = sd_empty_context({**state, bias: state[bias] + 1}, path, text_config=TEXT)
    torch.testing.assert_close(ctx2 - ctx, torch.ones_like(ctx))


def test_sd_file_of_another_version_names_the_first_differing_tensor(tiny_sd):
    path, cfg, _ = tiny_sd("other.ckpt", ctx=48)       # cross-attention width 48, not 32
    with pytest.raises(DataError, match=r"other.ckpt: not a Stable Diffusion v1.x unet: "
                                        r"down_blocks.0.attentions.0.*attn2.to_k.weight has shape "
                                        r"\(32, 48\) in the file but \(32, 32\)"):
        load_sd_unet(path, config=cfg)


def test_sd_file_without_text_encoder(tmp_path):
    with pytest.raises(DataError, match="no SD text encoder"):
        sd_empty_context({"model.diffusion_model.out.2.bias": torch.zeros(4)}, tmp_path / "x.ckpt")


def _add_resblocks(st, prefix, width, layers, r):
    """Random weights of ``layers`` OpenAI CLIP residual attention blocks under ``prefix``."""
    for i in range(layers):
        b = f"{prefix}transformer.resblocks.{i}."
        st.update({b + "ln_1.weight": 1 + r(width), b + "ln_1.bias": r(width),
                   b + "attn.in_proj_weight": r(3 * width, width),
                   b + "attn.in_proj_bias": r(3 * width),
                   b + "attn.out_proj.weight": r(width, width), b + "attn.out_proj.bias": r(width),
                   b + "ln_2.weight": 1 + r(width), b + "ln_2.bias": r(width),
                   b + "mlp.c_fc.weight": r(4 * width, width), b + "mlp.c_fc.bias": r(4 * width),
                   b + "mlp.c_proj.weight": r(width, 4 * width), b + "mlp.c_proj.bias": r(width)})
    return st


def _resblocks_forward(st, prefix, x, layers, heads, mask):
    """OpenAI CLIP residual attention blocks written out (pre-LN, QuickGELU); ``mask`` is added
    to the attention logits (a causal mask for text, 0 for images)."""
    w, n = x.shape[-1], x.shape[1]
    for i in range(layers):
        b = f"{prefix}transformer.resblocks.{i}."
        h = F.layer_norm(x, (w,), st[b + "ln_1.weight"], st[b + "ln_1.bias"])
        q, k, v = (h @ st[b + "attn.in_proj_weight"].t() + st[b + "attn.in_proj_bias"]).chunk(3, -1)
        split = lambda t: t.view(t.shape[0], n, heads, -1).transpose(1, 2)  # noqa: E731
        a = (split(q) @ split(k).transpose(-1, -2)) / (w // heads) ** 0.5 + mask
        o = (a.softmax(-1) @ split(v)).transpose(1, 2).reshape(x.shape)
        x = x + o @ st[b + "attn.out_proj.weight"].t() + st[b + "attn.out_proj.bias"]
        h = F.layer_norm(x, (w,), st[b + "ln_2.weight"], st[b + "ln_2.bias"])
        h = h @ st[b + "mlp.c_fc.weight"].t() + st[b + "mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)
        x = x + h @ st[b + "mlp.c_proj.weight"].t() + st[b + "mlp.c_proj.bias"]
    return x


def _openai_text_state(width, layers, vocab, length, proj, seed):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen) * 0.1  # noqa: E731
    st = {"token_embedding.weight": r(vocab, width), "positional_embedding": r(length, width),
          "ln_final.weight": 1 + r(width), "ln_final.bias": r(width),
          "text_projection": r(width, proj), "logit_scale": torch.tensor(4.6),
          "visual.proj": r(width, proj)}
    return _add_resblocks(st, "", width, layers, r)


def _openai_encode_text(st, ids, layers, heads):
    """OpenAI CLIP ``encode_text`` written out (causal pre-LN transformer, QuickGELU)."""
    x = st["token_embedding.weight"][ids] + st["positional_embedding"]
    n, w = ids.shape[1], x.shape[-1]
    causal = torch.full((n, n), float("-inf")).triu(1)
    x = _resblocks_forward(st, "", x, layers, heads, causal)
    x = F.layer_norm(x, (w,), st["ln_final.weight"], st["ln_final.bias"])
    return x[torch.arange(x.shape[0]), ids.argmax(-1)] @ st["text_projection"]


def _convert_clip_file(st, tmp_path):
    """Save ``st`` as an OpenAI/open_clip file with a one-word tokenizer; convert it."""
    torch.save(st, tmp_path / "ViT-tiny.pt")
    tok = tmp_path / "tokenizer"
    tok.mkdir()
    (tok / "vocab.json").write_text(json.dumps({"a</w>": 0}))
    (tok / "merges.txt").write_text("#version: 0.2\n")
    return clip_folder(tmp_path / "ViT-tiny.pt", tok, tmp_path / "clip")


def test_open_clip_text_tower_converts_to_a_transformers_folder(tmp_path):
    from transformers import CLIPTextModelWithProjection

    st = _openai_text_state(128, 2, 49408, 12, 96, seed=7)
    folder = _convert_clip_file(st, tmp_path)
    assert (folder / "vocab.json").is_file() and (folder / "config.json").is_file()
    model = CLIPTextModelWithProjection.from_pretrained(folder, local_files_only=True).eval()
    ids = torch.tensor([[49406, 320, 1125, 49407, 49407, 49407, 49407, 49407, 49407, 49407,
                         49407, 49407], [49406, 7, 49407] + [49407] * 9])
    with torch.no_grad():
        ours = model(input_ids=ids).text_embeds
    torch.testing.assert_close(ours, _openai_encode_text(st, ids, 2, 2), rtol=1e-4, atol=1e-5)


def _openai_vision_state(st, width, layers, patch, grid, proj, seed):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen) * 0.1  # noqa: E731
    v = "visual."
    st.update({v + "class_embedding": r(width), v + "conv1.weight": r(width, 3, patch, patch),
               v + "positional_embedding": r(grid * grid + 1, width), v + "proj": r(width, proj),
               v + "ln_pre.weight": 1 + r(width), v + "ln_pre.bias": r(width),
               v + "ln_post.weight": 1 + r(width), v + "ln_post.bias": r(width)})
    return _add_resblocks(st, v, width, layers, r)


def _openai_encode_image(st, image, layers, heads):
    """OpenAI CLIP ``VisionTransformer.forward`` written out (pre-LN, QuickGELU, CLS token)."""
    v = "visual."
    x = F.conv2d(image, st[v + "conv1.weight"], stride=st[v + "conv1.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)                                         # (B, g*g, W)
    cls = st[v + "class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + st[v + "positional_embedding"]
    w = x.shape[-1]
    x = F.layer_norm(x, (w,), st[v + "ln_pre.weight"], st[v + "ln_pre.bias"])
    x = _resblocks_forward(st, v, x, layers, heads, 0.0)
    x = F.layer_norm(x[:, 0], (w,), st[v + "ln_post.weight"], st[v + "ln_post.bias"])
    return x @ st[v + "proj"]


def test_openai_clip_with_vision_tower_converts_both_towers(tmp_path):
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    st = _openai_text_state(128, 1, 49408, 12, 96, seed=8)
    st = _openai_vision_state(st, 128, 2, 8, 4, 96, seed=9)
    folder = _convert_clip_file(st, tmp_path)
    assert "vision_config" in json.loads((folder / "config.json").read_text())
    vision = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True).eval()
    image = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = vision(pixel_values=image).image_embeds
    torch.testing.assert_close(ours, _openai_encode_image(st, image, 2, 2), rtol=1e-4, atol=1e-5)
    text = CLIPTextModelWithProjection.from_pretrained(folder, local_files_only=True).eval()
    ids = torch.tensor([[49406, 5, 49407] + [49407] * 9])
    with torch.no_grad():
        torch.testing.assert_close(text(input_ids=ids).text_embeds,
                                   _openai_encode_text(st, ids, 1, 2), rtol=1e-4, atol=1e-5)


def test_clip_weight_file_needs_a_tokenizer(tmp_path):
    torch.save({"token_embedding.weight": torch.zeros(2, 2)}, tmp_path / "c.pt")
    with pytest.raises(DataError, match="--clip-tokenizer"):
        clip_folder(tmp_path / "c.pt", None, tmp_path / "out")
