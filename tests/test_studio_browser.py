"""The studio end to end in a real browser (issue 16): Debian's headless Chromium, driven by Selenium through
Debian's chromedriver, against ``python -m studio`` on a tiny checkpoint.

It draws a mask stroke with mouse events and runs inpaint (the result differs from the input inside the mask
and equals it outside), paints an SDEdit stroke confined to where it was painted (the same check), shows the
page's message for bad input (an empty mask, a strength out of range), and runs every tab, taking a screenshot
of each. Skipped, with the reason, where Chromium or chromedriver is not installed (``make setup`` installs them
as root). DIFFLAB_STUDIO_CKPT=<file> runs it on another checkpoint (a text model's fields are filled with
prompts); DIFFLAB_SCREENSHOTS=<folder> keeps the screenshots there; DIFFLAB_STUDIO_STEPS sets the sampler's steps
(10). The README's screenshots come from this test on the 3000-step shapes model (docs/studio.sh).
"""

from __future__ import annotations

import io
import json
import os
import re
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.process import CHROMEDRIVER, CHROMIUM, chromium, get_json, running_studio, wait_for

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
                       reason="needs Debian's chromium and chromium-driver (make setup installs them as root)"),
]
pytest.importorskip("selenium.webdriver", reason="needs selenium (the test extra)")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

STEPS = os.environ.get("DIFFLAB_STUDIO_STEPS", "10")
PROMPTS = {"generate": "a red circle", "sdedit": "a red circle", "inpaint": "a blue square",
           "outpaint": "a green triangle", "zoom": "a yellow star", "query": "a blue square",
           "reference": "a yellow cross", "prompt0": "a red circle", "prompt1": "a red square"}


@pytest.fixture(scope="module")
def page(tiny_ckpts, tmp_path_factory):
    ckpt = os.environ.get("DIFFLAB_STUDIO_CKPT") or tiny_ckpts["cond"]
    out = tmp_path_factory.mktemp("studio_runs")
    with running_studio(ckpt, out) as base:
        driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
        try:
            driver.get(base + "/")
            wait(lambda: driver.execute_script("return document.body.dataset.ready === '1'"), "the page to load")
            yield driver, base, get_json(base + "/api/info")
        finally:
            driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = os.environ.get("DIFFLAB_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


def wait(condition, what: str, timeout: float = 120.0):
    return wait_for(condition, what, timeout)


def open_tab(driver, tab: str):
    driver.find_element(By.ID, f"tab-{tab}").click()
    panel = driver.find_element(By.ID, f"panel-{tab}")
    wait(panel.is_displayed, f"the {tab} panel")
    return panel


def set_field(panel, name: str, value) -> None:
    box = panel.find_element(By.NAME, name)
    box.clear()
    box.send_keys(str(value))


def fill(panel, info: dict) -> None:
    """Few steps, and a condition of this checkpoint's kind in every condition field the panel has."""
    set_field(panel, "steps", STEPS)
    for name in ("prompt", "query", "reference", "prompt0", "prompt1"):
        for box in panel.find_elements(By.NAME, name):
            box.clear()
            box.send_keys(PROMPTS.get(name) or PROMPTS[panel.get_attribute("id").split("-", 1)[1]])


def stroke(driver, canvas, points) -> None:
    """A brush stroke with the mouse through ``points`` (fractions of the canvas, from its top-left)."""
    w, h = canvas.size["width"], canvas.size["height"]
    (x0, y0), rest = points[0], points[1:]
    chain = ActionChains(driver).move_to_element_with_offset(canvas, int((x0 - 0.5) * w), int((y0 - 0.5) * h))
    chain.click_and_hold()
    px, py = x0, y0
    for x, y in rest:
        chain.move_by_offset(int((x - px) * w), int((y - py) * h))
        px, py = x, y
    chain.release().perform()


def run(panel, button: str = "button.run") -> str:
    """Click the panel's run button; wait for the run to end; returns 'done' or the error shown."""
    panel.find_element(By.CSS_SELECTOR, button).click()
    status, error = (panel.find_element(By.CSS_SELECTOR, s) for s in (".status", ".error"))
    shown = lambda: panel.get_attribute("data-seconds")  # noqa: E731  (set once the results are on the page)
    wait(lambda: shown() or error.text or status.text == "cancelled", "the run to end")
    return "done" if shown() else error.text


def files(panel, base: str) -> dict[str, np.ndarray]:
    """The run's PNG files, fetched through the page's download links, as uint8 arrays (H, W, C)."""
    out = {}
    for link in panel.find_elements(By.CSS_SELECTOR, ".downloads a[data-name$='.png']"):
        with urllib.request.urlopen(link.get_attribute("href"), timeout=60) as r:
            data = r.read()
        out[link.get_attribute("data-name")] = np.array(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    return out


def screenshot(driver, path: Path) -> None:
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))


