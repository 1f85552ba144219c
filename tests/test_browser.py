"""The page in a real browser: Playwright drives Debian's Chromium headless, draws digits with pointer events and
checks what the page teaches: the answer, why (saliency), the network's insides, numbers with boxes, corrections,
both languages, and an axe-core accessibility check. Screenshots go to test-artifacts/browser/ (look at them)."""
from __future__ import annotations

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

playwright_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]

AXE_CACHE = Path(__file__).resolve().parent.parent / "test-artifacts" / "npm"  # git-ignored

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed (scripts/test installs it with apt)")]


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
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw polylines on the canvas with the mouse (Chromium turns them into pointer events), in canvas pixels."""
    pad = page.locator("#pad")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    s = box["width"] / page.evaluate("document.getElementById('pad').width")
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * s, box["y"] + y * s)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * s, box["y"] + y * s, steps=8)
        page.mouse.up()


def draw_seven(page) -> None:
    """Draw the test's 7 and wait until the page answers 7."""
    draw(page, SEVEN)
    playwright_api.expect(page.locator("#answer")).to_have_text("7", timeout=10_000)


def open_page(browser, server, locale: str = "en-US", **options):
    """A fresh context (its own localStorage) in this locale, on the page, with the model list loaded."""
    context = browser.new_context(locale=locale, viewport={"width": 1100, "height": 900}, **options)
    page = context.new_page()
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    return page


SEVEN = [[(70, 60), (210, 60), (120, 235)]]


def test_draw_a_seven_and_see_the_prediction(server, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(server)
    page.wait_for_selector("#model option", state="attached")
    draw_seven(page)
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


expect = playwright_api.expect


def test_language_follows_the_browser_then_the_switch_and_is_remembered(server, browser):
    page = open_page(browser, server, locale="zh-CN")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")  # from navigator.languages
    expect(page.locator("#draw-title")).to_have_text("写一个数字")
    assert page.locator("#lang").input_value() == "zh-CN"
    page.select_option("#lang", "en")
    expect(page.locator("#draw-title")).to_have_text("Draw a digit")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.reload()
    expect(page.locator("#draw-title")).to_have_text("Draw a digit")  # localStorage beats the browser's language
    page.select_option("#lang", "zh-CN")
    draw_seven(page)
    expect(page.locator("#status")).to_contain_text("把握")  # the answer's sentence is translated too
    page.screenshot(path=str(ARTIFACTS / "zh-CN.png"), full_page=True)
    page.context.close()


def test_why_heat_map_for_the_answer_and_the_runner_up(server, browser):
    page = open_page(browser, server)
    draw_seven(page)
    assert page.locator("#bars .bar.top").count() == 1 and page.locator("#bars .bar.second").count() == 1
    page.check("#why-on")
    heat = page.locator("#heat")
    expect(heat).to_be_visible(timeout=10_000)
    expect(heat).to_have_attribute("aria-label", "heat-map of the evidence for 7 over the drawing")
    inked = page.evaluate("() => { const c = document.getElementById('heat'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                          " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 20; return n; }")
    assert inked > 20, inked  # a real map, not an empty overlay
    h, pad = heat.bounding_box(), page.locator("#pad").bounding_box()
    assert h["x"] < pad["x"] + pad["width"] and h["x"] + h["width"] > pad["x"] and 100 < h["width"] < 2 * pad["width"]
    runner_up = page.locator("#why-1").text_content().rsplit(" ", 1)[-1]
    assert runner_up != "7" and runner_up.isdigit()
    page.check("input[name=why-class][value='1']")
    expect(heat).to_have_attribute("aria-label", f"heat-map of the evidence for {runner_up} over the drawing")
    assert page.locator("#teach").is_hidden()  # this server keeps no corrections
    page.screenshot(path=str(ARTIFACTS / "why.png"), full_page=True)
    page.context.close()


def test_look_inside_enlarge_a_map_and_point_at_its_receptive_field(server, browser):
    page = open_page(browser, server)
    draw_seven(page)
    page.click("#inspect")
    page.wait_for_selector("#inside .maps img")
    subs = page.locator("#inside .layer .sub").all_text_contents()
    assert subs[:3] == ["1×28×28", "6×28×28", "16×10×10 · 8 of 16 shown"] and len(subs) == 6  # input, 2 convs, 3 dense
    assert page.evaluate("[...document.querySelectorAll('#inside img')].every((i) => i.alt.length > 10)")
    page.locator("#inside .layer").nth(2).locator("button.map").first.click()
    expect(page.locator("#detail")).to_be_visible()
    assert page.locator("#detail .kernels canvas").count() == 4  # the 4 strongest of 6 input channels' 5x5 kernels
    zoom = page.locator("#zoom-map").bounding_box()
    page.mouse.move(zoom["x"] + 0.55 * zoom["width"], zoom["y"] + 0.55 * zoom["height"])  # unit (5, 5) of 10x10
    expect(page.locator("#field-text")).to_contain_text("x 8–21, y 8–21 (14×14)")
    rf, inp = page.locator("#detail .rf").bounding_box(), page.locator("#detail .zoom.input").bounding_box()
    assert abs(rf["width"] - 14 / 28 * inp["width"]) < 3 and abs(rf["x"] - (inp["x"] + 8 / 28 * inp["width"])) < 3
    page.focus("#zoom-map")
    page.keyboard.press("ArrowRight")  # the keyboard walks the map too
    expect(page.locator("#field-text")).to_contain_text("(6, 5)")
    before = page.locator("#inside .input img").get_attribute("src")
    draw(page, [[(60, 150), (220, 150)]])  # the view follows the drawing
    expect(page.locator("#inside .input img")).not_to_have_attribute("src", before, timeout=10_000)
    expect(page.locator("#detail")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "inside.png"), full_page=True)
    page.context.close()


