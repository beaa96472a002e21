"""A capture worker: one engine endpoint, its connection, and the capture loop for one trajectory.

Ray-free, so it runs in-process in tests; `capture.scheduler` wraps it as a Ray actor (one per
engine). A game endpoint (a packaged UE build, or the stand-in laid out as one) is launched by the
worker through capture/game.py and relaunched on a fresh port after it dies, hangs or drops; a
running UE endpoint is reconnected with backoff. After `retry.max_engine_failures` failures in a
row the worker retires: every later job is answered with a failed attempt, at once.
"""

from __future__ import annotations

import logging
import pathlib
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from capture.client import (EngineClient, EngineConnectionLost, EngineDataError, EngineError, EngineUnavailable,
                            level_short_name)
from capture.config import CameraConfig, CaptureConfig, EndpointConfig
from capture.game import GameConfig, GameInstance, GameLaunchError
from capture.nodes import ray_node
from capture.probe_planner import PlanRequest, plan_level
from capture.records import Attempt, CaptureJob
from capture.staging import StagingWriter, intrinsics
from capture.standin.packaged import SET_FLAG, write_packaged_game

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GameEndpoint:
    """An Unreal Engine game the worker launches and owns (capture/game.py)."""

    game: GameConfig
    log_dir: str


@dataclass(frozen=True)
class StandinEndpoint:
    """A stand-in engine the worker launches as a packaged game (capture/standin/packaged.py, laid
    out in a folder of the worker's own), supervised exactly as a real game is: `scene` is its map,
    `settings` engine settings (`-RelicSet=KEY=VALUE`)."""

    scene: str
    settings: tuple[str, ...] = ()
    startup_timeout_s: float = 60.0
    log_dir: str | None = None  # default: <staging>/.engine_logs

    def game(self, binary: str, camera: CameraConfig) -> GameConfig:
        return GameConfig(binary, self.scene, tuple(f"{SET_FLAG}={item}" for item in self.settings), camera.width,
                          camera.height, camera.fov, self.startup_timeout_s)


def _ray_gpu() -> int | None:
    """The first GPU Ray gave this actor (its `-graphicsadapter`), or None outside Ray or without one."""
    try:
        import ray
    except ImportError:
        return None
    if not ray.is_initialized():
        return None
    ids = ray.get_gpu_ids()
    return int(ids[0]) if ids else None


def capture_settings(config: CaptureConfig) -> dict:
    """The settings that shape a staged trajectory (part of its fingerprint)."""
    return {"camera": asdict(config.camera), "frame_format": config.staging.frame_format,
            "jpeg_quality": config.staging.jpeg_quality}


