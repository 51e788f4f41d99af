"""The web page of ``xmask3d view``: a viser server that shows a :class:`ViewState`.

viser (https://viser.studio, PyPI ``viser``) serves its own prebuilt three.js client from the
wheel and talks to it over a websocket, so nothing is fetched from the network. This module only
lays out the controls and forwards their events to :mod:`xmask3d.viewer.state`.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xmask3d.apps.render import ceiling_cut
from xmask3d.errors import ConfigError, XMask3DError
from xmask3d.viewer.state import COLOUR_MODES, ViewState

__all__ = ["MODE_LABELS", "ViewerServer", "check_port_free"]

logger = logging.getLogger(__name__)

MODE_LABELS = {"input": "input colours", "fused": "fused 3D-2D", "3d": "3D only",
               "2d": "2D only", "query": "query heat map"}
_LABEL_MODES = {v: k for k, v in MODE_LABELS.items()}


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another program listens on (viser would silently take the next one).

    Raises:
        ConfigError: naming the host and port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"port {port} on {host} is not available ({exc.strerror}); "
                              "choose another with --port") from exc


class ViewerServer:
    """A running viser server showing ``state``.

    Args:
        state: what to show.
        host, port: where to listen (``port=0``: any free port).
        title: the scan's name.
        export_dir: where "Export PLY/PNG" write their files.
        classes: the initial class list text (editable on the page).
        base: the initial base-class list text.
    """

    def __init__(self, state: ViewState, *, host: str = "127.0.0.1", port: int = 8080,
                 title: str = "", export_dir: str | Path = "view_exports", classes: str = "",
                 base: str = "") -> None:
        import viser

        if port:
            check_port_free(host, port)
        self.state, self.title, self.export_dir = state, title, Path(export_dir)
        self.server = viser.ViserServer(host=host, port=port, label="xmask3d view",
                                        verbose=False)
        if port and self.server.get_port() != port:
            self.server.stop()
            raise ConfigError(f"port {port} on {host} was taken while starting; choose another "
                              "with --port")
        self.host, self.port = host, self.server.get_port()
        self._update_lock = threading.Lock()
        self._build_scene()
        self._build_gui(classes, base)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # --- layout ------------------------------------------------------------------------------

    def _build_scene(self) -> None:
        pts = self.state.points
        lo, hi = np.percentile(pts, [1, 99], axis=0)
        centre, ext = (lo + hi) / 2, float(np.max(hi - lo))
        self.center = centre
        z = pts[:, 2]
        self.z_range = (float(z.min()), float(z.max()))
        cut = ceiling_cut(pts)
        self.cut = self.z_range[1] if cut is None else cut
        self.visible = z <= self.cut
        self.server.scene.set_up_direction("+z")
        cam = self.server.initial_camera
        cam.look_at = tuple(float(v) for v in centre)
        cam.position = tuple(float(v) for v in centre + np.array([-0.6, -0.9, 0.8]) * ext)
        self.cloud = self.server.scene.add_point_cloud(
            "/scan", points=pts[self.visible] - centre,
            colors=self.state.colors()[self.visible], point_size=self._size(),
            point_shape="rounded", position=tuple(float(v) for v in centre))
        self.marker = self.server.scene.add_icosphere(
            "/picked", radius=2.5 * self._size(), color=(255, 0, 255), visible=False)

    def _size(self) -> float:
        """A point size of about the scan's mean point spacing."""
        from xmask3d.apps.virtual_views import point_spacing

        return float(np.clip(1.2 * point_spacing(self.state.points), 0.004, 0.1))

    def _build_gui(self, classes: str, base: str) -> None:
        gui = self.server.gui
        gui.add_markdown(f"**xmask3d view** \u2014 {self.title} ({self.state.num_points:,} "
                         "points)")
        self.status = gui.add_markdown("")
        self.progress = gui.add_progress_bar(0.0, visible=False, animated=True)
        with gui.add_folder("Display"):
            self.mode = gui.add_dropdown("colour by", [MODE_LABELS[m] for m in
                                                       self.state.available_modes()],
                                         initial_value=MODE_LABELS[self.state.mode])
            self.size = gui.add_slider("point size", min=0.001, max=0.1, step=0.001,
                                       initial_value=round(self._size(), 3))
            lo, hi = self.z_range
            self.cut_slider = gui.add_slider(
                "cut above (m)", min=round(lo, 2), max=round(hi + 0.01, 2), step=0.01,
                initial_value=round(min(self.cut, hi + 0.01), 2),
                hint="hide the points above this height (a ceiling is cut away at the start)")
        with gui.add_folder("Segment"):
            self.classes = gui.add_text("classes", classes, hint="comma-separated; synonyms "
                                        "with | (sofa|couch)")
            self.base = gui.add_text("base classes", base, hint="optional: those the "
                                     "checkpoint was trained on (turns the base/novel gate on)")
            self.segment_btn = gui.add_button("Segment")
            self.legend = gui.add_html(self.state.legend().html())
        with gui.add_folder("Query"):
            self.query = gui.add_text("query", "", hint="free text, e.g. something to sit on")
            self.query_btn = gui.add_button("Query")
            self.threshold = gui.add_slider("threshold", min=0.0, max=1.0, step=0.01,
                                            initial_value=self.state.threshold)
            self.matches = gui.add_checkbox("matches only", self.state.matches_only)
            self.query_msg = gui.add_markdown("")
        with gui.add_folder("Inspect"):
            self.inspect_md = gui.add_markdown("Click a point to see its top-5 classes.")
        with gui.add_folder("Export"):
            self.ply_btn = gui.add_button("Export PLY")
            self.png_btn = gui.add_button("Export PNG")
            self.export_msg = gui.add_markdown("")
        self.mode.on_update(lambda _: self._guard(self._on_mode))
        self.size.on_update(lambda _: setattr(self.cloud, "point_size", float(self.size.value)))
        self.cut_slider.on_update(lambda _: self._guard(self._on_cut))
        self.segment_btn.on_click(lambda _: self._guard(self._on_segment))
        self.query_btn.on_click(lambda _: self._guard(self._on_query))
        self.threshold.on_update(lambda _: self._guard(self._on_threshold))
        self.matches.on_update(lambda _: self._guard(self._on_threshold))
        self.ply_btn.on_click(lambda _: self._guard(self._on_export_ply))
        self.png_btn.on_click(lambda e: self._guard(lambda: self._on_export_png(e.client)))
        self.server.scene.on_click()(lambda e: self._guard(lambda: self._on_click(e)))

    # --- events ------------------------------------------------------------------------------

    def _guard(self, fn: Callable[[], None]) -> None:
        """Run a GUI action; a user error becomes a message on the page, not a traceback."""
        try:
            fn()
        except XMask3DError as exc:
            self.set_status(f"\u26a0 {exc}")
        except Exception as exc:  # noqa: BLE001 - keep the server alive, show the problem
            logger.exception("viewer action failed")
            self.set_status(f"\u26a0 internal error: {type(exc).__name__}: {exc}")

    def set_status(self, text: str) -> None:
        self.status.content = text

    def refresh(self) -> None:
        """Send the current colours, legend and available modes to the page."""
        with self._update_lock:
            modes = [MODE_LABELS[m] for m in self.state.available_modes()]
            if tuple(self.mode.options) != tuple(modes):
                self.mode.options = modes
            if self.mode.value != MODE_LABELS[self.state.mode]:
                self.mode.value = MODE_LABELS[self.state.mode]
            self.cloud.colors = self.state.colors()[self.visible]
            self.legend.content = self.state.legend().html()

    def _on_mode(self) -> None:
        mode = _LABEL_MODES.get(self.mode.value, "input")
        if mode != self.state.mode and mode in COLOUR_MODES:
            self.state.set_mode(mode)
            self.refresh()

    def _on_cut(self) -> None:
        with self._update_lock, self.server.atomic():
            self.visible = self.state.points[:, 2] <= float(self.cut_slider.value)
            self.cloud.points = self.state.points[self.visible] - self.center
            self.cloud.colors = self.state.colors()[self.visible]

    def _on_segment(self) -> None:
        self.set_status("segmenting\u2026")
        self.set_status(f"segmented: {self.state.segment(self.classes.value, self.base.value)}")
        self.refresh()

    def _on_query(self) -> None:
        self.query_msg.content = self.state.query(self.query.value)
        self.refresh()

    def _on_threshold(self) -> None:
        self.state.threshold = float(self.threshold.value)
        self.state.matches_only = bool(self.matches.value)
        if self.state.mode == "query":
            self.refresh()

    def _on_click(self, event) -> None:
        index = self.state.pick(event.ray_origin, event.ray_direction, self.visible)
        if index is None:
            self.inspect_md.content = "No point under the cursor."
            self.marker.visible = False
            return
        self.marker.position = tuple(float(v) for v in self.state.points[index])
        self.marker.visible = True
        self.inspect_md.content = self.state.inspect(index)

    def _export_name(self, suffix: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return self.export_dir / f"view_{self.state.mode}_{stamp}{suffix}"

    def _on_export_ply(self) -> None:
        path = self.state.export_ply(self._export_name(".ply"))
        self.export_msg.content = f"wrote `{path}`"
        self.server.send_file_download(path.name, path.read_bytes())

    def _on_export_png(self, client) -> None:
        from PIL import Image

        from xmask3d.data.processed import atomic_write

        cam = client.camera
        h, w = int(cam.image_height or 720), int(cam.image_width or 1280)
        image = client.get_render(h, w, transport_format="png", timeout=30.0)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        path = self._export_name(".png")
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
        self.export_msg.content = f"wrote `{path}`"
        client.send_file_download(path.name, buf.getvalue())

    # --- first run ---------------------------------------------------------------------------

    def report(self, done: int, total: int, what: str) -> None:
        """Progress callback of the first run: bar and status line on the page."""
        self.progress.visible = True
        self.progress.value = 100.0 * done / max(total, 1)
        self.set_status(f"computing point features: {what} {done}/{total}")

    def finish_progress(self, text: str) -> None:
        self.progress.visible = False
        self.set_status(text)

    def stop(self) -> None:
        self.server.stop()
