"""One table per checkpoint, from its metrics.json: every method in a row, baselines included.

Columns: PSNR and SSIM over frames 1..F-1 (mean ± SE over clips), RPE translation (m per step) and
rotation (degrees per step) after Sim(3) alignment, the parallax the odometry saw (pixels a pure
rotation leaves unexplained, per 8-step window: how much the video translated, even below what RPE
can read; odometry.py), and the return-frame PSNR of the revisit scripts
after each multiple of the memory window that was evaluated. Methods a column does not apply to
show "—" (PSNR of the ground truth itself; the return frame of copy-first, which is the first frame).
Scripts left out of the set (fitting no start pose) are listed under the table with their reasons.
"""

from __future__ import annotations

import math
from typing import Any

METHOD_NAMES = {"model": "model", "window_only": "model, window only", "shuffled": "model, shuffled actions",
                "copy_first": "copy first frame", "warp_first": "first frame warped by its depth",
                "ground_truth": "ground-truth renders"}


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float (an empty group's mean, one clip's SE, the z of a zero SE) as
    None, so that metrics.json is strict JSON that any parser reads (json.dumps would write NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def unfit_lines(unfit: dict[str, dict[str, Any]]) -> list[str]:
    """One line per left-out script of an `unfit` summary (groundtruth.unfit_summary, as in metrics.json):
    "NAME at N starts (REASONS)"."""
    return [f"{name} at {e['starts']} starts ({'; '.join(e['reasons'])})" for name, e in unfit.items()]


def cell(stats: dict[str, Any] | None, digits: int) -> str:
    """A table cell for a {mean, se} statistic, "mean ± se" to `digits` places; the mean alone when it has no
    SE (one clip: null in metrics.json, NaN in reports written before); "—" when there is none."""
    if not stats or stats.get("n") == 0 or stats.get("mean") is None:
        return "—"
    se = stats.get("se")
    if se is None or math.isnan(se):
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {se:.{digits}f}"


def _frames(indices: list[int]) -> str:
    """Frame numbers as runs: [1, 2, 3, 7] -> "1-3, 7"."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def frame_verdict(by_frame: list[dict[str, Any]], z: float = 3.0) -> str:
    """Whether a paired difference (per frame index, frames 1..F-1) is above zero by `z` standard errors at
    every frame: "above at every frame (smallest z 13.9, frame 1)", or the frames it is above at and each
    other frame's mean and z."""
    above = [i + 1 for i, d in enumerate(by_frame) if d.get("z") is not None and d["z"] >= z]
    if len(above) == len(by_frame):
        low = min(range(len(by_frame)), key=lambda i: by_frame[i]["z"])
        return f"above at every frame (smallest z {by_frame[low]['z']:.1f}, frame {low + 1})"
    rest = [f"{i + 1} ({d['mean']:+.2f} dB, z " + ("—" if d.get("z") is None else f"{d['z']:.1f}") + ")"
            for i, d in enumerate(by_frame) if i + 1 not in above]
    return (f"above at frames {_frames(above)}; " if above else "above at no frame; ") + "not at " + ", ".join(rest)


def frame_lines(report: dict[str, Any], z: float = 3.0) -> list[str]:
    """For each paired baseline: is the model above it at every frame index, by `z` standard errors,
    over all clips and per script kind (reports before 2026-12-07 have no per-kind frames)."""
    lines = []
    for name, paired in report.get("paired", {}).items():
        if "psnr_db_by_frame" not in paired:
            continue
        reference, _, baseline = name.partition("-")
        label = (f"PSNR per frame, {METHOD_NAMES.get(reference, reference)} against "
                 f"{METHOD_NAMES.get(baseline, baseline)}")
        lines.append(f"- {label} (paired, z >= {z:g}): {frame_verdict(paired['psnr_db_by_frame'], z)}")
        for kind, by_frame in paired.get("psnr_db_by_frame_by_kind", {}).items():
            lines.append(f"  - {kind} ({by_frame[0]['n'] if by_frame else 0} clips): {frame_verdict(by_frame, z)}")
    return lines


def markdown_table(report: dict[str, Any]) -> str:
    """The report's table in GitHub markdown, with a header line naming the checkpoint and clip count."""
    methods = report.get("methods", {})
    paths = report.get("paths", {}).get("methods", {})
    revisits = report.get("revisits", {})
    multiples = sorted(revisits, key=lambda m: int(m.rstrip("x")))
    names = [m for m in METHOD_NAMES if m in methods or m in paths or any(m in r["methods"] for r in revisits.values())]
    parallax = any("parallax_px" in p for p in paths.values())  # reports before 2026-12-07 have none
    head = (["method", "PSNR dB", "SSIM", "RPE-t m", "RPE-r deg"] + ["parallax px"] * parallax
            + [f"return PSNR @{m} window" for m in multiples])
    rows = []
    for m in names:
        row = [METHOD_NAMES[m], cell(methods.get(m, {}).get("psnr"), 2), cell(methods.get(m, {}).get("ssim"), 3),
               cell(paths.get(m, {}).get("rpe_t"), 4), cell(paths.get(m, {}).get("rpe_r"), 3)]
        row += [cell(paths.get(m, {}).get("parallax_px"), 2)] * parallax
        row += [cell(revisits[x]["methods"].get(m, {}).get("psnr"), 2) for x in multiples]
        rows.append(row)
    frames = report.get("sampler", {}).get("frames")
    title = f"{report.get('checkpoint', '?')}: {report.get('clips', '?')} clips of {frames} frames"
    if "fps" in report:  # reports before the model's rate was recorded were all at 15 fps
        title += f" at {report['fps']:g} fps"
    if "steps" in report.get("paths", {}):
        cmd = report["paths"]["steps"]
        title += f"; commanded step {cmd['translation_m']:.4f} m, {cmd['rotation_deg']:.3f} deg"
        tracker = report["paths"].get("odometry", {}).get("tracker", "corners")  # reports before it was chosen
        title += f"; odometry: {tracker}"
    lines = [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    per_frame = frame_lines(report)
    if per_frame:
        lines += [""] + per_frame
    left_out = [("", report.get("unfit", {}))] + [(f" (return after {m})", revisits[m].get("unfit", {}))
                                                   for m in multiples]
    for where, unfit in left_out:
        if unfit:
            lines += ["", f"Left out{where}, fitting no start pose: " + "; ".join(unfit_lines(unfit))]
    return "\n".join(lines) + "\n"
