"""The table of issue 27's experiment (bench/pretrain_gpu.sh) from its results folder: per amount of
action-labelled data, held-out PSNR and RPE of the model trained from scratch and of the ones
pretrained on plain video then tuned, at equal steps, with copy-first in every row and each tuned
model paired against scratch on the same 504 clips; `--plot` also draws the curve (the paired PSNR
difference and RPE-r against the amount of action-labelled data, ±1 SE).

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


def results(folder: pathlib.Path) -> list[dict[str, Any]]:
    """One record per (amount, arm) that was evaluated: its eval figures and its pairing with scratch."""
    amounts = sorted({int(m.group(1)) for p in folder.glob("eval_scratch_*")
                      if (m := re.fullmatch(r"eval_scratch_(\d+)", p.name))})
    if not amounts:
        raise SystemExit(f"{folder}: no eval_scratch_<scenes> folder (the output of bench/pretrain_gpu.sh)")
    out = []
    for amount in amounts:
        for arm, label in ARMS:
            path = folder / f"eval_{arm}_{amount}" / "metrics.json"
            if not path.is_file():
                continue
            report = json.loads(path.read_text())
            paired = folder / f"{arm}_vs_scratch_{amount}.json"
            out.append({"amount": amount, "arm": arm, "label": label, "psnr": report["methods"]["model"]["psnr"],
                        "paths": report["paths"]["methods"]["model"],
                        "copy_first": report["methods"]["copy_first"]["psnr"],
                        "copy_first_rpe_r": report["paths"]["methods"]["copy_first"].get("rpe_r"),
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


def plot(records: list[dict[str, Any]], path: pathlib.Path) -> None:
    """Two panels against the amount of action-labelled scenes (log scale): each pretrained arm's paired
    PSNR difference to scratch, and every arm's RPE-r next to copy-first's, error bars ±1 SE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
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
        rpe = [r["paths"].get("rpe_r") or {"mean": float("nan"), "se": 0.0} for r in mine]
        right.errorbar(x, [s["mean"] for s in rpe], yerr=[s["se"] for s in rpe], marker=marker, color=color,
                       capsize=3, label=label)
    copy_rpe = next((r["copy_first_rpe_r"] for r in records if r["copy_first_rpe_r"]), None)
    if copy_rpe:  # a still video: its RPE is the commanded motion, the ceiling
        right.axhline(copy_rpe["mean"], color="grey", ls="--", lw=0.8, label="copy first frame")
    left.axhline(0.0, color="grey", lw=0.8)
    left.set(xscale="log", xlabel="action-labelled scenes", ylabel="PSNR − scratch, paired (dB)",
             title="pretrained on plain video, then tuned")
    right.set(xscale="log", xlabel="action-labelled scenes", ylabel="RPE-r (deg/step, lower is better)",
              title="action following")
    for ax in (left, right):
        ax.set_xticks(sorted({r["amount"] for r in records}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path)
    parser.add_argument("--plot", type=pathlib.Path, help="also draw the curve into this PNG")
    args = parser.parse_args(argv)
    records = results(args.folder)
    print("\n".join(rows(records)))
    if args.plot:
        plot(records, args.plot)
        print(f"curve: {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
