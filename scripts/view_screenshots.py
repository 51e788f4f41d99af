"""Screenshots of ``xmask3d view`` in headless Chromium for docs/view.md (docs/img/view_*.png).

For each scan: the input colours, the segmentation (with its legend) and a query heat map (with
a clicked point's top-5 classes), taken from the live page. The real scan is ScanNet
scene0000_00 from the shared research fixtures (read in place; a temporary PLY of it is written
outside the repository), the generated room comes from ``xmask3d synth``.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np

from xmask3d.cli import build_parser
from xmask3d.cli import main as cli
from xmask3d.data.ply import write_ply
from xmask3d.data.real_fixtures import load_scannet_fixture
from xmask3d.viewer.browser import (
    SCENE_CANVAS,
    canvas_pixels,
    close_notifications,
    gui_input,
    launch,
    wait_for,
)
from xmask3d.viewer.cli import start_viewer

SCANNET20 = ("wall, floor, cabinet, bed, chair, sofa, table, door, window, bookshelf, picture, "
             "counter, desk, curtain, refrigerator, shower curtain, toilet, sink, bathtub, "
             "otherfurniture")


def save_shot(page, path: Path) -> Path:
    """A screenshot of the page as an optimised RGB PNG (a palette would alter the colours)."""
    from PIL import Image

    Image.open(io.BytesIO(page.screenshot())).convert("RGB").save(path, optimize=True)
    return path


def shoot(scan: Path, stem: str, out: Path, *, query: str, extra: list[str]) -> list[Path]:
    from playwright.sync_api import sync_playwright

    args = build_parser().parse_args(["view", str(scan), "--classes", SCANNET20, "--port", "0",
                                      "--export-dir", str(out / "exports"), *extra])
    start = time.perf_counter()
    server, worker = start_viewer(args)
    written = []
    try:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.goto(server.url)
            page.wait_for_selector(SCENE_CANVAS, timeout=60_000)
            wait_for(lambda: "computing point features: views" in server.status.content
                     and server.progress.value > 20, timeout=600)
            time.sleep(1.5)
            close_notifications(page)
            if worker.is_alive():
                written.append(save_shot(page, out / f"view_{stem}_progress.png"))
            worker.join()
            print(f"{stem}: first run {time.perf_counter() - start:.1f} s "
                  f"({server.status.content})")
            for mode, name in (("input", "input"), ("fused", "segment")):
                server.state.set_mode(mode)
                server.refresh()
                time.sleep(2.5)
                written.append(save_shot(page, out / f"view_{stem}_{name}.png"))
            box = gui_input(page, "query")
            box.fill(query)
            page.get_by_role("button", name="Query").click()
            wait_for(lambda: server.state.mode == "query")
            time.sleep(2.5)
            pixels = canvas_pixels(page)
            drawn = np.argwhere(np.abs(pixels - pixels[0, 0]).sum(axis=2) > 30)
            centre = drawn.mean(axis=0)
            near = drawn[np.argsort(((drawn - centre) ** 2).sum(axis=1))]
            box_xy = page.locator(SCENE_CANVAS).bounding_box()
            for r, c in near[:: max(len(near) // 6, 1)][:6]:      # a few drawn pixels
                page.mouse.click(box_xy["x"] + int(c), box_xy["y"] + int(r))
                if wait_for(lambda: "fused 3D-2D" in server.inspect_md.content, timeout=8):
                    break
            time.sleep(1.5)
            written.append(save_shot(page, out / f"view_{stem}_query.png"))
            print(f"{stem}: {server.query_msg.content}")
            browser.close()
    finally:
        server.stop()
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="docs/img", help="output folder (default docs/img)")
    ap.add_argument("--only", choices=("real", "synth"), default=None)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "real"):
            scene = load_scannet_fixture(with_views=False)
            ply = Path(tmp) / "scene0000_00.ply"
            write_ply(ply, scene.points, scene.colors)
            shoot(ply, "real", out, query="something to sit on", extra=["--virtual-views", "4"])
        if args.only in (None, "synth"):
            cli(["synth", "--out", str(Path(tmp) / "synth"), "--scenes", "1", "--views", "12",
                 "--seed", "1", "--val-fraction", "0", "--no-progress"])
            pth = sorted((Path(tmp) / "synth").rglob("*.pth"))[0]
            shoot(pth, "synth", out, query="something to sit on", extra=[])


if __name__ == "__main__":
    main()
