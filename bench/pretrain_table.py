"""The table of issue 27's experiment (bench/pretrain_gpu.sh) from its results folder: per amount of
action-labelled data, held-out PSNR and RPE of the model trained from scratch and of the ones
pretrained on plain video then tuned, at equal steps, with copy-first in every row and each tuned
model paired against scratch on the same 504 clips.

    python bench/pretrain_table.py bench/results/pretrain
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re


def _cell(stat: dict | None, digits: int) -> str:
    return "—" if not stat else f"{stat['mean']:.{digits}f} ± {stat['se']:.{digits}f}"


def rows(folder: pathlib.Path) -> list[str]:
    out = ["| action-labelled scenes | arm | PSNR dB | RPE-t m | RPE-r deg | − scratch, paired dB | copy first dB |",
           "|---|---|---|---|---|---|---|"]
    amounts = sorted({int(m.group(1)) for p in folder.glob("eval_scratch_*")
                      if (m := re.fullmatch(r"eval_scratch_(\d+)", p.name))})
    for amount in amounts:
        for arm, label in (("scratch", "action-labelled only"), ("tune", "plain video, then tuned"),
                           ("tunegap", "plain video (streets only), then tuned")):
            path = folder / f"eval_{arm}_{amount}" / "metrics.json"
            if not path.is_file():
                continue
            report = json.loads(path.read_text())
            model, paths = report["methods"]["model"], report["paths"]["methods"]["model"]
            paired = folder / f"{arm}_vs_scratch_{amount}.json"
            diff = json.loads(paired.read_text())["psnr_db"] if paired.is_file() else None
            out.append(f"| {amount} | {label} | {_cell(model['psnr'], 2)} | {_cell(paths.get('rpe_t'), 4)} | "
                       f"{_cell(paths.get('rpe_r'), 3)} | {_cell(diff, 2) if diff else '—'} | "
                       f"{_cell(report['methods']['copy_first']['psnr'], 2)} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=pathlib.Path)
    args = parser.parse_args(argv)
    print("\n".join(rows(args.folder)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
