"""Fixtures shared by every test folder."""

from __future__ import annotations

import pytest

# A very small model with the tiny configuration's code paths (model, app and engine tests).
MICRO_OVERRIDES = (
    "data.image_hw=[48, 64]", "data.voxel_size=0.1", "mask2d.input_size=64",
    "backbone3d.enc_channels=[8, 16, 16, 16]", "backbone3d.dec_channels=[16, 16, 8, 8]",
    "backbone3d.stem_channels=8", "backbone3d.out_channels=16",
    "backbone3d.binary_enc_channels=[8, 8, 8, 8]", "backbone3d.binary_dec_channels=[8, 8, 8, 8]",
    "backbone3d.binary_out_channels=8", "backbone3d.global_dim=16",
    "mask2d.block_out_channels=[32, 32, 32]", "mask2d.cross_attention_dim=32",
    "mask2d.projection_dim=32", "mask2d.projection_mid=16", "mask2d.conv_dim=32",
    "mask2d.mask_dim=32", "mask2d.hidden_dim=32", "mask2d.pixel_ffn=64",
    "mask2d.decoder_ffn=64", "mask2d.num_queries=6", "loss.num_points=256",
)


@pytest.fixture(scope="session")
def micro_overrides() -> list[str]:
    """``--set`` overrides of the micro model (apply on top of ``tiny/scannet_b15n4``)."""
    return list(MICRO_OVERRIDES)


def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def two_threads():
    """Run a test at 2 torch threads (the spconv CPU race shows up only with several threads)."""
    yield from _torch_threads(2)


@pytest.fixture
def one_thread():
    """Run a test at 1 torch thread (bitwise-comparable reductions)."""
    yield from _torch_threads(1)


# Fuzz tests (Hypothesis): derandomized (the same examples on every machine), no per-example
# deadline (the machine may be loaded), no example database written into the checkout.
try:
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile("xmask3d", derandomize=True, deadline=None, database=None,
                                   print_blob=False)
    _hyp_settings.load_profile("xmask3d")
except ImportError:  # the fuzz tests skip themselves without hypothesis
    pass


class _Hang(Exception):
    """A fuzz example ran past its time guard."""


@pytest.fixture(scope="session")
def time_guard():
    """``with time_guard(seconds):`` fails the example (raises) when its body runs longer."""
    import signal
    from contextlib import contextmanager

    @contextmanager
    def guard(seconds: float = 10.0):
        def _alarm(signum, frame):
            raise _Hang(f"example ran longer than {seconds} s (a hang?)")

        old = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)

    return guard


@pytest.fixture(scope="session")
def mutate():
    """``mutate(draw, blob)`` -> ``(kind, mutated bytes)``: truncation, byte flips, insertion,
    deletion or a replaced/duplicated/dropped header line, drawn with Hypothesis' ``draw``."""
    from hypothesis import strategies as st

    def _mutate(draw, blob: bytes, header_lines: list[bytes] | None = None) -> tuple[str, bytes]:
        kinds = ["truncate", "flip", "insert", "delete"] + (["header"] if header_lines else [])
        kind = draw(st.sampled_from(kinds))
        b = bytearray(blob)
        if kind == "truncate":
            return kind, bytes(b[:draw(st.integers(0, len(b) - 1))])
        if kind == "flip":
            for _ in range(draw(st.integers(1, 6))):
                b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
            return kind, bytes(b)
        if kind == "insert":
            at = draw(st.integers(0, len(b)))
            return kind, bytes(b[:at] + draw(st.binary(min_size=1, max_size=24)) + b[at:])
        if kind == "delete":
            at = draw(st.integers(0, len(b) - 1))
            return kind, bytes(b[:at] + b[at + draw(st.integers(1, 32)):])
        end = blob.index(b"end_header\n") + len(b"end_header\n")
        lines = blob[:end].split(b"\n")[:-1]
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["replace", "drop", "duplicate"]))
        if op == "replace":
            lines[i] = draw(st.sampled_from(header_lines))
        elif op == "drop":
            del lines[i]
        else:
            lines.insert(i, lines[i])
        return kind, b"\n".join(lines) + b"\n" + blob[end:]

    return _mutate
