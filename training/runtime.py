"""What every trainer here needs around the model: device and precision, EMA weights, checkpoints
(loaded with `weights_only=True`), JSONL logs and the throughput/MFU figures in them.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

#: dense bf16 tensor-core peak (FLOP/s) by device-name fragment, for MFU; unknown devices report none
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "4090": 165e12}


def pick_device(name: str | None = None) -> torch.device:
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    gpu = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in gpu), None)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA when asked; fp32 otherwise (CPU runs fp32: the tests compare numbers)."""
    if device.type == "cuda" and precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class EMA:
    """Exponential moving average of a model's parameters (buffers copied)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.detach().float(), 1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise KeyError(f"EMA state does not match the model: {sorted(missing)[:5]}")
        for k, v in state.items():
            self.shadow[k].copy_(v)


def save_checkpoint(path: pathlib.Path, state: dict[str, Any]) -> None:
    """Atomic: written to a temporary name, then renamed (a kill leaves the previous checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: pathlib.Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Tensors, numbers, strings, lists and dicts only: loaded with `weights_only=True`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError/RuntimeError variants; name the file
        raise RuntimeError(f"{path}: cannot load checkpoint: {exc}") from exc


def unwrap(model: nn.Module) -> nn.Module:
    """The module under torch.compile / DDP wrappers (whose state_dict keys are prefixed)."""
    inner = getattr(model, "_orig_mod", model)
    return getattr(inner, "module", inner)


class JsonlLog:
    def __init__(self, path: pathlib.Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class Throughput:
    """Clips/s, tokens/s and MFU over the interval since the last `report`."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = peak_flops(device)
        self.reset()

    def reset(self) -> None:
        self._sync()
        self.start = time.perf_counter()
        self.clips = 0
        self.tokens = 0
        self.flops = 0.0

    def add(self, clips: int, tokens: int, flops: float) -> None:
        self.clips += clips
        self.tokens += tokens
        self.flops += flops

    def report(self) -> dict[str, float | None]:
        self._sync()
        seconds = max(time.perf_counter() - self.start, 1e-9)
        achieved = self.flops / seconds
        out: dict[str, float | None] = {"clips_per_s": self.clips / seconds, "tokens_per_s": self.tokens / seconds,
                                        "tflops": achieved / 1e12,
                                        "mfu": achieved / self.peak if self.peak else None}
        self.reset()
        return out

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


@contextlib.contextmanager
def timed(store: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - start
