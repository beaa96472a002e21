"""The review page in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium):
loads with no console errors, shows the flagged segments, exports a verdicts.csv that a rebuild
honours, and renders hostile names as text."""

from __future__ import annotations

import pathlib
import time
from dataclasses import replace

import pytest

from filter.config import FilterConfig
from filter.report import write_report
from filter.run import filter_staging
from filter.segments import Verdict
from filter.verdicts import read_verdicts
from tests.browser_helpers import chromium, console_problems, require_chromium
from tests.filter_helpers import small_staging

HOSTILE = "<script>alert(1)</script>"
require_chromium()
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("staging")
    small_staging(root)
    run = filter_staging(root, FilterConfig())
    hostile = tuple(replace(r, scene=HOSTILE) if r.trajectory == "clean" else r for r in run.results)
    run = replace(run, results=hostile)
    out = tmp_path_factory.mktemp("out")
    write_report(run, out / "report")
    return root, run, out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("downloads")
    driver = chromium(downloads)
    yield driver, downloads
    driver.quit()


def open_page(driver, out: pathlib.Path) -> None:
    driver.get((out / "report" / "index.html").as_uri())


def test_page_loads_cleanly_and_shows_flagged_segments(build, browser):
    _, run, out = build
    driver, _ = browser
    open_page(driver, out)
    assert console_problems(driver) == []
    dropped = [s for r in run.results for s in r.segments if s.verdict is Verdict.DROP]
    assert dropped
    for segment in dropped:
        row = driver.find_element(By.CSS_SELECTOR, f"tr.segment[data-segment='{segment.segment_id}']")
        assert row.is_displayed() and "drop" in row.text
    thumbs = driver.find_elements(By.CSS_SELECTOR, ".thumbs figure img")
    assert thumbs and all(driver.execute_script("return arguments[0].naturalWidth", img) > 0 for img in thumbs)
    assert "black" in driver.find_element(By.ID, "totals").text


def test_hostile_scene_name_renders_as_text(build, browser):
    _, _, out = build
    driver, _ = browser
    open_page(driver, out)
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018  (an injected alert(1) would be open)
    summaries = [s.text for s in driver.find_elements(By.CSS_SELECTOR, "details.trajectory summary")]
    assert any(s.startswith(HOSTILE + " / clean") for s in summaries)


def test_export_gives_verdicts_a_rebuild_honours(build, browser):
    root, run, out = build
    driver, downloads = browser
    open_page(driver, out)
    faulty = next(r for r in run.results if r.trajectory == "faulty")
    flip = next(s for s in faulty.segments if s.verdict is Verdict.DROP)
    driver.find_element(By.ID, "reviewer").send_keys("ann, \"QA\"")
    row = driver.find_element(By.CSS_SELECTOR, f"tr.segment[data-segment='{flip.segment_id}']")
    Select(row.find_element(By.TAG_NAME, "select")).select_by_value("keep")
    row.find_element(By.CSS_SELECTOR, "input.note").send_keys("teleport is a cut, fine")
    assert "changed" in row.get_attribute("class")
    driver.find_element(By.ID, "export").click()
    path = downloads / "verdicts.csv"
    deadline = time.time() + 10
    while not path.is_file() and time.time() < deadline:
        time.sleep(0.1)
    verdicts = read_verdicts(path)
    assert list(verdicts) == [flip.segment_id]
    assert verdicts[flip.segment_id].verdict is Verdict.KEEP
    assert verdicts[flip.segment_id].reviewer == "ann, \"QA\"" and verdicts[flip.segment_id].note == "teleport is a cut, fine"
    rebuilt = filter_staging(root, FilterConfig(), verdicts, str(path))
    frames = next(r for r in rebuilt.results if r.trajectory == "faulty").frames
    assert frames["kept"][flip.start:flip.end].all() and rebuilt.verdicts_applied == 1
