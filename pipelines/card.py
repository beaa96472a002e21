"""The dataset card: what a curator reads about a build (RELIC's Figure 2, and more).

`card_numbers` computes every figure's numbers from the build's own records (the manifest, the
trajectories' clip summaries, the per-transition action combinations the shard stage counted, and
the filter's totals); they go into stats.json under `card`. `write_card` draws the figures from those
same numbers (matplotlib, embedded as PNG) into <out>/report/dataset.html, with each figure's
numbers in a table beside it, so the page, stats.json and the manifest agree by construction.
"""

from __future__ import annotations

import base64
import html
import io
import pathlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from annotate.actions import CHANNELS, STATIC

PAGE = "dataset.html"
TOP_COMBINATIONS = 12


def combination(actions: np.ndarray) -> list[str]:
    """Each transition's active channels joined by '+' ('static' when none moves): (N, 13) -> N names."""
    active = np.asarray(actions)[:, :STATIC] > 0
    return ["+".join(CHANNELS[c] for c in np.flatnonzero(row)) or "static" for row in active]


def histogram(values: Sequence[float]) -> dict[str, list]:
    """Counts and bin edges (numpy's `auto` rule) of `values`; empty lists for no values."""
    array = np.asarray(values, dtype=np.float64)
    if not len(array):
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(array, bins="auto")
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts.astype(int).tolist()}


def card_numbers(manifest: pd.DataFrame, summaries: Sequence[Mapping[str, Any]], combinations: Counter,
                 stats: Mapping[str, Any], failed: pd.DataFrame) -> dict[str, Any]:
    """Every number the card shows. `summaries`: the trajectories' clip summaries (pipelines/trajectory.py);
    `combinations`: transitions per active-channel combination over every written sample; `stats`:
    the build's counts (stats.json: action counts, palindromes, frames dropped per reason); `failed`:
    the trajectories table's failed rows (stage, reason)."""
    ok = [s for s in summaries if "error" not in s]
    samples = len(manifest)
    transitions = int((manifest["n_frames"] - 1).sum()) if samples else 0
    counts = [int(stats["action_counts"].get(name, 0)) for name in CHANNELS]
    dropped_per_reason = stats["frames"]["dropped_per_reason"]
    total = max(sum(combinations.values()), 1)
    ranked = sorted(combinations.items(), key=lambda kv: (-kv[1], kv[0]))
    top = [{"channels": name, "transitions": int(n), "share": round(n / total, 6)} for name, n in ranked[:TOP_COMBINATIONS]]
    rest = sum(n for _, n in ranked[TOP_COMBINATIONS:])
    revisit_clips: Counter = Counter(kind for kinds in manifest["revisits"] for kind in kinds) if samples else Counter()
    with_captions = int(sum(bool(c) for c in manifest["captions"])) if samples else 0
    by_source: Counter = Counter(c["source"] for s in ok for c in s.get("captions", []))
    reasons: dict[str, dict[str, int]] = {}
    for stage, reason in zip(failed["stage"], failed["reason"]):
        kind = _reason_head(str(reason))
        reasons.setdefault(str(stage), {})[kind] = reasons.get(str(stage), {}).get(kind, 0) + 1
    return {
        "videos": {"count": len(ok), "seconds": round(sum(s["duration_s"] for s in ok), 3),
                   "duration_s": histogram([s["duration_s"] for s in ok])},
        "clips": {"count": samples, "transitions": transitions,
                  "length_s": histogram((manifest["n_frames"] / manifest["fps"]).tolist() if samples else [])},
        "channels": {name: {"transitions": n, "share": round(n / max(transitions, 1), 6)}
                     for name, n in zip(CHANNELS, counts)},
        "combinations": {"top": top, "other": {"transitions": int(rest), "share": round(rest / total, 6)},
                         "distinct": len(combinations)},
        "palindromes": {"count": int(stats["palindromes"]),
                        "share": round(int(stats["palindromes"]) / max(samples, 1), 6)},
        "revisits": {"planned": dict(sorted(Counter(k for s in ok for k in s.get("planned_revisits", [])).items())),
                     "clips_holding": dict(sorted(revisit_clips.items()))},
        "splits": {split: {"scenes": sorted(set(group["scene"])), "samples": int(len(group))}
                   for split, group in manifest.groupby("split")} if samples else {},
        "filter": {"frames_dropped_per_reason": {k: int(v) for k, v in dropped_per_reason.items() if v},
                   "trajectories_failed": reasons},
        "captions": {"clips_with": with_captions, "share": round(with_captions / max(samples, 1), 6),
                     "segments_by_source": dict(sorted(by_source.items()))},
    }


def _reason_head(reason: str) -> str:
    """A failure reason without the file path in front of it and the detail after it: the kind of failure."""
    text = reason.split(": ", 1)[1] if ": " in reason and "/" in reason.split(": ", 1)[0] else reason
    return text.split(":")[0].split(" (")[0][:80]


