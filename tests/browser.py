"""A real headless browser for the tests: Debian's Chromium driven by Selenium.

Mark a test ``@needs_browser`` (``from browser import needs_browser``) and take the
``browser`` fixture (registered for every test by conftest.py), a Chrome WebDriver already started
(headless) and quit after the test, pass or fail.
Where Chromium, chromedriver or Selenium is missing the marked tests skip, and ``BROWSER_MISSING`` says why.

Only the Debian binaries are used (``/usr/bin/chromium``, ``/usr/bin/chromedriver``, from the packages
chromium and chromium-driver; .ci/run installs them): both paths are given to Selenium, so Selenium Manager
never runs and nothing is downloaded. The flags keep the browser off the network (this machine refuses
outside connections, and a browser that keeps trying slows every start) and working as root in a
container. Each browser gets a fresh profile, and writes chromedriver's log, under ``tmp_path / "chromium"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGE_LOAD_TIMEOUT = 30  # seconds

# Measured as needed on a machine that refuses outside connections, running as root in a container:
# no sandbox (root), no GPU, no background fetches (QUIC, updates, sync, first-run pages) that would
# wait on the network, and /tmp rather than /dev/shm (64 MB in a default Docker container).
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _browser_missing() -> str | None:
    """None when the browser can run here, else one line saying why not."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        return ("headless Chromium not installed (apt-get install chromium chromium-driver; "
                ".ci/run installs it)")
    try:
        import selenium.webdriver  # noqa: F401
    except ImportError:
        return "selenium not installed (pip install -r requirements.txt)"
    return None


BROWSER_MISSING = _browser_missing()
needs_browser = pytest.mark.skipif(BROWSER_MISSING is not None, reason=BROWSER_MISSING or "")


def open_browser(tmp_path: Path, width: int = 1280, height: int = 900):
    """Start a headless Chromium of ``width`` x ``height`` pixels with a fresh profile under ``tmp_path``;
    return its ``selenium.webdriver.Chrome`` driver (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    folder = Path(tmp_path) / "chromium"
    folder.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={folder / 'profile'}")
    options.add_argument(f"--window-size={width},{height}")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(folder / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
    except BaseException:
        driver.quit()
        raise
    return driver


@pytest.fixture
def browser(tmp_path) -> Iterator:
    """A headless Chromium (:func:`open_browser`), quit after the test whether it passed or not."""
    driver = open_browser(tmp_path)
    try:
        yield driver
    finally:
        driver.quit()
