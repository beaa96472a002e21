"""Stream the student from an action script: `python -m training.play --checkpoint S/checkpoint.pt --scene room_0001
--script forward:24,yaw_right:16,forward~back:32 --out DIR`.

The first frame is rendered by the stand-in at a free start pose in `--scene` (or read from
`--first IMAGE`). The script is a comma list of `channel[:frames]` segments (channels as in the
13-dim action, `a+b` for a mix, `c~back` for out-and-back; frames default 16), played at the
action-bin level `--level` and `--fps`. Frames are generated block by block and written to
DIR/video.mp4 as they come; DIR/play.json records per-block latency, first-block latency and the
steady-state frames/s (after `--warmup` blocks). With `--truth` the stand-in also renders the
script's ground truth next to it (DIR/truth.mp4) and PSNR per frame is recorded.

With `--keys` (instead of `--script`) a window shows the frames at `--fps` as they are generated and
the keyboard steers (training.keys: W/S/A/D/R/F move, J/L/I/K/U/O and the arrows turn, space stops;
Q, Esc, closing the window or Ctrl-C ends it); each block takes the keys held when it starts. play.json then records the
session as a script (`static` where no key was held) that `--script` replays with the same seed.
It needs a display; on a headless GPU machine use `--script`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

import cv2
import numpy as np
import torch

from annotate.actions import ActionSpec, encode_actions
from common.cli import add_dry_run, dry_run
from annotate.geometry import integrate
from capture.standin.scene import parse_scene_spec
from training.conditioning import frame_actions
from training.data import LEGACY_FPS, checkpoint_action_spec, checkpoint_fps, same_rate, to_uint8, to_unit
from training.eval.metrics import psnr
from training.eval.scripts import out_and_back
from training import keys
from training.graphs import BlockGraphs
from training.runtime import autocast, load_checkpoint, pick_device
from training.student import Student
from training.student_train import student_from_state


def parse_script(text: str, fps: float, level: int, spec: ActionSpec) -> np.ndarray:
    """'forward:24,yaw_right+forward:8,left~back:16' -> per-transition motion (N, 6)."""
    dt = 1.0 / fps
    parts = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        name, _, count = item.partition(":")
        frames = int(count) if count else 16
        if frames < 1:
            raise ValueError(f"script segment {item!r}: frames must be >= 1")
        if name.endswith("~back"):
            parts.append(out_and_back(name[:-5], frames + frames % 2, dt, spec, level))
            continue
        # "static": standing still (what a keys session records while no key is held)
        channels = () if name == "static" else tuple(name.split("+"))
        try:
            parts.append(keys.block_motion(channels, frames, dt, spec, level))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"script segment {item!r}: unknown channel in {name!r}") from exc
    if not parts:
        raise ValueError("empty script")
    return np.concatenate(parts)


class RGBVideo:
    """An mp4 (OpenCV, mp4v) written from RGB uint8 frames."""

    def __init__(self, path: pathlib.Path, fps: float, size: tuple[int, int]):
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)

    def write(self, rgb: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))

    def release(self) -> None:
        self.writer.release()


@contextlib.contextmanager
def _until_interrupted(catch: bool) -> Iterator[None]:
    """With `catch` (a --keys session), Ctrl-C ends the session like Q: what was generated is kept."""
    try:
        yield
    except KeyboardInterrupt:
        if not catch:
            raise
        print("interrupted: ending the session", file=sys.stderr)


DEFAULT_SCRIPT = "forward:24,yaw_right:16,forward~back:32"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.play", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=pathlib.Path, required=True, help="a training.student_train checkpoint")
    parser.add_argument("--out", type=pathlib.Path, required=True)
    first_from = parser.add_mutually_exclusive_group(required=True)
    first_from.add_argument("--scene", help="stand-in scene to render the first frame in")
    first_from.add_argument("--first", type=pathlib.Path, help="first frame image (model size)")
    control = parser.add_mutually_exclusive_group()
    control.add_argument("--script", help=f"action script (default {DEFAULT_SCRIPT})")
    control.add_argument("--keys", action="store_true",
                         help="steer with the keyboard in a window (training.keys lists the keys; Q, Esc or closing "
                              "the window ends the session)")
    parser.add_argument("--hold", type=float, default=0.6, help="--keys: seconds a key press holds its channel")
    parser.add_argument("--max-frames", type=int, help="--keys: stop after this many frames")
    parser.add_argument("--scale", type=int, default=4, help="--keys: window size in model pixels")
    parser.add_argument("--fps", type=float,
                        help="frames per second the script steps at and the video plays at (default: the rate the "
                             "checkpoint was trained at)")
    parser.add_argument("--level", type=int, default=1, help="action bin level of the script's rates")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=2, help="blocks left out of the steady-state figure")
    parser.add_argument("--truth", action="store_true", help="also render the ground truth (needs --scene)")
    parser.add_argument("--device")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="replay each block as a CUDA graph (training.graphs; fixed-capacity memory views, so the "
                             "student's memory must be bounded); the first block of each size includes the capture")
    args = add_dry_run(parser).parse_args(argv)
    script = None if args.keys else args.script or DEFAULT_SCRIPT
    spec = ActionSpec()
    try:  # checked before the checkpoint is read; stepped at the model's rate below
        motion = parse_script(script, args.fps or LEGACY_FPS, args.level, spec) if script is not None else None
        if args.scene:
            parse_scene_spec(args.scene)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        return dry_run(arguments=args, script=script, frames=None if motion is None else len(motion) + 1)
    device = pick_device(args.device)
    state = load_checkpoint(args.checkpoint, "cpu")
    student = student_from_state(state, device, str(args.checkpoint))
    data_spec = checkpoint_action_spec(state)  # the script moves at the metric bins' rates, binned as the data was
    trained_fps = checkpoint_fps(state)
    del state
    if args.fps is None:
        args.fps = trained_fps
    elif not same_rate(args.fps, trained_fps):
        print(f"note: --fps {args.fps:g} steps the camera unlike the {trained_fps:g} fps the model was trained at",
              file=sys.stderr)
    if script is not None:
        motion = parse_script(script, args.fps, args.level, spec)
    if data_spec.scaled and motion is None:
        print("error: --keys on a model trained with translation.normalize clip_mean is not supported: a live "
              "session has no clip whose mean speed the actions could be scaled by; play a --script", file=sys.stderr)
        return 2
    if args.cuda_graphs:
        if device.type != "cuda":
            print("error: --cuda-graphs needs a CUDA device", file=sys.stderr)
            return 2
        try:
            student = Student(student.model, replace(student.config, static_view=True))
        except ValueError as exc:
            print(f"error: --cuda-graphs: {exc}", file=sys.stderr)
            return 2
        student.graphs = BlockGraphs(student)
    cfg = student.model.cfg
    renderer = None
    if args.scene:
        from capture.standin.render import Renderer
        from capture.standin.scene import make_scene
        from training.eval.groundtruth import random_start
        scene = make_scene(args.scene)
        start = random_start(scene, np.random.default_rng(args.seed), clearance_m=0.35)
        renderer = Renderer(scene)
        first_rgb = renderer.render(start, cfg.width_px, cfg.height, 90.0).lit
    else:
        image = cv2.imread(str(args.first), cv2.IMREAD_COLOR)
        if image is None:
            print(f"error: {args.first}: cannot read image", file=sys.stderr)
            return 2
        first_rgb = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), (cfg.width_px, cfg.height))
        start = np.eye(4)
    first = to_unit(torch.from_numpy(first_rgb).permute(2, 0, 1)[None].to(device))
    generator = torch.Generator().manual_seed(args.seed)
    steer = None
    if motion is not None:
        poses = integrate(start, motion)
        actions = frame_actions(torch.from_numpy(encode_actions(motion, 1 / args.fps, data_spec)).float()[None]).to(device)
        blocks = student.stream(first, actions, torch.from_numpy(poses)[None].to(device), generator)
    else:
        try:
            window = keys.CvWindow(f"training.play: {args.checkpoint}", (cfg.width_px, cfg.height), args.scale)
        except (RuntimeError, cv2.error) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        steer = keys.KeyControl(window, start, args.fps, args.level, spec, device, keys.HeldKeys(args.hold),
                                args.max_frames)
        blocks = student.stream_live(first, torch.from_numpy(start)[None].to(device), steer, generator)
        steer.window.show(first_rgb)
    args.out.mkdir(parents=True, exist_ok=True)
    writer = RGBVideo(args.out / "video.mp4", args.fps, (cfg.width_px, cfg.height))
    writer.write(first_rgb)
    latencies, frames_out = [], [first_rgb]
    shown = time.perf_counter()  # when the last frame went up (--keys: frames are shown at --fps)
    t0 = shown
    with torch.no_grad(), autocast(device, args.precision), _until_interrupted(args.keys):
        for s, e, block in blocks:
            rgb = to_uint8(block[0]).permute(0, 2, 3, 1).cpu().numpy()  # .cpu() waits for the GPU
            latencies.append({"start": s, "end": e, "seconds": time.perf_counter() - t0})
            for frame in rgb:
                writer.write(frame)
                frames_out.append(frame)
                if steer is not None:
                    steer.wait(shown + 1 / args.fps)  # keys are read while the frame before is up
                    steer.window.show(frame)
                    shown = time.perf_counter()
            t0 = time.perf_counter()  # the next block's time starts here: display waits are not generation
    writer.release()
    if steer is not None:
        steer.window.close()
        script, poses = steer.recorded(len(frames_out))
    steady = latencies[args.warmup:] or latencies
    report = {"checkpoint": str(args.checkpoint), "mode": "keys" if args.keys else "script", "script": script,
              "frames": len(frames_out), "fps": args.fps, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "cuda_graphs": args.cuda_graphs}
    if latencies:
        report |= {"first_block_seconds": latencies[0]["seconds"],
                   "steady_fps": sum(b["end"] - b["start"] for b in steady) / sum(b["seconds"] for b in steady),
                   "median_frame_ms": 1e3 * statistics.median(b["seconds"] / (b["end"] - b["start"]) for b in steady)}
    report["blocks"] = latencies
    if args.truth and renderer is not None:
        truth = np.stack([renderer.render(p, cfg.width_px, cfg.height, 90.0).lit for p in poses])
        truth_video = RGBVideo(args.out / "truth.mp4", args.fps, (cfg.width_px, cfg.height))
        for frame in truth:
            truth_video.write(frame)
        truth_video.release()
        gen = torch.from_numpy(np.stack(frames_out)).permute(0, 3, 1, 2)
        report["psnr_by_frame"] = psnr(gen, torch.from_numpy(truth).permute(0, 3, 1, 2)).tolist()
    (args.out / "play.json").write_text(json.dumps(report, indent=2))
    speed = (f"steady {report['steady_fps']:.1f} frames/s, first block {report['first_block_seconds'] * 1e3:.0f} ms"
             if latencies else "no block generated")
    print(f"{len(frames_out)} frames -> {args.out / 'video.mp4'}; {speed}")
    if args.keys:
        print(f"replay this session: --script {script} --seed {args.seed} --fps {args.fps:g} --level {args.level}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