def figures(card: Mapping[str, Any]) -> list[tuple[str, Figure]]:
    """(title, figure) of every plot on the page, drawn from `card` (card_numbers' result) only."""
    out = []
    for key, title, xlabel in (("videos", "Video durations", "seconds"), ("clips", "Clip lengths", "seconds")):
        hist = card[key]["duration_s" if key == "videos" else "length_s"]
        fig, ax = _figure()
        if hist["counts"]:
            edges = np.asarray(hist["edges"])
            ax.bar(edges[:-1], hist["counts"], width=np.diff(edges), align="edge", color="#4a7bb7", edgecolor="white")
        ax.set(title=title, xlabel=xlabel, ylabel="count")
        out.append((title, fig))
    fig, ax = _figure(wide=True)
    shares = [card["channels"][name]["share"] for name in CHANNELS]
    ax.bar(range(len(CHANNELS)), shares, color="#4a7bb7")
    ax.set_xticks(range(len(CHANNELS)), CHANNELS, rotation=60, ha="right")
    ax.set(title="Action channels (share of transitions)", ylabel="share")
    out.append(("Action channels", fig))
    fig, ax = _figure(wide=True)
    top = card["combinations"]["top"]
    ax.barh(range(len(top)), [c["share"] for c in top], color="#7aa457")
    ax.set_yticks(range(len(top)), [c["channels"] for c in top])
    ax.invert_yaxis()
    ax.set(title="Common action combinations (share of transitions)", xlabel="share")
    out.append(("Action combinations", fig))
    drops = card["filter"]["frames_dropped_per_reason"]
    fig, ax = _figure()
    ax.barh(range(len(drops)), list(drops.values()), color="#c0504d")
    ax.set_yticks(range(len(drops)), list(drops))
    ax.invert_yaxis()
    ax.set(title="Frames dropped by the filter", xlabel="frames")
    out.append(("Filter drops", fig))
    return out


def _figure(wide: bool = False) -> tuple[Figure, Any]:
    fig = Figure(figsize=(7.5 if wide else 5.0, 3.4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode()


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], name: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table data-numbers='{_e(name)}'><tr>{head}</tr>{body}</table>"


_CSS = ("body{font-family:sans-serif;margin:1.5em;max-width:80em}.pair{display:flex;gap:1.5em;align-items:flex-start}"
        "figure{margin:0 0 1em 0}table{border-collapse:collapse;margin:.4em 0 1em}td,th{border:1px solid #ccc;"
        "padding:2px 6px;font-size:90%}section{margin-bottom:1.5em}")


def write_card(card: Mapping[str, Any], summaries: Sequence[Mapping[str, Any]], path: pathlib.Path,
               title: str = "Dataset card") -> None:
    """The page: totals, each figure with its numbers, per-split scenes, revisits and the captions."""
    plots = {name: _png(fig) for name, fig in figures(card)}
    v, c = card["videos"], card["clips"]

    def hist_rows(hist: Mapping[str, list]) -> list[tuple[str, int]]:
        return [(f"{lo:.4g}-{hi:.4g}", n) for lo, hi, n in zip(hist["edges"], hist["edges"][1:], hist["counts"])]

    def plot(name: str, table: str) -> str:
        return (f"<div class='pair'><figure><img alt='{_e(name)}' src='data:image/png;base64,{plots[name]}'>"
                f"<figcaption>{_e(name)}</figcaption></figure>{table}</div>")

    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>",
             f"<p>{v['count']} videos ({v['seconds'] / 60:.1f} min), {c['count']} clips, {c['transitions']} transitions; "
             f"palindromes {card['palindromes']['count']} ({100 * card['palindromes']['share']:.1f}%); clips with a caption "
             f"{card['captions']['clips_with']} ({100 * card['captions']['share']:.1f}%). The numbers are in stats.json "
             "under <code>card</code>. <a href='index.html'>Filter review</a></p>",
             "<section><h2>Durations</h2>",
             plot("Video durations", _table(("seconds", "videos"), hist_rows(v["duration_s"]), "video_durations")),
             plot("Clip lengths", _table(("seconds", "clips"), hist_rows(c["length_s"]), "clip_lengths")), "</section>",
             "<section><h2>Actions</h2>",
             plot("Action channels", _table(("channel", "transitions", "share"),
                                            [(n, card["channels"][n]["transitions"], f"{card['channels'][n]['share']:.4f}")
                                             for n in CHANNELS], "channels")),
             plot("Action combinations", _table(("channels", "transitions", "share"),
                                                [(t["channels"], t["transitions"], f"{t['share']:.4f}")
                                                 for t in card["combinations"]["top"]]
                                                + [("(other)", card["combinations"]["other"]["transitions"],
                                                    f"{card['combinations']['other']['share']:.4f}")], "combinations")),
             "</section>",
             "<section><h2>Revisits</h2>",
             _table(("kind", "planned in videos", "clips holding one whole"),
                    [(k, card["revisits"]["planned"].get(k, 0), card["revisits"]["clips_holding"].get(k, 0))
                     for k in sorted(set(card["revisits"]["planned"]) | set(card["revisits"]["clips_holding"]))]
                    + [("palindrome", "", card["palindromes"]["count"])], "revisits"), "</section>",
             "<section><h2>Splits</h2>",
             _table(("split", "samples", "scenes"), [(s, d["samples"], ", ".join(d["scenes"])) for s, d in card["splits"].items()],
                    "splits"), "</section>",
             "<section><h2>Filter</h2>",
             plot("Filter drops", _table(("reason", "frames dropped"), list(card["filter"]["frames_dropped_per_reason"].items()),
                                         "drops")),
             _table(("stage", "failure", "trajectories"),
                    [(st, r, n) for st, rs in card["filter"]["trajectories_failed"].items() for r, n in rs.items()], "failed"),
             "</section>", "<section><h2>Captions</h2>",
             _table(("scene", "trajectory", "segment", "seconds", "source", "caption"),
                    [(s["scene"], s["trajectory"], cap["segment"], f"{cap['start_s']:g}-{cap['end_s']:g}", cap["source"], cap["text"])
                     for s in sorted((s for s in summaries if "error" not in s), key=lambda s: (s["scene"], s["trajectory"]))
                     for cap in s.get("captions", [])], "captions"), "</section></body></html>"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
