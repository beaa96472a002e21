"""Decode a loader batch's JPEGs where it is consumed: on the GPU with nvJPEG, for trainers whose
CPUs cannot decode as fast as the model trains.

    loader = make_loader(LoaderConfig(urls=..., frames="jpeg"), num_workers=2)
    for batch in loader:
        batch = decode_frames(batch, torch.device("cuda"))
        batch["frames"]  # uint8 (B, T, 3, H, W) RGB on the GPU

With `LoaderConfig.frames = "jpeg"` the workers read, shuffle and batch the samples and decode
everything but the frames, whose JPEG bytes they pass on in one flat buffer (batch["jpeg"],
batch["jpeg_offsets"]). `decode_frames` decodes them in one batched call: on a CUDA device with
torchvision's `decode_jpeg` (nvJPEG; torchvision must be installed, it is not a dependency of this
package), on the CPU with OpenCV, as the workers would have. Either way the pixels are those of the
workers' decode up to the JPEG decoder's rounding (OpenCV's libjpeg-turbo and nvJPEG differ by at
most a few levels in a few pixels). No Ray import.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from datasets.loader import decode_rgb


def decode_frames(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with batch["frames"] (B, T, 3, H, W) uint8 decoded on `device` in place of its
    JPEG bytes; a batch whose frames are already decoded is returned as it is."""
    if "frames" in batch:
        return batch
    if "jpeg" not in batch:
        raise ValueError("decode_frames: the batch has neither frames nor jpeg bytes (keys "
                         f"{sorted(batch)})")
    data, offsets = batch["jpeg"], batch["jpeg_offsets"]
    b, t = offsets.shape[0], offsets.shape[1] - 1
    bounds = offsets.tolist()
    pieces = [(bounds[i][j], bounds[i][j + 1]) for i in range(b) for j in range(t)]
    images = (_decode_cuda(data, pieces, device) if device.type == "cuda" else _decode_cpu(data, pieces))
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        sizes = [tuple(image.shape) for image in images]
        odd = next(i for i, shape in enumerate(sizes) if shape != sizes[0])
        raise ValueError(f"{batch['key'][odd // t]}: frame {odd % t} is {sizes[odd]}, the batch's first "
                         f"{sizes[0]}: a batch holds one frame size")
    frames = torch.stack(images).view(b, t, *images[0].shape).to(device)
    out = {k: v for k, v in batch.items() if k not in ("jpeg", "jpeg_offsets")}
    out["frames"] = frames
    return out


def _decode_cpu(data: torch.Tensor, pieces: list[tuple[int, int]]) -> list[torch.Tensor]:
    flat = data.numpy()
    images = []
    for start, stop in pieces:
        image = decode_rgb(flat[start:stop].tobytes())
        if image is None:
            raise ValueError(f"cannot decode the JPEG at bytes {start}-{stop} of the batch")
        images.append(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))
    return images


def _decode_cuda(data: torch.Tensor, pieces: list[tuple[int, int]], device: torch.device) -> list[torch.Tensor]:
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError as exc:  # an optional dependency: say what to install
        raise RuntimeError("decoding frames on the GPU (data.decode: device) needs torchvision "
                           "(pip install torchvision, the build matching your torch)") from exc
    return decode_jpeg([data[start:stop] for start, stop in pieces], mode=ImageReadMode.RGB, device=device)
