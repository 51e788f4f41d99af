"""The page in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Skipped, with the reason, where the browser or Playwright is missing (``make install`` installs
the browser with apt-get when it runs as root).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from xmask3d.viewer.browser import (
    SCENE_CANVAS,
    canvas_pixels,
    chromium_path,
    gui_input,
    launch,
    wait_for,
)
from xmask3d.viewer.cli import start_viewer

from .conftest import view_args


@pytest.fixture(scope="module")
def sync_playwright():
    if chromium_path() is None:
        pytest.skip("no chromium executable on PATH (Debian: apt-get install chromium; "
                    "`make install` does this when run as root)")
    pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                             "(pip install playwright; never `playwright install`)")
    return pw.sync_playwright


def test_page_loads_renders_and_answers_a_query(sync_playwright, room_ply, micro_ckpt,
                                                tmp_path):
    server, worker = start_viewer(view_args(room_ply, micro_ckpt,
                                            export_dir=str(tmp_path / "exp")))
    outside = []
    try:
        worker.join(timeout=120)
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(
                (server.url, server.url.replace("http", "ws"), "data:", "blob:")) else None)
            page.goto(server.url)
            page.wait_for_selector(SCENE_CANVAS, timeout=60_000)
            assert wait_for(lambda: page.locator("text=ready: point features").count() > 0)
            time.sleep(1.5)
            before = canvas_pixels(page)
            # not blank: many pixels differ from the background, in several colours
            background = before[0, 0]
            drawn = np.abs(before - background).sum(axis=2) > 30
            assert drawn.mean() > 0.05, f"canvas nearly blank ({drawn.mean():.3f} drawn)"
            assert len(np.unique(before[drawn].reshape(-1, 3) // 32, axis=0)) >= 3
            box = gui_input(page, "query")
            box.fill("something to sit on")
            page.get_by_role("button", name="Query").click()
            assert wait_for(lambda: server.state.mode == "query")
            time.sleep(1.5)
            after = canvas_pixels(page)
            changed = np.abs(after - before).sum(axis=2) > 30
            assert changed.mean() > 0.02, f"query changed {changed.mean():.4f} of the pixels"
            # click a drawn pixel in the middle of the scan: the page shows its top classes
            rows, cols = np.nonzero(drawn)
            k = np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2)
            origin = page.locator(SCENE_CANVAS).bounding_box()
            page.mouse.click(origin["x"] + int(cols[k]), origin["y"] + int(rows[k]))
            assert wait_for(lambda: "fused 3D-2D" in server.inspect_md.content)
            assert wait_for(lambda: page.locator("text=fused 3D-2D:").count() > 0)
            page.get_by_role("button", name="Export PNG").click()
            assert wait_for(lambda: any((tmp_path / "exp").glob("*.png")))
            browser.close()
    finally:
        server.stop()
    assert outside == [], f"the page fetched from elsewhere: {outside}"
    from PIL import Image

    png = np.asarray(Image.open(next((tmp_path / "exp").glob("*.png"))).convert("RGB"))
    assert png.shape[0] > 100 and png.std() > 5


def test_the_real_scan_renders_and_answers_a_query(sync_playwright, micro_ckpt, tmp_path):
    """The demo's real scan (ScanNet scene0000_00, read from ../shared, written to a temporary
    PLY as a user would have it) in the page: drawn, and a query recolours it."""
    from xmask3d.data.ply import write_ply
    from xmask3d.data.real_fixtures import load_scannet_fixture, real_data_root

    if real_data_root() is None:
        pytest.skip("the real fixtures (../shared/data/real) are absent")
    scene = load_scannet_fixture(with_views=False)
    scan = tmp_path / "scene0000_00.ply"
    write_ply(scan, scene.points, scene.colors)
    server, worker = start_viewer(view_args(scan, micro_ckpt, no_2d=True,
                                            export_dir=str(tmp_path / "exp")))
    try:
        worker.join(timeout=300)
        assert server.status.content.startswith("ready"), server.status.content
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            page.goto(server.url)
            page.wait_for_selector(SCENE_CANVAS, timeout=60_000)
            time.sleep(2.0)
            before = canvas_pixels(page)
            drawn = np.abs(before - before[0, 0]).sum(axis=2) > 30
            assert drawn.mean() > 0.05, f"canvas nearly blank ({drawn.mean():.3f} drawn)"
            gui_input(page, "query").fill("a bed")
            page.get_by_role("button", name="Query").click()
            assert wait_for(lambda: server.state.mode == "query")
            time.sleep(2.0)
            changed = np.abs(canvas_pixels(page) - before).sum(axis=2) > 30
            assert changed.mean() > 0.02, f"query changed {changed.mean():.4f} of the pixels"
            browser.close()
    finally:
        server.stop()
