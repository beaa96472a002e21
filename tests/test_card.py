"""The dataset card of the demo build: its numbers (stats.json `card`) agree with the manifest, the
trajectories table and the shards themselves, and its figures and tables show those numbers."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter

import cv2
import numpy as np
import pandas as pd

from annotate.actions import CHANNELS
from datasets.samples import npy_load
from pipelines.card import TOP_COMBINATIONS, combination, figures
from tests.integrity_helpers import shard_members


def _demo(demo_build):
    out, done = demo_build
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((out / "stats.json").read_text())
    return out, stats, stats["card"], pd.read_parquet(out / "manifest.parquet")


def test_the_card_numbers_agree_with_the_manifest_and_the_shards(demo_build):
    out, stats, card, manifest = _demo(demo_build)
    assert card["clips"]["count"] == len(manifest) == sum(stats["samples"].values())
    assert card["clips"]["transitions"] == int((manifest["n_frames"] - 1).sum())
    counts = np.sum(np.array(manifest["action_counts"].tolist()), axis=0)
    assert {n: card["channels"][n]["transitions"] for n in CHANNELS} == dict(zip(CHANNELS, counts.tolist()))
    assert {n: card["channels"][n]["transitions"] for n in CHANNELS} == stats["action_counts"]
    lengths = manifest["n_frames"] / manifest["fps"]
    hist = card["clips"]["length_s"]
    assert np.histogram(lengths, bins=hist["edges"])[0].tolist() == hist["counts"]
    table = pd.read_parquet(out / "trajectories.parquet")
    kept = table[table["stage"] == ""]
    assert card["videos"]["count"] == len(kept)
    assert card["videos"]["seconds"] == sum(kept["frames"]) / 30.0  # the demo captures at 30 fps
    assert np.histogram(kept["frames"] / 30.0, bins=card["videos"]["duration_s"]["edges"])[0].tolist() == \
        card["videos"]["duration_s"]["counts"]
    assert card["palindromes"]["count"] == int(manifest["palindrome"].sum()) == stats["palindromes"]
    assert card["splits"] == {s: {"scenes": sorted(set(g["scene"])), "samples": len(g)} for s, g in manifest.groupby("split")}
    assert card["filter"]["frames_dropped_per_reason"] == {k: v for k, v in stats["frames"]["dropped_per_reason"].items() if v}
    combos: Counter = Counter()
    for members in shard_members(out).values():
        combos.update(combination(npy_load(members["actions.npy"])))
    ranked = sorted(combos.items(), key=lambda kv: (-kv[1], kv[0]))
    assert [(c["channels"], c["transitions"]) for c in card["combinations"]["top"]] == ranked[:TOP_COMBINATIONS]
    assert card["combinations"]["other"]["transitions"] == sum(n for _, n in ranked[TOP_COMBINATIONS:])
    assert card["combinations"]["distinct"] == len(combos)
    assert card["captions"]["clips_with"] == int(sum(len(c) > 0 for c in manifest["captions"])) == len(manifest)
    assert card["captions"]["segments_by_source"] == {"standin": len(kept)}  # 5 s videos: one segment each


def test_the_figures_and_tables_show_the_card_numbers(demo_build):
    out, stats, card, manifest = _demo(demo_build)
    plots = dict(figures(card))
    bars = [p.get_height() for p in plots["Video durations"].axes[0].patches]
    assert bars == card["videos"]["duration_s"]["counts"]
    bars = [p.get_height() for p in plots["Clip lengths"].axes[0].patches]
    assert bars == card["clips"]["length_s"]["counts"]
    bars = [p.get_height() for p in plots["Action channels"].axes[0].patches]
    assert bars == [card["channels"][n]["share"] for n in CHANNELS]
    bars = [p.get_width() for p in plots["Action combinations"].axes[0].patches]
    assert bars == [c["share"] for c in card["combinations"]["top"]]
    bars = [p.get_width() for p in plots["Filter drops"].axes[0].patches]
    assert bars == list(card["filter"]["frames_dropped_per_reason"].values())

    page = (out / "report" / "dataset.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == len(plots)
    for data in images:
        image = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] > 200
    channels = re.search(r"<table data-numbers='channels'>(.*?)</table>", page).group(1)
    rows = re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td><td>([\d.]+)</td></tr>", channels)
    assert [(n, int(t)) for n, t, _ in rows] == [(n, card["channels"][n]["transitions"]) for n in CHANNELS]
    assert f"{card['clips']['count']} clips" in page and "corridor_0002" in page
    assert page.count("A corridor (corridor_0002). In view: ") == 2  # each of its two videos' caption
    assert "href='dataset.html'" in (out / "report" / "index.html").read_text()
