"""The draw-a-digit page in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium),
against `mnist-transfer serve` started on a free loopback port: draw MNIST digits stroke by stroke, read
the prediction the page shows, upload a photo over a drawing (the canvas then shows the photo, the answer is
the photo's), teach it, see the answer go when the canvas changes, and keep a screenshot of a drawn digit."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import photo_of_digit, require_browser, running_server

pytestmark = pytest.mark.browser  # the web app in a real headless Chromium

CANVAS_PX = 280
TEST_DIGITS = (0, 1, 7)  # which MNIST test digits are replayed (the first of each class)
SCREENSHOT_DIGIT = 7  # the one drawn for the screenshot

def strokes_of(pixels: np.ndarray) -> list[list[tuple[float, float]]]:
    """Pen strokes that redraw an MNIST digit: its skeleton, traced into polylines, in canvas pixels."""
    from skimage.morphology import skeletonize

    skeleton = skeletonize(pixels > 100)
    unvisited = {tuple(p) for p in np.argwhere(skeleton)}
    scale = CANVAS_PX / 28

    def neighbours(point: tuple[int, int]) -> list[tuple[int, int]]:
        row, col = point
        return [(row + dr, col + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr or dc) and (row + dr, col + dc) in unvisited]

    strokes = []
    while unvisited:
        # start at an end point (one neighbour) when there is one, so strokes are long
        point = min(unvisited, key=lambda p: (len(neighbours(p)) != 1, p))
        stroke = [point]
        unvisited.discard(point)
        while next_points := neighbours(stroke[-1]):
            stroke.append(next_points[0])
            unvisited.discard(next_points[0])
        strokes.append([((col + 0.5) * scale, (row + 0.5) * scale) for row, col in stroke])
    return strokes


def draw(driver, canvas, strokes: list[list[tuple[float, float]]]) -> None:
    """Replay strokes as real pointer input (W3C actions: pointerdown, pointermove…, pointerup)."""
    from selenium.webdriver.common.action_chains import ActionChains

    for stroke in strokes:
        actions = ActionChains(driver, duration=0)
        x, y = stroke[0]
        actions.move_to_element_with_offset(canvas, int(x - CANVAS_PX / 2), int(y - CANVAS_PX / 2)).click_and_hold()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            actions.move_by_offset(int(round(x1)) - int(round(x0)), int(round(y1)) - int(round(y0)))
        actions.release().perform()


def wait_for(driver, condition: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not driver.execute_script(f"return {condition};"):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {condition}")
        time.sleep(0.1)


@pytest.fixture
def server(exported_model: Path, tmp_path: Path, unused_tcp_port: int):
    """The session's small model; with SCREENSHOT_RUN=<a finished pipeline folder>, that run's full-data models
    (data/model and data/cnn), as for the docs' screenshot."""
    own_dir, run = tmp_path / "own", os.environ.get("SCREENSHOT_RUN")
    model_dir, cnn_dir = (Path(run) / "data/model", Path(run) / "data/cnn") if run else (exported_model, None)
    with running_server(model_dir, own_dir, unused_tcp_port, cnn_dir) as url:
        yield url, own_dir


