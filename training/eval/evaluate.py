"""Score a generator on held-out action scripts against the stand-in's ground truth.

Methods, all on the same clips and the same sampling noise:
  model          the generator with the script's own actions and poses
  shuffled       the same generator with another clip's script (a different script, from the same
                 start: actions and poses integrated from it) — does the model follow the actions?
  copy_first     every frame is the first frame — does it beat standing still?
  warp_first     the first frame moved along the commanded path by geometry alone (its rendered depth,
                 training.warp), what it never saw inpainted — what parallax from the first frame is worth
  ground_truth   (action following only) the stand-in's own renders: the pose estimator's floor
Per clip the per-frame PSNR/SSIM of frames 1..F-1 is averaged; the summary gives mean ± standard
error over clips, and the paired difference model − baseline with its SE and z = mean/SE.

Action following is the field's relative pose error: the camera path recovered from each video by
odometry.estimate_path, aligned to the commanded path by Sim(3) (rpe.path_rpe), per step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import torch

from annotate.geometry import integrate
from training.conditioning import frame_actions
from training.data import to_uint8, to_unit
from training.eval.groundtruth import EvalClip
from training.eval.metrics import psnr, ssim
from training.eval.odometry import OdometryConfig, estimate_path, opencv_intrinsics
from training.eval.pool import process_pool
from training.eval.rpe import path_rpe, relative_pose_error
from training.eval.stats import mean_se, with_z
from training.distill import teacher_velocity
from training.flow import sample_i2v
from training.model import VideoDiT
from training.warp import forward_warp, source_to_targets

#: generate(first (B, 3, H, W) in [-1, 1], actions (B, F, 13) per frame, poses (B, F, 4, 4), frames) -> (B, F, 3, H, W)
Generator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class SamplerConfig:
    frames: int = 9
    steps: int = 20
    shift: float = 3.0
    guidance: float = 1.0
    batch: int = 32
    seed: int = 0


def teacher_generator(model: VideoDiT, config: SamplerConfig, precision_ctx: Callable[[], Any]) -> Generator:
    """The bidirectional model sampled by Euler steps (flow.sample_i2v) with CFG on the motion."""

    def generate(first: torch.Tensor, actions: torch.Tensor, poses: torch.Tensor, frames: int,
                 generator: torch.Generator) -> torch.Tensor:
        field = teacher_velocity(model, actions, poses)

        def velocity(x: torch.Tensor, sigma: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
            with precision_ctx():
                return field(x, sigma, keep)

        return sample_i2v(velocity, first, frames, config.steps, config.shift, config.guidance, generator)

    return generate


def student_generator(student: Any, precision_ctx: Callable[[], Any]) -> Generator:
    """The causal student streaming block by block over its memory (training.student.Student)."""

    def generate(first: torch.Tensor, actions: torch.Tensor, poses: torch.Tensor, frames: int,
                 generator: torch.Generator) -> torch.Tensor:
        with precision_ctx():
            blocks = [block.float() for _, _, block in student.stream(first, actions, poses, generator)]
        return torch.cat([first[:, None], *blocks], dim=1)

    return generate


def revisit(metrics: dict[str, dict[str, np.ndarray]], clips: Sequence[EvalClip]) -> dict[str, Any]:
    """PSNR of the last frame of out-and-back clips (where the camera is back at the first pose), per
    method, with per-clip values so runs on the same clips can be compared pairwise."""
    frames = next(iter(metrics.values()))["psnr"].shape[1] + 1
    idx = [i for i, c in enumerate(clips) if c.kind == "out_and_back" and len(c.frames) == frames]
    if not idx:  # only whole clips end back at the first pose
        return {}
    out: dict[str, Any] = {}
    for method, values in metrics.items():
        last = values["psnr"][idx, -1]
        out[method] = {**mean_se(last), "per_clip": [round(float(v), 4) for v in last]}
    return out


def return_frame_metrics(videos: np.ndarray, clips: Sequence[EvalClip]) -> dict[str, np.ndarray]:
    """PSNR and SSIM (N,) of each video's last frame, where revisit scripts are back at the first pose,
    against the ground truth's last frame."""
    f = videos.shape[1]
    truth = torch.from_numpy(np.stack([c.frames[f - 1] for c in clips])).permute(0, 3, 1, 2)
    last = torch.from_numpy(np.ascontiguousarray(videos[:, -1]))
    return {"psnr": psnr(last, truth).numpy(), "ssim": ssim(last, truth).numpy()}


