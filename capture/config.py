"""Capture settings: engines (running UE instances or launched stand-ins), camera, client, retries.

Built from YAML with `common.config.load_yaml(CaptureConfig, path)`; unknown keys are errors.
Trajectory sources (replay, planner, ingest) have their own sections in `capture.sources`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class EndpointConfig:
    """A running Unreal Engine instance with the UnrealCV plugin listening on host:port."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"endpoint {self.host}:{self.port}: port out of range")

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class StandinPoolConfig:
    """Stand-in engines the pipeline launches itself (used when `endpoints` is empty and no
    `fleet.binary` is set): each is laid out as a packaged game and supervised as the fleet's are."""

    instances: int = 2  # in all, placed by Ray wherever there is room
    instances_per_node: int | None = None  # instead: this many on every live node (a cluster build)
    scene: str = "room-1"  # the level each instance starts in; jobs switch it with `vrun open`
    settings: tuple[str, ...] = ()  # EngineConfig overrides, e.g. "faults.black_frame=0.02"
    startup_timeout_s: float = 60.0
    log_dir: str | None = None  # default: <staging>/.engine_logs (an <instance>.<launch>.log each)

    def __post_init__(self) -> None:
        if self.instances < 1:
            raise ValueError(f"standin.instances must be >= 1, got {self.instances}")
        if self.instances_per_node is not None and self.instances_per_node < 1:
            raise ValueError(f"standin.instances_per_node must be >= 1, got {self.instances_per_node}")


@dataclass(frozen=True)
class FleetConfig:
    """Unreal Engine game instances the pipeline launches itself, one per capture actor (used when
    `binary` is set and `endpoints` is empty): capture/game.py launches and supervises each."""

    binary: str | None = None  # a packaged Linux build: <Project>.sh or <Project>/Binaries/Linux/<Project>
    map: str | None = None  # the level each instance starts in; jobs switch it with `vrun open`
    args: tuple[str, ...] = ()  # more command-line arguments for every instance
    instances: int = 1  # in all, placed by Ray wherever the resources are free
    instances_per_node: int | None = None  # instead: this many on every live node that has the resources
    gpus_per_instance: float = 0.0  # Ray GPUs per capture actor; the first one is `-graphicsadapter`
    resources: dict[str, float] = field(default_factory=dict)  # custom Ray resources per instance, e.g. {ue: 1}
    startup_deadline_s: float = 180.0
    log_dir: str | None = None  # default: <staging>/.engine_logs (an <instance>.<launch>.log each)
    offscreen: bool = True  # -RenderOffScreen

    def __post_init__(self) -> None:
        if self.instances < 1 or self.gpus_per_instance < 0 or not self.startup_deadline_s > 0:
            raise ValueError("fleet.instances must be >= 1, fleet.gpus_per_instance >= 0, "
                             "fleet.startup_deadline_s > 0")
        if self.instances_per_node is not None and self.instances_per_node < 1:
            raise ValueError(f"fleet.instances_per_node must be >= 1, got {self.instances_per_node}")
        if any(not v > 0 for v in self.resources.values()):
            raise ValueError(f"fleet.resources: amounts must be > 0, got {self.resources}")


@dataclass(frozen=True)
class CameraConfig:
    """The spawned capture camera: image size, horizontal FOV (longer side), extra modalities."""

    width: int = 640
    height: int = 480
    fov: float = 90.0
    depth: bool = False  # planar depth, stored in metres (float32 .npy per frame)
    object_mask: bool = False  # object colour mask (.png per frame)

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8:
            raise ValueError(f"camera size must be at least 8x8, got {self.width}x{self.height}")
        if not 0 < self.fov < 180:
            raise ValueError(f"camera.fov must be in (0, 180), got {self.fov}")


@dataclass(frozen=True)
class ClientConfig:
    request_timeout_s: float = 10.0  # one frame's batch of requests
    connect_timeout_s: float = 10.0  # TCP connect + greeting + capability probe
    connect_attempts: int = 3  # per (re)connect to a running engine, with backoff
    connect_backoff_s: float = 1.0  # first wait between connect attempts; doubles
    use_vbatch: bool = True  # prefix each frame's batch with `vbatch N` (same engine tick)
    image_format: Literal["bmp", "png"] = "bmp"  # lit/mask transfer format (bmp: no compression)
    warmup_frames: int = 2  # frames rendered and discarded at a trajectory's first pose
    readback_tolerance_cm: float = 0.5  # read-back pose vs commanded: larger is an engine fault
    readback_tolerance_deg: float = 0.05
    level_load_timeout_s: float = 120.0  # after `vrun open`: until `vget /level/name` reports the level

    def __post_init__(self) -> None:
        if self.request_timeout_s <= 0 or self.connect_timeout_s <= 0 or self.level_load_timeout_s <= 0:
            raise ValueError("client timeouts must be > 0")
        if self.connect_attempts < 1 or self.warmup_frames < 0:
            raise ValueError("client.connect_attempts must be >= 1 and client.warmup_frames >= 0")


@dataclass(frozen=True)
class StagingConfig:
    """How staged frames are stored (formats.md 1.2 layout)."""

    frame_format: Literal["png", "jpg"] = "png"
    png_compression: int = 1  # 0-9; 1 is fast and still lossless
    jpeg_quality: int = 95
    resume: bool = True  # skip a trajectory whose staged copy has the same fingerprint

    def __post_init__(self) -> None:
        if not 0 <= self.png_compression <= 9 or not 1 <= self.jpeg_quality <= 100:
            raise ValueError("staging.png_compression must be 0-9 and staging.jpeg_quality 1-100")


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 3  # per trajectory, each on another engine where one is free
    max_engine_failures: int = 3  # consecutive failures before an engine is retired
    actor_cpus: float = 1.0  # Ray CPUs reserved per capture actor

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_engine_failures < 1:
            raise ValueError("retry.max_attempts and retry.max_engine_failures must be >= 1")


@dataclass(frozen=True)
class CaptureConfig:
    endpoints: tuple[EndpointConfig, ...] = ()  # empty: launch the fleet's games, or else stand-ins
    fleet: FleetConfig = field(default_factory=FleetConfig)
    standin: StandinPoolConfig = field(default_factory=StandinPoolConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    staging: StagingConfig = field(default_factory=StagingConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
