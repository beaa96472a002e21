"""A real headless Chromium for page tests (Debian's chromium + chromium-driver, via Selenium).

`require_chromium()` skips a test module where Chromium is missing, except under CI=true, where it
fails: CI installs it (.ci/run). `chromium(downloads)` starts one with downloads going to a folder.
"""

from __future__ import annotations

import os
import pathlib
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


def require_chromium() -> None:
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            raise RuntimeError("CI needs Chromium for the page tests: apt-get install chromium chromium-driver")
        pytest.skip("no chromium/chromedriver here (apt-get install chromium chromium-driver)", allow_module_level=True)
    pytest.importorskip("selenium.webdriver")


def chromium(downloads: pathlib.Path, size: tuple[int, int] = (1280, 1000)):
    """A headless Chromium WebDriver; quit() it when done."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={size[0]},{size[1]}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


def console_problems(driver) -> list[dict]:
    """The page's console entries at warning level or above."""
    return [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
