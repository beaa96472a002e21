"""Write the filter report: report/filter.parquet (segments), report/frames.parquet (every frame's
scores, flags and reasons) and report/index.html (the review page); each written atomically."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from common.files import atomic_path
from filter.review import write_review_page
from filter.run import FilterRun, frames_table, segments_table

SEGMENTS = "filter.parquet"
FRAMES = "frames.parquet"
PAGE = "index.html"


def write_report(run: FilterRun, folder: str | pathlib.Path, title: str = "Filter review",
                 base: str | pathlib.Path | None = None, links: Sequence[tuple[str, str]] = ()) -> pathlib.Path:
    """The three files into `folder`; the page shows paths under `base` (default: folder's parent) relative to it."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / SEGMENTS) as tmp:
        segments_table(run).to_parquet(tmp, index=False)
    with atomic_path(folder / FRAMES) as tmp:
        frames_table(run).to_parquet(tmp, index=False)
    with atomic_path(folder / PAGE) as tmp:
        write_review_page(run, tmp, title, base if base is not None else folder.parent, links)
    return folder