def test_a_whole_number_shows_each_digit_in_its_box(server, browser):
    page = open_page(browser, server)
    page.check("#multi")
    assert page.evaluate("document.getElementById('pad').width") == 840
    draw(page, [[(150, 50), (150, 230)], [(380, 60), (540, 60), (440, 235)]])
    expect(page.locator("#answer")).to_have_text("17", timeout=10_000)
    boxes = page.locator("#boxes .box")
    expect(boxes).to_have_count(2)
    labels = boxes.locator("span").all_text_contents()
    assert [label.split(" ")[0] for label in labels] == ["1", "7"] and all("%" in label for label in labels)
    (b1, b7), pad = [boxes.nth(i).bounding_box() for i in range(2)], page.locator("#pad").bounding_box()
    scale = pad["width"] / 840
    assert abs(b1["x"] + b1["width"] / 2 - (pad["x"] + 150 * scale)) < 20 * scale  # the box sits on the 1
    assert b1["x"] + b1["width"] <= b7["x"] and b7["x"] + b7["width"] <= pad["x"] + pad["width"]
    page.screenshot(path=str(ARTIFACTS / "number.png"), full_page=True)
    page.context.close()


def test_a_correction_sends_the_label_the_pixels_and_the_png(server, browser):
    context = browser.new_context(locale="en-US", viewport={"width": 1100, "height": 900})
    page = context.new_page()
    sent: list[dict] = []
    page.route("**/api/healthz", lambda route: route.fulfill(json={"status": "ok", "corrections": True}))

    def corrections(route):
        sent.append(route.request.post_data_json)
        route.fulfill(json={"saved": "corrections/3/0001.png", "count": 5})
    page.route("**/api/corrections", corrections)
    page.goto(server)
    draw_seven(page)
    expect(page.locator("#teach")).to_be_visible()
    page.get_by_role("button", name="The right digit is 3").click()
    expect(page.locator("#teach-status")).to_contain_text("corrections/3/0001.png (5 corrections so far)")
    body = sent[0]
    assert body["label"] == 3 and set(body) == {"label", "pixels", "png"}
    pixels = np.array(body["pixels"])
    assert pixels.shape == (28, 28) and pixels.min() >= 0 and pixels.max() <= 1
    assert pixels.max() > 0.5 and pixels.mean() < 0.3 and pixels[0].max() < 0.05  # ink = 1, paper = 0
    assert pixels[6, 7:21].mean() > 0.3  # the 7's top bar, downscaled from y = 60 of 280
    image = Image.open(io.BytesIO(base64.b64decode(body["png"])))
    assert image.size == (280, 280)
    page.unroute("**/api/corrections")
    page.route("**/api/corrections", lambda route: route.fulfill(status=502, body="<html>Bad Gateway</html>", content_type="text/html"))
    page.get_by_role("button", name="The right digit is 3").click()
    expect(page.locator("#teach-status")).to_contain_text("502")  # an error page that isn't JSON shows its status
    assert "reach" not in page.locator("#teach-status").text_content()
    page.screenshot(path=str(ARTIFACTS / "correction.png"), full_page=True)
    context.close()


