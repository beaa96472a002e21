"""How sharp must a generated video be for the RPE estimator to read its motion? The ground-truth
renders of the held-out clips, blurred, through the same odometry and RPE as training.eval.

    python bench/odometry_blur.py [--scenes corridor_0007,...] [--frames 9] [--sigmas 0 0.5 1 1.5 2]
                                  [--trackers dense corners] [--translation-scales 1 0.5 0.25 0.1]
                                  [--cache evalset.npz] [--workers N] [--json out.json]

A model's frames that carry the commanded motion exactly but are softer than the renders (a
diffusion model at 25 dB is) score the estimator's error at that softness, not the model's. Each
row: a Gaussian blur of `sigma` pixels on every frame (sigma 0: the renders, the estimator's floor),
the PSNR that blur costs against the renders (frames 1.., as training.eval scores a model), RPE-t,
RPE-r and the share of steps the estimator lost; and the commanded step, what copy-first (an
estimate of no motion) scores. Where a row's RPE passes the commanded step, a perfect model that
blurry could not beat copy-first on RPE at this resolution. `--trackers` compares the odometry's ways of
following points (training.eval.odometry: dense optical flow, the default, or Lucas–Kanade corners).

`--translation-scales`: how little translation can the estimator see? Each scale s below 1 renders
the clips again with the camera's translation from the start shrunk to s of the commanded (the
rotations as commanded), scored against the commanded path (Sim(3) absorbs the scale), with the
parallax the odometry saw (pixels a pure rotation leaves unexplained per window) and the share of
steps it read as turns only, over all clips and over the single translations ("walks": forward,
backward, left, right, up, down): a model that renders part of a translation shows its parallax here.
"""

from __future__ import annotations

import _common  # noqa: F401  (first: fixes sys.path so `training` is the package)

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
from typing import Any  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import add_eval_set_arguments, eval_set_of, machine  # noqa: E402
from common.cli import add_dry_run, dry_run  # noqa: E402
from training.eval.evaluate import commanded_steps, path_errors  # noqa: E402
from training.eval.stats import mean_se  # noqa: E402
from training.eval.groundtruth import EvalClip, EvalSetConfig, shrunk_translation, unfit_summary  # noqa: E402
from training.eval.metrics import psnr  # noqa: E402
from training.eval.odometry import TRACKERS, OdometryConfig  # noqa: E402
from training.eval.pool import process_pool  # noqa: E402
from training.eval.scripts import script_group  # noqa: E402
from training.eval.table import unfit_lines  # noqa: E402
from capture.standin.render import Renderer  # noqa: E402
from capture.standin.scene import make_scene  # noqa: E402


def _scene_renders(job: tuple[str, list[np.ndarray], tuple[int, int, float]]) -> list[np.ndarray]:
    scene, paths, (width, height, fov) = job
    renderer = Renderer(make_scene(scene))
    return [np.stack([renderer.render(p, width, height, fov).lit for p in path]) for path in paths]


def renders_at(clips: list[EvalClip], frames: int, scale: float, config: EvalSetConfig, workers: int) -> np.ndarray:
    """(N, F, H, W, 3) the clips' first `frames` frames: their renders at scale 1, else rendered again by
    the stand-in along `shrunk_translation` poses (scenes in parallel)."""
    if scale == 1.0:
        return np.stack([c.frames[:frames] for c in clips])
    scenes = sorted({c.scene for c in clips})
    jobs = [(scene, [shrunk_translation(c.poses[:frames], scale) for c in clips if c.scene == scene],
             (config.width, config.height, config.fov)) for scene in scenes]
    with process_pool(min(workers, len(jobs))) as pool:
        by_scene = dict(zip(scenes, (iter(videos) for videos in pool.map(_scene_renders, jobs))))
    return np.stack([next(by_scene[c.scene]) for c in clips])


def blurred(renders: np.ndarray, sigma: float) -> np.ndarray:
    """Renders (N, F, H, W, 3) uint8 as a (N, F, 3, H, W) video, each frame blurred by a Gaussian of
    `sigma` pixels (none at 0)."""
    video = renders if sigma == 0 else np.stack([[cv2.GaussianBlur(f, (0, 0), sigma) for f in clip]
                                                 for clip in renders])
    return np.ascontiguousarray(video.transpose(0, 1, 4, 2, 3))


