"""Voxelisation (hand-made grid, containment, inverse map) and the random rigid+scale augment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from xmask3d.data.voxelize import (
    augment_colors,
    augment_points,
    random_augmentation_matrix,
    voxelize,
)
from xmask3d.errors import DataError


def test_voxelize_hand_made_case():
    pts = np.array([[0.01, 0.01, 0.01], [0.015, 0.019, 0.0], [0.05, 0.0, 0.0], [-0.01, 0.0, 0.0],
                    [0.012, 0.001, 0.039]])
    coords, p2v, first = voxelize(pts, 0.02)
    # cells floor(p / 0.02) = (0,0,0), (0,0,0), (2,0,0), (-1,0,0), (0,0,1); shifted by +1 in x
    np.testing.assert_array_equal(coords, [[0, 0, 0], [1, 0, 0], [1, 0, 1], [3, 0, 0]])
    np.testing.assert_array_equal(p2v, [1, 1, 3, 0, 2])
    np.testing.assert_array_equal(first, [3, 0, 4, 2])
    assert coords.dtype == np.int32 and p2v.dtype == np.int64 and first.dtype == np.int64


def test_voxelize_invariants_on_random_points():
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1.3, 2.1, size=(3000, 3)).astype(np.float32)
    pts[1000:1500] = pts[:500] + 0.001  # many shared cells
    size = 0.1
    coords, p2v, first = voxelize(pts, size)
    again = voxelize(pts, size)
    for a, b in zip((coords, p2v, first), again):
        np.testing.assert_array_equal(a, b)  # deterministic
    cell = np.floor(pts.astype(np.float64) / size).astype(np.int64)
    low = cell.min(axis=0)
    assert coords.min() == 0 and (coords.min(axis=0) == 0).all()
    np.testing.assert_array_equal(coords[p2v], cell - low)  # the inverse map reconstructs cells
    lo = (coords[p2v] + low) * size  # every point lies inside its voxel
    assert np.all(pts >= lo - 1e-6) and np.all(pts < lo + size + 1e-6)
    assert len(np.unique(coords, axis=0)) == len(coords)  # one voxel per occupied cell
    lowest = np.full(len(coords), len(pts))
    np.minimum.at(lowest, p2v, np.arange(len(pts)))
    np.testing.assert_array_equal(first, lowest)  # colour source = lowest-index point


def test_voxelize_errors():
    with pytest.raises(DataError, match="voxel_size"):
        voxelize(np.zeros((3, 3)), 0.0)
    with pytest.raises(DataError, match="non-empty"):
        voxelize(np.zeros((0, 3)), 0.02)
    with pytest.raises(DataError, match="NaN"):
        voxelize(np.array([[0.0, np.nan, 0.0]]), 0.02)


def test_augmentation_off_is_identity():
    pts = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    out = augment_points(pts, np.random.default_rng(1), rotate_z=0.0, rotate_xy=0.0,
                         scale=(1.0, 1.0), jitter=0.0)
    np.testing.assert_allclose(out, pts, atol=1e-6)


def _fit_linear(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    sol, *_ = np.linalg.lstsq(src.astype(np.float64), dst.astype(np.float64), rcond=None)
    return sol.T


def test_augmentation_is_rigid_plus_scale_within_ranges():
    pts = np.random.default_rng(0).normal(size=(200, 3))
    rotate_xy, scale = math.pi / 64, (0.9, 1.1)
    scales, yaws = [], []
    state = np.random.get_state()
    for seed in range(200):
        out = augment_points(pts, np.random.default_rng(seed), rotate_xy=rotate_xy, scale=scale)
        m = _fit_linear(pts, out)
        np.testing.assert_allclose(out, pts @ m.T, atol=1e-5)  # linear, no translation
        s = np.cbrt(np.linalg.det(m))
        np.testing.assert_allclose(m @ m.T, s * s * np.eye(3), atol=1e-5)  # rotation x scale
        assert scale[0] - 1e-6 <= s <= scale[1] + 1e-6
        tilt = math.acos(np.clip((m[:, 2] / s) @ [0, 0, 1], -1, 1))  # where the z axis goes
        assert tilt <= 2 * rotate_xy + 1e-6
        scales.append(s)
        yaws.append(math.atan2(m[1, 0], m[0, 0]))
    assert np.random.get_state()[1].tolist() == state[1].tolist()  # global RNG untouched
    assert min(scales) < 0.92 and max(scales) > 1.08
    assert min(yaws) < -2.5 and max(yaws) > 2.5  # the full +-pi yaw range is drawn


def test_augmentation_seeded_and_jitter():
    pts = np.zeros((5000, 3))
    a = augment_points(pts, np.random.default_rng(7), jitter=0.01)
    b = augment_points(pts, np.random.default_rng(7), jitter=0.01)
    np.testing.assert_array_equal(a, b)
    assert abs(a.std() - 0.01) < 0.001
    m = random_augmentation_matrix(np.random.default_rng(5), rotate_z=0.0, rotate_xy=0.0,
                                   scale=(2.0, 2.0))
    np.testing.assert_allclose(m, 2 * np.eye(3))
    with pytest.raises(DataError, match="scale"):
        random_augmentation_matrix(np.random.default_rng(0), scale=(1.1, 0.9))


def test_color_augmentation_values():
    rng = np.random.default_rng(0)
    colors = rng.uniform(-0.5, 0.5, (500, 3)).astype(np.float32)
    same = augment_colors(colors, np.random.default_rng(1))
    np.testing.assert_array_equal(same, colors)
    # contrast only: the mean is kept and deviations scale by one factor in the range
    out = augment_colors(colors, np.random.default_rng(1), contrast=0.3)
    np.testing.assert_allclose(out.mean(0), colors.mean(0), atol=1e-5)
    ratio = (out - colors.mean(0)) / (colors - colors.mean(0))
    assert np.allclose(ratio, ratio.flat[0], atol=1e-3) and 0.7 <= ratio.flat[0] <= 1.3
    # shift only: one offset per channel
    out = augment_colors(colors, np.random.default_rng(2), shift=0.2)
    delta = out - colors
    assert np.allclose(delta, delta[0], atol=1e-6) and np.all(np.abs(delta[0]) <= 0.2)
    assert np.abs(delta[0]).max() > 0
    # clipped to the colour range, seeded
    big = augment_colors(np.full((4, 3), 0.95, np.float32), np.random.default_rng(3),
                         shift=0.5, jitter=0.5)
    assert big.max() <= 1.0 and big.min() >= -1.0
    a = augment_colors(colors, np.random.default_rng(4), contrast=0.2, shift=0.1, jitter=0.05)
    b = augment_colors(colors, np.random.default_rng(4), contrast=0.2, shift=0.1, jitter=0.05)
    np.testing.assert_array_equal(a, b)
    assert 0.03 < np.std(a - augment_colors(colors, np.random.default_rng(4), contrast=0.2,
                                           shift=0.1)) < 0.07


def test_color_augmentation_errors():
    with pytest.raises(DataError, match="N, 3"):
        augment_colors(np.zeros((4, 2)), np.random.default_rng(0), shift=0.1)
    with pytest.raises(DataError, match="contrast"):
        augment_colors(np.zeros((4, 3)), np.random.default_rng(0), contrast=1.5)
    with pytest.raises(DataError, match="jitter"):
        augment_colors(np.zeros((4, 3)), np.random.default_rng(0), jitter=-1)
