"""Flags -> reasons -> segments, verdict files and their application."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filter.config import SegmentConfig
from filter.reasons import Reason
from filter.segments import ReviewVerdict, Verdict, apply_verdicts, check_known, frame_reasons, kept_spans, make_segments
from filter.verdicts import VerdictError, read_verdicts, write_verdicts


def flags_at(n: int, **frames) -> dict[Reason, np.ndarray]:
    out = {}
    for name, where in frames.items():
        mask = np.zeros(n, bool)
        mask[list(where)] = True
        out[Reason(name)] = mask
    return out


def test_margin_and_short_segments_known_answer():
    reasons = frame_reasons(flags_at(40, black=[10], teleport=[31]), 40, SegmentConfig(margin_frames=2, min_frames=8))
    assert reasons[10] == ("black",)
    assert reasons[8] == reasons[9] == reasons[11] == reasons[12] == ("margin",)
    assert reasons[7] == () and reasons[13] == ()
    assert reasons[31] == ("teleport",)
    assert all(r == ("short_segment",) for r in reasons[34:40])  # 6 clean frames after the margin
    assert all(r == () for r in reasons[13:29])
    segments = make_segments("s", "t", reasons)
    assert [(s.start, s.end, s.verdict.value) for s in segments] == [
        (0, 8, "keep"), (8, 13, "drop"), (13, 29, "keep"), (29, 40, "drop")]
    assert segments[3].reasons == ("margin", "short_segment", "teleport")
    assert segments[1].segment_id == "s-t-000008-000013"


def test_disabled_checks_are_ignored():
    flags = flags_at(30, black=[10])
    assert all(not r for r in frame_reasons(flags, 30, SegmentConfig(), disabled=(Reason.BLACK,)))


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 80), st.lists(st.integers(0, 79), max_size=8), st.integers(0, 4), st.integers(2, 20))
def test_segments_partition_every_frame(n, bad, margin, min_frames):
    bad = [b for b in bad if b < n]
    config = SegmentConfig(margin_frames=margin, min_frames=min_frames)
    reasons = frame_reasons(flags_at(n, jitter=bad), n, config)
    segments = make_segments("s", "t", reasons)
    assert segments[0].start == 0 and segments[-1].end == n
    assert all(a.end == b.start and a.verdict is not b.verdict for a, b in zip(segments, segments[1:]))
    for s in segments:
        kept = [not reasons[i] for i in range(s.start, s.end)]
        assert all(kept) if s.verdict is Verdict.KEEP else not any(kept)
        if s.verdict is Verdict.KEEP:
            assert s.frames >= min_frames
    for i in range(n):  # a kept frame is at least `margin` away from every flagged frame
        if not reasons[i]:
            assert all(abs(i - b) > margin for b in bad)


def test_verdicts_override_both_ways_and_unknown_ids_fail(tmp_path):
    reasons = frame_reasons(flags_at(60, black=[30]), 60, SegmentConfig(margin_frames=1, min_frames=5))
    segments = make_segments("s", "t", reasons)
    keep_id, drop_id = segments[0].segment_id, segments[1].segment_id
    verdicts = {keep_id: ReviewVerdict(keep_id, Verdict.DROP, "ann", "wobbly"),
                drop_id: ReviewVerdict(drop_id, Verdict.KEEP, "ann", "")}
    out = apply_verdicts(segments, verdicts)
    assert out[0].verdict is Verdict.DROP and out[0].reasons == ("reviewer",) and out[0].reviewed
    assert out[1].verdict is Verdict.KEEP and out[1].auto_verdict is Verdict.DROP
    assert kept_spans(out) == [(29, 60)]  # the kept drop segment joins the clean one after it
    check_known(verdicts, {s.segment_id for s in segments}, "v.csv")
    with pytest.raises(ValueError, match="v.csv: verdict for unknown segment s-t-000000-000099"):
        check_known({"s-t-000000-000099": verdicts[keep_id]}, {s.segment_id for s in segments}, "v.csv")


def test_verdicts_file_round_trip_with_awkward_notes(tmp_path):
    path = tmp_path / "verdicts.csv"
    written = [ReviewVerdict("a-b-000000-000010", Verdict.KEEP, "Zoë", 'fine, really "fine"\nsecond line'),
               ReviewVerdict("a-b-000010-000020", Verdict.DROP, "", "")]
    write_verdicts(written, path)
    assert list(read_verdicts(path).values()) == written


@pytest.mark.parametrize("text,message", [
    ("segment,verdict\nx,keep\n", ":1: header must be"),
    ("segment_id,verdict\nx,maybe\n", ":2: verdict must be keep or drop, got 'maybe'"),
    ("segment_id,verdict\nx,keep\ny,drop\nx,drop\n", ":4: segment x already has a verdict on line 2"),
    ("segment_id,verdict\n,keep\n", ":2: empty segment_id"),
])
def test_bad_verdict_files_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "verdicts.csv"
    path.write_text(text)
    with pytest.raises(VerdictError, match=message):
        read_verdicts(path)
