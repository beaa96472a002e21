"""Reviewers' verdicts (formats.md 5): `segment_id,verdict,reviewer,note`, verdict in {keep, drop}."""

from __future__ import annotations

import csv
import io
import pathlib

from filter.segments import ReviewVerdict, Verdict

COLUMNS = ("segment_id", "verdict", "reviewer", "note")


class VerdictError(ValueError):
    pass


def read_verdicts(path: str | pathlib.Path) -> dict[str, ReviewVerdict]:
    """segment_id -> verdict. Bad headers, verdicts or duplicate ids are errors naming file and line."""
    path = pathlib.Path(path)
    out: dict[str, ReviewVerdict] = {}
    lines: dict[str, int] = {}
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # spreadsheet programs write a BOM: it is not part of the header
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise VerdictError(f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8 CSV") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = tuple(reader.fieldnames or ())
        if header[:2] != COLUMNS[:2] or not set(header) <= set(COLUMNS):
            raise VerdictError(f"{path}:1: header must be {','.join(COLUMNS)} (reviewer and note optional), "
                               f"got {header!r}")
        for row in reader:
            line = reader.line_num
            segment = (row.get("segment_id") or "").strip()
            if not segment:
                raise VerdictError(f"{path}:{line}: empty segment_id")
            try:
                verdict = Verdict((row.get("verdict") or "").strip().lower())
            except ValueError:
                raise VerdictError(f"{path}:{line}: verdict must be keep or drop, got {row.get('verdict')!r}") from None
            if segment in out:
                raise VerdictError(f"{path}:{line}: segment {segment} already has a verdict on line {lines[segment]}")
            out[segment] = ReviewVerdict(segment, verdict, (row.get("reviewer") or "").strip(), row.get("note") or "")
            lines[segment] = line
    except csv.Error as exc:  # a NUL byte, a field over the csv module's size limit
        raise VerdictError(f"{path}:{reader.line_num}: {exc}") from None
    return out


def write_verdicts(verdicts: list[ReviewVerdict], path: str | pathlib.Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for v in verdicts:
            writer.writerow([v.segment_id, v.verdict.value, v.reviewer, v.note])
