"""Every input of a build, found and named before any work (docs/capture.md, "Input names").

Inputs come from three places: planned paths (`planner`), replayed logs (`replay.sources`, a file or
a folder of `.csv` files, any case) and pre-rendered sequences (`<root>/<scene>/<trajectory>/` under
each `ingest.roots`). Each gets one id, `scene/trajectory`, decided here, so that no two inputs
ever share staging folders, caches or sample keys:

- a name already made of `[A-Za-z0-9_-]` is kept as it is;
- a name with other characters is sanitised (runs of them become `_`) and always gets the suffix
  `_` + the first 6 hex digits of the SHA-256 of the original name (UTF-8), so `my scene` becomes
  `my_scene_<hash>` and never takes the id of a folder really called `my_scene`; the id does not
  depend on the other inputs, so adding inputs never renames one;
- two inputs that still end with the same key prefix `scene-trajectory` (the same name from two
  places: a planned path and an ingest folder `room_0001/plan0000`, two logs `a/x.csv` and `b/x.csv`
  replayed in one scene, `a-b/c` and `a/b-c`) are a configuration error naming both sources.

The same source reached twice (an ingest root given twice, a symlinked scene folder, a log named
twice) is read once, and the repeat is listed under `skipped` with the reason. So are entries that
are no input (a file among scene folders, a scene folder with no trajectory folders, a non-CSV file
in a log folder, a link that loops or points nowhere at scene level); a trajectory folder that is a
dangling link is a failed input. A missing ingest root or replay path, and a build with no inputs at
all, are configuration errors, raised here before anything is captured.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from collections.abc import Sequence as Seq
from dataclasses import dataclass

from annotate.actions import ActionSpec
from capture.ingest import IngestConfig, Sequence
from capture.planner import PlannerConfig, plan_jobs
from capture.probe_planner import PlanRequest, plan_requests
from capture.records import NAME, CaptureJob, CaptureResult, safe_name
from capture.replay import ReplayConfig, ReplaySource, stand_in_spec
from capture.standin.scene import level_name
from capture.video import VideoConfig, VideoSource, is_video_file


class InputError(ValueError):
    """The inputs cannot be named or found: a configuration error, raised before any work."""


@dataclass(frozen=True)
class Skipped:
    """Something found among the inputs that is not one (or a repeat of one), and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Inputs:
    replay: tuple[ReplaySource, ...]  # one file each, `name` set to the id's trajectory
    planned: tuple[CaptureJob, ...]
    sequences: tuple[Sequence, ...]  # scene and trajectory are ids
    failed: tuple[CaptureResult, ...]  # inputs that cannot even be opened (a dangling link)
    skipped: tuple[Skipped, ...]
    plans: tuple[PlanRequest, ...] = ()  # paths planned on the engines first (planner mode `probe`)
    videos: tuple[VideoSource, ...] = ()  # plain footage without poses (capture/video.py)

    def __len__(self) -> int:
        return (len(self.replay) + len(self.planned) + len(self.sequences) + len(self.failed)
                + sum(len(r.trajectories) for r in self.plans) + len(self.videos))


def name_id(raw: str) -> str:
    """A scene or trajectory name as it appears in ids: kept when valid, else sanitised + hash suffix."""
    if NAME.match(raw):
        return raw
    return f"{safe_name(raw)}_{hashlib.sha256(raw.encode('utf-8', 'surrogateescape')).hexdigest()[:6]}"


def check_unique(ids: Seq[tuple[str, str, str]]) -> None:
    """(scene, trajectory, source) triples: two that share `scene-trajectory` are an error naming both."""
    seen: dict[str, tuple[str, str, str]] = {}
    clashes = []
    for scene, trajectory, source in ids:
        key = f"{scene}-{trajectory}"
        if key in seen:
            clashes.append(f"{seen[key][0]}/{seen[key][1]} from {seen[key][2]} and {scene}/{trajectory} from {source}")
        else:
            seen[key] = (scene, trajectory, source)
    if clashes:
        raise InputError(f"{len(clashes)} input name clash(es), each would overwrite the other's data: "
                         f"{'; '.join(clashes[:5])}; rename one of each pair (or give a replay source a `name`)")


