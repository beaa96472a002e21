"""The baselines of training.eval on the held-out clips, with no model: copy-first, the first frame warped
by its rendered depth (geometry, nothing learned), and the ground-truth renders (the estimator's floor).

    python bench/eval_baselines.py [--scenes corridor_0007,...] [--fps 5] [--frames 9] [--cache set.npz]
                                   [--no-rpe] [--workers N] [--out DIR]

What a model's row in a training.eval table is to be read against: how much of the clip the first frame
explains by parallax alone (`warp_first`: every pixel moved along the commanded path by its depth, what the
first view never saw inpainted), per frame and per script kind, and what RPE and parallax the estimator
reads from a video whose motion is exactly right but whose disocclusions are smeared. Writes OUT/metrics.json
and OUT/table.md in training.eval's layout (methods, paired warp_first − copy_first, paths), and prints the
table with the machine.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so `training` is the package)

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from _common import add_eval_set_arguments, eval_set_of, machine  # noqa: E402
from common.cli import add_dry_run, dry_run  # noqa: E402
from training.eval.evaluate import (SamplerConfig, frame_metrics, paths_report, run_method, summarize,  # noqa: E402
                                    warp_first_videos)
from training.eval.groundtruth import unfit_summary  # noqa: E402
from training.eval.odometry import OdometryConfig  # noqa: E402
from training.eval.table import markdown_table, strict_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_eval_set_arguments(parser)
    parser.add_argument("--no-rpe", action="store_true")
    parser.add_argument("--out", type=pathlib.Path)
    args = add_dry_run(parser).parse_args()
    if args.dry_run:
        dry_run(arguments=args)
        return
    print(machine())
    started = time.perf_counter()
    config, eval_set = eval_set_of(args)
    clips, render_s = eval_set.clips, time.perf_counter() - started
    started = time.perf_counter()
    videos = {"copy_first": run_method(None, clips, SamplerConfig(frames=args.frames), torch.device("cpu")),
              "warp_first": warp_first_videos(clips, args.frames, config.fov)}
    warp_s = time.perf_counter() - started
    summary = summarize({name: frame_metrics(v, clips) for name, v in videos.items()}, clips, reference="warp_first")
    report = {"checkpoint": "no model (baselines)", "scenes": list(config.scenes), "fps": args.fps,
              "sampler": {"frames": args.frames}, "unfit": unfit_summary(eval_set.unfit),
              "render_seconds": round(render_s, 1), "warp_seconds": round(warp_s, 1), **summary}
    if not args.no_rpe:
        report["paths"] = paths_report(videos, clips, args.frames, config.fov, args.workers, OdometryConfig(),
                                       reference="warp_first")
    report = strict_json(report)
    table = markdown_table(report)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(report, indent=2, allow_nan=False))
        (args.out / "table.md").write_text(table)


if __name__ == "__main__":
    main()
