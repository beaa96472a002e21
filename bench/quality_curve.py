"""Quality against training from one teacher run, and how far a target is.

Evaluates every snapshot of a run (`--set snapshot_every=N`: RUN/snapshots/step<N>.pt) and its final
checkpoint on the same held-out clips with training.eval, then fits the paired PSNR gain over
copy-first against training steps with a saturating power law (training/eval/curve.py; a straight
line in log steps when the points show no ceiling) and says when, at the run's own steady speed, the
fit reaches `--target` dB (issue 24's teacher target: 2).
Every argument it does not know goes to training.eval (scenes, frames, cache, workers, ...); points
already evaluated (OUT/eval_step<N>/metrics.json) are reused, so an interrupted run resumes.

    python bench/quality_curve.py RUN --out RUN/curve -- --scenes corridor_0007,room_0001 --frames 9 --no-rpe

`--follow PID` evaluates each snapshot as soon as the training process PID has written it, beside
that process on the same GPU, and tables the whole run once PID has exited: the points exist while
the run is still going, so a run cut short (a device machine taken back) keeps what it measured.

Writes OUT/curve.json, OUT/table.md and OUT/curve.png; `--refit CURVE_JSON` writes them again from
the points of a curve.json it wrote before (a finished run's, its checkpoints long gone). A snapshot of a long run is not the model a
shorter run would have ended with (the learning rate decays over the whole run, so a mid-run
snapshot trained at a higher rate and has not annealed): read the curve as the lower bound of what a
run of that length reaches.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time
from dataclasses import asdict
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench._common import machine  # noqa: E402
from training.eval.__main__ import main as eval_main  # noqa: E402
from training.eval.curve import LogLinearFit, SaturatingFit, fit_curve  # noqa: E402
from training.eval.table import cell  # noqa: E402
from training.runtime import load_checkpoint  # noqa: E402


def checkpoints(run: pathlib.Path) -> list[tuple[int, float, pathlib.Path]]:
    """(step, training seconds, path) of every snapshot and the final checkpoint, by step, one per step."""
    found: dict[int, tuple[int, float, pathlib.Path]] = {}
    for path in sorted((run / "snapshots").glob("step*.pt")) + [run / "checkpoint.pt"]:
        if not path.is_file():
            continue
        state = load_checkpoint(path)
        step = int(state["step"])
        found.setdefault(step, (step, float(state["elapsed"]), path))
    if not found:
        raise SystemExit(f"{run}: no snapshots/step*.pt and no checkpoint.pt (train with --set snapshot_every=N)")
    return [found[s] for s in sorted(found)]


def evaluate(step: int, checkpoint: pathlib.Path, out: pathlib.Path, eval_args: list[str]) -> pathlib.Path | None:
    """OUT/eval_step<N>, evaluated now unless it already was; None when training.eval failed."""
    where = out / f"eval_step{step:07d}"
    if not (where / "metrics.json").is_file():
        print(f"== step {step}: {checkpoint}", flush=True)
        if eval_main(["--checkpoint", str(checkpoint), "--out", str(where), *eval_args]) != 0:
            print(f"error: training.eval failed on {checkpoint}", file=sys.stderr)
            return None
    return where


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (Linux /proc; a zombie, exited but not yet reaped, does not)."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def follow(run: pathlib.Path, pid: int, out: pathlib.Path, eval_args: list[str], poll_s: float = 5.0) -> bool:
    """Evaluate RUN's snapshots as they appear, while process `pid` (the training) runs; then once
    more for those it wrote last. False when an evaluation failed."""
    while True:
        running = alive(pid)
        for path in sorted((run / "snapshots").glob("step*.pt")):  # written atomically: a name is a whole file
            if evaluate(int(path.stem.removeprefix("step")), path, out, eval_args) is None:
                return False
        if not running:
            return True
        time.sleep(poll_s)


def point(step: int, seconds: float, report: dict[str, Any]) -> dict[str, Any]:
    gain = report["paired"]["model-copy_first"]["psnr_db"]
    model = report["methods"]["model"]
    paths = report.get("paths", {}).get("methods", {}).get("model", {})
    return {"step": step, "seconds": seconds, "psnr": model["psnr"], "gain_over_copy_first": gain,
            "copy_first": report["methods"]["copy_first"]["psnr"], "rpe_t": paths.get("rpe_t"),
            "rpe_r": paths.get("rpe_r")}


def steps_per_minute(points: list[dict[str, Any]]) -> float:
    """The run's steady speed: between its first and last points (a compile's minute falls before the first)."""
    first, last = points[0], points[-1]
    if last["seconds"] <= first["seconds"]:
        return math.nan
    return 60.0 * (last["step"] - first["step"]) / (last["seconds"] - first["seconds"])


def table(points: list[dict[str, Any]]) -> list[str]:
    out = ["| step | minutes | PSNR dB | − copy first, paired dB | RPE-t m | RPE-r deg |", "|---|---|---|---|---|---|"]
    for p in points:
        out.append(f"| {p['step']} | {p['seconds'] / 60:.1f} | {cell(p['psnr'], 2)} | "
                   f"{cell(p['gain_over_copy_first'], 2)} | {cell(p['rpe_t'], 4)} | {cell(p['rpe_r'], 3)} |")
    return out


def plot(points: list[dict[str, Any]], fit: SaturatingFit | LogLinearFit | None, target: float, to_target: float,
         path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    steps = np.array([p["step"] for p in points], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    ax.errorbar(steps, [p["gain_over_copy_first"]["mean"] for p in points],
                yerr=[p["gain_over_copy_first"]["se"] for p in points], marker="o", ls="", capsize=3,
                label="held-out PSNR − copy first (paired, ±1 SE)")
    if fit is not None:
        end = steps.max() * 4 if not math.isfinite(to_target) else max(steps.max(), to_target) * 1.1
        t = np.geomspace(steps.min(), end, 200)
        ax.plot(t, fit(t), lw=1, label=f"fit: {fit.describe('t')}")
    ax.axhline(target, color="grey", ls="--", lw=0.8, label=f"target +{target:g} dB")
    ax.axhline(0.0, color="grey", lw=0.6)
    ax.set(xscale="log", xlabel="training steps", ylabel="dB over copying the first frame",
           title="teacher quality against training")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarise(points: list[dict[str, Any]], target: float, out: pathlib.Path, run: str, where: str) -> None:
    """Fit the points and write OUT/curve.json, OUT/table.md and OUT/curve.png; print the table."""
    fit: SaturatingFit | LogLinearFit | None = None
    to_target, why = math.nan, f"{len(points)} points: too few to fit (4 needed: the fit has 3 parameters)"
    if len(points) >= 4:
        fit = fit_curve([p["step"] for p in points], [p["gain_over_copy_first"]["mean"] for p in points],
                        [max(p["gain_over_copy_first"]["se"], 1e-3) for p in points])
        to_target = fit.time_to(target)
    rate = steps_per_minute(points)
    result = {"run": run, "machine": where, "points": points, "target_db": target, "steps_per_minute": rate,
              "fit": None if fit is None else {"kind": type(fit).__name__, **asdict(fit)},
              "steps_to_target": to_target, "minutes_to_target": to_target / rate if rate > 0 else math.nan}
    (out / "curve.json").write_text(json.dumps(result, indent=2))
    lines = table(points)
    if fit is None:
        lines.append(f"\n{why}")
    else:
        reach = (f"reaches +{target:g} dB at step {to_target:,.0f} (~{result['minutes_to_target']:.0f} minutes "
                 f"at {rate:.0f} steps/min)" if math.isfinite(to_target)
                 else f"levels off below +{target:g} dB")
        lines.append(f"\nfit: {fit.describe('step')} (rmse {fit.rmse:.3f} dB): {reach}")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(points, fit, target, to_target, out / "curve.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="other arguments are passed to training.eval")
    parser.add_argument("run", type=pathlib.Path, nargs="?", help="a training.teacher run directory")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--target", type=float, default=2.0, help="dB over copy-first the fit is asked about")
    parser.add_argument("--follow", type=int, metavar="PID",
                        help="evaluate snapshots as the training process PID writes them, table once it has exited")
    parser.add_argument("--refit", type=pathlib.Path, metavar="CURVE_JSON",
                        help="fit and table again the points of a curve.json this script wrote (no checkpoints needed)")
    args, eval_args = parser.parse_known_args(argv)
    eval_args = [a for a in eval_args if a != "--"]
    if args.refit is not None:
        if args.run is not None or args.follow is not None or eval_args:
            raise SystemExit("--refit takes no run, --follow or training.eval arguments: it re-fits saved points")
        saved = json.loads(args.refit.read_text())
        args.out.mkdir(parents=True, exist_ok=True)
        summarise(saved["points"], args.target, args.out, saved["run"], saved["machine"])
        return 0
    if args.run is None:
        raise SystemExit("give a training.teacher run directory (or --refit CURVE_JSON)")
    if any(a in ("--checkpoint", "--out", "--student") for a in eval_args):
        raise SystemExit("--checkpoint, --out and --student are set by this script (it evaluates a teacher run)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.follow is not None and not follow(args.run, args.follow, args.out, eval_args):
        return 1
    points = []
    for step, seconds, ckpt in checkpoints(args.run):
        where = evaluate(step, ckpt, args.out, eval_args)
        if where is None:
            return 1
        points.append(point(step, seconds, json.loads((where / "metrics.json").read_text())))
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    summarise(points, args.target, args.out, str(args.run), f"{gpu} | {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
