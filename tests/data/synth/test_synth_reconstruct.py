"""Scans fused from noisy depth frames (``synth --scan-views``)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from xmask3d.data.scene import IGNORE_LABEL
from xmask3d.data.synth import SynthConfig, generate_scan
from xmask3d.data.synth.cli import add_parser
from xmask3d.data.synth.reconstruct import ScanSettings, axial_sigma, fuse, reconstruct
from xmask3d.data.synth.scan import IMAGE_HW, K_320x240, scene_room
from xmask3d.errors import ConfigError

FAST = ScanSettings(views=12, hw=(60, 80))


def test_axial_sigma_is_the_sensor_model():
    np.testing.assert_allclose(axial_sigma(np.array([0.4, 2.4, 4.4])),
                               [0.0012, 0.0012 + 0.0019 * 4, 0.0012 + 0.0019 * 16])


def test_fuse_averages_each_voxel_and_takes_its_majority_primitive():
    pts = np.array([[0.01, 0.01, 0.01], [0.03, 0.03, 0.03], [0.02, 0.02, 0.02],
                    [0.51, 0.51, 0.51], [0.52, 0.52, 0.52]])
    col = np.array([[0.0] * 3, [0.3] * 3, [0.6] * 3, [1.0] * 3, [0.0] * 3])
    prim = np.array([7, 2, 7, 4, 1])
    p, c, m = fuse(pts, col, prim, voxel=0.1)
    order = np.argsort(p[:, 0])
    np.testing.assert_allclose(p[order], [[0.02] * 3, [0.515] * 3])
    np.testing.assert_allclose(c[order], [[0.3] * 3, [0.5] * 3])
    assert m[order].tolist() == [7, 1]  # 7 twice beats 2; the 4/1 tie goes to the smaller index
    perm = np.array([4, 2, 0, 3, 1])  # the observation order does not matter
    p2, c2, m2 = fuse(pts[perm], col[perm], prim[perm], voxel=0.1)
    np.testing.assert_allclose(p2[np.argsort(p2[:, 0])], p[order])
    assert m2[np.argsort(p2[:, 0])].tolist() == [7, 1]


@pytest.fixture(scope="module")
def bedroom():
    room = scene_room(0, seed=3)
    pts, col, prim = reconstruct(room, FAST, K_320x240, IMAGE_HW, np.random.default_rng(0))
    return room, pts, col, prim


def test_fused_points_lie_on_the_surface_of_their_primitive(bedroom):
    room, pts, col, prim = bedroom
    assert len(pts) > 5000 and col.min() >= 0.0 and col.max() <= 1.0
    near = np.zeros(len(pts), dtype=bool)
    deep = np.zeros(len(pts), dtype=bool)
    for i in np.unique(prim):
        sel = prim == i
        p = room.primitives[i]
        near[sel] = p.contains(pts[sel], 0.03)
        q = np.abs(p.to_local(pts[sel]))
        deep[sel] = p.kind == "box" and np.all(q <= p.half - 0.03, axis=1)
    assert near.mean() > 0.97  # depth noise is centimetres at room distances
    assert deep.mean() < 0.02  # on the surface, not inside the solid


def test_a_fused_scan_misses_what_a_camera_loop_does_not_see(bedroom):
    room, pts, _, prim = bedroom
    ceiling = np.array([p.name == "ceiling" for p in room.primitives])
    sampled = generate_scan(0, seed=3, n_views=1, density=300.0)
    top = room.height - 0.1
    # surface sampling covers the ceiling (about a fifth of the points); the loop looks down
    assert np.mean(sampled.points[:, 2] > top) > 0.1
    assert np.mean(pts[:, 2] > top) < 0.05
    assert ceiling[prim].mean() < 0.05
    # undersides below the camera (eye height >= 1.3 m): no fused point inside the bottom face
    # of a raised box (a bed frame, a table top), away from its edges
    checked = 0
    for i, p in enumerate(room.primitives):
        lo = p.corners()[:, 2].min()
        if p.kind == "box" and p.category and 0.2 < lo < 1.2 and min(p.half[:2]) > 0.1:
            q = p.to_local(pts[prim == i])
            inner = np.all(np.abs(q[:, :2]) < p.half[:2] - 0.05, axis=1)
            checked += 1
            assert np.sum(inner & (q[:, 2] < -p.half[2] + 0.01)) == 0, p.name
    assert checked >= 1


def test_scan_views_change_only_the_point_cloud():
    plain = generate_scan(1, seed=5, n_views=2, density=100.0)
    off = generate_scan(1, seed=5, n_views=2, density=100.0, scan=ScanSettings(views=0))
    np.testing.assert_array_equal(plain.points, off.points)
    a = generate_scan(1, seed=5, n_views=2, density=100.0, scan=FAST)
    b = generate_scan(1, seed=5, n_views=2, density=100.0, scan=FAST)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.points.shape, plain.points.shape) or \
        not np.allclose(a.points, plain.points)
    for va, vp in zip(a.views, plain.views, strict=True):  # the 2D views are the same frames
        np.testing.assert_array_equal(va.color, vp.color)
        assert va.caption == vp.caption
    assert set(np.unique(a.labels)) <= set(np.unique(plain.labels)) | {IGNORE_LABEL}
    assert len(a.labels) == len(a.points) == len(a.colors) == len(a.instances)


def test_scan_views_option_is_validated_and_parsed():
    with pytest.raises(ConfigError, match="--scan-views"):
        SynthConfig(scenes=2, views=1, scan_views=-1).validate()
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["synth", "--out", "x", "--scan-views", "40"])
    assert args.scan_views == 40


def test_reconstruction_figure_shows_both_scans(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from PIL import Image

    from xmask3d.data.synth.figure import plot_reconstruction

    sampled = generate_scan(0, seed=3, n_views=1, density=100.0)
    fused = generate_scan(0, seed=3, n_views=1, density=100.0, scan=FAST)
    path = tmp_path / "recon.png"
    plot_reconstruction([(sampled, fused)], path)
    img = np.asarray(Image.open(path).convert("L"))
    assert img.shape == (360, 1500)  # one row of four panels at 100 dpi
    for panel in np.array_split(img[40:], 4, axis=1):  # every panel has points drawn in it
        assert (panel < 200).mean() > 0.005
