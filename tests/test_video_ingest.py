"""Plain video in (capture/video.py): mp4/webm files made here with PyAV and frame folders without
poses.csv go through the build's filter, clips and shards as `video` samples (frames and metadata,
no actions, motion or poses), next to posed ones; bad videos are failed rows naming the file, the
rest builds; the loader yields both kinds in one batch with `posed` telling them apart, and the
teacher trains the unconditional model on the video ones."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import tarfile

import av
import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from datasets.loader import LoaderConfig, make_loader
from tests.filter_helpers import planned
from tests.test_build import ROOT
from capture.standin.footage import render_footage

W, H, FPS = 64, 48, 24


def _encode(frames: list[np.ndarray], path: pathlib.Path, codec: str, fmt: str | None = None) -> None:
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        container.start_encoding()  # the header, also for a video of no frames
        for bgr in frames:
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("video")
    renders = tmp / "renders"
    frames = {}
    for scene, seed in (("street-4", 1), ("courtyard-3", 2)):
        poses, times = planned(scene, 40, seed)
        folder, _ = render_footage(scene, poses, times, renders, "walk", W, H)
        frames[scene] = [cv2.imread(str(p)) for p in sorted((folder / "frames").iterdir())]
    root = tmp / "videos"
    (root / "town").mkdir(parents=True)
    _encode(frames["street-4"], root / "town" / "walk.mp4", "libx264")
    _encode(frames["courtyard-3"], root / "town" / "yard.webm", "libvpx-vp9")
    folder = root / "garden" / "stills"  # a frame folder: frames/ and an fps, no poses.csv
    (folder / "frames").mkdir(parents=True)
    for i, image in enumerate(frames["courtyard-3"]):
        cv2.imwrite(str(folder / "frames" / f"{i:04d}.png"), image)
    (folder / "meta.json").write_text(json.dumps({"fps": 20, "caption": "a courtyard, slowly"}))
    bad = root / "bad"
    bad.mkdir()
    whole = (root / "town" / "walk.mp4").read_bytes()
    (bad / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    _encode(frames["street-4"], tmp / "full.webm", "libvpx-vp9")
    cut = (tmp / "full.webm").read_bytes()
    (bad / "cut.webm").write_bytes(cut[: len(cut) // 2])  # decodes, but to fewer frames than it states
    _encode([], bad / "empty.mkv", "libx264", "matroska")
    _encode(frames["street-4"], tmp / "mpeg4.avi", "mpeg4")
    (bad / "unknown.avi").write_bytes((tmp / "mpeg4.avi").read_bytes().replace(b"FMP4", b"QQQQ"))
    (bad / "notes.txt").write_text("not a video")
    config = {
        "capture": {"capture": {"camera": {"width": W, "height": H}, "standin": {"instances": 1}},
                    "sources": {"video": {"roots": [str(root)]},
                                "planner": {"scenes": ["room-1"], "trajectories_per_scene": 1, "frames": 40}}},
        "clips": {"window": {"frames": 9, "stride": 8}, "palindrome": {"share": 0.0}},
        "splits": {"val_fraction": 0.0},
        "shards": {"max_samples": 8},
    }
    path = tmp / "video.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp / "out"
    done = subprocess.run([sys.executable, str(ROOT / "pipelines" / "build_dataset.py"), "--config", str(path),
                           "--out", str(out), "--num-cpus", "2", "--no-progress"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, out


def test_videos_and_frame_folders_become_video_samples_and_bad_videos_fail_by_name(built):
    root, out = built
    table = pd.read_parquet(out / "trajectories.parquet").set_index("trajectory")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["trajectories"]["in"] == len(table) == 8  # 3 videos, 4 bad ones, 1 planned path
    for name in ("walk", "yard", "stills", "plan0000"):
        assert table.loc[name, "stage"] == "" and table.loc[name, "clips"] > 0, table.loc[name].to_dict()
    reasons = {name: table.loc[name, "reason"] for name in ("truncated", "cut", "empty", "unknown")}
    assert all(table.loc[name, "stage"] == "capture" for name in reasons)
    for name, text in reasons.items():
        assert str(root / "bad") in text and name in text, text
    assert "cannot be opened" in reasons["truncated"] and "truncated" in reasons["cut"]
    assert "cannot be opened" in reasons["empty"] or "0 decodable" in reasons["empty"]
    assert "decoding failed at frame 0" in reasons["unknown"]
    assert any(s["path"].endswith("notes.txt") for s in stats["skipped"])

    manifest = pd.read_parquet(out / "manifest.parquet")
    kinds = manifest.groupby("trajectory")["kind"].unique()
    assert {k for ks in kinds for k in ks} == {"posed", "video"} and list(kinds["plan0000"]) == ["posed"]
    assert stats["samples_by_kind"]["video"] == int((manifest["kind"] == "video").sum()) > 0
    video = manifest[manifest["kind"] == "video"]
    assert (video["action_counts"].map(sum) == 0).all() and video["translation_scale"].isna().all()
    assert np.allclose(video[video["trajectory"] == "stills"]["fps"], 20)
    assert np.allclose(video[video["trajectory"] == "walk"]["fps"], FPS)
    members = set()
    for shard in sorted((out / "shards").glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            members |= {m.name for m in tar.getmembers()}
    for key in video["key"]:
        mine = {m.split(".", 1)[1] for m in members if m.split(".", 1)[0] == key}
        assert mine == {"json", *(f"{i:04d}.jpg" for i in range(9))}, (key, mine)
    staged = out / "staging" / "town" / "walk"
    meta = json.loads((staged / "meta.json").read_text())
    assert meta["kind"] == "video" and not (staged / "poses.csv").exists() and len(meta["frame_times"]) == 40


def test_the_loader_batches_both_kinds_and_says_which(built):
    _, out = built
    manifest = pd.read_parquet(out / "manifest.parquet")
    loader = make_loader(LoaderConfig(urls=[str(p) for p in sorted((out / "shards").glob("train-*.tar"))],
                                      batch_size=len(manifest), shuffle_buffer=0, partial_batches=True),
                         num_workers=0)
    batch = next(iter(loader))
    kinds = dict(zip(manifest["key"], manifest["kind"]))
    posed = batch["posed"]
    assert posed.dtype == torch.bool and posed.tolist() == [kinds[k] == "posed" for k in batch["key"]]
    assert posed.any() and not posed.all()
    assert (batch["actions"][~posed] == 0).all() and (batch["motion"][~posed] == 0).all()
    assert torch.equal(batch["poses"][~posed], torch.eye(4, dtype=torch.float64).expand_as(batch["poses"][~posed]))
    assert batch["intrinsics"][~posed].isnan().all() and not batch["intrinsics"][posed].isnan().any()
    assert batch["frames"].shape[:2] == (len(manifest), 9)
    # one frame in every 2: posed samples get labels recomputed from the taken poses, video samples
    # keep their placeholders; both play at half the rate
    loader = make_loader(LoaderConfig(urls=[str(p) for p in sorted((out / "shards").glob("train-*.tar"))],
                                      batch_size=len(manifest), shuffle_buffer=0, partial_batches=True,
                                      frame_step=2), num_workers=0)
    halved = next(iter(loader))
    assert halved["frames"].shape[:2] == (len(manifest), 5) and halved["posed"].tolist() == posed.tolist()
    assert torch.equal(halved["frames"], batch["frames"][:, ::2])
    assert torch.equal(halved["poses"], batch["poses"][:, ::2])
    assert (halved["actions"][~posed] == 0).all() and (halved["motion"][~posed] == 0).all()
    assert halved["actions"][posed].shape[1:] == (4, 13) and (halved["actions"][posed].sum(-1) > 0).all()
    assert [m["fps"] for m in halved["meta"]] == [m["fps"] / 2 for m in batch["meta"]]


def test_the_teacher_trains_unconditionally_on_video_samples(built, tmp_path):
    """teacher_loss gives plain video clips the dropped (unconditional) conditioning, whatever the
    dropout draw; a run on the mixed shards trains; a student stage refuses them by name."""
    from training.data import ActionSpecGuard, ClipBatch
    from training.teacher import teacher_loss

    seen = {}

    def model(x, sigma, actions, poses, keep):
        seen["keep"] = keep.clone()
        return torch.zeros_like(x)

    b, f = 4, 3
    batch = ClipBatch(torch.zeros(b, f, 3, 8, 8), torch.zeros(b, f, 13), torch.eye(4).expand(b, f, 4, 4),
                      torch.tensor([True, False, True, False]))
    teacher_loss(model, batch, shift=1.0, dropout=0.0)
    assert seen["keep"].tolist() == [True, False, True, False]

    _, out = built
    count = len(list((out / "shards").glob("train-*.tar")))
    shards = str(out / "shards" / f"train-{{000000..{count - 1:06d}}}.tar")
    run = subprocess.run([sys.executable, "-m", "training.teacher", "--shards", shards, "--preset", "tiny",
                          "--out", str(tmp_path / "teacher"), "--set", "max_steps=2", "--set", "data.frames=5",
                          "--set", "data.batch_size=4", "--set", "data.workers=0", "--set", "log_every=1",
                          "--set", "model.height=48", "--set", "model.width_px=64"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    log = [json.loads(line) for line in (tmp_path / "teacher" / "log.jsonl").read_text().splitlines()]
    assert log and all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    video_meta = {"kind": "video"}
    with pytest.raises(ValueError, match="a plain video sample"):
        ActionSpecGuard().check({"key": ["k"], "meta": [video_meta]})
    ActionSpecGuard(video=True).check({"key": ["k"], "meta": [video_meta]})
    shutil.rmtree(tmp_path / "teacher")