def test_the_keyboard_reaches_everything_and_can_draw(server, browser):
    page = open_page(browser, server)
    assert page.evaluate("getComputedStyle(document.getElementById('file')).display") != "none"
    reached = []
    for _ in range(14):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert {"model", "lang", "pad", "brush", "undo", "clear", "multi", "file", "why-on", "inspect"} <= set(reached), reached
    page.focus("#pad")
    for _ in range(9):
        page.keyboard.press("Shift+ArrowUp")  # move the pen up without ink
    for _ in range(18):
        page.keyboard.press("ArrowDown")  # and draw a vertical stroke
    expect(page.locator("#answer")).to_have_text("1", timeout=10_000)
    page.context.close()


def test_predict_round_trip_from_the_page(server, browser):
    page = open_page(browser, server)
    draw_seven(page)
    times = page.evaluate("async () => { const blob = await canvasBlob(), out = [];"
                          " for (let i = 0; i < 30; i++) { await send(blob); out.push(view.roundTrip); } return out; }")
    median = sorted(times)[len(times) // 2]
    (ARTIFACTS / "round-trip.json").write_text(json.dumps({"median_ms": median, "ms": times}))
    print(f"predict round trip from the page: median {median:.1f} ms, min {min(times):.1f} ms")
    assert median < 100, times  # the target is < 50 ms on an idle machine; this bound leaves room for a busy CI box
    page.context.close()


@pytest.fixture(scope="module")
def axe_script() -> Path:
    """axe-core's axe.min.js, fetched once with npm into a git-ignored cache."""
    target = AXE_CACHE / "axe.min.js"
    if target.is_file():
        return target
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the accessibility check fetches axe-core with it")
    AXE_CACHE.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run([npm, "pack", "axe-core@4", "--silent", "--pack-destination", str(AXE_CACHE)], capture_output=True,
                           text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.skip("npm pack axe-core timed out (offline?)")
    if r.returncode != 0 or not r.stdout.strip():
        pytest.skip(f"npm could not fetch axe-core (offline?): {r.stderr.strip()[-300:]}")
    with tarfile.open(AXE_CACHE / r.stdout.strip().splitlines()[-1]) as tar:
        target.write_bytes(tar.extractfile("package/axe.min.js").read())
    return target


@pytest.mark.parametrize("language", ["en", "zh-CN"])
def test_axe_finds_no_serious_violations(server, browser, axe_script, language):
    page = open_page(browser, server, locale=language)
    page.route("**/api/healthz", lambda route: route.fulfill(json={"status": "ok", "corrections": True}))
    page.reload()
    page.wait_for_selector("#model option", state="attached")
    draw_seven(page)
    page.check("#why-on")
    expect(page.locator("#heat")).to_be_visible(timeout=10_000)
    page.click("#inspect")
    page.locator("#inside .layer").nth(1).locator("button.map").first.click()
    expect(page.locator("#detail .kernels canvas")).to_have_count(1)
    assert page.locator("html").get_attribute("lang") == language
    page.add_script_tag(path=str(axe_script))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
    assert not serious, serious
    assert result["passes"] is not None and len(result["passes"]) > 10  # axe really ran its rules
    page.context.close()


def test_a_photo_shows_its_digit_box_and_heat_map_over_the_photo(server, browser):
    from drawings import png, seven

    page = open_page(browser, server)
    page.check("#why-on")
    page.set_input_files("#file", files=[{"name": "seven.png", "mimeType": "image/png", "buffer": png(seven())}])
    expect(page.locator("#answer")).to_have_text("7", timeout=10_000)
    expect(page.locator("#photo")).to_be_visible()
    assert page.locator("#pad").is_hidden()
    photo = page.locator("#photo").bounding_box()
    assert abs(photo["width"] - photo["height"]) < 2  # a square photo stays square
    box = page.locator("#boxes .box").bounding_box()  # the 7's ink spans x 60-220, y 50-240 of 280
    s = photo["width"] / 280
    assert abs(box["x"] - (photo["x"] + 60 * s)) < 6 * s and abs(box["y"] + box["height"] - (photo["y"] + 240 * s)) < 6 * s
    expect(page.locator("#heat")).to_be_visible(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "photo.png"), full_page=True)
    page.context.close()
