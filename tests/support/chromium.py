"""Headless Chromium driven by selenium (Debian `chromium` + `chromium-driver`; `make
browser` installs them): skipped where missing, except under CI, where it fails."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest


def no_browser(why: str, what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}: CI must run {what} (make browser)")
    pytest.skip(f"{why} (make browser installs Debian chromium + chromium-driver)")


@contextlib.contextmanager
def headless_chromium(window: str, what: str) -> Iterator:
    """A driver with a `window` ("W,H") viewport; `what` names the check a skip leaves out."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        no_browser("selenium is not installed", what)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not browser or not Path(driver_bin).exists():
        no_browser("chromium or chromedriver is not installed", what)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={window}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_bin), options=options)
    try:
        yield driver
    finally:
        driver.quit()
