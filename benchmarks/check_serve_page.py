"""Drive the `fer serve` page in a real headless browser: upload a portrait, then a clip, and
check the results.

    apt-get install chromium chromium-driver      # Debian's browser and its driver
    pip install selenium==4.51.0
    python benchmarks/check_serve_page.py --screenshot docs/images/serve_page.png \
        --clip-screenshot docs/images/serve_clip.png

Starts `fer serve` with the shipped model on a free port of 127.0.0.1, opens the page in
headless Chromium, uploads matplotlib's bundled portrait of Grace Hopper through the file
input, and checks that exactly one face is boxed and labelled (the status line, one row in
the table, the picture drawn) and that the browser logged no errors. Then it uploads the
tests' synthetic two-face clip (10 s) and checks that the timeline is shown with one row per
track (two) in the table. Saves a screenshot of each.
Exits non-zero on any failure. Not part of the default test run: it needs a browser.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from matplotlib import cbook
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_report_page import open_browser  # noqa: E402
from serve_load import free_port, wait_for  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshot", type=Path, default=Path("docs/images/serve_page.png"))
    parser.add_argument("--clip-screenshot", type=Path, default=Path("docs/images/serve_clip.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    portrait = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ferflow.apps.cli", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    problems = []
    try:
        wait_for(f"http://127.0.0.1:{port}/health", 120)
        browser = open_browser(args.chromium, args.chromedriver)
        try:
            browser.get(f"http://127.0.0.1:{port}/")
            WebDriverWait(browser, 30).until(lambda b: "Model " in b.find_element(By.ID, "model").text)
            upload = browser.find_element(By.ID, "file")
            browser.execute_script("arguments[0].hidden = false;", upload)  # the drop zone stands in for it
            status, rows = upload_and_wait(browser, upload, portrait, "found in", 60)
            canvas_shown = browser.execute_script(
                "const c = document.getElementById('picture'); return c.style.display === 'block' && c.width > 0;"
            )
            whole_page_screenshot(browser, args.screenshot)
            errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
            print(f"status: {status!r}; table rows (with header): {len(rows)}; picture drawn: {canvas_shown}")
            if status != f"1 face found in {portrait.name}.":
                problems.append(f"expected one face, the page says {status!r}")
            if len(rows) != 2:
                problems.append(f"expected one face row in the table, found {len(rows) - 1}")
            if not canvas_shown:
                problems.append("the picture with the box was not drawn")
            problems += [f"browser error: {message}" for message in errors]
            problems += check_clip(browser, upload, args.clip_screenshot)
        finally:
            browser.quit()
    finally:
        server.terminate()
        server.wait(timeout=30)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    print(f"screenshots: {args.screenshot}, {args.clip_screenshot}")
    return 1 if problems else 0


def upload_and_wait(browser, upload, path: Path, done: str, timeout_s: float) -> tuple[str, list]:
    """Choose `path` in the file input; wait for a status line holding `done`, or an error. The
    status line and the table's rows."""
    upload.send_keys(str(path))
    WebDriverWait(browser, timeout_s).until(
        lambda b: (
            done in b.find_element(By.ID, "status").text
            or "error" in b.find_element(By.ID, "status").get_attribute("class")
        )
    )
    return browser.find_element(By.ID, "status").text, browser.find_elements(By.CSS_SELECTOR, "#faces tr")


def whole_page_screenshot(browser, path: Path) -> None:
    height = browser.execute_script("return document.documentElement.scrollHeight;")
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",  # the whole page: picture or timeline, and the table
        {"width": 1280, "height": min(2400, height + 20), "deviceScaleFactor": 1, "mobile": False},
    )
    time.sleep(0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(path))


def check_clip(browser, upload, screenshot: Path) -> list[str]:
    """Upload the two-face clip through the same input; the problems found."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import write_two_face_clip

    problems = []
    with tempfile.TemporaryDirectory() as folder:
        clip = write_two_face_clip(Path(folder) / "two_faces.mp4")
        status, rows = upload_and_wait(browser, upload, clip, "followed through", 120)
    timeline_shown = browser.execute_script(
        "const t = document.getElementById('timeline'); return !t.hidden && t.complete && t.naturalWidth > 0;"
    )
    whole_page_screenshot(browser, screenshot)
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    print(f"clip status: {status!r}; track rows (with header): {len(rows)}; timeline shown: {timeline_shown}")
    if not status.startswith("2 faces followed through two_faces.mp4"):
        problems.append(f"expected two faces followed, the page says {status!r}")
    if len(rows) != 3:
        problems.append(f"expected two track rows, found {len(rows) - 1}")
    if not timeline_shown:
        problems.append("the timeline was not shown")
    return problems + [f"browser error: {message}" for message in errors]


if __name__ == "__main__":
    sys.exit(main())
