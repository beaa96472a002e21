"""The build's stages wired on Ray: capture -> filter -> clips (window, palindrome, annotate, encode)
-> shards, plus manifest.parquet, stats.json, config.yaml, the filter report and the dataset card
(report/dataset.html; formats.md 2).

Each staged trajectory is filtered and cut into clips by one Ray task, in one pass over its frames:
a frame is decoded once, scored by the filter and encoded as the clips' JPEG.
On a cluster whose nodes share no disk (`storage: node_local`, formats.md 2.1) that task runs on
the node that staged the trajectory and sends its results back through Ray; a staged copy lost with
its node is captured again.

Resume and reproducibility:
- capture skips trajectories already staged with the same fingerprint (capture/staging.py);
- each trajectory's clips go to DIR/.work/clips/<scene>/<trajectory>.samples.tar (atomic; the shard
  members themselves), its filter frames to .frames.parquet, next to a .json with the segments, the
  fingerprint of everything they depend on (staged copy, split, seed, its verdicts, the filter, clip
  and action settings) and the two files' SHA-256; a matching, intact cache is reused, anything else
  recomputed (pipelines/trajectory.py). Caches are data only: reading one runs no code;
- shards are rewritten on every run from the caches, trajectories in a seeded order, with a fixed
  mtime: the same inputs and seed give byte-identical shards, however often the build was stopped.
Every input trajectory ends in DIR/trajectories.parquet and stats.json: failed (stage + reason),
or filtered with its clip count.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import pathlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from pyarrow import ArrowException
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from annotate.actions import CHANNELS
from capture.inputs import Inputs
from capture.nodes import live_nodes, ray_node
from capture.records import CaptureResult
from capture.run import CaptureOutcome, capture_again
from capture.run import run as run_capture
from capture.run import write_report as write_capture_report
from common.config import dump_yaml
from common.files import atomic_path
from common.raymap import ray_map
from datasets.samples import npy_load
from datasets.shards import write_shards
from filter.report import write_report as write_filter_report
from filter.run import Failed, FilterRun, totals
from filter.segments import check_known
from filter.verdicts import VerdictError, read_verdicts
from pipelines.card import PAGE as CARD_PAGE
from pipelines.card import card_numbers, combination, write_card
from pipelines.config import BuildConfig
from pipelines.publish import PublishError, check_publish, publish
from pipelines.storage import check_shared, shared_storage_message
from pipelines.trajectory import (CacheError, TrajectoryItem, cache_path, held_cache, read_cache, store_cache,
                                  trajectory_task)

SPLITS = ("train", "val")
log = logging.getLogger(__name__)


class BuildError(Exception):
    """The build cannot go on (bad verdicts file, unknown verdict segment)."""


def scene_split(scene: str, scenes: list[str], config: BuildConfig) -> str:
    """Whole scenes go to a split: a seeded order of the scene names, the first val_fraction to val
    (at least one when there are two or more scenes and val_fraction > 0)."""
    order = sorted(scenes, key=lambda s: hashlib.sha256(f"{config.seed}:{s}".encode()).hexdigest())
    n_val = int(round(config.splits.val_fraction * len(order)))
    if config.splits.val_fraction > 0 and len(order) > 1:
        n_val = max(1, min(n_val, len(order) - 1))
    return "val" if scene in order[:n_val] else "train"


def build(config: BuildConfig, out: pathlib.Path, progress: bool = True, inputs: Inputs | None = None) -> dict[str, Any]:
    """Run every stage into `out`; Ray must be initialised. Returns stats.json's content. `inputs`:
    capture.run.discover_inputs' result, when the caller checked the inputs before starting Ray."""
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(config.staging) if config.staging else out / "staging"
    work = out / ".work" / "clips"
    folders = [out] if staging.resolve().is_relative_to(out.resolve()) else [out, staging]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    storage = _storage_mode(config.storage, folders)  # before any capture
    if config.publish:
        try:
            check_publish(config.publish)
        except PublishError as exc:
            raise BuildError(str(exc)) from exc
    (out / "config.yaml").write_text(dump_yaml(config))
    verdicts_path = out / "verdicts.csv"
    try:
        verdicts = read_verdicts(verdicts_path) if verdicts_path.is_file() else {}
    except (VerdictError, OSError) as exc:
        raise BuildError(str(exc)) from exc

    seconds: dict[str, float] = {}
    mark = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        seconds[stage] = round(now - mark, 3)
        mark = now

    node_local = storage["mode"] == "node_local"
    earlier = _earlier_captures(out / "capture_report.parquet")
    try:
        capture_run = run_capture(config.capture, staging, progress=progress, inputs=inputs, node_local=node_local)
    except ValueError as exc:  # settings the cluster cannot satisfy, inputs that cannot be named or found
        raise BuildError(str(exc)) from exc
    lap("capture")
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in capture_run.results:
        if (r.scene, r.trajectory) in rows:  # capture/inputs.py names every input once: a bug if not
            raise BuildError(f"internal error: two inputs named {r.scene}/{r.trajectory} ({r.source}, "
                             f"{rows[(r.scene, r.trajectory)]['source']})")
        rows[(r.scene, r.trajectory)] = {
            "scene": r.scene, "trajectory": r.trajectory, "source": r.source, "capture": r.status,
            "stage": "capture" if r.status == "failed" else "", "reason": r.reason if r.status == "failed" else "",
            "frames": r.frames, "kept_frames": 0, "clips": 0, "split": "", "node": r.node,
            "recaptured": _lost_since(r, earlier)}
    scenes = sorted({r.scene for r in capture_run.results if r.status != "failed" and r.path})
    try:
        captured, items, outcomes = _filter_all(config, staging, work, capture_run, verdicts, rows, scenes, node_local,
                                                progress)
    except ValueError as exc:
        raise BuildError(str(exc)) from exc
    write_capture_report(captured, out / "capture_report.parquet")
    lap("filter+clips")
    results = tuple(o["filter"] for o in outcomes if "filter" in o)
    run = FilterRun(results, tuple(o["failed"] for o in outcomes if "failed" in o), len(verdicts),
                    sum(o.get("changed", 0) for o in outcomes))
    try:
        check_known(verdicts, {s.segment_id for r in results for s in r.segments}, str(verdicts_path))
    except ValueError as exc:
        raise BuildError(str(exc)) from exc
    capture_failed = tuple(Failed(r.scene, r.trajectory, r.reason, "capture") for r in captured if r.status == "failed")
    write_filter_report(replace(run, failed=capture_failed + run.failed), out / "report", base=out,
                        links=(("Dataset card", CARD_PAGE),))
    lap("report")
    for failed in run.failed:
        rows[(failed.scene, failed.trajectory)].update(stage="filter", reason=failed.reason)
    summaries = [o["summary"] for o in outcomes if "summary" in o]
    for item, outcome in zip(items, outcomes):
        row = rows[(item.scene, item.trajectory)]
        row["split"] = item.split
        if "filter" in outcome:
            row["kept_frames"] = int(outcome["filter"].frames["kept"].sum())
        summary = outcome.get("summary", {})
        if "error" in summary:
            row.update(stage="clips", reason=summary["error"])
        elif summary:
            row["clips"] = summary["clips"]

    try:
        manifest, shard_counts, combinations = _write_all_shards(config, out, work, summaries)
    except (CacheError, ValueError) as exc:
        raise BuildError(str(exc)) from exc
    lap("shards")
    with atomic_path(out / "manifest.parquet") as tmp:
        manifest.to_parquet(tmp, index=False)
    table = pd.DataFrame(list(rows.values()))
    with atomic_path(out / "trajectories.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    stats = _stats(table, run, manifest, shard_counts, summaries, time.perf_counter() - start)
    stats["card"] = card_numbers(manifest, summaries, combinations, stats, table[table["stage"] != ""])
    write_card(stats["card"], summaries, out / "report" / CARD_PAGE)
    lap("card")
    stats["stage_seconds"] = seconds
    stats["storage"] = storage
    stats["skipped"] = [{"path": k.path, "reason": k.reason} for k in capture_run.skipped]
    with atomic_path(out / "stats.json") as tmp:
        tmp.write_text(json.dumps(stats, indent=1, sort_keys=True))
    if config.publish:
        try:
            log.warning("published %d files to %s", len(publish(out, config.publish)), config.publish)
        except PublishError as exc:
            raise BuildError(str(exc)) from exc
    return stats


def _storage_mode(setting: str, folders: list[pathlib.Path]) -> dict[str, Any]:
    """Which storage the build uses (stats.json's `storage`): `shared` when every node sees OUT as
    the driver does (refused, naming the nodes, when `storage: shared` is asked for and they do not),
    `node_local` when asked for or when `auto` finds nodes that do not."""
    nodes = len(live_nodes())
    if setting == "node_local":
        log.warning("storage: node_local (asked for): staged frames stay on the node that captured them; "
                    "data moves through Ray")
        return {"mode": "node_local", "setting": setting, "nodes": nodes, "not_shared": []}
    problems = check_shared(folders)  # every node writes and reads a probe in OUT (and staging)
    if problems and setting == "shared":
        raise BuildError(shared_storage_message(problems))
    if problems:
        log.warning("storage: node_local: %s; staged frames stay on the node that captured them and data moves "
                    "through Ray (set storage: shared to refuse instead)", "; ".join(problems))
        return {"mode": "node_local", "setting": setting, "nodes": nodes, "not_shared": problems}
    return {"mode": "shared", "setting": setting, "nodes": nodes, "not_shared": []}


def _earlier_captures(report: pathlib.Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(scene, trajectory) -> (fingerprint, node) of what an earlier run of this build had staged."""
    try:
        table = pd.read_parquet(report, columns=["scene", "trajectory", "status", "fingerprint", "node"])
    except (OSError, ValueError, KeyError, ArrowException):  # none yet, or written before these columns
        return {}
    table = table[table["status"].isin(["captured", "cached"]) & (table["fingerprint"] != "")]
    return {(r.scene, r.trajectory): (r.fingerprint, r.node) for r in table.itertuples()}


def _lost_since(result: CaptureResult, earlier: dict[tuple[str, str], tuple[str, str]]) -> str:
    """Why a trajectory an earlier run had staged, unchanged, was captured again ("" when it was not)."""
    before = earlier.get((result.scene, result.trajectory))
    if result.status != "captured" or before is None or before[0] != result.fingerprint:
        return ""
    where = f" on node {before[1][:12]}" if before[1] else ""
    return f"an earlier run's staged copy{where} was not found on any live node"


def _filter_all(config: BuildConfig, staging: pathlib.Path, work: pathlib.Path, capture_run: CaptureOutcome,
                verdicts: dict, rows: dict[tuple[str, str], dict[str, Any]], scenes: list[str], node_local: bool,
                progress: bool) -> tuple[list[CaptureResult], list[TrajectoryItem], list[dict[str, Any]]]:
    """Every staged trajectory filtered and cut into clips where it is staged; one whose staged copy
    is gone (its node left the cluster) is captured again, up to retry.max_attempts rounds, then
    failed. Returns the final capture results, the items and their outcomes, in input order."""
    here = ray_node() if node_local else ""
    latest = {(r.scene, r.trajectory): r for r in capture_run.results}
    outcomes: dict[tuple[str, str], dict[str, Any]] = {}
    items: dict[tuple[str, str], TrajectoryItem] = {}
    todo = [r for r in capture_run.results if r.status != "failed" and r.path]
    for attempt in range(config.capture.capture.retry.max_attempts + 1):
        batch = [TrajectoryItem(r.scene, r.trajectory, pathlib.Path(str(r.path)), scene_split(r.scene, scenes, config),
                                here, held_cache(work, r.scene, r.trajectory) if node_local else "") for r in todo]
        options = [{"scheduling_strategy": NodeAffinitySchedulingStrategy(r.node, soft=True)} if node_local and r.node
                   else {} for r in todo]
        done = ray_map(trajectory_task, batch, progress=progress, desc="filter+clips" if not attempt else "again",
                       shared={"config": config, "work": work, "verdicts": verdicts}, options=options,
                       each=functools.partial(_keep_cache, work))
        missing = {}
        for item, outcome in zip(batch, done):
            key = (item.scene, item.trajectory)
            items[key] = item
            if "missing" in outcome:
                missing[key] = outcome["missing"]
            else:
                outcomes[key] = outcome
        if not missing:
            break
        if attempt == config.capture.capture.retry.max_attempts:
            for key, why in missing.items():
                reason = f"staged copy lost {attempt + 1} times, last: {why}"
                latest[key] = replace(latest[key], status="failed", reason=reason)
                rows[key].update(capture="failed", stage="capture", reason=reason)
                outcomes[key] = {}
            break
        log.warning("%d staged trajectories are gone (a node left the cluster?): capturing them again", len(missing))
        again = capture_again(config.capture, staging, capture_run, [f"{s}/{t}" for s, t in missing], node_local,
                              progress)
        todo = []
        for r in again:
            key = (r.scene, r.trajectory)
            latest[key] = r
            rows[key].update(capture=r.status, frames=r.frames, node=r.node,
                             recaptured=f"{missing[key]}; captured again" + (f" on node {r.node[:12]}" if r.node else ""))
            if r.status == "failed" or not r.path:
                rows[key].update(stage="capture", reason=r.reason)
                outcomes[key] = {}
            else:
                todo.append(r)
    order = [key for key in latest if key in items]
    return list(latest.values()), [items[k] for k in order], [outcomes[k] for k in order]


def _keep_cache(work: pathlib.Path, outcome: dict[str, Any]) -> dict[str, Any]:
    """A task's outcome as it arrives: a cache it sent from another node stored here, then dropped."""
    blobs = outcome.pop("cache", None)
    if blobs is not None:
        store_cache(work, outcome["summary"]["scene"], outcome["summary"]["trajectory"], blobs)
    return outcome


def _write_all_shards(config: BuildConfig, out: pathlib.Path, work: pathlib.Path,
                      summaries: list[dict[str, Any]]) -> tuple[pd.DataFrame, dict[str, int], Counter]:
    """The shards of both splits, their manifest, the shard count per split and the number of
    transitions per active-channel combination over every written sample (for the dataset card)."""
    rows: list[dict[str, Any]] = []
    shard_counts = {}
    combinations: Counter = Counter()
    for split in SPLITS:
        chosen = [s for s in summaries if s.get("split") == split and "error" not in s and s["clips"]]
        chosen.sort(key=lambda s: hashlib.sha256(f"{config.seed}:{s['scene']}:{s['trajectory']}".encode()).hexdigest())
        metas: dict[str, dict[str, Any]] = {}

        def samples(chosen=chosen, metas=metas) -> Iterator[dict[str, Any]]:
            for summary in chosen:
                for sample in read_cache(cache_path(work, summary["scene"], summary["trajectory"])):
                    metas[sample["__key__"]] = {"meta": json.loads(sample["json"]),  # no actions: plain video
                                                "actions": npy_load(sample["actions.npy"]) if "actions.npy" in sample
                                                else None}
                    yield sample

        written = write_shards(samples(), out / "shards", split, config.shards)
        shard_counts[split] = len({w.shard for w in written})
        for w in written:
            meta, actions = metas[w.key]["meta"], metas[w.key]["actions"]
            source = meta["source_frames"]
            counts = [0] * len(CHANNELS) if actions is None else (actions > 0).sum(axis=0).astype(int).tolist()
            rows.append({"key": w.key, "shard": f"shards/{w.shard}", "split": split, "kind": meta["kind"],
                         "scene": meta["scene"],
                         "trajectory": meta["trajectory"], "clip": meta["clip"], "n_frames": len(source),
                         "palindrome": meta["palindrome"], "fps": meta["fps"], "width": meta["width"],
                         "height": meta["height"], "action_counts": counts,
                         "source_start": int(min(source)), "source_end": int(max(source)) + 1, "bytes": w.bytes,
                         "turn_index": meta["turn_index"], "translation_scale": meta["translation_scale"],
                         "captions": [c["text"] for c in meta["captions"]],
                         "revisits": [r["kind"] for r in meta["revisits"]]})
            if actions is not None:
                combinations.update(combination(actions))
    columns = ["key", "shard", "split", "kind", "scene", "trajectory", "clip", "n_frames", "palindrome", "fps", "width",
               "height", "action_counts", "source_start", "source_end", "bytes", "turn_index", "translation_scale",
               "captions", "revisits"]
    return pd.DataFrame(rows, columns=columns), shard_counts, combinations


def _stats(table: pd.DataFrame, run, manifest: pd.DataFrame, shard_counts: dict[str, int],
           summaries: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    filtered = totals(run)
    failed = table[table["stage"] != ""]
    return {
        "trajectories": {"in": int(len(table)), "captured": int((table["capture"] == "captured").sum()),
                         "cached": int((table["capture"] == "cached").sum()), "failed": int(len(failed)),
                         "failed_by_stage": failed["stage"].value_counts().to_dict(),
                         "with_clips": int((table["clips"] > 0).sum()),
                         "recaptured": int((table["recaptured"] != "").sum()),
                         "without_clips": int(((table["clips"] == 0) & (table["stage"] == "")).sum())},
        "frames": {"kept": filtered["frames_kept"], "dropped": filtered["frames_dropped"],
                   "dropped_per_reason": filtered["frames_dropped_per_reason"]},
        "verdicts": {"applied": filtered["verdicts_applied"], "changed": filtered["verdicts_changed"]},
        "samples": {split: int((manifest["split"] == split).sum()) for split in SPLITS},
        "samples_by_kind": {kind: int((manifest["kind"] == kind).sum()) for kind in ("posed", "video")},
        "palindromes": int(manifest["palindrome"].sum()) if len(manifest) else 0,
        "shards": shard_counts,
        "bytes": int(manifest["bytes"].sum()) if len(manifest) else 0,
        "action_counts": dict(zip(CHANNELS, np.sum(np.array(manifest["action_counts"].tolist(), dtype=np.int64),
                                                   axis=0).tolist())) if len(manifest) else {},
        "clip_caches_reused": sum(bool(s.get("cached")) for s in summaries),
        "wall_seconds": round(seconds, 2),
    }
