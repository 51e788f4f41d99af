"""Drive the viewer's page in headless Chromium (the browser test and the docs' screenshots).

Uses Debian's ``chromium`` through Playwright (imported only when a browser is launched; never
``playwright install``). WebGL runs on SwiftShader, so no GPU is needed.
"""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Callable

import numpy as np

__all__ = ["CHROMIUM_ARGS", "SCENE_CANVAS", "canvas_pixels", "chromium_path",
           "close_notifications", "gui_input", "launch", "wait_for"]

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SCENE_CANVAS = "canvas[data-engine]"        # three.js's canvas (viser has other, empty ones)


def chromium_path() -> str | None:
    """The Chromium executable on PATH, or ``None``."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch(playwright):
    """Headless Chromium with WebGL on SwiftShader (no GPU, no network services)."""
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


def gui_input(page, label: str):
    """The input of the viser control whose label reads ``label``."""
    return page.locator(f'label:text-is("{label}")').locator(
        "xpath=ancestor::*[.//input][1]//input").first


def canvas_pixels(page) -> np.ndarray:
    """(H, W, 3) int16 screenshot of the 3D canvas."""
    from PIL import Image

    shot = page.locator(SCENE_CANVAS).screenshot()
    return np.asarray(Image.open(io.BytesIO(shot)).convert("RGB")).astype(np.int16)


def close_notifications(page) -> None:
    """Close viser's notifications (e.g. "Software WebGL rendering detected")."""
    for button in page.locator(".mantine-Notification-closeButton").all():
        button.click()


def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll ``cond`` every 0.2 s until it holds (True) or ``timeout`` seconds pass (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.2)
    return False
