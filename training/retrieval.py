"""Which past frames a block reads from memory, by what they saw (memory.select: view). Pure functions.

WorldPlay's reconstituted context memory keeps every past frame and, for each new block, reads the
few whose view overlaps the current camera's most, at full resolution, instead of the most recent
or evenly spaced ones. Here a past frame's overlap with the block's camera is the share of its
visible points that the block's camera sees too: points along each patch-centre ray of the past
frame at a few depths (planar depth: metres along its optical axis), projected into the block's
camera, counted when in front of it and inside its field of view. Depth is unknown to the
student, so the points sample it (`DEPTHS`); a camera that moved sees the near points leave its
view first. The score multiplies the overlap by exp(-distance / `distance_m`), the distance
between the two camera centres, so of two frames that saw the same directions (a walk straight
ahead and back) the one taken nearer the block's camera wins; ties go to the more recent frame.
Cameras are camera-to-world relative to the rollout's first frame (OpenCV axes), as the model's
pose features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from annotate.ue import fov_to_intrinsics
from training.conditioning import patch_rays

DEPTHS = (0.5, 1.0, 2.0, 4.0, 8.0)  # metres along the past camera's optical axis


@dataclass(frozen=True, eq=False)
class ViewGeometry:
    """The frames' pinhole, as the retrieval needs it."""

    points: torch.Tensor  # (D·N, 3) float64 sample points in a camera's frame: patch-centre rays x DEPTHS
    tan_half: tuple[float, float]  # tan of half the horizontal and of half the vertical field of view

    @classmethod
    def of(cls, fov: float, height: int, width: int, patch: int,
           device: torch.device | None = None) -> ViewGeometry:
        """On `device` (the memory's): each view then reads the points where its cameras are, with no
        host-to-device copy (a blocking copy would make the host wait for the GPU every block)."""
        k = fov_to_intrinsics(fov, width, height)
        rays = patch_rays(fov, height, width, patch).to(torch.float64)
        z = torch.tensor(DEPTHS, dtype=torch.float64)
        points = (rays[None, :, :] * z[:, None, None]).reshape(-1, 3)
        return cls(points if device is None else points.to(device), (k[0, 2] / k[0, 0], k[1, 2] / k[1, 1]))


def view_overlap(past: torch.Tensor, current: torch.Tensor, geometry: ViewGeometry) -> torch.Tensor:
    """past (B, F, 4, 4) and current (B, 4, 4) camera-to-world -> (B, F) the share of each past
    frame's sample points (patch-centre rays x DEPTHS) inside the current camera's view."""
    past, current = past.to(torch.float64), current.to(torch.float64)
    local = geometry.points.to(past)  # (D·N, 3) in the past camera
    world = torch.einsum("bfij,pj->bfpi", past[..., :3, :3], local) + past[..., None, :3, 3]
    rel = world - current[:, None, None, :3, 3]
    seen = torch.einsum("bji,bfpj->bfpi", current[:, :3, :3], rel)  # R_c^T (X - c_c)
    front = seen[..., 2] > 1e-6
    depth = seen[..., 2].clamp_min(1e-6)
    tan_x, tan_y = geometry.tan_half
    inside = front & ((seen[..., 0] / depth).abs() <= tan_x) & ((seen[..., 1] / depth).abs() <= tan_y)
    return inside.to(torch.float64).mean(dim=-1)


def retrieval_scores(past: torch.Tensor, current: torch.Tensor, geometry: ViewGeometry,
                     distance_m: float) -> torch.Tensor:
    """(B, F) scores of the past frames for the current camera: overlap x exp(-centre distance /
    distance_m), plus a tie-break that grows with the frame index (later frames win ties)."""
    overlap = view_overlap(past, current, geometry)
    distance = (past[..., :3, 3].to(torch.float64) - current[:, None, :3, 3].to(torch.float64)).norm(dim=-1)
    frames = past.shape[1]
    recency = torch.arange(frames, dtype=torch.float64, device=past.device) * 1e-9
    return overlap * torch.exp(-distance / distance_m) + recency


def retrieve(past: torch.Tensor, current: torch.Tensor, geometry: ViewGeometry, count: int,
             distance_m: float) -> torch.Tensor:
    """(B, min(count, F)) indices into the F past frames, per sample the best-scoring ones in
    increasing order (so the memory reads them oldest first, as the other views do)."""
    scores = retrieval_scores(past, current, geometry, distance_m)
    picks = scores.topk(min(count, past.shape[1]), dim=1).indices
    return picks.sort(dim=1).values
