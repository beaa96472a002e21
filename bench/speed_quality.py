"""The speed/quality curve of issue 25: held-out quality of students with 1, 2 and 4 steps and of the
teacher at several Euler step counts and CFG scales, next to their frames/s, and the headline — the
fastest student within `--within` dB (paired PSNR) of the teacher's best sampler, and its frames/s
against that sampler's (target `--target`x).

    python bench/speed_quality.py --speed RES/speed_curve.json RES/eval_student_s* RES/eval_teacher_s* \\
        --out RES/speed_quality

Every positional argument is a training.eval output (a folder with metrics.json, or the file): a
student's says its step count (its `student.steps`) and commit, a teacher's its sampler's steps and guidance.
All must have evaluated the same clips. `--speed` is `bench/student.py --sections curve --json`'s
output (random weights: frames/s do not depend on them), which must hold every step count and sampler
evaluated. Writes OUT/speed_quality.json, OUT/table.md and OUT/curve.png (PSNR against frames/s).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from common.cli import add_dry_run, dry_run  # noqa: E402
from training.eval.compare import compare  # noqa: E402
from training.eval.table import cell  # noqa: E402


def student_key(steps: int, commit: str) -> str:
    """A student's key in bench/student.py's curve figures: "4" (a commit forward per block), "4_fold"."""
    return str(steps) if commit == "clean" else f"{steps}_{commit}"


@dataclass(frozen=True)
class Method:
    """One evaluated generator: a student with `steps` steps per block (guidance 1) and its commit
    (clean: a commit forward per block; fold: folded into the last step), or the teacher sampling with
    `steps` Euler steps at CFG `guidance`."""

    kind: str  # "student" | "teacher"
    steps: int
    guidance: float
    commit: str = "clean"

    @property
    def name(self) -> str:
        if self.kind == "student":
            return (f"student, {self.steps} step{'s' if self.steps > 1 else ''} "
                    + ("+ commit" if self.commit == "clean" else "with its commit folded"))
        return f"teacher, {self.steps} steps, CFG {self.guidance:g}"

    @property
    def speed_key(self) -> str:
        return student_key(self.steps, self.commit) if self.kind == "student" else f"{self.steps}_cfg{self.guidance:g}"


def method_of(report: Mapping[str, Any], where: str) -> Method:
    """Which generator a training.eval report measured (a student's report from before `commit`: clean)."""
    try:
        if report.get("student"):
            return Method("student", len(report["student"]["steps"]), 1.0, report["student"].get("commit", "clean"))
        return Method("teacher", int(report["sampler"]["steps"]), float(report["sampler"]["guidance"]))
    except (KeyError, TypeError) as e:
        raise SystemExit(f"{where}: not a training.eval metrics.json (no {e} in its student/sampler)") from e


def join(speed: Mapping[str, Any], reports: Mapping[str, Mapping[str, Any]], within: float = 1.5,
         target: float = 10.0) -> dict[str, Any]:
    """Rows (quality, paired difference to the teacher's best sampler, frames/s per batch) and the
    headline per batch. `reports` maps where each report came from to the report."""
    methods = {where: method_of(report, where) for where, report in reports.items()}
    seen: dict[Method, str] = {}
    for where, method in methods.items():
        if method in seen:
            raise SystemExit(f"{where} and {seen[method]} both evaluated {method.name}")
        seen[method] = where
    teachers = [w for w, m in methods.items() if m.kind == "teacher"]
    if not teachers or len(teachers) == len(methods):
        raise SystemExit("the curve needs at least one teacher and one student evaluation")
    best = max(teachers, key=lambda w: reports[w]["methods"]["model"]["psnr"]["mean"])
    batches = sorted({b for table in speed["student"].values() for b in table}, key=int)
    rows = []
    for where, method in sorted(methods.items(),
                                key=lambda item: (item[1].kind, item[1].steps, item[1].guidance, item[1].commit)):
        table = speed[method.kind].get(method.speed_key)
        if not table:
            raise SystemExit(f"{where}: the speed file has no {method.name} (its {method.kind} keys: "
                             f"{sorted(speed[method.kind])})")
        report = reports[where]
        paths = report.get("paths", {}).get("methods", {}).get("model", {})
        rows.append({"method": method.name, "kind": method.kind, "steps": method.steps, "guidance": method.guidance,
                     "commit": method.commit if method.kind == "student" else None,
                     "eval": where, "psnr": report["methods"]["model"]["psnr"],
                     "rpe_t": paths.get("rpe_t"), "rpe_r": paths.get("rpe_r"),
                     "vs_best_teacher": compare(report, reports[best], names=(where, best))["psnr_db"],
                     "frames_per_s": {b: table[b] for b in batches if b in table}})
    best_row = next(r for r in rows if r["eval"] == best)
    headline = {}
    for batch in batches:
        close = [r for r in rows if r["kind"] == "student" and r["vs_best_teacher"]["mean"] >= -within
                 and batch in r["frames_per_s"]]
        base = best_row["frames_per_s"].get(batch)
        if not close or base is None:
            headline[batch] = {"student": None, "speedup": None, "met": False}
            continue
        fastest = max(close, key=lambda r: r["frames_per_s"][batch])
        speedup = fastest["frames_per_s"][batch] / base
        headline[batch] = {"student": fastest["method"], "vs_best_teacher_db": fastest["vs_best_teacher"]["mean"],
                           "speedup": speedup, "met": speedup >= target}
    return {"best_teacher": best_row["method"], "within_db": within, "target_speedup": target, "batches": batches,
            "clips": len(reports[best]["clip_ids"]), "frames": reports[best]["sampler"]["frames"],
            "rows": rows, "headline": headline}


def table(result: Mapping[str, Any]) -> str:
    batches = result["batches"]
    lines = [f"{result['clips']} held-out clips of {result['frames']} frames; paired against the teacher's best "
             f"sampler ({result['best_teacher']})", "",
             "| method | PSNR dB | − best teacher, paired dB | RPE-t m | RPE-r deg | "
             + " | ".join(f"frames/s @ batch {b}" for b in batches) + " |",
             "|---|---|---|---|---|" + "---|" * len(batches)]
    for r in result["rows"]:
        d = r["vs_best_teacher"]
        diff = "0 (itself)" if r["method"] == result["best_teacher"] else f"{d['mean']:+.2f} ± {d['se']:.2f}"
        lines.append(f"| {r['method']} | {cell(r['psnr'], 2)} | {diff} | {cell(r['rpe_t'], 4)} | {cell(r['rpe_r'], 3)} | "
                     + " | ".join(f"{r['frames_per_s'][b]:,.0f}" if b in r["frames_per_s"] else "—" for b in batches)
                     + " |")
    lines.append("")
    for batch, h in result["headline"].items():
        if h["student"] is None:
            lines.append(f"batch {batch}: no student within {result['within_db']} dB of the best teacher sampler")
        else:
            lines.append(f"batch {batch}: fastest student within {result['within_db']} dB: {h['student']} "
                         f"({h['vs_best_teacher_db']:+.2f} dB), {h['speedup']:.1f}x the best teacher sampler's "
                         f"frames/s (target >= {result['target_speedup']:g}x: {'met' if h['met'] else 'not met'})")
    return "\n".join(lines) + "\n"


def plot(result: Mapping[str, Any], path: pathlib.Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    batches = result["batches"]
    fig = Figure(figsize=(4.2 * len(batches), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    for i, batch in enumerate(batches):
        ax = fig.add_subplot(1, len(batches), i + 1)
        for kind, marker in (("teacher", "s"), ("student", "o")):
            rows = [r for r in result["rows"] if r["kind"] == kind and batch in r["frames_per_s"]]
            ax.errorbar([r["frames_per_s"][batch] for r in rows], [r["psnr"]["mean"] for r in rows],
                        yerr=[r["psnr"]["se"] for r in rows], fmt=marker, label=kind, capsize=2)
            for r in rows:
                label = f"{r['steps']}" + (f"/{r['guidance']:g}" if kind == "teacher" else
                                           "f" if r.get("commit") == "fold" else "")
                ax.annotate(label, (r["frames_per_s"][batch], r["psnr"]["mean"]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(f"frames/s at batch {batch}")
        ax.set_ylabel("held-out PSNR dB")
        ax.set_title("steps (teacher: steps/CFG; f: commit folded)", fontsize=8)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=110)


def _load(path: pathlib.Path) -> tuple[str, dict[str, Any]]:
    file = path / "metrics.json" if path.is_dir() else path
    if not file.is_file():
        raise SystemExit(f"{path}: no metrics.json")
    return str(path), json.loads(file.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", nargs="+", type=pathlib.Path, help="training.eval outputs (folders or metrics.json)")
    parser.add_argument("--speed", type=pathlib.Path, required=True,
                        help="bench/student.py --sections curve --json output")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--within", type=float, default=1.5, help="dB below the best teacher sampler allowed")
    parser.add_argument("--target", type=float, default=10.0, help="target speedup of that student")
    args = add_dry_run(parser).parse_args(argv)
    if args.dry_run:
        return dry_run(arguments=args)
    speed = json.loads(args.speed.read_text())
    if "curve" not in speed:
        raise SystemExit(f"{args.speed}: no 'curve' section (run bench/student.py --sections curve --json ...)")
    result = join(speed["curve"], dict(_load(p) for p in args.evals), args.within, args.target)
    result["machine"] = speed.get("machine")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed_quality.json").write_text(json.dumps(result, indent=2))
    text = table(result)
    (args.out / "table.md").write_text(text)
    plot(result, args.out / "curve.png")
    print(f"machine: {result['machine']}\n\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
