"""The Dagster UI over a test's instance, read in headless Chromium: `dagster-webserver`
on 127.0.0.1 (started and stopped by PID) and a job's Runs tab, kept as a screenshot.

Chromium (Debian `chromium` + `chromium-driver`; `make browser` installs them) is skipped
when absent, except under CI (the environment variable CI set), where its absence fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ocog_assets.demo import WORKSPACE
from ocog_assets.queued_runs import LOCATION
from ocog_lib.remote.dagster_services import DagsterService, ServiceSpec
from tests.support.chromium import headless_chromium

WAIT_S = 120  # the browser's waits: bounded, a limit not a speed target
RUN_LINKS_JS = """return Array.from(document.querySelectorAll('a[href*="/runs/"]'))
  .map(a => a.getAttribute('href'));"""
# Dagster's first-visit "Join the Dagster community" dialog covers the page: skip it as a
# user would (its "Skip" button), so the screenshot shows the runs.
SKIP_DIALOG_JS = """const b = Array.from(document.querySelectorAll('button'))
  .filter(b => b.textContent.trim() === 'Skip'); b.forEach(b => b.click()); return b.length;"""
DIALOG_TEXT = "Join the Dagster community"


def chromium():
    """A headless Chromium for the Dagster UI's browser check."""
    return headless_chromium("1280,900", "the Dagster UI's browser check")


@contextlib.contextmanager
def webserver(dagster_home: Path, log: Path) -> Iterator[DagsterService]:
    """`dagster-webserver -w workspace.yaml` on the instance at `dagster_home`, loaded."""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    service = DagsterService(ServiceSpec(WORKSPACE, kind="webserver"), log, env=env)
    try:
        yield service.start(LOCATION)
    finally:
        service.stop()


def listed_run_ids(driver, url: str, job_name: str, expected: set[str], shot: Path) -> set[str]:
    """Open the job's Runs tab, wait until every expected run links from it, screenshot."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{url}/locations/{LOCATION}/jobs/{job_name}/runs")

    def listed(d) -> set[str]:
        hrefs = d.execute_script(RUN_LINKS_JS) or []
        return {h.rsplit("/runs/", 1)[1].split("?")[0].strip("/") for h in hrefs}

    with contextlib.suppress(TimeoutException):  # what it lists is asserted by the caller
        WebDriverWait(driver, WAIT_S, poll_frequency=0.5).until(
            lambda d: expected <= listed(d), message=f"the runs of {job_name}")
    with contextlib.suppress(TimeoutException):  # no dialog on this visit: nothing to skip
        WebDriverWait(driver, 10, poll_frequency=0.5).until(
            lambda d: d.execute_script(SKIP_DIALOG_JS) == 0 and DIALOG_TEXT not in d.page_source)
    driver.save_screenshot(str(shot))
    return listed(driver)
