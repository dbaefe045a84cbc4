"""The studio's overhead (issue 16): one edit through the page in headless Chromium against the same edit from
Python, pair by pair.

    python scripts/benchmark_studio.py ckpt=<32x32 checkpoint> [reps=7] [steps=50] [out=<file.json>]

The page: the inpaint tab of ``python -m studio`` (its own process, as a user runs it) with a mask stroke, timed by
the page itself from the click on run to the result image loaded (the panel's data-seconds). From Python: the same
overrides through sampling/cli.py in this process, as a script would call the library: ``build_job`` + the task
(``python``), and with the config composed too (``python+compose``). Prints medians, the per-pair ratios and their
median; the target is at most 10% over Python.
"""

from __future__ import annotations

import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sampling import cli
from sampling.checkpoint import load_model
from sampling.checks import InputError
from studio.process import chromium, running_studio, wait_for

DEFAULTS = {"ckpt": None, "reps": 7, "steps": 50, "out": None}
WAIT_SCRIPT = """
const done = arguments[arguments.length - 1];
const panel = document.getElementById("panel-inpaint");
panel.querySelector("button.run").click();
const check = () => {
  const error = panel.querySelector(".error").textContent;
  if (panel.dataset.seconds || error) done(panel.dataset.seconds || "error: " + error);
  else setTimeout(check, 100);
};
check();
"""


def page_edit(driver, steps: int) -> tuple[float, float, str]:
    """One inpaint through the page: (seconds from click to result shown, the server's own seconds for the run,
    the run's sample.py command)."""
    from selenium.webdriver.common.by import By

    # one WebDriver call per edit: the click and the wait happen inside the page, which times itself, so that the
    # driver's own polling (a script injected into the page each time) stays off the two cores
    driver.set_script_timeout(600)
    seconds = driver.execute_async_script(WAIT_SCRIPT)
    panel = driver.find_element(By.ID, "panel-inpaint")
    if str(seconds).startswith("error"):
        raise RuntimeError(f"the page says: {seconds}")
    command = panel.find_element(By.CSS_SELECTOR, ".notes").text.splitlines()[-1]
    server = float(panel.find_element(By.CSS_SELECTOR, ".status").text.split(":")[1].split(" s")[0])
    return float(seconds), server, command


def prepare_page(driver, base: str, steps: int) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver.get(base + "/#inpaint")
    wait_for(lambda: driver.execute_script("return document.body.dataset.ready === '1'"), "the page")
    panel = driver.find_element(By.ID, "panel-inpaint")
    for name, value in (("steps", steps), ("n", 1), ("prompt", "a blue square"), ("label", 1)):
        for box in panel.find_elements(By.NAME, name):
            box.clear()
            box.send_keys(str(value))
    canvas = panel.find_element(By.CSS_SELECTOR, "canvas.mask")
    time.sleep(0.5)  # the sample picture loads
    ActionChains(driver).move_to_element_with_offset(canvas, -60, -40).click_and_hold().move_by_offset(90, 60) \
        .release().perform()


def python_edit(model, overrides: list[str]) -> tuple[float, float]:
    """(seconds for build_job + task, seconds with compose_config too) of the same run from Python."""
    t0 = time.perf_counter()
    cfg = cli.compose_config("sample", overrides)
    t1 = time.perf_counter()
    job, task = cli.build_job(cfg, model)
    task(job)
    t2 = time.perf_counter()
    return t2 - t1, t2 - t0


def main(argv: list[str] | None = None) -> int:
    try:
        opts = cli.dotlist_options(sys.argv[1:] if argv is None else argv, DEFAULTS)
        if not opts["ckpt"]:
            raise InputError("give ckpt=<checkpoint> (32x32 for the issue's figure)")
        model = load_model(opts["ckpt"])
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, running_studio(opts["ckpt"], Path(tmp) / "runs") as base:
        driver = chromium(Path(tmp) / "profile")
        try:
            prepare_page(driver, base, opts["steps"])
            _, _, command = page_edit(driver, opts["steps"])  # warm-up; gives the run's command line
            args = shlex.split(command.removeprefix("reproduce: "))[2:]
            args = [a for a in args if not a.startswith("out=")]
            folder = Path(tmp) / "inputs"  # the page's own inputs, for the Python side
            run_dir = next(p for p in (Path(tmp) / "runs").iterdir() if not p.name.startswith("."))
            folder.mkdir()
            for name in ("input_image.png", "input_mask.png"):
                (folder / name).write_bytes((run_dir / name).read_bytes())
            args = [f"{a.split('=')[0]}={folder / a.split('=', 1)[1]}" if a.split("=", 1)[-1] in
                    ("input_image.png", "input_mask.png") else a for a in args]
            python_edit(model, args)  # warm-up
            rows = []
            for _ in range(opts["reps"]):
                page, server, _ = page_edit(driver, opts["steps"])
                py, py_full = python_edit(model, args)
                rows.append({"page_s": page, "server_run_s": server, "python_s": py, "python_compose_s": py_full})
        finally:
            driver.quit()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    ratio = statistics.median(r["page_s"] / r["python_s"] for r in rows)
    ratio_full = statistics.median(r["page_s"] / r["python_compose_s"] for r in rows)
    report = {"ckpt": opts["ckpt"], "image_size": model.image_shape[-1], "steps": opts["steps"], "task": "inpaint",
              "reps": opts["reps"], "median_s": med, "overhead_vs_python": ratio - 1,
              "overhead_vs_python_compose": ratio_full - 1, "pairs": rows}
    print(f"inpaint, {model.image_shape[-1]}x{model.image_shape[-1]}, DDIM-{opts['steps']}, {opts['reps']} pairs")
    print(f"  median: page {med['page_s']:.3f} s (the run in the server {med['server_run_s']:.3f} s), "
          f"python {med['python_s']:.3f} s "
          f"(with compose {med['python_compose_s']:.3f} s)")
    print(f"  overhead (median of per-pair ratios): {100 * (ratio - 1):+.1f}% vs python, "
          f"{100 * (ratio_full - 1):+.1f}% vs python with compose (target <= +10%)")
    if opts["out"]:
        Path(opts["out"]).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
