"""The spconv CPU workaround patch: idempotent, race-free scatter, and spconv-specific traps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("spconv.pytorch")

import spconv.pytorch as spconv  # noqa: E402

from xmask3d.sparse import SparseTensor, make_backend, to_conv3d_weight  # noqa: E402
from xmask3d.sparse import spconv_backend  # noqa: E402


def test_patch_is_idempotent_and_wraps_once():
    assert spconv_backend.apply_cpu_workarounds()
    assert spconv_backend.apply_cpu_workarounds()
    ops = spconv_backend._ops.SpconvOps
    assert isinstance(ops, spconv_backend._RaceFreeOps)
    assert not isinstance(ops._original, spconv_backend._RaceFreeOps)
    assert ops.gather_cpu is ops._original.gather_cpu  # everything else is delegated


@pytest.mark.skipif(torch.cuda.is_available(), reason="the stream stub is for CPU-only torch")
def test_cuda_stream_query_is_stubbed_on_cpu():
    for module in (spconv_backend._cppcore, spconv_backend._ops, spconv_backend._hash):
        assert module.get_current_stream() == 0


def test_race_free_scatter_add_on_tv_tensors():
    from spconv.pytorch.cppcore import torch_tensor_to_tv

    out = torch.zeros(4, 3, dtype=torch.float64)
    buffer = torch.arange(15, dtype=torch.float64).view(5, 3)  # only the first 3 rows are used
    index = torch.tensor([2, 0, 3], dtype=torch.int32)
    spconv_backend._ops.SpconvOps.scatter_add_cpu(
        torch_tensor_to_tv(out), torch_tensor_to_tv(buffer), torch_tensor_to_tv(index))
    want = torch.zeros(4, 3, dtype=torch.float64)
    want[2], want[0], want[3] = buffer[0], buffer[1], buffer[2]
    assert torch.equal(out, want)


def test_plain_spconv_1x1_shortcut_reads_weight_transposed_but_ours_does_not():
    """spconv's own 1x1 path uses weight.view(C_in, C_out); our wrapper follows the layout."""
    torch.manual_seed(0)
    coords = torch.tensor([[0, 1, 2, 3], [0, 2, 2, 2]], dtype=torch.int32)
    feats = torch.randn(2, 3, dtype=torch.float64)
    ours = make_backend("spconv").subm_conv(3, 5, kernel_size=1).double()
    out = ours(SparseTensor.from_voxels(feats, coords)).features
    dense_weight = to_conv3d_weight(ours.weight).detach()  # (5, 3, 1, 1, 1)
    want = F.conv3d(feats.t().reshape(1, 3, 2, 1, 1), dense_weight).reshape(5, 2).t()
    torch.testing.assert_close(out, want)
    plain = spconv.SubMConv3d(3, 5, 1, bias=False).double()
    with torch.no_grad():
        plain.weight.copy_(ours.weight)
    raw = plain(spconv.SparseConvTensor(feats, coords, [4, 4, 4], 1)).features
    assert not torch.allclose(raw, out)


def test_spconv_coords_need_no_caller_contiguity():
    """Non-contiguous int64 coords are made contiguous int32 before spconv sees them."""
    gen = torch.Generator().manual_seed(1)
    coords = (torch.rand(1, 6, 6, 6, generator=gen) < 0.4).nonzero()
    coords_fortran = coords.t().contiguous().t()
    feats = torch.randn(len(coords), 2, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    conv = make_backend("spconv").down_conv(2, 2).double()
    a = conv(SparseTensor.from_voxels(feats, coords_fortran))
    b = conv(SparseTensor.from_voxels(feats, coords.contiguous()))
    assert a.num_voxels == b.num_voxels == len(torch.unique(coords // 2, dim=0))
    torch.testing.assert_close(a.features, b.features)