def _dangling(path: pathlib.Path) -> str | None:
    """Why a path that is listed cannot be followed (a loop, a missing target), or None."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _root(root: str, kind: str) -> pathlib.Path:
    """An ingest or video root, which must be a folder (InputError naming it otherwise)."""
    path = pathlib.Path(root)
    if not path.is_dir():
        raise InputError(f"{kind} root {root} {'does not exist' if not path.exists() else 'is not a folder'}")
    return path


def _admit(path: pathlib.Path, scene_id: str, trajectory_id: str, endpoint: str, seen: dict[pathlib.Path, str],
           failed: list[CaptureResult], skipped: list[Skipped], not_input: str | None) -> bool:
    """Whether an entry of a scene folder is an input to take: a dangling link is a failed row, an
    entry that is none (`not_input`, the reason) or was reached before is skipped."""
    broken = _dangling(path)
    if broken:
        failed.append(CaptureResult(scene_id, trajectory_id, "failed", f"{path}: cannot be opened ({broken})", 0, (),
                                    endpoint, 0.0, None, str(path)))
        return False
    if not_input is not None:
        skipped.append(Skipped(str(path), not_input))
        return False
    real = path.resolve()
    if real in seen:
        skipped.append(Skipped(str(path), f"the same folder as {seen[real]}: read once"))
        return False
    seen[real] = str(path)
    return True


def scan_ingest(roots: Seq[str]) -> tuple[list[Sequence], list[CaptureResult], list[Skipped]]:
    """The `<root>/<scene>/<trajectory>/` folders of every root (hidden names ignored), with ids."""
    sequences: list[Sequence] = []
    failed: list[CaptureResult] = []
    skipped: list[Skipped] = []
    seen: dict[pathlib.Path, str] = {}
    for root in roots:
        path = _root(root, "ingest")
        real = path.resolve()
        if real in seen:
            skipped.append(Skipped(str(root), f"the same folder as ingest root {seen[real]}: read once"))
            continue
        seen[real] = str(root)
        for scene in sorted(path.iterdir()):
            if scene.name.startswith("."):
                continue
            why = _dangling(scene)
            if why or not scene.is_dir():
                skipped.append(Skipped(str(scene), f"not a scene folder ({why or 'a file'})"))
                continue
            try:
                folders = [t for t in sorted(scene.iterdir()) if not t.name.startswith(".")]
            except OSError as exc:
                skipped.append(Skipped(str(scene), f"cannot be listed ({exc.strerror or exc})"))
                continue
            if not any(t.is_dir() or _dangling(t) for t in folders):
                skipped.append(Skipped(str(scene), "a scene folder with no trajectory folders"))
                continue
            for trajectory in folders:
                scene_id, trajectory_id = name_id(scene.name), name_id(trajectory.name)
                if _admit(trajectory, scene_id, trajectory_id, "ingest", seen, failed, skipped,
                          None if trajectory.is_dir() else "not a trajectory folder (a file)"):
                    sequences.append(Sequence(scene_id, trajectory_id, trajectory))
    return sequences, failed, skipped


def scan_video(roots: Seq[str]) -> tuple[list[VideoSource], list[CaptureResult], list[Skipped]]:
    """The video files and frame folders `<root>/<scene>/<entry>` of every root, with ids (a file's
    id is its stem's); hidden names ignored, other files skipped with the reason."""
    videos: list[VideoSource] = []
    failed: list[CaptureResult] = []
    skipped: list[Skipped] = []
    seen: dict[pathlib.Path, str] = {}
    for root in roots:
        path = _root(root, "video")
        for scene in sorted(p for p in path.iterdir() if not p.name.startswith(".")):
            if _dangling(scene) or not scene.is_dir():
                skipped.append(Skipped(str(scene), "not a scene folder (a file, or a link to nothing)"))
                continue
            for entry in sorted(p for p in scene.iterdir() if not p.name.startswith(".")):
                scene_id = name_id(scene.name)
                trajectory_id = name_id(entry.stem if entry.is_file() else entry.name)
                other = entry.is_file() and not is_video_file(entry)
                if _admit(entry, scene_id, trajectory_id, "video", seen, failed, skipped,
                          "not a video file (.mp4, .webm, .mkv, .mov, .avi, .m4v)" if other else None):
                    videos.append(VideoSource(scene_id, trajectory_id, entry))
    return videos, failed, skipped


def expand_replay(sources: Seq[ReplaySource]) -> tuple[list[ReplaySource], list[Skipped]]:
    """One source per log file (a folder's `.csv` files, any case, sorted), each with its id's name."""
    files: list[ReplaySource] = []
    skipped: list[Skipped] = []
    seen: dict[tuple[pathlib.Path, str], str] = {}
    for source in sources:
        path = pathlib.Path(source.path)
        if not path.exists() and not path.is_symlink():
            raise InputError(f"replay source {source.path} does not exist")
        if path.is_dir():
            if source.name is not None:
                raise InputError(f"replay source {source.path} is a folder: `name` applies to one file only")
            entries = [p for p in sorted(path.iterdir()) if not p.name.startswith(".")]
            logs = [p for p in entries if p.suffix.lower() == ".csv" and (p.is_file() or _dangling(p))]
            skipped += [Skipped(str(p), "not a .csv log") for p in entries if p not in logs]
            if not logs:
                skipped.append(Skipped(str(path), "a log folder with no .csv files"))
            candidates = [dataclasses.replace(source, path=str(p)) for p in logs]
        else:
            candidates = [source]
        for one in candidates:
            real = (pathlib.Path(one.path).resolve(), one.scene)
            if real in seen:
                skipped.append(Skipped(one.path, f"the same log as {seen[real]} in scene {one.scene}: replayed once"))
                continue
            seen[real] = one.path
            name = one.name if one.name is not None else name_id(pathlib.Path(one.path).stem)
            if not NAME.match(name):
                raise InputError(f"replay source {one.path}: name {name!r} may only use [A-Za-z0-9_-]")
            files.append(dataclasses.replace(one, name=name))
    return files, skipped


def replay_scene(source: ReplaySource) -> str:
    """The scene id a replayed log is captured in: the stand-in level's name, or the UE level's."""
    return level_name(source.scene) if stand_in_spec(source.scene) else name_id(source.scene)


def discover(replay: ReplayConfig, planner: PlannerConfig, ingest: IngestConfig, actions: ActionSpec,
             video: VideoConfig = VideoConfig()) -> Inputs:
    """Find and name every input; raises InputError (a configuration error) before any capture."""
    sequences, failed, skipped = scan_ingest(ingest.roots)
    videos, broken, more = scan_video(video.roots)
    failed += broken
    skipped += more
    logs, more = expand_replay(replay.sources)
    skipped += more
    some = planner.trajectories_per_scene > 0
    planned = plan_jobs(planner, actions) if some and planner.mode == "scene" else []
    plans = plan_requests(planner, actions) if some and planner.mode == "probe" else []
    check_unique([(j.scene, j.trajectory, j.source) for j in planned]
                 + [(r.level, t, s) for r in plans for t, s in zip(r.trajectories, r.sources)]
                 + [(replay_scene(s), str(s.name), s.path) for s in logs]
                 + [(s.scene, s.trajectory, str(s.folder)) for s in sequences]
                 + [(v.scene, v.trajectory, str(v.path)) for v in videos]
                 + [(r.scene, r.trajectory, r.source) for r in failed])
    inputs = Inputs(tuple(logs), tuple(planned), tuple(sequences), tuple(failed), tuple(skipped), tuple(plans),
                    tuple(videos))
    if not len(inputs):
        where = ([f"ingest root {r}" for r in ingest.roots] + [f"video root {r}" for r in video.roots]
                 + [f"replay source {s.path}" for s in replay.sources])
        raise InputError("no inputs: " + (f"nothing found in {', '.join(where)}" if where else
                                          "the configuration names no planned paths, replay logs, ingest or video roots"))
    return inputs


def find_sequences(root: str | pathlib.Path) -> list[Sequence]:
    """The sequences of one ingest root, with their ids (what `scan_ingest` finds there)."""
    return scan_ingest([str(root)])[0]