class CaptureWorker:
    def __init__(self, endpoint: EndpointConfig | StandinEndpoint | GameEndpoint, config: CaptureConfig, staging: str,
                 name: str = "worker"):
        self.endpoint, self.config, self.name = endpoint, config, name
        self.staging = pathlib.Path(staging)
        self.game: GameInstance | None = None
        self.standin_root: pathlib.Path | None = None  # where a stand-in endpoint's packaged game is laid out
        self.client: EngineClient | None = None
        self.failures = 0  # consecutive engine failures (a trajectory's repeated losses count once)
        self.lost_on: set[str] = set()  # trajectories the engine was lost on since the last success
        self.restarts = 0
        self.retired_reason: str | None = None
        self.level: str | None = None

    # -- engine lifecycle ------------------------------------------------------------------------
    def describe(self) -> str:
        if isinstance(self.endpoint, EndpointConfig):
            return str(self.endpoint)
        kind = "standin" if isinstance(self.endpoint, StandinEndpoint) else "game"
        return f"{self.name} ({kind}:{self.game.port})" if self.game is not None and self.game.port else self.name

    def _ensure_engine(self) -> EngineClient:
        if self.client is not None and self.client.connected:
            if self.client.camera_id is None:  # a level that failed to open took the camera with it
                self.client.setup_camera(self.config.camera)
            return self.client
        if isinstance(self.endpoint, (StandinEndpoint, GameEndpoint)):
            if self.game is None or not self.game.alive() or self.client is not None:
                self._launch_game()  # a dead, hung or dropped game is relaunched on a fresh port
            assert self.game is not None
            host, port = "127.0.0.1", self.game.port
        else:
            host, port = self.endpoint.host, self.endpoint.port
        client = EngineClient(host, port, self.config.client)
        self._connect(client)
        self.client = client
        self.level = client.level()
        client.setup_camera(self.config.camera)
        return client

    def _launch_game(self) -> None:
        if self.game is None:
            game, logs = self._game_config()
            self.game = GameInstance(game, self.name, logs, _ray_gpu())
        else:
            self.restarts += 1
        try:
            self.game.start()  # stops a previous launch's process group first
        except GameLaunchError as exc:
            raise EngineUnavailable(str(exc)) from exc

    def _game_config(self) -> tuple[GameConfig, pathlib.Path]:
        """The game to launch and its log folder; a stand-in is laid out as a packaged game first."""
        if isinstance(self.endpoint, GameEndpoint):
            return self.endpoint.game, pathlib.Path(self.endpoint.log_dir)
        assert isinstance(self.endpoint, StandinEndpoint)
        self.standin_root = pathlib.Path(tempfile.mkdtemp(prefix="relic-standin-"))
        binary = write_packaged_game(self.standin_root, "RelicStandin")
        logs = self.endpoint.log_dir or str(self.staging / ".engine_logs")
        return self.endpoint.game(str(binary), self.config.camera), pathlib.Path(logs)

    def _connect(self, client: EngineClient) -> None:
        launched = not isinstance(self.endpoint, EndpointConfig)
        attempts = 1 if launched else self.config.client.connect_attempts
        wait = self.config.client.connect_backoff_s
        for attempt in range(attempts):
            try:
                client.connect()
                return
            except EngineUnavailable:
                if attempt == attempts - 1:
                    raise
                time.sleep(wait)
                wait *= 2

    def _drop_engine(self) -> None:
        if self.client is not None:
            self.client.close()
        # keep self.client set (not connected): for a stand-in, _ensure_engine relaunches it

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.game is not None:
            self.game.stop()
        if self.standin_root is not None:
            shutil.rmtree(self.standin_root, ignore_errors=True)
            self.standin_root = None
            self.game = None  # its binary is gone: a later launch lays it out again

    def _enter(self, level: str) -> EngineClient:
        """The engine, ready, in `level` (opened with `vrun open` when it is elsewhere)."""
        client = self._ensure_engine()
        if self.level != level_short_name(level):
            self.level = None  # unknown until the engine reports the new level
            client.open_level(level)
            self.level = level_short_name(level)
            client.setup_camera(self.config.camera)
        return client

    # -- discovering paths (planner mode `probe`) -----------------------------------------------
    def plan(self, request: PlanRequest) -> Attempt:
        """Discover the request's paths in its level through the protocol (capture/probe_planner.py)."""
        start = time.perf_counter()
        key = f"{request.level}/planning"
        if self.retired_reason is not None:
            return Attempt(key, False, self.describe(), f"engine retired: {self.retired_reason}", retired=True)
        try:
            plan = plan_level(self._enter(request.level), request)
        except EngineError as exc:
            return self._failed(key, "planning", exc, time.perf_counter() - start, None)
        self.failures = 0
        self.lost_on.clear()
        return Attempt(key, True, self.describe(), frames=plan.planned_frames, seconds=plan.seconds,
                       planned=plan.jobs, plan_stats=plan.stats)

    # -- one trajectory --------------------------------------------------------------------------
    def capture(self, job: CaptureJob, fingerprint: str) -> Attempt:
        start = time.perf_counter()
        if self.retired_reason is not None:
            return Attempt(job.key, False, self.describe(), f"engine retired: {self.retired_reason}", retired=True)
        writer: StagingWriter | None = None
        row: int | None = None  # the pose being captured, once the engine is ready
        try:
            client = self._enter(job.scene)
            writer = StagingWriter(self.staging, job.scene, job.trajectory, self.config.staging)
            row = 0
            for _ in range(self.config.client.warmup_frames):
                client.capture(job.locations[0], job.rotations[0])
            worst = np.zeros(2)
            for i in range(len(job)):
                row = i
                frame = client.capture(job.locations[i], job.rotations[i])
                worst = np.maximum(worst, self._check_readback(job, i, frame.location, frame.rotation))
                writer.add(float(job.times[i]), frame.lit, frame.location, frame.rotation,
                           job.locations[i], job.rotations[i], frame.depth, frame.mask)
            path = writer.commit(self._meta(job, fingerprint, worst))
            writer = None
        except EngineError as exc:
            if writer is not None:
                writer.abort()
            return self._failed(job.key, job.source, exc, time.perf_counter() - start, row)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        self.failures = 0
        self.lost_on.clear()
        return Attempt(job.key, True, self.describe(), path=str(path), frames=len(job), seconds=time.perf_counter() - start,
                       node=ray_node())

    def _failed(self, key: str, source: str, exc: EngineError, seconds: float, row: int | None) -> Attempt:
        """An attempt that failed. An engine lost while capturing counts towards retiring it only
        once per trajectory: poses that kill the engine every time (a log far outside the level)
        are that trajectory's failure, and the engine, relaunched, serves the next one; losses on
        different trajectories in a row, or an engine that cannot start, retire it."""
        lost = isinstance(exc, (EngineConnectionLost, EngineUnavailable))
        where = self.describe()
        at = f" (at pose row {row} of {source})" if row is not None else ""
        if lost:
            if row is None or key not in self.lost_on:
                self.failures += 1
            if row is not None:
                self.lost_on.add(key)
            self._drop_engine()
            if self.failures >= self.config.retry.max_engine_failures:
                self.retired_reason = f"{self.failures} engine failures in a row, last: {exc}{at}"
                log.error("%s: retired: %s", where, self.retired_reason)
                self.close()
        log_path = self.game.log_path if self.game is not None else None
        if log_path is not None and str(log_path) not in str(exc):
            at += f"; engine log: {log_path}"
        log.warning("%s: %s: %s%s", where, key, exc, at)
        return Attempt(key, False, where, f"{type(exc).__name__}: {exc}{at}", engine_lost=lost,
                       retired=self.retired_reason is not None, seconds=seconds)

    def _check_readback(self, job: CaptureJob, i: int, location: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """Largest read-back deviation (cm, deg); over tolerance is an engine fault naming the row."""
        cm = float(np.abs(location - job.locations[i]).max())
        diff = np.abs(np.mod(rotation - job.rotations[i] + 180.0, 360.0) - 180.0)
        deg = float(diff.max())
        tol = self.config.client
        if cm > tol.readback_tolerance_cm or deg > tol.readback_tolerance_deg:
            raise EngineDataError(
                f"the engine used pose {location.round(3).tolist()} {rotation.round(3).tolist()}, "
                f"commanded {job.locations[i].round(3).tolist()} {job.rotations[i].round(3).tolist()}")
        return np.array([cm, deg])

    def _meta(self, job: CaptureJob, fingerprint: str, worst: np.ndarray) -> dict:
        cam = self.config.camera
        steps = np.diff(job.times)
        fps = float(1.0 / steps.mean()) if np.allclose(steps, steps.mean(), rtol=1e-3) else None
        modalities = ["lit"] + (["depth"] if cam.depth else []) + (["object_mask"] if cam.object_mask else [])
        return {
            "scene": job.scene, "trajectory": job.trajectory, "source": job.source, "caption": job.caption,
            "engine": "standin" if isinstance(self.endpoint, StandinEndpoint) else "unreal",
            "fov": cam.fov, "fps": fps, "width": cam.width, "height": cam.height,
            "intrinsics": intrinsics(cam.fov, cam.width, cam.height), "modalities": modalities,
            "endpoint": self.describe(), "fingerprint": fingerprint,
            "readback_max_error": {"cm": round(float(worst[0]), 4), "deg": round(float(worst[1]), 4)},
            "captured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "job": job.meta,
        }

