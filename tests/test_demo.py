"""The newcomer's first run: README's command 1 (the demo build) as it is, in a tree laid out like the
checkout. Its console holds progress bars, the summary and the review page's path and nothing else;
the two damaged demo paths show dropped segments, the clean ones none; the review page renders them
in a real Chromium (and gives README's screenshot: RELIC_SCREENSHOT_DIR=docs/images)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil

import pandas as pd
import pytest

from tests.browser_helpers import CHROMIUM, DRIVER, chromium, console_problems

PROGRESS = re.compile(r"^(capture|filter\+clips): +\d+%\|")  # tqdm's bars, one per stage
SUMMARY = re.compile(r"^\d+ trajectories: \d+ captured, \d+ cached, \d+ failed; frames: \d+ kept, \d+ dropped")
REVIEW = re.compile(r"^review page: .*report/index\.html; stats: .*stats\.json$")
CHATTER = re.compile(r"INFO:__init__|=>Info|Got connection confirm|\w+Warning:|warnings\.warn|Token authentication"
                     r"|RAY_AUTH_MODE|\(_CaptureActor pid=|Traceback")
DAMAGED = {("corridor_0002", "plan0001"): {"jitter"}, ("street_0004", "plan0000"): {"teleport", "blur"}}


def console_lines(*streams: str) -> list[str]:
    """Every line the user saw; tqdm redraws a bar with carriage returns, each redraw a line here."""
    return [line.strip() for text in streams for line in re.split(r"[\r\n]+", text) if line.strip()]


def test_console_shows_progress_summary_and_review_path_only(demo_build):
    out, done = demo_build
    assert done.returncode == 0, done.stderr[-3000:]
    lines = console_lines(done.stdout, done.stderr)
    chatter = [line for line in lines if CHATTER.search(line)]
    assert chatter == [], "third-party chatter or warnings on the demo's console:\n" + "\n".join(chatter[:20])
    other = [line for line in lines if not (PROGRESS.match(line) or SUMMARY.match(line) or REVIEW.match(line))]
    assert other == [], "unexpected console lines:\n" + "\n".join(other[:20])
    stdout = console_lines(done.stdout)
    assert len(stdout) == 2 and SUMMARY.match(stdout[0]) and REVIEW.match(stdout[1])
    assert any(PROGRESS.match(line) for line in console_lines(done.stderr))
    assert (out / "report" / "index.html").is_file()


def test_the_damaged_paths_and_only_they_lose_frames(demo_build):
    out, done = demo_build
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["trajectories"] == {**stats["trajectories"], "in": 8, "failed": 0}
    segments = pd.read_parquet(out / "report" / "filter.parquet")
    dropped = segments[segments["verdict"] == "drop"]
    by_trajectory = {key: set().union(*group["reasons"].map(set)) for key, group in dropped.groupby(["scene", "trajectory"])}
    assert set(by_trajectory) == set(DAMAGED)
    for key, reasons in DAMAGED.items():
        assert reasons <= by_trajectory[key], (key, by_trajectory[key])
    summary = console_lines(done.stdout)[0]
    assert f"{stats['frames']['dropped']} dropped (" in summary and "jitter" in summary
    assert stats["samples"]["train"] > 0 and stats["samples"]["val"] > 0


@pytest.mark.skipif(not (CHROMIUM and DRIVER) and not os.environ.get("CI"), reason="no chromium/chromedriver here")
def test_review_page_shows_the_dropped_segments_with_thumbnails(demo_build, tmp_path):
    from selenium.webdriver.common.by import By

    out, done = demo_build
    assert done.returncode == 0, done.stderr[-3000:]
    driver = chromium(tmp_path, size=(1280, 1500))
    try:
        driver.get((out / "report" / "index.html").as_uri())
        assert console_problems(driver) == []
        for scene, trajectory in DAMAGED:
            rows = driver.find_elements(By.CSS_SELECTOR, f"tr.segment[data-segment^='{scene}-{trajectory}-']")
            assert any(row.get_attribute("data-auto") == "drop" and row.is_displayed() for row in rows)
            details = rows[0].find_element(By.XPATH, "ancestor::details")
            assert details.get_attribute("open") is not None  # trajectories with drops start open
            thumbs = details.find_elements(By.CSS_SELECTOR, ".thumbs figure img")
            assert thumbs and all(driver.execute_script("return arguments[0].naturalWidth", img) > 0 for img in thumbs)
        shot = tmp_path / "review-page.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 20_000
    finally:
        driver.quit()
    target = os.environ.get("RELIC_SCREENSHOT_DIR")
    if target:
        pathlib.Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, pathlib.Path(target) / "review-page.png")
