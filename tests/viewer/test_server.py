"""The viser server in process: what it sends, a query round trip, the port freed on stop."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from xmask3d.errors import ConfigError
from xmask3d.viewer.cli import start_viewer
from xmask3d.viewer.server import MODE_LABELS, check_port_free

from .conftest import view_args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_port_free_names_a_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is not available"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)          # free again once the listener is closed


def test_round_trip_query_changes_colours_and_stop_frees_port(room_ply, micro_ckpt, tmp_path):
    port = _free_port()
    args = view_args(room_ply, micro_ckpt, port=port, export_dir=str(tmp_path / "exp"))
    server, worker = start_viewer(args)
    try:
        assert server.url == f"http://127.0.0.1:{port}/"
        with pytest.raises(ConfigError, match=f"port {port}"):
            check_port_free("127.0.0.1", port)              # the viewer holds it
        worker.join(timeout=120)
        assert not worker.is_alive() and server.status.content.startswith("ready")
        state, cloud = server.state, server.cloud
        # what is sent: positions (relative to the centre the node is placed at), colours
        np.testing.assert_allclose(np.asarray(cloud.points, np.float64) + cloud.position,
                                   state.points, atol=0.01)       # float16 on the wire
        seg = np.asarray(cloud.colors).copy()
        np.testing.assert_array_equal(seg, state.colors())
        assert server.mode.value == MODE_LABELS["fused"]
        # the view's default: background words it does not name make "other"
        assert state.names == ["floor", "wall", "table", "other"]
        shown = [name for name, _, _ in state.legend().entries]
        assert shown and all(f"{name} <span" in server.legend.content for name in shown)
        server.query.value = ""
        server._on_query()
        assert "Type a query" in server.query_msg.content
        np.testing.assert_array_equal(np.asarray(cloud.colors), seg)
        server.query.value = "something to sit on"
        server._on_query()
        heat = np.asarray(cloud.colors).copy()
        assert server.mode.value == MODE_LABELS["query"] and not np.array_equal(heat, seg)
        np.testing.assert_array_equal(heat, state.colors())
        server.mode.value = MODE_LABELS["input"]
        server._on_mode()
        np.testing.assert_array_equal(np.asarray(cloud.colors), state.input_colors)
        server._on_export_ply()
        assert "wrote" in server.export_msg.content
        assert len(list((tmp_path / "exp").glob("view_input_*.ply"))) == 1
    finally:
        server.stop()
    check_port_free("127.0.0.1", port)


def test_user_error_on_the_page_is_a_message(room_ply, micro_ckpt):
    server, worker = start_viewer(view_args(room_ply, micro_ckpt))
    try:
        worker.join(timeout=120)
        server.classes.value = "chair, , sofa"
        server._guard(server._on_segment)
        assert server.status.content.startswith("\u26a0") and "empty" in server.status.content
    finally:
        server.stop()


def test_ceiling_is_cut_away_and_the_cut_slider_sends_the_points_below(room_factory):
    from xmask3d.viewer.server import ViewerServer
    from xmask3d.viewer.state import ViewState

    points, colors, _ = room_factory(1)
    rng = np.random.default_rng(1)
    ceiling = np.column_stack([rng.uniform(0, 4, 3000), rng.uniform(0, 3, 3000),
                               np.full(3000, 2.5)]).astype(np.float32)
    pts = np.concatenate([points, ceiling])
    cols = np.concatenate([colors, np.full((3000, 3), 250, np.uint8)])
    server = ViewerServer(ViewState(pts, cols), port=0)
    try:
        assert server.cut < 2.5 and not server.visible[len(points):].any()
        sent = np.asarray(server.cloud.points, np.float64) + server.cloud.position
        assert len(sent) == int(server.visible.sum()) and sent[:, 2].max() < 2.45
        np.testing.assert_array_equal(server.cloud.colors, cols[server.visible])
        server.cut_slider.value = 1.0
        server._on_cut()
        sent = np.asarray(server.cloud.points, np.float64) + server.cloud.position
        assert len(sent) == int((pts[:, 2] <= 1.0).sum()) and sent[:, 2].max() <= 1.01
        assert len(server.cloud.colors) == len(sent)
    finally:
        server.stop()


def test_a_turned_scan_in_millimetres_is_shown_upright_and_exported_as_given(room_ply,
                                                                             micro_ckpt, tmp_path):
    from xmask3d.data.orientation import detect_frame
    from xmask3d.data.ply import read_ply, write_ply

    cloud = read_ply(room_ply)
    pts = cloud.points.astype(np.float64)
    turned = tmp_path / "turned.ply"            # z-up metres -> y-down millimetres
    write_ply(turned, (np.stack([pts[:, 0], -pts[:, 2], pts[:, 1]], axis=1) * 1000.0)
              .astype(np.float32), cloud.colors)
    args = view_args(turned, micro_ckpt, no_2d=True, export_dir=str(tmp_path / "exp"))
    server, worker = start_viewer(args)
    try:
        worker.join(timeout=120)
        assert server.status.content.startswith("ready")
        # shown (and scored) as the original scan is: metres, +z up, floor at 0
        np.testing.assert_allclose(server.state.points,
                                   detect_frame(cloud.points).apply(cloud.points), atol=1e-3)
        assert np.ptp(server.state.points[:, 2]) < 3.0
        out = read_ply(server.state.export_ply(tmp_path / "e.ply"))
        np.testing.assert_array_equal(out.points, read_ply(turned).points)
    finally:
        server.stop()
