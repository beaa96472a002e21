"""The annotators' review page: one self-contained HTML file (inline CSS, JS, images), works offline.

Sections: totals per reason; distributions of the main scores (kept vs dropped frames); per
trajectory a timeline of kept/dropped segments, speed and jitter plots, thumbnails of flagged
frames and the segment list, where a reviewer picks keep or drop per segment. "Export verdicts.csv"
downloads formats.md 5's file with every segment given a verdict. Verdicts the build already
applied are preselected, so an export carries them forward.

All text from inputs (scene and trajectory names, paths, reasons, notes) is HTML-escaped; the page's
script reads only data attributes and form values and writes with textContent.
"""

from __future__ import annotations

import base64
import html
import pathlib
from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd

from filter.run import FilterRun, totals
from filter.segments import Verdict
from filter.stage import TrajectoryFilter
from filter.thumbnails import flagged_frames

DISTRIBUTIONS = (("speed", "m/s"), ("angular_speed", "deg/s"), ("jitter_translation", "m/s"),
                 ("jitter_rotation", "deg/s"), ("luma_mean", "0-255"), ("sharpness_rel", "ratio"),
                 ("flicker", "ratio"), ("hist_distance", "0-1"), ("shift_error", "of width"))

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 24px 48px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}th{background:#f3f3f3}
.num{text-align:right}.bar{position:sticky;top:0;background:#fff;padding:8px 0;border-bottom:1px solid #ddd;z-index:2}
details{border:1px solid #ddd;border-radius:4px;margin:10px 0;padding:6px 10px}summary{cursor:pointer;font-weight:600}
.keep{color:#1a7f37}.drop{color:#c62828}.thumbs{display:flex;flex-wrap:wrap;gap:6px}.plots{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;font-size:11px;max-width:170px}figure img{display:block}
tr.changed{background:#fff6d5}.hidden{display:none}
"""

_JS = """
const rows = () => Array.from(document.querySelectorAll('tr.segment'));
function csvField(v){ v = String(v); return /[",\\n\\r]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }
function refresh(){
  let set = 0;
  for (const tr of rows()) {
    const v = tr.querySelector('select').value;
    tr.classList.toggle('changed', v !== '' && v !== tr.dataset.auto);
    if (v !== '') set++;
  }
  document.getElementById('count').textContent = set + ' segment(s) with a verdict';
}
function exportCsv(){
  const reviewer = document.getElementById('reviewer').value.trim();
  const lines = ['segment_id,verdict,reviewer,note'];
  for (const tr of rows()) {
    const v = tr.querySelector('select').value;
    if (v === '') continue;
    const who = tr.dataset.reviewer && v === tr.dataset.preset ? tr.dataset.reviewer : reviewer;
    lines.push([tr.dataset.segment, v, who, tr.querySelector('input.note').value].map(csvField).join(','));
  }
  const blob = new Blob([lines.join('\\n') + '\\n'], {type: 'text/csv'});
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob); a.download = 'verdicts.csv';
  document.body.appendChild(a); a.click(); a.remove();
  document.getElementById('status').textContent = 'exported ' + (lines.length - 1) + ' verdict(s)';
}
function flaggedOnly(on){
  for (const d of document.querySelectorAll('details.trajectory'))
    d.classList.toggle('hidden', on && d.dataset.dropped === '0');
}
document.addEventListener('DOMContentLoaded', () => {
  for (const s of document.querySelectorAll('tr.segment select')) s.addEventListener('change', refresh);
  document.getElementById('export').addEventListener('click', exportCsv);
  document.getElementById('flagged').addEventListener('change', e => flaggedOnly(e.target.checked));
  refresh();
});
"""


def write_review_page(run: FilterRun, path: str | pathlib.Path, title: str = "Filter review",
                      base: str | pathlib.Path | None = None, links: Sequence[tuple[str, str]] = ()) -> None:
    """The page at `path`. Paths under `base` (the output folder; default: the page's folder's
    parent) are shown relative to it, so the page names no folder of the build machine. `links`:
    (text, relative URL) of pages next to it (the build's dataset card)."""
    stats = totals(run)
    relative = Relative(pathlib.Path(base) if base is not None else pathlib.Path(path).parent.parent)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>",
             f"<style>{_CSS}</style><script>{_JS}</script></head><body>",
             f"<h1>{_e(title)}</h1>",
             "".join(f"<p><a href='{_e(url)}'>{_e(text)}</a></p>" for text, url in links),
             "<div class='bar'><label>Reviewer <input id='reviewer' size='16' placeholder='your name'></label> ",
             "<button id='export' type='button'>Export verdicts.csv</button> ",
             "<label><input id='flagged' type='checkbox'> only trajectories with drops</label> ",
             "<span id='count'></span> <span id='status'></span></div>",
             _summary(run, stats, relative), _distributions(run)]
    for result in sorted(run.results, key=lambda r: (r.scene, r.trajectory)):
        parts.append(_trajectory(result, relative))
    parts.append("</body></html>")
    pathlib.Path(path).write_text("".join(parts), encoding="utf-8")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


class Relative:
    """Rewrites paths under a base folder (as given and resolved) in a text to paths relative to it."""

    def __init__(self, base: pathlib.Path) -> None:
        forms = {str(base), str(base.absolute()), str(base.resolve())}
        self.prefixes = sorted((f.rstrip("/") + "/" for f in forms if f not in ("", ".")), key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text)
        for prefix in self.prefixes:
            out = out.replace(prefix, "")
        return out


def _summary(run: FilterRun, stats: dict, relative: Relative) -> str:
    frames = max(int(stats["frames"]), 1)
    rows = "".join(f"<tr><td>{_e(reason)}</td><td class='num'>{count}</td><td class='num'>{100 * count / frames:.1f}%</td></tr>"
                   for reason, count in stats["frames_dropped_per_reason"].items() if count)
    failed = "".join(f"<li>{_e(f.scene)} / {_e(f.trajectory)} ({_e(f.stage)}): {_e(relative(f.reason))}</li>"
                     for f in run.failed)
    return (f"<h2>Totals</h2><p>{stats['trajectories_filtered']} trajectories filtered, "
            f"{stats['trajectories_failed']} failed; {stats['frames']} frames: "
            f"<span class='keep'>{stats['frames_kept']} kept</span>, "
            f"<span class='drop'>{stats['frames_dropped']} dropped</span>. "
            f"Verdicts applied: {stats['verdicts_applied']} ({stats['verdicts_changed']} changed the filter's decision).</p>"
            "<table id='totals'><tr><th>reason</th><th>frames dropped</th><th>share</th></tr>"
            f"{rows or '<tr><td colspan=3>nothing dropped</td></tr>'}</table>"
            + (f"<h3>Failed trajectories</h3><ul id='failed'>{failed}</ul>" if failed else ""))


def _distributions(run: FilterRun) -> str:
    """One small histogram per score over every frame of the run, kept and dropped frames as two
    filled outlines on a log count axis (inline SVG, drawn directly: the matplotlib figure this
    replaced cost about 1 s of the build, most of it laying out tick labels)."""
    if not run.results:
        return ""
    frames = pd.concat([r.frames for r in run.results], ignore_index=True)
    kept = frames["kept"].to_numpy(bool)
    charts = [_svg_histogram(name, unit, frames[name].to_numpy(dtype=float), kept) for name, unit in DISTRIBUTIONS]
    return "<h2>Score distributions (frames)</h2><div class='plots' id='distributions'>" + "".join(charts) + "</div>"


def _svg_histogram(name: str, unit: str, values: np.ndarray, kept: np.ndarray, bins: int = 40) -> str:
    """A histogram of the finite `values`, kept (green) and dropped (red) frames as filled step
    outlines over a log10 count axis whose floor is 0.8 (a bin of one frame stays visible). The
    chart's data-kept / data-dropped attributes hold the frames it counts."""
    width, height, left, bottom, top_pad = 380.0, 150.0, 34.0, 22.0, 20.0
    plot_w, plot_h = width - left - 6, height - bottom - top_pad
    finite = np.isfinite(values)
    classes = ((kept, "#1a7f37", "kept"), (~kept, "#c62828", "dropped"))
    counted = {label: int((finite & chosen).sum()) for chosen, _, label in classes}
    parts = [f"<svg class='chart hist' data-score='{_e(name)}' data-kept='{counted['kept']}' "
             f"data-dropped='{counted['dropped']}' viewBox='0 0 {width:.0f} {height:.0f}' width='{width:.0f}' "
             f"height='{height:.0f}' role='img'><title>{_e(name)} ({_e(unit)})</title>",
             f"<text x='{width / 2:.0f}' y='13' font-size='12' text-anchor='middle'>{_e(name)} ({_e(unit)})</text>",
             f"<rect x='{left:.0f}' y='{top_pad:.0f}' width='{plot_w:.0f}' height='{plot_h:.0f}' fill='#fafafa' "
             "stroke='#ccc'/>"]
    if not finite.any():
        parts.append(f"<text x='{left + plot_w / 2:.0f}' y='{top_pad + plot_h / 2:.0f}' font-size='11' "
                     "text-anchor='middle' fill='#777'>no finite values</text>")
        return "".join(parts) + "</svg>"
    edges = np.histogram_bin_edges(values[finite], bins=bins)
    counts = {label: np.histogram(values[finite & chosen], edges)[0] for chosen, _, label in classes}
    floor = np.log10(0.8)
    ceiling = np.log10(max(1, max(int(c.max()) for c in counts.values())) * 1.25)
    lo, hi = float(edges[0]), float(edges[-1])
    span = max(hi - lo, 1e-12)

    def x(v: float) -> float:
        return left + plot_w * (v - lo) / span

    def y(count: float) -> float:
        return top_pad + plot_h * (1 - (np.log10(max(count, 0.8)) - floor) / (ceiling - floor))

    for power in range(int(np.floor(ceiling)) + 1):  # count gridlines at 1, 10, 100, ...
        gy = y(10.0**power)
        parts.append(f"<line x1='{left:.0f}' x2='{left + plot_w:.0f}' y1='{gy:.1f}' y2='{gy:.1f}' stroke='#e4e4e4'/>"
                     f"<text x='{left - 3:.0f}' y='{gy + 3:.1f}' font-size='9' text-anchor='end' fill='#555'>"
                     f"{10**power:g}</text>")
    for _chosen, colour, label in classes:
        c = counts[label]
        if not c.any():
            continue
        points = [(lo, 0.0)]
        for k, count in enumerate(c):  # the step outline: across each bin at its count
            points += [(float(edges[k]), float(count)), (float(edges[k + 1]), float(count))]
        points.append((hi, 0.0))
        parts.append(f"<polygon fill='{colour}' fill-opacity='0.55' stroke='{colour}' stroke-width='0.8' points='"
                     + " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in points)
                     + f"'><title>{label}: {counted[label]} frames</title></polygon>")
    for v, anchor in ((lo, "start"), ((lo + hi) / 2, "middle"), (hi, "end")):
        parts.append(f"<text x='{x(v):.1f}' y='{height - 6:.0f}' font-size='9' text-anchor='{anchor}' fill='#555'>"
                     f"{v:.3g}</text>")
    legend = "".join(f"<tspan fill='{colour}'>{label} {counted[label]} </tspan>" for _c, colour, label in classes)
    parts.append(f"<text x='{left + plot_w - 4:.0f}' y='{top_pad + 11:.0f}' font-size='9' text-anchor='end'>"
                 f"{legend}</text>")
    return "".join(parts) + "</svg>"


def _trajectory(result: TrajectoryFilter, relative: Relative) -> str:
    frames = result.frames
    dropped = int((~frames["kept"].astype(bool)).sum())
    head = (f"<details class='trajectory' data-dropped='{dropped}'{' open' if dropped else ''}>"
            f"<summary>{_e(result.scene)} / {_e(result.trajectory)} — {len(frames)} frames, "
            f"<span class='drop'>{dropped} dropped</span>, {len(result.segments)} segments</summary>"
            f"<p>{_e(relative(result.folder))}</p>")
    return head + _timeline(result) + _plots(result) + _thumbnails(result) + _segment_table(result) + "</details>"


def _timeline(result: TrajectoryFilter) -> str:
    n = max(len(result.frames), 1)
    rects = []
    for s in result.segments:
        colour = "#1a7f37" if s.verdict is Verdict.KEEP else "#c62828"
        tip = f"{s.segment_id}: {s.verdict.value} {', '.join(s.reasons)}"
        rects.append(f"<rect x='{1000 * s.start / n:.2f}' y='0' width='{1000 * s.frames / n:.2f}' height='18' "
                     f"fill='{colour}'><title>{_e(tip)}</title></rect>")
    return ("<svg class='timeline' viewBox='0 0 1000 18' preserveAspectRatio='none' width='100%' height='18'>"
            + "".join(rects) + "</svg>")


def _plots(result: TrajectoryFilter) -> str:
    """Speed and jitter over time as two small inline SVG charts (dropped spans shaded); drawn
    directly, as a figure per trajectory through matplotlib cost ~0.3 s each."""
    f = result.frames
    t = f["time"].to_numpy(float)
    series = ((("speed", "m/s", "#1f77b4"), ("jitter_translation", "m/s", "#ff7f0e")),
              (("angular_speed", "deg/s", "#1f77b4"), ("jitter_rotation", "deg/s", "#ff7f0e")))
    return "<div class='plots'>" + "".join(_svg_chart(t, f, pair, result) for pair in series) + "</div>"


def _svg_chart(t: np.ndarray, frames: pd.DataFrame, pair, result: TrajectoryFilter) -> str:
    width, height, pad = 560.0, 150.0, 4.0
    values = {name: frames[name].to_numpy(float) for name, _, _ in pair}
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    span = max(float(t[-1] - t[0]), 1e-9) if len(t) else 1.0

    def x(time: float) -> float:
        return pad + (width - 2 * pad) * (time - t[0]) / span

    parts = [f"<svg class='chart' viewBox='0 0 {width:.0f} {height + 30:.0f}' width='{width:.0f}' "
             f"height='{height + 30:.0f}' role='img'>",
             f"<rect x='0' y='0' width='{width:.0f}' height='{height:.0f}' fill='#fafafa' stroke='#ddd'/>"]
    for s in result.segments:
        if s.verdict is Verdict.DROP:
            x0, x1 = x(t[s.start]), x(t[min(s.end, len(t)) - 1])
            parts.append(f"<rect x='{x0:.1f}' y='0' width='{max(x1 - x0, 1.0):.1f}' height='{height:.0f}' "
                         "fill='#c62828' fill-opacity='0.15'/>")
    legend = []
    for k, (name, unit, colour) in enumerate(pair):
        v = values[name]
        ok = np.isfinite(v)
        points = " ".join(f"{x(ti):.1f},{height - pad - (height - 2 * pad) * vi / top:.1f}" for ti, vi in zip(t[ok], v[ok]))
        parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.2' points='{points}'/>")
        legend.append(f"<text x='{8 + 260 * k}' y='{height + 20:.0f}' font-size='11' fill='{colour}'>"
                      f"{_e(name)} ({_e(unit)}), max {np.nanmax(v) if ok.any() else float('nan'):.3g}</text>")
    parts.append(f"<text x='{width - 8:.0f}' y='14' font-size='10' text-anchor='end' fill='#555'>"
                 f"top {top:.3g}; {t[-1] - t[0]:.1f} s</text>")
    return "".join(parts + legend) + "</svg>"


def _thumbnails(result: TrajectoryFilter) -> str:
    if not result.thumbnails:
        return ""
    flagged = len(flagged_frames(result))
    items = []
    for i, data in result.thumbnails:
        reasons = ", ".join(result.frames["reasons"].iloc[i])
        items.append(f"<figure data-frame='{i}'><img alt='frame {i}' src='data:image/jpeg;base64,"
                     f"{base64.b64encode(data).decode()}'><figcaption>frame {i}: {_e(reasons)}</figcaption></figure>")
    note = f" ({len(result.thumbnails)} of {flagged})" if len(result.thumbnails) < flagged else ""
    return f"<p>Flagged frames{note}:</p><div class='thumbs'>{''.join(items)}</div>"


def _segment_table(result: TrajectoryFilter) -> str:
    rows = []
    for s in result.segments:
        preset = s.verdict.value if s.reviewed else ""
        options = "".join(f"<option value='{v}'{' selected' if v == preset else ''}>{label}</option>"
                          for v, label in (("", "—"), ("keep", "keep"), ("drop", "drop")))
        rows.append(f"<tr class='segment' data-segment='{_e(s.segment_id)}' data-auto='{s.auto_verdict.value}' "
                    f"data-preset='{preset}' data-reviewer='{_e(s.reviewer)}'>"
                    f"<td>{_e(s.segment_id)}</td><td class='num'>{s.start}</td><td class='num'>{s.end}</td>"
                    f"<td class='{s.verdict.value}'>{s.verdict.value}</td><td>{_e(', '.join(s.reasons))}</td>"
                    f"<td><select aria-label='verdict'>{options}</select></td>"
                    f"<td><input class='note' size='24' value='{_e(s.note)}'></td></tr>")
    return ("<table class='segments'><tr><th>segment</th><th>start</th><th>end</th><th>decision</th><th>reasons</th>"
            "<th>your verdict</th><th>note</th></tr>" + "".join(rows) + "</table>")
