"""The authors' state dict -> ours: structure, round trip, ME convolution semantics, errors."""

from __future__ import annotations

import math
import pathlib

import pytest
import torch
import torch.nn.functional as F

from xmask3d.config import load_config
from xmask3d.errors import CheckpointError
from xmask3d.interop.authors_checkpoint import (
    UNUSED,
    authors_key_map,
    check_split,
    convert_authors_state,
    export_authors_state,
    load_authors_checkpoint,
    me_kernel_to_ours,
    published_tap_order,
)
from xmask3d.interop.published_layout import published_arch, published_shapes
from xmask3d.models.build import build_model
from xmask3d.sparse import SparseTensor, TorchBackend

SD_PREFIXES = ("mask_generator.diffusion.unet.", "mask_generator.diffusion.vae.")
UNCOND = "mask_generator.diffusion.condition.uncond_context"


@pytest.fixture(scope="module")
def full_model():
    """The full-size scannet/b15n4 model on the meta device (shapes only, SD v1.x-size UNet)."""
    cfg = load_config("scannet/b15n4", overrides=[
        "mask2d.random_sd=true", "mask2d.sd_path=", "text.encoder=minilm", "text.clip_path=",
        "backbone3d.backend=torch"])
    with torch.device("meta"):
        model = build_model(cfg, text_dim=768)
    return model


def _tap_names(model):
    return published_tap_order(model.mask_generator.diffusion.taps)


def test_full_size_model_holds_the_published_weights_one_to_one(full_model):
    ours = {k: tuple(v.shape) for k, v in full_model.state_dict().items()}
    pub = published_shapes(published_arch("scannet_b15n4"))
    mapping, unknown = authors_key_map(pub, _tap_names(full_model))
    assert unknown == []
    assert set(mapping) | set(UNUSED) == set(pub)
    targets = [m.ours for m in mapping.values()]
    assert len(targets) == len(set(targets))                       # one of ours per published
    for key, m in mapping.items():
        assert math.prod(ours[m.ours]) == math.prod(pub[key]), key
    rest = {k for k in ours if k not in set(targets)}
    assert {k for k in rest if not k.startswith(SD_PREFIXES)} == {UNCOND}
    assert "backbone3d.head.bias" not in ours and "binary_net.head.bias" not in ours


def test_round_trip_is_bit_exact_and_values_land_in_place(full_model):
    shapes = published_shapes(published_arch("scannet_b15n4"))
    gen = torch.Generator().manual_seed(15)
    pub = {f"module.{k}": torch.randn(s, generator=gen) if s else torch.randn((), generator=gen)
           for k, s in shapes.items()}
    ours = {k: torch.empty(v.shape) for k, v in full_model.state_dict().items()
            if not k.startswith(SD_PREFIXES)}
    state, report = convert_authors_state(pub, ours, tap_names=_tap_names(full_model))
    assert report.unknown == [] and set(report.unused) == set(UNUSED)
    assert set(report.missing) == {UNCOND}
    back = export_authors_state(state, report.loaded, shapes)
    assert set(back) == set(shapes) - set(UNUSED)
    for key, value in back.items():
        assert value.shape == pub[f"module.{key}"].shape, key
        assert torch.equal(value, pub[f"module.{key}"]), key
    # spot checks of where values land
    me = pub["module.pc_decoder.encoder.conv0p1s1.kernel"]                 # (125, 3, 32)
    stem = state["backbone3d.stem.0.weight"]                                # (32, 5, 5, 5, 3)
    for (x, y, z, i, o) in [(0, 0, 0, 0, 0), (4, 1, 2, 2, 31), (1, 3, 4, 1, 7)]:
        assert stem[o, x, y, z, i] == me[x + 5 * y + 25 * z, i, o]
    final = pub["module.pc_binary_head.encoder.final.kernel"]              # (96, 256)
    assert torch.equal(state["binary_net.head.weight"][:, 0, 0, 0, :], final.t())
    assert torch.equal(state["mask_generator.mask_decoder.query_pos.weight"],
                       pub["module.sem_seg_head.predictor.query_embed.weight"])
    assert torch.equal(state["mask_generator.diffusion.condition.time_pos"][0],
                       pub["module.backbone.feature_extractor.time_embed_project."
                           "positional_embedding"][0, 0])
    assert torch.equal(
        state["mask_generator.tap_projection.proj.unet_up0_res2.shortcut.0.weight"],
        pub["module.backbone.feature_projections.2.0.shortcut.weight"])     # 2560 -> 512
    assert torch.equal(state["mask_generator.pixel_decoder.lateral_convs.0.1.bias"],
                       pub["module.sem_seg_head.pixel_decoder.adapter_1.norm.bias"])


# --- MinkowskiEngine convolution semantics, as dense conv3d / conv_transpose3d -------------------