@pytest.fixture
def browser(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1100", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)  # the system driver: nothing downloaded
    yield driver
    driver.quit()


def canvas_pixels(driver) -> np.ndarray:
    """What the page's canvas shows, as uint8 (CANVAS_PX, CANVAS_PX) grey (its red channel: the canvas is grey)."""
    import base64
    import io

    from PIL import Image

    uri = driver.execute_script("return document.getElementById('canvas').toDataURL('image/png');")
    png = base64.b64decode(uri.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[:, :, 0]


def fitted_on_canvas(photo: Path) -> np.ndarray:
    """uint8 (CANVAS_PX, CANVAS_PX): the photo scaled to fit a white canvas, aspect ratio kept, centred."""
    from PIL import Image

    image = Image.open(photo).convert("L")
    scale = min(CANVAS_PX / image.width, CANVAS_PX / image.height)
    width, height = round(image.width * scale), round(image.height * scale)
    canvas = Image.new("L", (CANVAS_PX, CANVAS_PX), 255)
    offset = ((CANVAS_PX - width) // 2, (CANVAS_PX - height) // 2)
    canvas.paste(image.resize((width, height), Image.Resampling.BILINEAR), offset)
    return np.asarray(canvas)


def shown_answer(driver) -> dict:
    return driver.execute_script(
        "return {digit: document.getElementById('result-digit').textContent,"
        " normalised: document.getElementById('normalised').getAttribute('src'),"
        " teachable: !document.getElementById('teach').disabled};"
    )


ANSWERED = "document.body.dataset.busy === '0' && document.getElementById('result-digit').textContent !== '?'"
NO_ANSWER = {"digit": "?", "normalised": "data:,", "teachable": False}


def test_draw_upload_and_teach_in_chromium(browser, server, mnist_arrays, tmp_path: Path):
    import httpx
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, own_dir = server
    browser.get(url)
    canvas = browser.find_element(By.ID, "canvas")
    images, labels = mnist_arrays["testing"]
    read = {}
    for digit in TEST_DIGITS:
        browser.find_element(By.ID, "clear").click()
        draw(browser, canvas, strokes_of(images[np.flatnonzero(labels == digit)[0]]))
        wait_for(browser, ANSWERED)
        read[digit] = int(browser.find_element(By.ID, "result-digit").text)
    assert read == {digit: digit for digit in TEST_DIGITS}
    assert browser.find_element(By.ID, "normalised").get_attribute("src").startswith("data:image/png;base64,")

    # a photo uploaded over a drawing replaces it on the canvas, and the answer shown is the photo's
    drawn = canvas_pixels(browser)
    photo = tmp_path / "photo_of_a_three.jpg"
    photo_of_digit(images[np.flatnonzero(labels == 3)[0]], seed=3).save(photo)
    browser.find_element(By.ID, "upload").send_keys(str(photo))
    wait_for(browser, ANSWERED)
    shown, expected = canvas_pixels(browser).astype(float), fitted_on_canvas(photo).astype(float)
    assert np.abs(shown - expected).mean() < 8  # the browser's resampling and JPEG decoder differ a little
    assert np.abs(drawn - expected).mean() > 30  # (so the check above tells the drawing from the photo)
    assert shown.min() >= expected.min() - 10  # no black pen ink left over
    api = httpx.post(url + "api/predict", files={"image": (photo.name, photo.read_bytes(), "image/jpeg")}).json()
    assert shown_answer(browser) == {"digit": str(api["digit"]), "normalised": api["normalised"], "teachable": True}

    browser.find_element(By.ID, "digit-select").send_keys("3")
    browser.find_element(By.ID, "teach").click()
    wait_for(browser, "document.getElementById('teach-status').textContent.includes('Saved as')")
    saved = list((own_dir / "training" / "3").iterdir())
    assert len(saved) == 1 and saved[0].read_bytes() == photo.read_bytes()

    # the answer goes as soon as the canvas changes: a pen put down, then Clear
    ActionChains(browser, duration=0).move_to_element(canvas).click_and_hold().perform()
    assert shown_answer(browser) == NO_ANSWER
    assert browser.find_element(By.ID, "teach-status").text == ""
    ActionChains(browser, duration=0).release().perform()
    browser.find_element(By.ID, "clear").click()
    wait_for(browser, "document.body.dataset.busy === '0'")
    assert shown_answer(browser) == NO_ANSWER and (canvas_pixels(browser) == 255).all()

    # the screenshot (the docs' picture of the page): one drawn digit and its answer
    draw(browser, canvas, strokes_of(images[np.flatnonzero(labels == SCREENSHOT_DIGIT)[0]]))
    wait_for(browser, ANSWERED)
    assert browser.find_element(By.ID, "result-digit").text == str(SCREENSHOT_DIGIT)
    screenshot = tmp_path / "draw-a-digit.png"
    browser.execute_script("window.scrollTo(0, 0);")  # the page from its top: canvas, answer and bars
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("SCREENSHOT_DIR"):  # how the docs' screenshot is made
        shutil.copy(screenshot, Path(os.environ["SCREENSHOT_DIR"]) / screenshot.name)
