"""Open the report index in a real headless browser and check it as a reader would see it.

    apt-get install chromium chromium-driver      # Debian's browser and its driver
    pip install selenium==4.51.0
    python benchmarks/check_report_page.py reports/index.html --screenshot reports/index.png

Checks that the page loads with no console errors, that every image has decoded to a
non-empty picture, and that every stage link points at a file that exists; then saves a
full-page screenshot. Exits non-zero on any failure. Not part of the default test run:
it needs a browser that CI machines do not have.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def open_browser(binary: str, driver: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    # No network here: keep Chromium from calling home, which floods the log with errors.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def check(page: Path, screenshot: Path, binary: str, driver: str) -> list[str]:
    problems = []
    browser = open_browser(binary, driver)
    try:
        browser.get(page.resolve().as_uri())
        errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        problems += [f"console error: {message}" for message in errors]
        images = browser.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0]);")
        if not images:
            problems.append("the page has no images")
        problems += [f"image did not render: {alt}" for alt, ok in images if not ok]
        links = browser.execute_script("return Array.from(document.links).map(a => a.getAttribute('href'));")
        problems += [f"broken link: {href}" for href in links if not (page.parent / href).exists()]
        height = browser.execute_script("return document.documentElement.scrollHeight;")
        browser.set_window_size(1280, min(int(height), 12000))
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(screenshot))
        print(f"{page}: {len(images)} images, {len(links)} links, {len(errors)} console errors; "
              f"screenshot {screenshot}")
    finally:
        browser.quit()
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("page", type=Path, nargs="?", default=Path("reports/index.html"))
    parser.add_argument("--screenshot", type=Path, default=Path("reports/index.png"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    if not args.page.exists():
        sys.exit(f"{args.page} does not exist; run `dvc repro` first")
    problems = check(args.page, args.screenshot, args.chromium, args.chromedriver)
    for problem in problems:
        print(f"FAIL {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