def check_edit_confined(out: dict[str, np.ndarray]) -> None:
    """The edit differs from the input inside the mask and equals it, exactly, outside."""
    image, mask, result = out["input_image.png"], out["input_mask.png"][..., 0] > 127, out["sample_0000.png"]
    assert 0 < mask.sum() < mask.size, "the stroke should cover part of the canvas"
    assert np.array_equal(result[~mask], image[~mask]), "outside the mask the input must come back exactly"
    assert np.abs(result[mask] - image[mask]).mean() > 4, "inside the mask the model should have drawn"


def test_inpaint_a_mask_drawn_with_the_mouse(page, shots):
    driver, base, info = page
    panel = open_tab(driver, "inpaint")
    fill(panel, info)
    set_field(panel, "n", 2)
    stroke(driver, panel.find_element(By.CSS_SELECTOR, "canvas.mask"), [(0.2, 0.3), (0.5, 0.5), (0.7, 0.6)])
    assert run(panel) == "done"
    check_edit_confined(files(panel, base))
    screenshot(driver, shots / "studio_inpaint.png")


def test_sdedit_a_painted_stroke(page, shots):
    driver, base, info = page
    panel = open_tab(driver, "sdedit")
    fill(panel, info)
    set_field(panel, "n", 2)
    set_field(panel, "strength", 0.7)
    panel.find_element(By.NAME, "only_strokes").click()
    stroke(driver, panel.find_element(By.CSS_SELECTOR, "canvas.image"), [(0.3, 0.3), (0.6, 0.4), (0.6, 0.7)])
    assert run(panel) == "done"
    out = files(panel, base)
    painted = out["input_mask.png"][..., 0] > 127
    assert (out["input_image.png"][painted] != 255).any(), "the stroke's colour should be in the input"
    check_edit_confined(out)
    screenshot(driver, shots / "studio_sdedit.png")


def test_bad_input_is_a_message_in_the_page(page):
    driver, base, info = page
    panel = open_tab(driver, "inpaint")
    fill(panel, info)
    panel.find_element(By.XPATH, ".//button[text()='clear mask']").click()
    assert "mask is empty" in run(panel)
    panel = open_tab(driver, "sdedit")
    fill(panel, info)
    set_field(panel, "strength", 2)
    assert "task.strength must be a finite number in [0, 1], got 2.0" in run(panel)
    assert get_json(base + "/api/info")["size"] == info["size"]  # the server is still there


def test_cancel_stops_a_run_between_steps(page):
    driver, base, info = page
    panel = open_tab(driver, "generate")
    fill(panel, info)
    set_field(panel, "steps", 1000)
    panel.find_element(By.CSS_SELECTOR, "button.run").click()
    status = panel.find_element(By.CSS_SELECTOR, ".status")
    steps = lambda: int(m.group(1)) if (m := re.search(r"step (\d+)/1000", status.text)) else 0  # noqa: E731
    wait(lambda: steps() >= 2, "a few steps")
    panel.find_element(By.CSS_SELECTOR, "button.cancel").click()
    wait(lambda: status.text == "cancelled", "the cancelled state", timeout=30)
    assert float(panel.find_element(By.CSS_SELECTOR, "progress").get_attribute("value")) < 0.5


@pytest.mark.parametrize("tab", ["generate", "outpaint", "diffedit", "zoom", "anagram", "hybrid"])
def test_every_tab_runs(page, shots, tab):
    driver, base, info = page
    panel = open_tab(driver, tab)
    fill(panel, info)
    if tab == "diffedit":  # the computed mask comes back into the editor; a stroke corrects it; then the edit
        assert run(panel, "button.compute-mask") == "done"
        stroke(driver, panel.find_element(By.CSS_SELECTOR, "canvas.mask"), [(0.1, 0.1), (0.3, 0.2)])
    assert run(panel) == "done"
    shown = panel.find_elements(By.CSS_SELECTOR, ".result img")
    assert shown and all(driver.execute_script("return arguments[0].naturalWidth", img) > 0 for img in shown)
    if tab == "diffedit":
        out = files(panel, base)
        mask = out["input_mask.png"][..., 0] > 127
        assert mask[: mask.shape[0] // 4, : mask.shape[1] // 4].any(), "the hand-drawn correction is in the mask"
        assert np.array_equal(out["edited.png"][~mask], out["input_image.png"][~mask])
    screenshot(driver, shots / f"studio_{tab}.png")


def test_the_overhead_benchmark_runs(tiny_ckpts, tmp_path):
    from tests.runner import run as run_script

    out = tmp_path / "studio.json"
    proc = run_script([f"ckpt={tiny_ckpts['cond']}", "reps=2", "steps=4", f"out={out}"],
                      script="scripts/benchmark_studio.py")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["image_size"] == 16 and len(report["pairs"]) == 2
    assert all(r["page_s"] > r["server_run_s"] > 0 and r["python_s"] > 0 for r in report["pairs"])
    assert "overhead (median of per-pair ratios)" in proc.stdout
