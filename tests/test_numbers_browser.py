"""The page's number mode in a real headless Chromium: switch to it, write "2026" stroke by stroke on the wide
canvas (MNIST test digits traced along their skeletons), and read the number, the boxes and the 28×28s shown.
Served by `mnist-transfer serve` on the session's small CNN (tests/conftest.py: small_cnn)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import running_server
from tests.test_webapp_browser import browser, strokes_of, wait_for  # noqa: F401 (browser: the Chromium fixture)

pytestmark = pytest.mark.browser  # the web app in a real headless Chromium

NUMBER = "2026"
NTH_OF_DIGIT = {"2": (0, 1), "0": (0,), "6": (0,)}  # which MNIST test digits of each class write NUMBER, in order
MNIST_PX = 7  # canvas pixels per MNIST pixel: a 20 px digit is 140 px tall
FRAME_STEP_PX = 190  # one 28 px frame (196 canvas px) after the other; the ink (the middle 20 px) leaves gaps


def number_strokes(images: np.ndarray, labels: np.ndarray) -> list[list[tuple[float, float]]]:
    """NUMBER's strokes on the wide canvas, digit after digit, in canvas pixels."""
    used = {digit: list(nth) for digit, nth in NTH_OF_DIGIT.items()}
    strokes = []
    for position, digit in enumerate(NUMBER):
        image = images[np.flatnonzero(labels == int(digit))[used[digit].pop(0)]]
        for stroke in strokes_of(image):  # strokes_of scales to the 280 px digit canvas: 10 px per MNIST pixel
            strokes.append([(20 + position * FRAME_STEP_PX + x * MNIST_PX / 10, 22 + y * MNIST_PX / 10) for x, y in stroke])
    return strokes


def draw_on(driver, canvas, strokes: list[list[tuple[float, float]]]) -> None:
    """Replay strokes as real pointer input, positions in the canvas's own pixels (offsets from its centre)."""
    from selenium.webdriver.common.action_chains import ActionChains

    width, height = int(canvas.get_attribute("width")), int(canvas.get_attribute("height"))
    shown = canvas.size  # CSS pixels (the same unless the window is narrow)
    scale_x, scale_y = shown["width"] / width, shown["height"] / height
    for stroke in strokes:
        actions = ActionChains(driver, duration=0)
        x, y = stroke[0]
        actions.move_to_element_with_offset(canvas, int((x - width / 2) * scale_x), int((y - height / 2) * scale_y))
        actions.click_and_hold()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            actions.move_by_offset(int(round(x1 * scale_x)) - int(round(x0 * scale_x)),
                                   int(round(y1 * scale_y)) - int(round(y0 * scale_y)))
        actions.release().perform()


@pytest.fixture
def number_server(small_cnn: Path, tmp_path: Path, unused_tcp_port: int):
    with running_server(small_cnn, tmp_path / "own", unused_tcp_port) as url:
        yield url


def test_write_2026_in_number_mode(browser, number_server: str, mnist_arrays, tmp_path: Path):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get(number_server)
    assert not browser.find_element(By.ID, "number-canvas").is_displayed()  # the page opens on one digit
    browser.find_element(By.ID, "mode-number").click()
    assert not browser.find_element(By.ID, "canvas").is_displayed()
    canvas = browser.find_element(By.ID, "number-canvas")
    images, labels = mnist_arrays["testing"]
    draw_on(browser, canvas, number_strokes(images, labels))
    wait_for(browser, "document.getElementById('number-mode').dataset.busy === '0' && "
                      "document.getElementById('number-result').textContent !== '?'")
    assert browser.find_element(By.ID, "number-result").text == NUMBER
    figures = browser.find_elements(By.CSS_SELECTOR, "#number-digits figure")
    assert [f.find_element(By.TAG_NAME, "figcaption").text.split(" ")[0] for f in figures] == list(NUMBER)
    assert all(f.find_element(By.TAG_NAME, "img").get_attribute("src").startswith("data:image/png;base64,")
               for f in figures)
    boxes_drawn = browser.execute_script(
        "const c = document.getElementById('number-boxes'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;"
    )
    assert boxes_drawn > 4 * 100  # four rectangles' outlines on the overlay

    browser.find_element(By.ID, "number-clear").click()
    assert browser.find_element(By.ID, "number-result").text == "?"
    screenshot = tmp_path / "read-a-number.png"
    draw_on(browser, canvas, number_strokes(images, labels))
    wait_for(browser, "document.getElementById('number-mode').dataset.busy === '0' && "
                      "document.getElementById('number-result').textContent !== '?'")
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("SCREENSHOT_DIR"):  # how a README screenshot is made
        shutil.copy(screenshot, Path(os.environ["SCREENSHOT_DIR"]) / screenshot.name)