def blur_psnr(video: np.ndarray, renders: np.ndarray) -> float:
    """Mean PSNR of a `blurred` video against the renders, frames 1.. (training.eval's: 58.9 dB at most)."""
    truth = torch.from_numpy(renders).permute(0, 1, 4, 2, 3)  # a view: (N, F, 3, H, W)
    return float(psnr(torch.from_numpy(video)[:, 1:], truth[:, 1:]).numpy().mean())


def row(clips: list[EvalClip], video: np.ndarray, fov: float, workers: int, tracker: str) -> dict[str, Any]:
    """One `blurred` video through one tracker: RPE (mean ± SE) and the share of steps lost."""
    errors = path_errors(video, clips, fov, workers, OdometryConfig(tracker=tracker))
    parallax = errors["parallax_px"]
    walks = np.array([script_group(c.script) == "translation" for c in clips])  # single translations
    return {"tracker": tracker, "rpe_t": mean_se(errors["rpe_t"]), "rpe_r": mean_se(errors["rpe_r"]),
            "parallax_px": mean_se(parallax[np.isfinite(parallax)]), "lost_share": float(errors["lost"].mean()),
            "turned_share": float(errors["turned"].mean()),
            "translations": {"clips": int(walks.sum()), "rpe_t": mean_se(errors["rpe_t"][walks]),
                             "parallax_px": mean_se(parallax[walks & np.isfinite(parallax)]),
                             "turned_share": float(errors["turned"][walks].mean())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_eval_set_arguments(parser)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.5, 0.75, 1.0, 1.5, 2.0])
    parser.add_argument("--trackers", nargs="+", choices=TRACKERS, default=list(TRACKERS),
                        help="the odometry's point trackers to compare")
    parser.add_argument("--translation-scales", type=float, nargs="+", default=[1.0],
                        help="render the clips again with this share of the commanded translation")
    parser.add_argument("--json", type=pathlib.Path)
    args = add_dry_run(parser).parse_args()
    if args.dry_run:
        dry_run(arguments=args)
        return
    config, eval_set = eval_set_of(args)
    clips = eval_set.clips
    still = commanded_steps(clips, args.frames)
    print(machine())
    print(f"{len(clips)} held-out clips of {args.frames} frames at {config.width}x{config.height}, {args.fps:g} fps; "
          f"commanded step (copy-first's RPE) {still['translation_m']:.4f} m, {still['rotation_deg']:.3f} deg")
    print("".join(f"left out of the clips: {line}\n" for line in unfit_lines(unfit_summary(eval_set.unfit))))
    print("| translation | blur sigma px | PSNR vs renders dB | tracker | RPE-t m | RPE-r deg | parallax px "
          "| steps read as turns | steps lost | walks: RPE-t m | walks: parallax px | walks: read as turns |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for scale in args.translation_scales:
        renders = renders_at(clips, args.frames, scale, config, args.workers)
        for sigma in args.sigmas:
            video = blurred(renders, sigma)
            db = blur_psnr(video, renders)  # one per sigma, whichever tracker reads the video
            for tracker in args.trackers:
                r = {"translation_scale": scale, "sigma_px": sigma, "psnr": db,
                     **row(clips, video, config.fov, args.workers, tracker)}
                rows.append(r)
                t, rot, px, walk = r["rpe_t"], r["rpe_r"], r["parallax_px"], r["translations"]
                print(f"| {scale:g} | {sigma:g} | {r['psnr']:.2f} | {tracker} | {t['mean']:.4f} ± {t['se']:.4f} | "
                      f"{rot['mean']:.3f} ± {rot['se']:.3f} | {px['mean']:.2f} ± {px['se']:.2f} | "
                      f"{r['turned_share']:.1%} | {r['lost_share']:.1%} | {walk['rpe_t']['mean']:.4f} | "
                      f"{walk['parallax_px']['mean']:.2f} ± {walk['parallax_px']['se']:.2f} | "
                      f"{walk['turned_share']:.1%} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "clips": len(clips), "frames": args.frames,
                                         "fps": args.fps, "commanded": still, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
