"""Pair two eval runs on the same clips: `python -m training.eval.compare A/metrics.json B/metrics.json`.

For each run's `--method` (default model), the per-clip PSNR difference A − B over all clips and
over the revisit frames (the last frame of out-and-back clips, where the camera is back at the
first pose), and the per-clip RPE (translation, rotation) and parallax where both runs recovered paths
(the parallax over the clips both measured), as
mean ± SE and z = mean / SE; `--by-group` adds the PSNR, RPE-t and parallax differences per motion
group (single rotations, single translations, mixes, walks that come back). Used to compare, e.g., the student with compressed
memory against window-only (`--memory-pool 0`), or the student against the teacher. The runs must
have evaluated the same clips (same `clip_ids`, same frame count): anything else is an error.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from common.cli import add_dry_run, dry_run
from training.eval.scripts import GROUPS, script_group
from training.eval.stats import mean_se, with_z
from training.eval.table import strict_json


class CompareError(ValueError):
    pass


def _values(per_clip: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Per-clip values as float64, a clip without one (None in metrics.json) as NaN."""
    return np.array([math.nan if x is None else x for x in per_clip], dtype=np.float64)


def _paired(a: Sequence[float | None] | np.ndarray, b: Sequence[float | None] | np.ndarray) -> dict[str, float]:
    """A − B over the clips both runs have a value for."""
    va, vb = _values(a), _values(b)
    both = np.isfinite(va) & np.isfinite(vb)
    va, vb = va[both], vb[both]
    return {"a": float(va.mean()) if len(va) else math.nan, "b": float(vb.mean()) if len(vb) else math.nan,
            **with_z(mean_se(va - vb))}


def compare(a: Mapping[str, Any], b: Mapping[str, Any], method_a: str = "model", method_b: str = "model",
            names: tuple[str, str] = ("A", "B")) -> dict[str, Any]:
    """Paired differences of two metrics.json reports (see the module docstring)."""
    for report, name, method in ((a, names[0], method_a), (b, names[1], method_b)):
        if "clip_ids" not in report or "psnr_per_clip" not in report.get("methods", {}).get(method, {}):
            raise CompareError(f"{name}: no per-clip PSNR of method {method!r} (a metrics.json of "
                               f"training.eval lists methods {sorted(report.get('methods', {}))})")
    if a["clip_ids"] != b["clip_ids"]:
        raise CompareError(f"{names[0]} and {names[1]} evaluated different clips "
                           f"({len(a['clip_ids'])} vs {len(b['clip_ids'])}, or another order)")
    if a["sampler"]["frames"] != b["sampler"]["frames"]:
        raise CompareError(f"{names[0]} has {a['sampler']['frames']} frames per clip, {names[1]} "
                           f"{b['sampler']['frames']}")
    psnr_a, psnr_b = (np.asarray(r["methods"][m]["psnr_per_clip"]) for r, m in ((a, method_a), (b, method_b)))
    out: dict[str, Any] = {"psnr_db": _paired(psnr_a, psnr_b)}
    group_of = np.array([script_group(clip.rsplit("/", 1)[-1]) for clip in a["clip_ids"]])
    out["psnr_db_by_group"] = {g: _paired(psnr_a[group_of == g], psnr_b[group_of == g])
                               for g in GROUPS if (group_of == g).any()}
    if a.get("revisit") and b.get("revisit"):
        out["revisit_psnr_db"] = _paired(a["revisit"][method_a]["per_clip"], b["revisit"][method_b]["per_clip"])
    paths_a = a.get("paths", {}).get("methods", {}).get(method_a, {})
    paths_b = b.get("paths", {}).get("methods", {}).get(method_b, {})
    for key in ("rpe_t", "rpe_r", "parallax_px"):
        if f"{key}_per_clip" in paths_a and f"{key}_per_clip" in paths_b:
            va, vb = _values(paths_a[f"{key}_per_clip"]), _values(paths_b[f"{key}_per_clip"])
            out[key] = _paired(va, vb)
            out[f"{key}_by_group"] = {g: _paired(va[group_of == g], vb[group_of == g])
                                      for g in GROUPS if (group_of == g).any()}
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.eval.compare", description=__doc__.split("\n")[0])
    parser.add_argument("a", type=pathlib.Path)
    parser.add_argument("b", type=pathlib.Path)
    parser.add_argument("--method", default="model", help="method of A (model, shuffled, copy_first)")
    parser.add_argument("--method-b", help="method of B (default: --method)")
    parser.add_argument("--by-group", action="store_true",
                        help="also print the PSNR, RPE-t and parallax differences per motion group (rotation, "
                             "translation, mix, out_and_back)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = add_dry_run(parser).parse_args(argv)
    if args.dry_run:
        return dry_run(arguments=args)
    try:
        a, b = (json.loads(p.read_text()) for p in (args.a, args.b))
        result = compare(a, b, method_a=args.method, method_b=args.method_b or args.method,
                         names=(str(args.a), str(args.b)))
    except (OSError, json.JSONDecodeError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, label, unit, digits in (("psnr_db", "PSNR, all frames", "dB", 2), ("revisit_psnr_db", "PSNR, revisit frame", "dB", 2),
                                     ("rpe_t", "RPE-t", "m", 4), ("rpe_r", "RPE-r", "deg", 3),
                                     ("parallax_px", "parallax", "px", 2)):
        if key in result:
            r = result[key]
            print(f"{label:20s}: A {r['a']:.{digits}f}  B {r['b']:.{digits}f}  A-B {r['mean']:+.{digits}f} {unit} "
                  f"± {r['se']:.{digits}f} (z = {r['z']:.1f}, n = {r['n']})")
    if args.by_group:
        for key, label, unit, digits in (("psnr_db", "PSNR", "dB", 2), ("rpe_t", "RPE-t", "m", 4),
                                         ("parallax_px", "parallax", "px", 2)):
            for group, r in result.get(f"{key}_by_group", {}).items():
                print(f"  {label}, {group:13s}: A {r['a']:.{digits}f}  B {r['b']:.{digits}f}  A-B {r['mean']:+.{digits}f} "
                      f"{unit} ± {r['se']:.{digits}f} (z = {r['z']:.1f}, n = {r['n']})")
    if args.json:
        report = strict_json({"a": str(args.a), "b": str(args.b), **result})  # NaN/inf as null
        args.json.write_text(json.dumps(report, indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
