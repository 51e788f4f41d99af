"""Points that match none of the user's words: background words, the cut, the policy."""

from __future__ import annotations

import numpy as np
import pytest

from xmask3d.apps.other import (
    BACKGROUND_WORDS,
    DEFAULT_OTHER_BELOW,
    OTHER,
    assign_labels,
    background_for_query,
    background_words,
    other_policy,
)
from xmask3d.errors import ConfigError


def test_assign_labels_with_other_fallback():
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]], np.float32)
    labels, score = assign_labels(probs)
    assert labels.tolist() == [0, 0, 2]
    np.testing.assert_allclose(score, [0.7, 0.4, 0.8])
    labels, _ = assign_labels(probs, other_below=0.5)
    assert labels.tolist() == [0, 3, 2]


def test_points_whose_best_word_is_a_background_word_are_other():
    # columns: two user classes, then two background words
    probs = np.array([[0.60, 0.20, 0.15, 0.05],     # class 0
                      [0.10, 0.20, 0.65, 0.05],     # background word 2 -> other
                      [0.05, 0.30, 0.05, 0.60],     # background word 3 -> other
                      [0.30, 0.35, 0.20, 0.15]],    # class 1, but a weak winner
                     np.float32)
    labels, score = assign_labels(probs, num_classes=2)
    assert labels.tolist() == [0, 2, 2, 1]
    np.testing.assert_allclose(score, [0.60, 0.65, 0.60, 0.35])   # whichever word won
    labels, _ = assign_labels(probs, num_classes=2, other_below=0.5)
    assert labels.tolist() == [0, 2, 2, 2]
    with pytest.raises(ValueError, match="num_classes"):
        assign_labels(probs, num_classes=5)


def test_assign_labels_in_chunks_equals_one_pass():
    probs = np.random.default_rng(5).dirichlet(np.ones(6), size=1001).astype(np.float32)
    whole = assign_labels(probs, num_classes=4, other_below=0.3, chunk=len(probs))
    for chunk in (1, 7, 1000):
        got = assign_labels(probs, num_classes=4, other_below=0.3, chunk=chunk)
        for a, b in zip(got, whole, strict=True):
            np.testing.assert_array_equal(a, b)
    assert (whole[0] == 4).any() and (whole[0] < 4).any()
    np.testing.assert_array_equal(whole[0], np.where(
        (probs.argmax(1) >= 4) | (probs.max(1) < 0.3), 4, probs.argmax(1)))


def test_a_word_the_user_names_stays_a_class():
    assert background_words(["chair", "sofa"]) == BACKGROUND_WORDS
    # named as a class, as a synonym, in capitals or in the plural: not hidden any more
    assert background_words(["chair", "Wall", "rug|floor", "windows"]) == ("ceiling", "door")
    assert background_words(["chair"], enabled=False) == ()
    assert background_for_query("something to sit on") == BACKGROUND_WORDS
    assert background_for_query("The floor, near the windows") == ("wall", "ceiling", "door")
    assert background_for_query("doorway") == BACKGROUND_WORDS       # whole words only
    assert background_for_query("a wall", enabled=False) == ()


def test_other_policy_defaults_switches_and_refusals():
    policy = other_policy(["chair", "wall"])
    assert policy.background == ("floor", "ceiling", "door", "window")
    assert policy.other_below == DEFAULT_OTHER_BELOW and policy.has_other
    assert other_policy(["chair"], other_below=0.0).other_below is None       # 0: no cut
    assert policy.to_dict()["background_words"] == ["floor", "ceiling", "door", "window"]
    off = other_policy(["chair", "wall"], no_other=True)
    assert off.background == () and not off.has_other
    assert off.to_dict() == {"background_words": [], "other_below": None,
                             "rule": "every point takes a class"}
    cut = other_policy(["chair"], no_other=True, other_below=0.3)
    assert cut.has_other and "below 0.3" in cut.to_dict()["rule"]
    # every background word named and no cut: every point takes a class
    assert not other_policy(list(BACKGROUND_WORDS), other_below=0).has_other
    assert other_policy(list(BACKGROUND_WORDS)).has_other                     # the default cut
    with pytest.raises(ConfigError, match="must lie in"):
        other_policy(["chair"], other_below=1.0)
    with pytest.raises(ConfigError, match=f"'{OTHER}' is the label"):
        other_policy(["chair", "other"])
    assert other_policy(["chair", "other"], no_other=True).background == ()
