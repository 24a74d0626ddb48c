"""The web demo end to end in a real headless Chromium (Debian `chromium`, driven by Playwright, never
`playwright install`): the app runs on a free loopback port with a tiny random-weight pipeline; the page loads
only from 127.0.0.1 and the server opens no outside connection; a bundled example runs and changes the image
inside its region only; an empty mask and other bad inputs show a readable message; a brush stroke drawn with
the mouse becomes a region (upstream's sketch mask came back empty).

Set DEMO_SCREENSHOT=docs/images/demo_screenshot.png to save the page after the example run.
"""

from __future__ import annotations

import io
import ipaddress
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
STOREFRONT = ROOT / "data/examples/storefront.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
RUN_TIMEOUT_MS = 60_000
BRUSH = np.array([255, 64, 160])  # udifftext.demo.BRUSH_COLOUR and the example layer's colour

pytest.importorskip("gradio", reason="the demo extra is not installed: pip install -e '.[demo]'")
pytest.importorskip("playwright.sync_api", reason="the demo extra is not installed: pip install -e '.[demo]'")
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no Chromium browser (install the Debian `chromium` package; see .ci/run)", allow_module_level=True)


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str) or host == "localhost":
        return True  # AF_UNIX paths and the loopback name
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(scope="module")
def outside_connections():
    """Hosts the server process tried to reach that are not loopback (analytics, version checks, CDNs)."""
    seen: list[str] = []
    connect, lookup = socket.socket.connect, socket.getaddrinfo
    lock = threading.Lock()

    def guarded_connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if not _is_loopback(host):
            with lock:
                seen.append(str(host))
            raise OSError(f"test: outside connection to {host} blocked")
        return connect(sock, address)

    def guarded_lookup(host, *args, **kwargs):
        if host is not None and not _is_loopback(host if isinstance(host, str) else host.decode()):
            with lock:
                seen.append(str(host))
            raise socket.gaierror(f"test: lookup of {host} blocked")
        return lookup(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", guarded_connect)
        mp.setattr(socket, "getaddrinfo", guarded_lookup)
        yield seen


@pytest.fixture(scope="module")
def app_url(outside_connections, tmp_path_factory):
    from udifftext.config import NoiseSelectionConfig, SampleConfig, UNetStageConfig, load_config
    from udifftext.demo import build_demo, launch_demo
    from udifftext.pipeline import UDiffTextPipeline

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        pipe = UDiffTextPipeline.from_config(load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml"))
        cfg = SampleConfig(steps=1, noise_selection=NoiseSelectionConfig(enabled=False))
        demo = build_demo(
            pipe, cfg, note="tiny model with RANDOM weights, 1 step: the output shows the pipeline working, not text"
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        launch_demo(demo, port=port, block=False)
        yield f"http://127.0.0.1:{port}/"
        demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app_url):
    """A fresh page on the app; fails the test if it asked for anything but the app's own origin."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(app_url, wait_until="networkidle")
    yield page
    outside = [url for url in requests if not url.startswith(app_url) and not url.startswith(("data:", "blob:"))]
    assert outside == []
    context.close()


def click_example(page, index: int) -> None:
    page.locator("table tbody tr").nth(index).click()
    page.wait_for_function("() => document.querySelector('#texts textarea').value !== ''")


def editor_screenshot(page) -> np.ndarray:
    """The image editor as shown, (H, W, 3) int."""
    return np.asarray(Image.open(io.BytesIO(page.locator("#editor").screenshot())).convert("RGB")).astype(int)


def wait_for_photo(page, timeout_s: float = 30.0) -> None:
    """Wait until the editor shows an uploaded photo: the upload is asynchronous, and a tool picked before it
    lands opens a blank 800x800 canvas instead (the empty editor is flat UI, ~650 colours; a photo, thousands)."""
    deadline = time.monotonic() + timeout_s
    while (colours := len(np.unique(editor_screenshot(page).reshape(-1, 3), axis=0))) < 2000:
        if time.monotonic() > deadline:
            raise AssertionError(f"the uploaded photo did not show in the editor in {timeout_s} s ({colours} colours)")
        page.wait_for_timeout(250)


def wait_for_paint(page, present: bool, timeout_s: float = 30.0) -> None:
    """Wait until the editor shows (or no longer shows) brush-coloured pixels: layers load asynchronously,
    and Run sends whatever the canvas holds at the click."""
    deadline = time.monotonic() + timeout_s
    while True:
        painted = int((np.abs(editor_screenshot(page) - BRUSH).sum(-1) < 60).sum())
        if (painted > 500) == present:  # the toolbar colour swatch alone is ~100 px
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"editor paint present={present} not reached in {timeout_s} s ({painted} px)")
        page.wait_for_timeout(250)


STATUS_TEXT = "document.querySelector('#status [data-testid=markdown]').innerText"


def run_and_wait(page) -> str:
    """Click Run, wait until the status Markdown is no longer pending and shows a new outcome; return it."""
    before = page.evaluate(f"() => {STATUS_TEXT}")
    page.click("#run")
    page.wait_for_function(
        f"""before => {{
            const text = {STATUS_TEXT};
            const wrapper = document.querySelector('#status [data-testid=markdown-wrapper]');
            const pending = wrapper.classList.contains('pending');
            return !pending && text !== before && /Done|Cannot run/.test(text);
        }}""",
        arg=before,
        timeout=RUN_TIMEOUT_MS,
    )
    return page.evaluate(f"() => {STATUS_TEXT}")


def result_pixels(page) -> np.ndarray:
    """The result image as served to the page, (H, W, 3) int."""
    src = page.locator("#result img").get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB")).astype(int)


def test_example_runs_and_changes_the_image_inside_its_regions_only(page, outside_connections):
    # The editor fetches an example's layer asynchronously (and does not draw it): wait for the fetch.
    with page.expect_response(lambda response: "storefront_layer_open" in response.url, timeout=RUN_TIMEOUT_MS):
        click_example(page, 2)  # the "closed" label painted on a layer -> "open", the sign's box -> "COFFEE"
    page.wait_for_timeout(1000)
    assert page.locator("#boxes textarea").input_value() == "52,38,268,79"
    status = run_and_wait(page)
    assert status.startswith("Done in ") and "layer 1 → 'open', box 1 → 'COFFEE'" in status
    changed = np.abs(result_pixels(page) - np.asarray(Image.open(STOREFRONT).convert("RGB")).astype(int)).sum(-1) > 0
    painted = np.asarray(Image.open(ROOT / "data/examples/demo/storefront_layer_open.png"))[..., 3] > 0  # (H, W)
    assert changed[38:79, 52:268].mean() > 0.5 and changed[painted].mean() > 0.5  # the model wrote into both
    changed[38:79, 52:268] = changed[painted] = False
    assert not changed.any()  # every other pixel is the input's, through the editor, the server and the download
    assert page.locator("#crops img").count() == 2 and page.locator("#heatmaps img").count() == 1
    assert page.locator("#regions img").count() == 1
    if os.environ.get("DEMO_SCREENSHOT"):
        page.set_viewport_size({"width": 1400, "height": 1700})  # everything in view: galleries load lazily
        page.wait_for_function("() => [...document.images].every(img => img.complete && img.naturalWidth > 0)")
        page.wait_for_timeout(1000)
        page.screenshot(path=os.environ["DEMO_SCREENSHOT"], full_page=True)
    assert outside_connections == []


def test_empty_mask_and_a_bad_text_show_readable_messages(page):
    click_example(page, 0)  # a box and an empty layer
    page.locator("#boxes textarea").fill("")  # nothing painted and no box: an empty mask
    status = run_and_wait(page)
    assert "Cannot run: no region drawn: paint over the place for the text with the brush" in status
    assert page.locator("#result img").count() == 0
    page.locator("#boxes textarea").fill("52,38,268,79")  # the other input checks: tests/test_demo.py
    page.locator("#texts textarea").fill("café")
    assert "Cannot run: text 'café' has characters outside the alphabet: ['é']" in run_and_wait(page)
    assert "error" not in page.evaluate(f"() => {STATUS_TEXT}").lower()


def test_a_brush_stroke_drawn_with_the_mouse_becomes_a_region(page):
    page.locator("#editor input[type=file]").set_input_files(str(STOREFRONT))  # upload, as a user would
    wait_for_photo(page)
    page.locator("#texts textarea").fill("open")
    page.get_by_role("button", name="Brush", exact=True).click()
    canvas = [c for c in page.locator("#editor canvas").all() if c.is_visible()][-1].bounding_box()
    x, y = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2
    page.mouse.move(x - 60, y)
    page.mouse.down()
    page.mouse.move(x + 60, y, steps=12)
    page.mouse.up()
    wait_for_paint(page, present=True)
    status = run_and_wait(page)
    assert status.startswith("Done in ") and "layer 1 → 'open'" in status
    changed = np.abs(result_pixels(page) - np.asarray(Image.open(STOREFRONT).convert("RGB")).astype(int)).sum(-1) > 0
    assert 200 < changed.sum() < changed.size // 4  # a stroke-sized region, not nothing and not everything