def _sparse_input(grid: int, cin: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    active = torch.rand(grid, grid, grid, generator=gen) < 0.35
    xyz = active.nonzero()                                                  # (N, 3) x, y, z
    feats = torch.randn(xyz.shape[0], cin, generator=gen, dtype=torch.float64)
    dense = torch.zeros(1, cin, grid, grid, grid, dtype=torch.float64)
    dense[0, :, xyz[:, 0], xyz[:, 1], xyz[:, 2]] = feats.t()
    coords = torch.cat([torch.zeros(len(xyz), 1, dtype=torch.long), xyz], dim=1)
    return SparseTensor.from_voxels(feats, coords), dense, gen


def _me_as_dense(kernel, k):
    """ME (K**3, C_in, C_out), k = ix + K iy + K**2 iz -> conv3d (C_out, C_in, x, y, z)."""
    return kernel.reshape(k, k, k, *kernel.shape[1:]).permute(4, 3, 2, 1, 0)


def _load(conv, me_kernel):
    with torch.no_grad():
        conv.weight.data = me_kernel_to_ours(me_kernel)
    return conv


def test_me_stride1_3x3x3_equals_imported_submanifold_conv():
    x, dense, gen = _sparse_input(7, 3, seed=1)
    me = torch.randn(27, 3, 5, generator=gen, dtype=torch.float64)
    ref = F.conv3d(dense, _me_as_dense(me, 3), padding=1)                  # out[p] = sum in[p+d]
    xyz = x.coords[:, 1:].long()
    ref = ref[0, :, xyz[:, 0], xyz[:, 1], xyz[:, 2]].t()
    out = _load(TorchBackend().subm_conv(3, 5, kernel_size=3), me).double()(x)
    torch.testing.assert_close(out.features, ref, rtol=1e-5, atol=1e-5)


def test_me_stride2_2x2x2_equals_imported_down_conv():
    x, dense, gen = _sparse_input(8, 3, seed=2)
    me = torch.randn(8, 3, 4, generator=gen, dtype=torch.float64)
    ref = F.conv3d(dense, _me_as_dense(me, 2), stride=2)                   # in at 2o + {0,1}
    out = _load(TorchBackend().down_conv(3, 4), me).double()(x)
    c = out.coords[:, 1:].long()
    torch.testing.assert_close(out.features, ref[0, :, c[:, 0], c[:, 1], c[:, 2]].t(),
                               rtol=1e-5, atol=1e-5)


def test_me_transposed_2x2x2_equals_imported_inverse_conv():
    x, _, gen = _sparse_input(8, 3, seed=3)
    be = TorchBackend()
    coarse = be.down_conv(3, 3).double()(x)
    coarse = coarse.replace_features(torch.randn(coarse.num_voxels, 6, generator=gen,
                                                 dtype=torch.float64))
    c = coarse.coords[:, 1:].long()
    dense = torch.zeros(1, 6, 4, 4, 4, dtype=torch.float64)
    dense[0, :, c[:, 0], c[:, 1], c[:, 2]] = coarse.features.t()
    me = torch.randn(8, 6, 5, generator=gen, dtype=torch.float64)
    weight_t = me.reshape(2, 2, 2, 6, 5).permute(3, 4, 2, 1, 0)            # (C_in, C_out, x, y, z)
    ref = F.conv_transpose3d(dense, weight_t, stride=2)                    # out[2p + d] += in[p]
    out = _load(be.inverse_conv(6, 5), me).double()(coarse)
    f = out.coords[:, 1:].long()
    assert torch.equal(out.coords, x.coords)
    torch.testing.assert_close(out.features, ref[0, :, f[:, 0], f[:, 1], f[:, 2]].t(),
                               rtol=1e-5, atol=1e-5)


def test_me_1x1x1_kernel_is_2d():
    me = torch.randn(4, 6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(me_kernel_to_ours(me)[:, 0, 0, 0, :], me.t())


# --- errors -------------------------------------------------------------------------------------

def test_checkpoint_of_another_split_is_refused_naming_both():
    state = {"module.criterion.empty_weight": torch.ones(13)}
    with pytest.raises(CheckpointError, match=r"12 base classes.*scannet_b15n4 has 15.*"
                                              r"scannet_b12n7"):
        check_split(state, split="scannet_b15n4", expected_classes=15, source="a.pth")


def test_files_that_are_not_checkpoints(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a zip, not a pickle" * 10)
    with pytest.raises(CheckpointError, match="junk.pth: cannot be read"):
        load_authors_checkpoint(junk)
    listed = tmp_path / "list.pth"
    torch.save([1, 2, 3], listed)
    with pytest.raises(CheckpointError, match="list.pth: not an XMask3D checkpoint"):
        load_authors_checkpoint(listed)
    with pytest.raises(CheckpointError, match="file not found"):
        load_authors_checkpoint(tmp_path / "absent.pth")


class _RunsCode:
    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"module.x": torch.zeros(1)}, "payload": _RunsCode(marker)}, evil)
    with pytest.raises(CheckpointError, match="evil.pth: cannot be read as a weights-only"):
        load_authors_checkpoint(evil)
    assert not marker.exists()


def test_authors_file_with_numpy_best_iou_loads(tmp_path):
    import numpy as np

    path = tmp_path / "ok.pth"
    torch.save({"epoch": 3, "state_dict": {"module.a": torch.ones(2)}, "optimizer": {},
                "best_iou": np.float64(0.5)}, path)
    assert list(load_authors_checkpoint(path)) == ["module.a"]


def test_a_tensor_of_the_right_size_but_wrong_shape_is_refused():
    ours = {"point_proj.weight": torch.zeros(8, 4), "point_proj.bias": torch.zeros(8)}
    pub = {"module.pc_decoder.decoder.weight": torch.zeros(4, 8),
           "module.pc_decoder.decoder.bias": torch.zeros(8)}
    with pytest.raises(CheckpointError, match=r"a.pth: pc_decoder.decoder.weight of shape "
                                              r"\(4, 8\).*point_proj.weight is \(8, 4\)"):
        convert_authors_state(pub, ours, tap_names=[], source="a.pth")
