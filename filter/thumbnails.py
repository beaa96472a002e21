"""The review page's thumbnails of flagged frames, made where the staged frames are: a cluster
build writes the page on a machine that may not see another node's staging folder."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from capture.staging import frame_files
from filter.config import FilterConfig
from filter.stage import TrajectoryFilter


def flagged_frames(result: TrajectoryFilter) -> list[int]:
    """Frames dropped by a check of their own (not only for a margin, a short segment or a reviewer)."""
    return [int(i) for i, reasons, kept in zip(result.frames["frame"], result.frames["reasons"], result.frames["kept"])
            if not kept and any(r not in ("margin", "short_segment", "reviewer") for r in reasons)]


def with_thumbnails(result: TrajectoryFilter, config: FilterConfig) -> TrajectoryFilter:
    """The result with its review-page thumbnails made from its staged frames: up to
    `thumbnails_per_trajectory` flagged frames, evenly spread, `thumbnail_width` wide, as JPEG. Run
    it where the staged frames are, after the reviewers' verdicts are applied."""
    flagged = flagged_frames(result)
    if not flagged:
        return replace(result, thumbnails=())
    limit = config.thumbnails_per_trajectory
    chosen = flagged if len(flagged) <= limit else [flagged[round(k)] for k in np.linspace(0, len(flagged) - 1, limit)]
    files = frame_files(result.folder, len(result.frames))
    made = []
    for i in chosen:
        image = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
        if image is None:  # the filter decoded it moments ago; the page shows the frames it has
            continue
        scale = config.thumbnail_width / image.shape[1]
        small = cv2.resize(image, (config.thumbnail_width, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
        if ok:
            made.append((i, data.tobytes()))
    return replace(result, thumbnails=tuple(made))
