"""The generated published key/shape list against every shape in checkpoint-layout.md."""

from __future__ import annotations

import math

import pytest

from xmask3d.interop.published_layout import (
    MINKUNET18A_SPEC,
    MINKUNET34C_SPEC,
    PUBLISHED_SPLITS,
    minkunet_shapes,
    published_arch,
    published_shapes,
)

B15 = published_shapes(published_arch("scannet_b15n4"))
FE = "backbone.feature_extractor"


def _params(shapes, prefix=""):
    skip = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in shapes.items()
               if k.startswith(prefix) and not k.endswith(skip))


def test_top_level_shapes_of_the_layout_table():
    expected = {
        "pc_decoder.point2text_adapter.weight": (768, 256),
        "pc_decoder.decoder.weight": (768, 256),
        "pc_binary_head.batch_norm.weight": (256,),
        "pc_binary_head.fc.weight": (1, 256),
        "binary_loss_func.pos_weight": (1,),
        f"{FE}.clip_project.linear.weight": (768, 768),
        f"{FE}.clip_project.positional_embedding": (1, 77, 768),
        f"{FE}.alpha_cond": (1, 77, 768),
        f"{FE}.time_embed_project.linear.weight": (1280, 768),
        f"{FE}.time_embed_project.positional_embedding": (1, 1, 1280),
        f"{FE}.alpha_cond_time_embed": (1280,),
        "sem_seg_head.predictor.query_feat.weight": (50, 256),
        "sem_seg_head.predictor.query_embed.weight": (50, 256),
        "sem_seg_head.predictor.level_embed.weight": (3, 256),
        "sem_seg_head.predictor.post_mask_embed.logit_scale": (),
        "sem_seg_head.predictor.post_mask_embed.mask_embed.1.layers.2.weight": (768, 256),
        "criterion.fuser.linear.weight": (768, 1536),
        "criterion.empty_weight": (16,),
        # checkpoint-layout.md writes (768,); the authors' CategoryEmbed stores
        # build_clip_text_embed("") = torch.stack([one (768,) row]) = (1, 768) (odise.py, clip.py).
        "category_head.null_embed": (1, 768),
    }
    for key, shape in expected.items():
        assert B15[key] == shape, key


def test_minkunet34c_kernel_table_and_counts():
    enc = minkunet_shapes(MINKUNET34C_SPEC, 3, 256)
    table = {
        "conv0p1s1": (125, 3, 32), "conv1p1s2": (8, 32, 32), "conv2p2s2": (8, 32, 32),
        "conv3p4s2": (8, 64, 64), "conv4p8s2": (8, 128, 128),
        "block1.0.conv1": (27, 32, 32), "block2.0.conv1": (27, 32, 64),
        "block3.0.conv1": (27, 64, 128), "block4.0.conv1": (27, 128, 256),
        "convtr4p16s2": (8, 256, 256), "block5.0.conv1": (27, 384, 256),
        "convtr5p8s2": (8, 256, 128), "block6.0.conv1": (27, 192, 128),
        "convtr6p4s2": (8, 128, 96), "block7.0.conv1": (27, 128, 96),
        "convtr7p2s2": (8, 96, 96), "block8.0.conv1": (27, 128, 96), "final": (96, 256),
    }
    for name, shape in table.items():
        assert enc[f"{name}.kernel"] == shape, name
    assert "final.bias" not in enc and not any(k.endswith(".bias") and ".bn." not in k
                                               for k in enc)
    # every 1x1x1 stride-1 conv (the projection shortcuts) is stored 2-D
    ds = {k: v for k, v in enc.items() if k.endswith("downsample.0.kernel")}
    assert ds and all(len(v) == 2 for v in ds.values())
    assert enc["block5.0.downsample.0.kernel"] == (384, 256)
    assert enc["bn0.bn.num_batches_tracked"] == ()
    assert len(enc) == 373
    assert round(_params(enc) / 1e6, 1) == 37.9
    assert _params(B15, "pc_decoder.encoder.") == _params(enc)


def test_minkunet18a_binary_head_size():
    enc = minkunet_shapes(MINKUNET18A_SPEC, 3, 256)
    assert enc["convtr4p16s2.kernel"] == (8, 256, 128)
    assert enc["block5.0.conv1.kernel"] == (27, 256, 128)
    assert round(_params(B15, "pc_binary_head.") / 1e6, 1) == 15.5


def test_feature_projections_and_heads():
    taps = (512, 512, 2560, 1920, 960, 640, 512, 512)
    for i, c in enumerate(taps):
        p = f"backbone.feature_projections.{i}.0"
        assert B15[f"{p}.conv1.weight"] == (128, c, 1, 1)
        assert B15[f"{p}.conv2.weight"] == (128, 128, 3, 3)
        assert B15[f"{p}.conv3.norm.weight"] == (512,)
        assert (f"{p}.shortcut.weight" in B15) == (c != 512)
    assert not any(k.startswith("backbone.feature_projections.8") for k in B15)
    layers = {k.split(".")[5] for k in B15
              if k.startswith("sem_seg_head.pixel_decoder.transformer.encoder.layers.")}
    assert layers == {str(i) for i in range(6)}
    assert B15["sem_seg_head.pixel_decoder.transformer.level_embed"] == (3, 256)
    assert B15["sem_seg_head.pixel_decoder.adapter_1.weight"] == (256, 512, 1, 1)
    assert B15["sem_seg_head.pixel_decoder.layer_1.weight"] == (256, 256, 3, 3)
    pred = {k.split(".")[3] for k in B15
            if k.startswith("sem_seg_head.predictor.transformer_ffn_layers.")}
    assert pred == {str(i) for i in range(9)}
    assert B15["sem_seg_head.predictor.transformer_self_attention_layers.8.self_attn."
               "in_proj_weight"] == (768, 256)
    # nothing of SD or CLIP is in the file
    assert not any(".ldm" in k or "clip." in k or k.startswith("clip_head") for k in B15)


@pytest.mark.parametrize("split,classes", [("scannet_b15n4", 15), ("scannet_b12n7", 12),
                                           ("scannet_b10n9", 10), ("scannet200_b170n30", 170),
                                           ("scannet200_b150n50", 150)])
def test_every_split_differs_only_in_the_class_weights(split, classes):
    shapes = published_shapes(published_arch(split))
    assert shapes["criterion.empty_weight"] == (classes + 1,)
    assert {k: v for k, v in shapes.items() if k != "criterion.empty_weight"} == {
        k: v for k, v in B15.items() if k != "criterion.empty_weight"}
    assert split in PUBLISHED_SPLITS


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="s3dis_b8n4"):
        published_arch("s3dis_b8n4")