def summarize_returns(metrics: dict[str, dict[str, np.ndarray]], clips: Sequence[EvalClip]) -> dict[str, Any]:
    """Return-frame PSNR/SSIM per method (overall, per kind, per script, per clip), paired model − each."""
    out: dict[str, Any] = {"clips": len(clips), "clip_ids": [clip_id(c) for c in clips], "methods": {}, "paired": {}}
    for method, values in metrics.items():
        out["methods"][method] = {k: v for name in values for k, v in _breakdown(name, values[name], clips, 4).items()}
    for method in metrics:
        if method != "model" and "model" in metrics:
            out["paired"][f"model-{method}"] = {"psnr_db": with_z(mean_se(metrics["model"]["psnr"] - metrics[method]["psnr"]))}
    return out


def shuffled_scripts(clips: Sequence[EvalClip], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each clip, (actions, poses) of another clip's script (a different script name) played
    from this clip's start pose. Seeded."""
    rng = np.random.default_rng(seed)
    out = []
    for clip in clips:
        others = [c for c in clips if c.script != clip.script]
        other = others[int(rng.integers(len(others)))]
        out.append((other.actions, integrate(clip.poses[0], other.motion)))
    return out


@torch.no_grad()
def run_method(generate: Generator | None, clips: Sequence[EvalClip], config: SamplerConfig, device: torch.device,
               scripts: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """uint8 videos (N, F, 3, H, W); generate=None copies the first frame. Noise is seeded per batch."""
    f = config.frames
    videos = []
    for lo in range(0, len(clips), config.batch):
        chunk = clips[lo:lo + config.batch]
        first = torch.from_numpy(np.stack([c.frames[0] for c in chunk])).permute(0, 3, 1, 2).to(device)
        if generate is None:
            videos.append(first[:, None].expand(-1, f, -1, -1, -1).cpu())
            continue
        pairs = scripts[lo:lo + config.batch] if scripts is not None else [(c.actions, c.poses) for c in chunk]
        actions = frame_actions(torch.from_numpy(np.stack([a[: f - 1] for a, _ in pairs])).float()).to(device)
        poses = torch.from_numpy(np.stack([p[:f] for _, p in pairs])).to(device)
        generator = torch.Generator(device=device).manual_seed(config.seed + lo)
        video = generate(to_unit(first), actions, poses, f, generator)
        videos.append(to_uint8(video).cpu())
    return torch.cat(videos).numpy()


def warp_first_videos(clips: Sequence[EvalClip], frames: int, fov: float, inpaint_radius: int = 3) -> np.ndarray:
    """uint8 videos (N, F, 3, H, W): each clip's first frame splatted by its depth into the cameras of its
    first `frames` commanded poses (training.warp.forward_warp: the nearest surface wins), and the pixels no
    surface reached — what the first view never saw, the gaps of a magnified surface — filled by OpenCV's
    inpainting (Telea) from around them. A generator given the first frame, its depth and the path, with
    nothing learned: how much of a clip the first frame explains by parallax."""
    out = []
    for clip in clips:
        poses = torch.from_numpy(clip.poses[None, :frames])
        image = torch.from_numpy(clip.frames[0]).permute(2, 0, 1)[None]
        warped, valid = forward_warp(image, torch.from_numpy(clip.depth0)[None], fov, source_to_targets(poses))
        video = warped[0].permute(0, 2, 3, 1).numpy()
        holes = (~valid[0]).numpy().astype(np.uint8)
        out.append(np.stack([cv2.inpaint(np.ascontiguousarray(f), m, inpaint_radius, cv2.INPAINT_TELEA) if m.any()
                             else f for f, m in zip(video, holes)]).transpose(0, 3, 1, 2))
    return np.stack(out)


def frame_metrics(videos: np.ndarray, clips: Sequence[EvalClip], chunk: int = 16) -> dict[str, np.ndarray]:
    """Per clip and frame 1..F-1: PSNR and SSIM (N, F-1) against the ground truth (in chunks of clips:
    SSIM's float64 intermediates are ~10x the video's size)."""
    f = videos.shape[1]
    out: dict[str, list[np.ndarray]] = {"psnr": [], "ssim": []}
    for lo in range(0, len(clips), chunk):
        truth = torch.from_numpy(np.stack([c.frames[:f] for c in clips[lo:lo + chunk]])).permute(0, 1, 4, 2, 3)
        pred = torch.from_numpy(videos[lo:lo + chunk])
        out["psnr"].append(psnr(pred[:, 1:], truth[:, 1:]).numpy())
        out["ssim"].append(ssim(pred[:, 1:], truth[:, 1:]).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def _clip_rpe(job: tuple[np.ndarray, np.ndarray, np.ndarray, OdometryConfig]
              ) -> tuple[float, float, float, float, float]:
    video, poses, K, cfg = job
    path = estimate_path(video, K, poses[0], cfg)
    rpe = path_rpe(path.poses, poses)
    steps = max(len(path.kinds), 1)
    measured = [p for p in path.parallax_px if np.isfinite(p)]
    return (rpe["rpe_t"], rpe["rpe_r"], path.kinds.count("lost") / steps, path.kinds.count("turned") / steps,
            float(np.mean(measured)) if measured else math.nan)


def path_errors(videos: np.ndarray, clips: Sequence[EvalClip], fov: float, workers: int = 1,
                cfg: OdometryConfig = OdometryConfig()) -> dict[str, np.ndarray]:
    """Per clip: RPE translation (m, RMSE over steps), rotation (degrees, mean over steps), the
    shares of steps the estimator lost and read as turns only, and the parallax (pixels, the mean
    over the clip's windows that were not lost; NaN when all were), of uint8 videos
    (N, F, 3, H, W) against each clip's commanded poses."""
    f, h, w = videos.shape[1], videos.shape[3], videos.shape[4]
    K = opencv_intrinsics(fov, w, h)
    jobs = [(np.ascontiguousarray(v.transpose(0, 2, 3, 1)), c.poses[:f], K, cfg) for v, c in zip(videos, clips)]
    if workers > 1:
        with process_pool(workers) as pool:
            rows = list(pool.map(_clip_rpe, jobs, chunksize=8))
    else:
        rows = [_clip_rpe(job) for job in jobs]
    t, r, lost, turned, parallax = (np.array(col, dtype=np.float64) for col in zip(*rows))
    return {"rpe_t": t, "rpe_r": r, "lost": lost, "turned": turned, "parallax_px": parallax}


def commanded_steps(clips: Sequence[EvalClip], frames: int) -> dict[str, float]:
    """Mean commanded step of the clips' first `frames` frames: metres and degrees per step (what an
    estimate that sees no motion scores)."""
    still = [relative_pose_error(np.repeat(c.poses[:1], frames, axis=0), c.poses[:frames]) for c in clips]
    return {"translation_m": float(np.mean([np.mean(t) for t, _ in still])),
            "rotation_deg": float(np.mean([np.mean(r) for _, r in still]))}


def paths_report(videos: dict[str, np.ndarray], clips: Sequence[EvalClip], frames: int, fov: float, workers: int,
                 odometry: OdometryConfig, reference: str = "model") -> dict[str, Any]:
    """metrics.json's `paths`: the action following (path_errors) of each method's videos and of the
    ground-truth renders (the estimator's floor), summarised and paired against `reference`
    (summarize_paths), with the commanded step, the odometry's settings and the seconds it took."""
    started = time.perf_counter()
    truth = np.stack([c.frames[:frames] for c in clips]).transpose(0, 1, 4, 2, 3)
    errors = {name: path_errors(v, clips, fov, workers, odometry)
              for name, v in {**videos, "ground_truth": truth}.items()}
    return {**summarize_paths(errors, clips, reference), "steps": commanded_steps(clips, frames),
            "odometry": asdict(odometry), "seconds": round(time.perf_counter() - started, 1)}


def summarize_paths(errors: dict[str, dict[str, np.ndarray]], clips: Sequence[EvalClip], reference: str = "model"
                    ) -> dict[str, Any]:
    """RPE and parallax per method (overall, per script kind, per script), the shares of steps lost
    and read as turns only, and paired differences vs `reference` (parallax over the clips both
    measured)."""
    out: dict[str, Any] = {"methods": {}, "paired": {}}
    names = ("rpe_t", "rpe_r", "parallax_px")
    for method, values in errors.items():
        entry = {k: v for name in names for k, v in _breakdown(name, values[name], clips, 5).items()}
        entry["lost_share"] = float(values["lost"].mean())
        entry["turned_share"] = float(values["turned"].mean())
        out["methods"][method] = entry
    if reference in errors:
        for method in errors:
            if method != reference:
                diffs = {name: errors[reference][name] - errors[method][name] for name in names}
                out["paired"][f"{reference}-{method}"] = {
                    name: with_z(mean_se(d[np.isfinite(d)])) for name, d in diffs.items()}
    return out


def _breakdown(name: str, values: np.ndarray, clips: Sequence[EvalClip], digits: int) -> dict[str, Any]:
    """One per-clip metric as `name` (mean ± SE), `name_by_kind`, `name_by_script` and `name_per_clip`
    (None where a clip has no value: a NaN, which the means leave out)."""
    kind_of = np.array([c.kind for c in clips])
    script_of = np.array([c.script for c in clips])
    finite = np.isfinite(values)
    return {name: mean_se(values[finite]),
            f"{name}_by_kind": {k: mean_se(values[finite & (kind_of == k)]) for k in sorted(set(kind_of))},
            f"{name}_by_script": {k: mean_se(values[finite & (script_of == k)]) for k in sorted(set(script_of))},
            f"{name}_per_clip": [round(float(x), digits) if np.isfinite(x) else None for x in values]}


def clip_id(clip: EvalClip) -> str:
    """scene/start/script: names a clip across runs on the same eval set."""
    return f"{clip.scene}/{clip.start}/{clip.script}"


def summarize(metrics: dict[str, dict[str, np.ndarray]], clips: Sequence[EvalClip], reference: str = "model"
              ) -> dict[str, Any]:
    """Mean ± SE per method (overall, per script kind, per frame) and paired differences vs `reference`,
    overall and at each frame index (whether a model beats a baseline at every frame, with its z), and
    at each frame index per script kind (an out-and-back script's last frames are its first frame again,
    which copy-first holds exactly: the other kinds say whether a model holds up over time)."""
    kinds = sorted({c.kind for c in clips})
    kind_of = np.array([c.kind for c in clips])
    out: dict[str, Any] = {"clips": len(clips), "clip_ids": [clip_id(c) for c in clips], "methods": {}, "paired": {}}
    for method, values in metrics.items():
        entry: dict[str, Any] = {}
        for name, per_frame in values.items():
            per_clip = per_frame.mean(axis=1)
            entry[name] = mean_se(per_clip)
            entry[f"{name}_by_kind"] = {k: mean_se(per_clip[kind_of == k]) for k in kinds}
            entry[f"{name}_by_frame"] = [round(float(v), 4) for v in per_frame.mean(axis=0)]
            entry[f"{name}_per_clip"] = [round(float(v), 4) for v in per_clip]  # pairs runs (eval.compare)
        out["methods"][method] = entry
    if reference in metrics:
        for method in metrics:
            if method == reference:
                continue
            diff = metrics[reference]["psnr"] - metrics[method]["psnr"]  # (N, F-1)
            out["paired"][f"{reference}-{method}"] = {
                "psnr_db": with_z(mean_se(diff.mean(axis=1))),
                "psnr_db_by_frame": _by_frame(diff),  # frames 1..F-1
                "psnr_db_by_frame_by_kind": {k: _by_frame(diff[kind_of == k]) for k in kinds}}
    return out


def _by_frame(diff: np.ndarray) -> list[dict[str, float]]:
    """Paired differences (clips, frames) as mean ± SE with z at each frame index."""
    return [with_z(mean_se(diff[:, i])) for i in range(diff.shape[1])]
