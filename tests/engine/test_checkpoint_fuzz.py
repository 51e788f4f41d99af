"""Fuzzing (Hypothesis) of checkpoint loading: corrupt bytes and entries of any type.

Property: :func:`load_checkpoint` returns a validated checkpoint (a ``{name: tensor}`` model,
a config, integer counters) or raises ``CheckpointError`` naming the file; never another
exception, never a hang.
"""

from __future__ import annotations

import io

import pytest
import torch

pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis: pip install -e '.[test]'")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from xmask3d.config import XMask3DConfig, load_config, to_dict  # noqa: E402
from xmask3d.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint  # noqa: E402
from xmask3d.errors import CheckpointError  # noqa: E402

FIXTURE_OK = [HealthCheck.function_scoped_fixture]
CONFIG = to_dict(load_config("tiny/scannet_b15n4"))
MODEL = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2, dtype=torch.float16)}


def _payload(**changes) -> dict:
    data = {"format": CHECKPOINT_FORMAT, "version": 1, "model": MODEL, "config": CONFIG,
            "epoch": 1, "step": 5}
    data.update(changes)
    return data


def _load(path, guard):
    with guard(10.0):
        try:
            return load_checkpoint(path)
        except CheckpointError as exc:
            assert str(path) in str(exc), str(exc)
            return None


def _assert_valid(data) -> None:
    assert isinstance(data["config"], XMask3DConfig)
    assert all(isinstance(k, str) and isinstance(v, torch.Tensor)
               for k, v in data["model"].items())
    assert isinstance(data["epoch"], int) and isinstance(data["step"], int)


@settings(max_examples=120, suppress_health_check=FIXTURE_OK)
@given(data=st.data())
def test_corrupt_checkpoint_is_loaded_validated_or_refused(tmp_path, time_guard, mutate, data):
    buf = io.BytesIO()
    torch.save(_payload(), buf)
    _, bad = mutate(data.draw, buf.getvalue())
    path = tmp_path / "c.pt"
    path.write_bytes(bad)
    got = _load(path, time_guard)
    if got is not None:
        _assert_valid(got)


_ANY = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**40), st.floats(), st.text(
    max_size=4), st.lists(st.integers(), max_size=2), st.just(torch.zeros(2)),
    st.dictionaries(st.sampled_from(["w", "b", 1]), st.sampled_from([torch.ones(1), 2, "x"]),
                    max_size=2))


@settings(max_examples=150, suppress_health_check=FIXTURE_OK)
@given(key=st.sampled_from(["format", "version", "model", "config", "epoch", "step"]),
       value=_ANY, section=st.sampled_from(sorted(CONFIG)))
def test_checkpoint_entries_of_any_type_are_validated(tmp_path, time_guard, key, value, section):
    if key == "config":   # a whole config of the wrong type, or one section replaced
        value = value if isinstance(value, (str, int)) else {**CONFIG, section: value}
    path = tmp_path / "e.pt"
    torch.save(_payload(**{key: value}), path)
    got = _load(path, time_guard)
    if got is not None:
        _assert_valid(got)
        assert got["epoch"] == 1 and got["step"] == 5 or key in ("epoch", "step")
        assert key != "model" or got["model"] == value


def test_refusals_name_the_problem(tmp_path):
    cases = {"model": ([1, 2], "'model' entry is not a {name: tensor}"),
             "step": ("5", "'step' is '5', not a non-negative integer"),
             "epoch": (-1, "'epoch' is -1"),
             "config": ("tiny", "expected a mapping")}
    for key, (value, message) in cases.items():
        path = tmp_path / f"{key}.pt"
        torch.save(_payload(**{key: value}), path)
        with pytest.raises(CheckpointError, match=message) as exc:
            load_checkpoint(path)
        assert str(path) in str(exc.value)
    path = tmp_path / "ok.pt"
    torch.save(_payload(), path)
    got = load_checkpoint(path)
    assert got["step"] == 5 and torch.equal(got["model"]["w"], MODEL["w"])
