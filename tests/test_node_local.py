"""The filter+clips task as a build on nodes without a shared disk uses it (formats.md 2.1): a staged
copy that is not on its node comes back as `missing`; the cache's files come back as bytes for the
driver unless it already holds the same ones; the review page's thumbnails travel in the result."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from common.config import from_dict
from pipelines.config import BuildConfig
from pipelines.trajectory import CachePaths, TrajectoryItem, held_cache, read_cache, store_cache, trajectory_task
from tests.filter_helpers import small_staging


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = tmp_path_factory.mktemp("staging")
    small_staging(root, frames=48, width=96, height=64)
    return root


CONFIG = from_dict(BuildConfig, {"clips": {"window": {"frames": 9, "stride": 8}}})


def _item(root, trajectory: str, **kw) -> TrajectoryItem:
    return TrajectoryItem("room_0001", trajectory, root / "room_0001" / trajectory, "train", **kw)


def test_a_staged_copy_that_is_not_there_is_missing_not_failed(staged, tmp_path):
    outcome = trajectory_task(_item(staged, "gone"), BuildConfig(), tmp_path / "work", {})
    assert set(outcome) == {"missing"} and str(staged / "room_0001" / "gone") in outcome["missing"]


def test_the_cache_travels_to_the_driver_once(staged, tmp_path):
    """Away from the driver's node the outcome carries the cache's three files; stored on the
    driver they read back as the same samples; a driver holding those files gets no bytes again."""
    config, worker, driver = CONFIG, tmp_path / "node2", tmp_path / "driver"
    first = trajectory_task(_item(staged, "clean", ship_to="driver-node"), config, worker, {})
    assert first["summary"]["clips"] > 0 and not first["summary"]["cached"]
    paths = CachePaths.of(worker, "room_0001", "clean")
    blobs = first.pop("cache")
    assert blobs == {"samples": paths.samples.read_bytes(), "frames": paths.frames.read_bytes(),
                     "info": paths.info.read_bytes()}
    assert held_cache(driver, "room_0001", "clean") == ""
    store_cache(driver, "room_0001", "clean", blobs)
    assert read_cache(CachePaths.of(driver, "room_0001", "clean").samples) == read_cache(paths.samples)
    have = held_cache(driver, "room_0001", "clean")
    assert have == hashlib.sha256(paths.info.read_bytes()).hexdigest()

    again = trajectory_task(_item(staged, "clean", ship_to="driver-node", have=have), config, worker, {})
    assert again["summary"]["cached"] and "cache" not in again
    stale = trajectory_task(_item(staged, "clean", ship_to="driver-node", have="0" * 64), config, worker, {})
    assert stale["cache"]["info"] == blobs["info"]  # the node's cache, reused, sent to a driver without it
    on_one_machine = trajectory_task(_item(staged, "clean"), config, worker, {})
    assert "cache" not in on_one_machine


def test_thumbnails_are_made_where_the_frames_are(staged, tmp_path):
    config = CONFIG
    outcome = trajectory_task(_item(staged, "faulty"), config, tmp_path / "work", {})
    result = outcome["filter"]
    flagged = [i for i, kept, reasons in zip(result.frames["frame"], result.frames["kept"], result.frames["reasons"])
               if not kept and set(reasons) - {"margin", "short_segment", "reviewer"}]
    assert flagged and len(result.thumbnails) == min(len(flagged), config.filter.thumbnails_per_trajectory)
    for frame, data in result.thumbnails:
        assert frame in flagged
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape[1] == config.filter.thumbnail_width
    reused = trajectory_task(_item(staged, "faulty"), config, tmp_path / "work", {})
    assert reused["summary"]["cached"] and reused["filter"].thumbnails == result.thumbnails
    clean = trajectory_task(_item(staged, "clean"), config, tmp_path / "work", {})
    assert clean["filter"].thumbnails == ()
