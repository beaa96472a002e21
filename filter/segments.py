"""Flags -> per-frame decisions -> segments; reviewer verdicts on segments.

Every frame ends kept or dropped with its reasons: the checks that flagged it; `margin` when it is
within `margin_frames` of a flagged frame; `short_segment` when the clean piece it is in is shorter
than `min_frames`. Segments are the maximal runs of kept frames and of dropped frames, so kept and
dropped segments together cover every frame. A segment's id is `<scene>-<trajectory>-<start>-<end>`
(frame indices, 6 digits, end exclusive): the same inputs and settings give the same ids, which is
what lets verdicts from one build be honoured by the next.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from filter.config import SegmentConfig
from filter.reasons import CHECK_REASONS, Reason


class Verdict(str, enum.Enum):
    KEEP = "keep"
    DROP = "drop"


@dataclass(frozen=True)
class Segment:
    segment_id: str
    scene: str
    trajectory: str
    start: int  # first frame
    end: int  # one past the last frame
    verdict: Verdict
    reasons: tuple[str, ...]  # why dropped (empty when kept automatically), sorted
    auto_verdict: Verdict  # the filter's own decision
    reviewed: bool = False  # a reviewer's verdict was applied (it may agree with auto_verdict)
    reviewer: str = ""
    note: str = ""

    @property
    def frames(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class ReviewVerdict:
    segment_id: str
    verdict: Verdict
    reviewer: str = ""
    note: str = ""


def segment_id(scene: str, trajectory: str, start: int, end: int) -> str:
    return f"{scene}-{trajectory}-{start:06d}-{end:06d}"


def frame_reasons(flags: Mapping[Reason, np.ndarray], n: int, config: SegmentConfig,
                  disabled: Sequence[Reason] = ()) -> list[tuple[str, ...]]:
    """Per frame, the sorted reasons it is dropped for (empty: kept)."""
    checks = [r for r in CHECK_REASONS if r in flags and r not in disabled]
    matrix = np.stack([np.asarray(flags[r], bool) for r in checks], axis=1) if checks else np.zeros((n, 0), bool)
    flagged = np.asarray(matrix.any(axis=1), dtype=bool)
    near = np.zeros(n, bool)
    for offset in range(1, config.margin_frames + 1):
        near[offset:] |= flagged[:-offset]
        near[:-offset] |= flagged[offset:]
    margin = near & ~flagged
    dropped = flagged | margin
    short = np.zeros(n, bool)
    for start, end in _runs(~dropped):
        if end - start < config.min_frames:
            short[start:end] = True
    out: list[tuple[str, ...]] = []
    for i in range(n):
        reasons = [checks[j].value for j in np.flatnonzero(matrix[i])]
        if margin[i]:
            reasons.append(Reason.MARGIN.value)
        if short[i]:
            reasons.append(Reason.SHORT_SEGMENT.value)
        out.append(tuple(sorted(reasons)))
    return out


def make_segments(scene: str, trajectory: str, reasons: Sequence[tuple[str, ...]]) -> list[Segment]:
    """Maximal runs of kept frames and of dropped frames; a dropped segment carries the union of its frames' reasons."""
    dropped = np.array([bool(r) for r in reasons], bool)
    segments = []
    for start, end in _runs(np.ones(len(reasons), bool), dropped):
        verdict = Verdict.DROP if dropped[start] else Verdict.KEEP
        union = tuple(sorted({reason for frame in reasons[start:end] for reason in frame}))
        segments.append(Segment(segment_id(scene, trajectory, start, end), scene, trajectory, start, end, verdict,
                                union, verdict))
    return segments


def apply_verdicts(segments: Sequence[Segment], verdicts: Mapping[str, ReviewVerdict]) -> list[Segment]:
    """Each verdict overrides its segment's decision; a kept segment a reviewer drops gets reason
    `reviewer`. Verdicts for other segments (another trajectory's) are left for their owner; see
    `check_known` for the run-level check that every verdict names a segment."""
    out = []
    for segment in segments:
        verdict = verdicts.get(segment.segment_id)
        if verdict is None:
            out.append(segment)
            continue
        reasons = segment.reasons
        if verdict.verdict is Verdict.DROP and segment.auto_verdict is Verdict.KEEP:
            reasons = (Reason.REVIEWER.value,)
        out.append(replace(segment, verdict=verdict.verdict, reasons=reasons, reviewed=True,
                           reviewer=verdict.reviewer, note=verdict.note))
    return out


def check_known(verdicts: Mapping[str, ReviewVerdict], segment_ids: set[str], source: str) -> None:
    """A verdict for a segment the build does not have is an error naming it (and the file)."""
    unknown = sorted(set(verdicts) - segment_ids)
    if unknown:
        shown = ", ".join(unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise ValueError(f"{source}: verdict for unknown segment {shown} (segment ids come from report/filter.parquet "
                         "of the build the verdicts were made on; a changed input or filter setting changes them)")


def kept_spans(segments: Sequence[Segment]) -> list[tuple[int, int]]:
    """(start, end) of the runs of consecutive kept segments of one trajectory, merged."""
    spans: list[tuple[int, int]] = []
    for segment in sorted(segments, key=lambda s: s.start):
        if segment.verdict is not Verdict.KEEP:
            continue
        if spans and spans[-1][1] == segment.start:
            spans[-1] = (spans[-1][0], segment.end)
        else:
            spans.append((segment.start, segment.end))
    return spans


def _runs(mask: np.ndarray, values: np.ndarray | None = None) -> list[tuple[int, int]]:
    """(start, end) of runs of True in `mask`; with `values`, runs of equal value within the mask."""
    values = mask if values is None else values
    runs = []
    n, i = len(mask), 0
    while i < n:
        if not mask[i]:
            i += 1
            continue
        j = i + 1
        while j < n and mask[j] and values[j] == values[i]:
            j += 1
        runs.append((i, j))
        i = j
    return runs
