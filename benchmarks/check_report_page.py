"""Open the report index and the five stage reports in a real headless browser and check them
as a reader would see them.

    apt-get install chromium chromium-driver      # Debian's browser and its driver
    pip install selenium==4.51.0
    python benchmarks/check_report_page.py --screenshots docs/images/reports

Checks that each page loads with no console errors, that every image has decoded to a
non-empty picture and every local link points at a file that exists; that a stage report
shows no code (no input cells), links back to the index and opens with its summary. Saves a
screenshot of the top of each page (the index in full). Exits non-zero on any failure. Not
part of the default test run: it needs a browser that CI machines do not have.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from ferflow.pipeline.report import STAGE_REPORTS


def open_browser(binary: str, driver: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # No network here: keep Chromium from calling home, which floods the log with errors.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        "--hide-scrollbars",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


STAGE_PAGES = tuple(STAGE_REPORTS.values())


def check(page: Path, screenshot: Path, binary: str, driver: str, max_height: int = 12000) -> list[str]:
    problems = []
    browser = open_browser(binary, driver)
    try:
        browser.get(page.resolve().as_uri())
        if page.name != "index.html":
            problems += [f"{page.name}: {problem}" for problem in stage_page_problems(browser)]
        errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        problems += [f"console error: {message}" for message in errors]
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0]);"
        )
        if not images and page.name == "index.html":
            problems.append("the page has no images")
        problems += [f"image did not render: {alt}" for alt, ok in images if not ok]
        links = browser.execute_script("return Array.from(document.links).map(a => a.getAttribute('href'));")
        local = [href for href in links if href and not href.startswith(("http:", "https:", "#"))]
        problems += [f"broken link: {href}" for href in local if not (page.parent / href.split("#")[0]).exists()]
        if page.name == "index.html":  # the top of the index, for the README
            browser.save_screenshot(str(screenshot.with_name(f"{screenshot.stem}_top.png")))
        height = browser.execute_script("return document.documentElement.scrollHeight;")
        browser.set_window_size(1280, min(int(height), max_height))
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(screenshot))
        print(
            f"{page}: {len(images)} images, {len(links)} links, {len(errors)} console errors; screenshot {screenshot}"
        )
    finally:
        browser.quit()
    return problems


def stage_page_problems(browser) -> list[str]:
    problems = []
    code_inputs = browser.execute_script(
        "return document.querySelectorAll('.jp-CodeCell .jp-InputArea, .jp-CodeCell .jp-Editor').length;"
    )
    if code_inputs:
        problems.append(f"{code_inputs} code input cells shown")
    if not browser.execute_script("return !!document.querySelector('a[href=\"index.html\"]');"):
        problems.append("no link back to index.html")
    text = browser.execute_script("return document.body.innerText;")
    heading_end = text.find("Summary.")
    if heading_end < 0 or heading_end > 3000:
        problems.append("no summary near the top")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=Path, default=Path("reports"), help="the folder of the rendered reports")
    parser.add_argument("--screenshots", type=Path, default=Path("docs/images/reports"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    pages = [args.reports / "index.html"] + [args.reports / name for name in STAGE_PAGES]
    missing = [str(page) for page in pages if not page.exists()]
    if missing:
        sys.exit(f"{', '.join(missing)} missing; run `dvc repro` first")
    problems = []
    for page in pages:
        problems += check(
            page,
            args.screenshots / page.with_suffix(".png").name,
            args.chromium,
            args.chromedriver,
            max_height=12000 if page.name == "index.html" else 2400,
        )
    for problem in problems:
        print(f"FAIL {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
