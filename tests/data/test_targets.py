"""Tests of the 2D mask targets built from label maps."""

from __future__ import annotations

import pytest
import torch

from xmask3d.data.scene import IGNORE_LABEL
from xmask3d.data.targets import mask_targets_for_batch, mask_targets_from_label_map

I = IGNORE_LABEL  # noqa: E741


def _label_map() -> torch.Tensor:
    return torch.tensor(
        [
            [2, 2, 0, I],
            [2, 0, 0, I],
            [I, 0, 2, 2],
        ],
        dtype=torch.int64,
    )


def test_one_mask_per_present_class() -> None:
    label = _label_map()
    classes, masks = mask_targets_from_label_map(label, 4)
    assert classes.tolist() == [0, 2]  # class 1 and 3 are absent, ignore is not a target
    assert masks.dtype == torch.bool and masks.shape == (2, 3, 4)
    expected_0 = [[0, 0, 1, 0], [0, 1, 1, 0], [0, 1, 0, 0]]
    expected_2 = [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]]
    assert masks[0].int().tolist() == expected_0
    assert masks[1].int().tolist() == expected_2


def test_unlabelled_region_becomes_no_object_segment() -> None:
    label = _label_map()
    classes, masks = mask_targets_from_label_map(label, 4, unlabelled_as_no_object=True)
    assert classes.tolist() == [0, 2, 4]  # 4 = the no-object index C
    assert masks[2].int().tolist() == [[0, 0, 0, 1], [0, 0, 0, 1], [1, 0, 0, 0]]
    # The segments partition the image.
    assert masks.int().sum(0).eq(1).all()


def test_no_extra_segment_without_unlabelled_pixels() -> None:
    label = torch.tensor([[1, 1], [0, 1]])
    classes, masks = mask_targets_from_label_map(label, 2, unlabelled_as_no_object=True)
    assert classes.tolist() == [0, 1]
    assert masks.sum().item() == 4


def test_all_unlabelled_gives_no_target_or_one_no_object() -> None:
    label = torch.full((2, 3), I)
    classes, masks = mask_targets_from_label_map(label, 5)
    assert classes.numel() == 0 and masks.shape == (0, 2, 3)
    classes, masks = mask_targets_from_label_map(label, 5, unlabelled_as_no_object=True)
    assert classes.tolist() == [5] and masks.all()


@pytest.mark.parametrize("bad", [3, -1, 254])
def test_invalid_values_raise(bad: int) -> None:
    label = torch.tensor([[0, bad]])
    with pytest.raises(ValueError, match="label_2d"):
        mask_targets_from_label_map(label, 3)


def test_bad_shape_raises() -> None:
    with pytest.raises(ValueError, match="label_2d"):
        mask_targets_from_label_map(torch.zeros(2, 2, 2, dtype=torch.int64), 3)
    with pytest.raises(ValueError, match="label_2d"):
        mask_targets_from_label_map(torch.zeros(2, 2), 3)


def test_batch_helper_matches_per_view() -> None:
    labels = torch.stack([_label_map(), torch.ones(3, 4, dtype=torch.int64)])
    targets = mask_targets_for_batch(labels, 4)
    assert [t[0].tolist() for t in targets] == [[0, 2], [1]]
    assert torch.equal(targets[0][1], mask_targets_from_label_map(labels[0], 4)[1])
    assert targets[1][1].all()
