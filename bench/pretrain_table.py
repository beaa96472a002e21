"""The table of issue 27's experiment (bench/pretrain_gpu.sh) from its results folder: per amount of
action-labelled data, held-out PSNR and RPE of the model trained from scratch and of the ones
pretrained on plain video then tuned, at equal steps, with copy-first in every row and each tuned
model paired against scratch on the same 504 clips; `--plot` also draws the curve (the paired PSNR
difference and RPE-r against the amount of action-labelled data, ±1 SE). A run over several splits of
the budget (PRE="300 600 900": arms tune_p300_16, ...) gets a row per split, and its curve is drawn
against the pretraining steps instead.

    python bench/pretrain_table.py bench/results/pretrain --plot docs/images/pretrain_curve.png
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from training.eval.table import cell  # noqa: E402

ARMS = (("scratch", "action-labelled only"), ("tune", "plain video, then tuned"),
        ("tunegap", "plain video (streets only), then tuned"))
ARM = re.compile(r"eval_(scratch|tune|tunegap)(?:_p(\d+))?_(\d+)")  # arm, pretraining steps of a split, scenes


def arms(folder: pathlib.Path, amount: int) -> list[tuple[str, str, int | None]]:
    """The evaluated arms at one amount as (name, label, pretraining steps or None): scratch, then the
    pretrained kinds, each over its splits in order of pretraining steps."""
    found = {(m.group(1), int(m.group(2)) if m.group(2) else None) for p in folder.glob(f"eval_*_{amount}")
             if (m := ARM.fullmatch(p.name)) and int(m.group(3)) == amount}
    out = []
    for kind, label in ARMS:
        for _, pre in sorted((k, p) for k, p in found if k == kind and p is not None):
            tuned = folder / f"{kind}_p{pre}_{amount}_summary.json"
            steps = f", then tuned {json.loads(tuned.read_text())['steps']}" if tuned.is_file() else ", then tuned"
            out.append((f"{kind}_p{pre}", label.replace(", then tuned", f" {pre} steps{steps}"), pre))
        if (kind, None) in found:
            out.append((kind, label, 0 if kind == "scratch" else None))
    return out


def results(folder: pathlib.Path) -> list[dict[str, Any]]:
    """One record per (amount, arm) that was evaluated: its eval figures and its pairing with scratch."""
    amounts = sorted({int(m.group(1)) for p in folder.glob("eval_scratch_*")
                      if (m := re.fullmatch(r"eval_scratch_(\d+)", p.name))})
    if not amounts:
        raise SystemExit(f"{folder}: no eval_scratch_<scenes> folder (the output of bench/pretrain_gpu.sh)")
    out = []
    for amount in amounts:
        for arm, label, pre in arms(folder, amount):
            path = folder / f"eval_{arm}_{amount}" / "metrics.json"
            report = json.loads(path.read_text())
            paired = folder / f"{arm}_vs_scratch_{amount}.json"
            paths = report.get("paths", {}).get("methods", {})  # none where evaluated with --no-rpe
            out.append({"amount": amount, "arm": arm, "label": label, "pretrain_steps": pre,
                        "psnr": report["methods"]["model"]["psnr"], "paths": paths.get("model", {}),
                        "copy_first": report["methods"]["copy_first"]["psnr"],
                        "copy_first_rpe_r": paths.get("copy_first", {}).get("rpe_r"),
                        "vs_scratch": json.loads(paired.read_text())["psnr_db"] if paired.is_file() else None})
    return out


def rows(records: list[dict[str, Any]]) -> list[str]:
    out = ["| action-labelled scenes | arm | PSNR dB | RPE-t m | RPE-r deg | − scratch, paired dB | copy first dB |",
           "|---|---|---|---|---|---|---|"]
    for r in records:
        diff = r["vs_scratch"]
        out.append(f"| {r['amount']} | {r['label']} | {cell(r['psnr'], 2)} | {cell(r['paths'].get('rpe_t'), 4)} | "
                   f"{cell(r['paths'].get('rpe_r'), 3)} | {cell(diff, 2) if diff else '—'} | "
                   f"{cell(r['copy_first'], 2)} |")
    return out


NO_RPE = {"mean": float("nan"), "se": 0.0}  # an arm evaluated without RPE: no point on the right panel


def _panels():
    """The figure both curves draw on: the paired PSNR difference to scratch (left), RPE-r (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    return plt, fig, left, right


def _finish(plt, fig, left, right, records: list[dict[str, Any]], path: pathlib.Path, xlabel: str,
            title: str) -> None:
    """What both curves share: copy-first's RPE-r, the zero line, labels, legends; saved to `path`."""
    copy_rpe = next((r["copy_first_rpe_r"] for r in records if r["copy_first_rpe_r"]), None)
    if copy_rpe:  # a still video: its RPE is the commanded motion, the ceiling
        right.axhline(copy_rpe["mean"], color="grey", ls="--", lw=0.8, label="copy first frame")
    left.axhline(0.0, color="grey", lw=0.8)
    left.set(xlabel=xlabel, ylabel="PSNR − scratch, paired (dB)", title=title)
    right.set(xlabel=xlabel, ylabel="RPE-r (deg/step, lower is better)", title="action following")
    for ax in (left, right):
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(records: list[dict[str, Any]], path: pathlib.Path) -> None:
    """Two panels against the amount of action-labelled scenes (log scale): each pretrained arm's paired
    PSNR difference to scratch, and every arm's RPE-r next to copy-first's, error bars ±1 SE."""
    import matplotlib.ticker

    plt, fig, left, right = _panels()
    for (arm, label), marker, color in zip(ARMS, "osD", ("C0", "C1", "C2")):
        mine = [r for r in records if r["arm"] == arm]
        if not mine:
            continue
        x = [r["amount"] for r in mine]
        paired = [r for r in mine if r["vs_scratch"]]
        if arm != "scratch" and paired:
            left.errorbar([r["amount"] for r in paired], [r["vs_scratch"]["mean"] for r in paired],
                          yerr=[r["vs_scratch"]["se"] for r in paired], marker=marker, color=color, capsize=3,
                          label=label)
        rpe = [r["paths"].get("rpe_r") or NO_RPE for r in mine]
        right.errorbar(x, [s["mean"] for s in rpe], yerr=[s["se"] for s in rpe], marker=marker, color=color,
                       capsize=3, label=label)
    for ax in (left, right):
        ax.set(xscale="log")
        ax.set_xticks(sorted({r["amount"] for r in records}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
    _finish(plt, fig, left, right, records, path, "action-labelled scenes", "pretrained on plain video, then tuned")


def plot_splits(records: list[dict[str, Any]], path: pathlib.Path) -> None:
    """Two panels against the pretraining steps of a fixed budget (0: scratch), a line per amount of
    action-labelled scenes: the tuned model's paired PSNR difference to scratch, and RPE-r, ±1 SE."""
    plt, fig, left, right = _panels()
    for amount, color in zip(sorted({r["amount"] for r in records}), ("C0", "C1", "C2", "C3")):
        mine = sorted((r for r in records if r["amount"] == amount and r["arm"].startswith(("scratch", "tune_p"))),
                      key=lambda r: r["pretrain_steps"])
        x = [r["pretrain_steps"] for r in mine]
        diff = [r["vs_scratch"] or {"mean": 0.0, "se": 0.0} for r in mine]  # scratch: 0 against itself
        left.errorbar(x, [d["mean"] for d in diff], yerr=[d["se"] for d in diff], marker="o", color=color,
                      capsize=3, label=f"{amount} action-labelled scenes")
        rpe = [r["paths"].get("rpe_r") or NO_RPE for r in mine]
        right.errorbar(x, [s["mean"] for s in rpe], yerr=[s["se"] for s in rpe], marker="o", color=color,
                       capsize=3, label=f"{amount} action-labelled scenes")
    _finish(plt, fig, left, right, records, path, "pretraining steps on plain video (of the same total)",
            "the budget's split")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("--plot", type=pathlib.Path, help="also draw the curve into this PNG")
    args = parser.parse_args(argv)
    records = results(args.folder)
    print("\n".join(rows(records)))
    if args.plot:
        splits = any(r["arm"].startswith(("tune_p", "tunegap_p")) for r in records)
        (plot_splits if splits else plot)(records, args.plot)
        print(f"curve: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
