"""The page in a real browser: Playwright drives Debian's Chromium headless, draws a digit with pointer events and
reads the prediction. Screenshots go to test-artifacts/browser/ (look at them)."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (scripts/test installs it with apt)")


@pytest.fixture(scope="module")
def server(mnist_model):
    from digitlab.serve.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app([mnist_model]), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "server did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw polylines on the canvas with the mouse (Chromium turns them into pointer events), in canvas pixels."""
    box = page.locator("#pad").bounding_box()
    sx, sy = box["width"] / 280, box["height"] / 280
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * sx, box["y"] + y * sy)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * sx, box["y"] + y * sy, steps=8)
        page.mouse.up()


SEVEN = [[(70, 60), (210, 60), (120, 235)]]


def test_draw_a_seven_and_see_the_prediction(server, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    draw(page, SEVEN)
    playwright_api.expect(page.locator("#answer")).to_have_text("7", timeout=10_000)
    assert page.locator("#bars .bar").count() == 10
    assert page.locator("#seen img").count() == 1  # the 28x28 the model received
    page.click("#inspect")
    page.wait_for_selector("#inside .maps img")
    assert page.locator("#inside .layer").count() >= 3  # input, filters, conv layers
    page.screenshot(path=str(ARTIFACTS / "draw-7.png"), full_page=True)
    page.click("#undo")
    playwright_api.expect(page.locator("#status")).to_contain_text("no writing", timeout=10_000)  # blank again
    page.close()


def test_phone_sized_screen(server, browser):
    page = browser.new_page(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True)
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    draw(page, [[(140, 40), (140, 240)]])
    playwright_api.expect(page.locator("#answer")).to_have_text("1", timeout=10_000)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")  # nothing sticks out sideways
    page.screenshot(path=str(ARTIFACTS / "phone.png"), full_page=True)
    page.close()
