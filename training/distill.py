"""Distilling the teacher into the causal student: ODE targets, hybrid forcing, DMD. Pure steps;
the loop and CLI are in training/student_train.py.

ODE init (RELIC §4.4.1, "hybrid forcing"): the teacher integrates each clip from noise on its own
sampler schedule with the student's sigmas inserted (`ode_grid`, `ode_targets`), so its state at
every student step is known. A training sequence is cut into blocks: the first blocks are the teacher's clean endpoint,
committed into the student's memory (so they are seen compressed, exactly as at inference); each
of the last K blocks starts from the teacher's state at a random student step and is regressed to
the clean endpoint, seeing the earlier blocks clean (teacher forcing).

DMD (Self-Forcing `DMD._compute_kl_grad`, reference §3): for a student sample x̂, one sigma per
sample (shifted, clamped to [0.02, 0.98]); x0 predictions of the frozen teacher (the real score,
CFG on the motion condition with scale w: uncond + w·(cond − uncond)) and of the fake score;
Δ = (x0_fake − x0_real) / mean|x̂ − x0_real| per sample. The generator's surrogate loss
0.5·mean((x̂ − stopgrad(x̂ − Δ))²) is applied by the replayed backward (student.Student). The fake
score is the teacher's architecture, initialised from it, trained by flow matching on detached
student samples, several critic steps per generator step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.conditioning import static_first
from training.context import ContextWindow, context_indices
from training.data import ClipBatch
from training.flow import VelocityFn, add_noise, draw_device, guided, i2v_sigma, schedule, shift_sigma, x0_from_velocity
from training.model import VideoDiT
from training.student import Student, block_spans
from training.teacher import teacher_loss


@dataclass(frozen=True)
class DMDConfig:
    guidance: float = 2.0  # real-score CFG scale (standard form; 1 = no guidance)
    shift: float = 3.0  # sigma distribution of the DMD/critic noise
    sigma_range: tuple[float, float] = (0.02, 0.98)
    critic_steps: int = 5  # fake-score updates per generator update
    window: int | None = None  # frames the real and fake scores see (their first one clean), at a random start
    #   in the rollout; None = the whole rollout. Set it to the teacher's clip length to score rollouts longer
    #   than the teacher's clips without stretching its positions (teacher_rope_time_scale)
    # context forcing (training/context.py): the scores also see this many earlier frames of the rollout,
    # clean, at their own times, spread over what came before the window (needs a window and a teacher
    # trained with context.frames >= this)
    context: int = 0

    def __post_init__(self) -> None:
        if self.window is not None and self.window < 2:
            raise ValueError(f"dmd.window must be >= 2 frames (a clean first frame and one scored), got {self.window}")
        if self.context < 0 or (self.context and self.window is None):
            raise ValueError(f"dmd.context {self.context} needs dmd.window (the frames before a window are its context)")


def teacher_velocity(model: VideoDiT, actions: torch.Tensor, poses: torch.Tensor,
                     times: torch.Tensor | None = None) -> VelocityFn:
    """The bidirectional model as a velocity field over a whole clip (CFG batches repeat the condition);
    `times` (F,): the frames' time indices when they are not 0..F-1 (a clip with memory context)."""
    extra = {} if times is None else {"times": times}

    def velocity(x: torch.Tensor, sigma: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        reps = x.shape[0] // actions.shape[0]
        return model(x, sigma, actions.repeat(reps, 1, 1), poses.repeat(reps, 1, 1, 1), keep=keep,
                     **extra).to(x.dtype)

    return velocity


def ode_grid(student_steps: tuple[float, ...], teacher_steps: int, shift: float) -> list[float]:
    """Decreasing sigmas from student_steps[0] to 0: the teacher's own sampler schedule (`teacher_steps`
    Euler steps on the shifted grid, flow.schedule) below student_steps[0], with every student sigma
    inserted, so the teacher integrates as it samples and its state at each student sigma is exact."""
    top = student_steps[0]
    teacher = [float(s) for s in schedule(teacher_steps, shift) if s < top]
    grid = sorted({*student_steps, *(s for s in teacher if min(abs(s - t) for t in student_steps) > 1e-9), 0.0},
                  reverse=True)
    return grid


@torch.no_grad()
def ode_targets(velocity: VelocityFn, first: torch.Tensor, noise: torch.Tensor, student_steps: tuple[float, ...],
                teacher_steps: int = 20, shift: float = 3.0, guidance: float = 1.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher ODE from `noise` (B, F-1, C, H, W) at sigma student_steps[0] (1.0: pure noise) on
    `ode_grid`. Returns (states (S, B, F-1, ...) at each student sigma, clean endpoint (B, F-1, ...))."""
    b, frames = first.shape[0], noise.shape[1] + 1
    grid = ode_grid(student_steps, teacher_steps, shift)
    marks = set(student_steps)
    x = noise
    states = []
    for s, s_next in zip(grid[:-1], grid[1:]):
        if s in marks:
            states.append(x)
        full = torch.cat([first[:, None], x], dim=1)
        v = guided(velocity, full, i2v_sigma(b, frames, s, first.device).to(x.dtype), guidance)[:, 1:]
        x = x + (s_next - s) * v
    return torch.stack(states), x


def ode_prefix_blocks(frames: int, block_frames: int, noisy_blocks: int,
                      generator: torch.Generator | None = None) -> int:
    """How many generated blocks one hybrid-forcing update uses, uniform in [noisy_blocks, all]."""
    total = len(block_spans(frames, block_frames)) - 1
    if not 1 <= noisy_blocks <= total:
        raise ValueError(f"noisy_blocks must be in [1, {total}], got {noisy_blocks}")
    return int(torch.randint(noisy_blocks, total + 1, (1,), generator=generator,
                             device=draw_device(generator, "cpu")))


def hybrid_forcing_loss(student: Student, first: torch.Tensor, states: torch.Tensor, clean: torch.Tensor,
                        actions: torch.Tensor, poses: torch.Tensor, noisy_blocks: int,
                        generator: torch.Generator | None = None, blocks: int | None = None) -> torch.Tensor:
    """Regression of the last `noisy_blocks` of the first `blocks` generated blocks (default all)
    to the teacher's clean endpoint; later frames are unused.

    first (B, C, H, W); states (S, B, F-1, ...) the teacher at the student's S sigmas; clean
    (B, F-1, ...); actions (B, F, 13) per frame; poses (B, F, 4, 4). Earlier blocks are committed
    clean (no grad) into the student's memory (with `commit: fold`, as the student commits them: the
    teacher's state at its last sigma, at that sigma); each noisy block uses its own random step."""
    f = clean.shape[1] + 1
    spans = block_spans(f, student.config.block_frames)[1:]
    if not 1 <= noisy_blocks <= len(spans):
        raise ValueError(f"noisy_blocks must be in [1, {len(spans)}], got {noisy_blocks}")
    if blocks is not None:
        if not noisy_blocks <= blocks <= len(spans):
            raise ValueError(f"blocks must be in [{noisy_blocks}, {len(spans)}], got {blocks}")
        spans = spans[:blocks]
    origin = poses[:, 0]
    actions = static_first(actions)
    store = student.new_store()
    video = torch.cat([first[:, None], clean], dim=1)
    student.commit(video[:, :1], 0, store, actions, poses, origin)
    losses = []
    for index, (start, end) in enumerate(spans):
        context = student.context(store, start, end - start, poses[:, start], origin)
        if index >= len(spans) - noisy_blocks:
            step = int(torch.randint(0, states.shape[0], (1,), generator=generator,
                                     device=draw_device(generator, "cpu")))
            x = states[step][:, start - 1:end - 1]
            x0 = student.block_x0(x, student.config.steps[step], start, context, actions, poses, origin)
            losses.append(F.mse_loss(x0.float(), video[:, start:end].float(), reduction="sum"))
        if index < len(spans) - 1:  # nothing reads the last block's memory
            if student.config.commit == "fold":  # what the student's last step reads: the teacher's state there
                student.commit(states[-1][:, start - 1:end - 1], start, store, actions, poses, origin, context,
                               sigma=student.config.steps[-1])
            else:
                student.commit(video[:, start:end], start, store, actions, poses, origin, context)
    elements = sum(clean[:, s - 1:e - 1].numel() for s, e in spans[len(spans) - noisy_blocks:])
    return torch.stack(losses).sum() / elements


def dmd_delta(clip: ClipBatch, teacher: VideoDiT, fake: VideoDiT, config: DMDConfig,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Δ (B, F-c, C, H, W) for the student frames of `clip` after its `clip.clean` given clean ones (the
    window's first frame, and a memory context before it: ScoreWindow.clip)."""
    c = clip.clean
    prefix, x_hat = clip.frames[:, :c], clip.frames[:, c:]
    b, frames = x_hat.shape[0], clip.frames.shape[1]
    lo, hi = config.sigma_range
    at = draw_device(generator, x_hat.device)
    u = torch.rand(b, generator=generator, device=at).to(x_hat.device)
    sigma = shift_sigma(lo + (hi - lo) * u, config.shift)
    noise = torch.randn(x_hat.shape, generator=generator, device=at).to(x_hat.device, x_hat.dtype)
    sig = i2v_sigma(b, frames, sigma, x_hat.device)
    sig[:, :c] = 0.0
    x_t = torch.cat([prefix, add_noise(x_hat, noise, sig[:, c:])], dim=1)
    with torch.no_grad():
        v_real = guided(teacher_velocity(teacher, clip.actions, clip.poses, clip.times), x_t, sig, config.guidance)
        v_fake = teacher_velocity(fake, clip.actions, clip.poses, clip.times)(x_t, sig, None)
        real = x0_from_velocity(x_t, v_real, sig)[:, c:]
        fake_x0 = x0_from_velocity(x_t, v_fake, sig)[:, c:]
        scale = (x_hat - real).abs().flatten(1).mean(1).clamp_min(1e-6)
        delta = (fake_x0 - real) / scale.reshape(b, 1, 1, 1, 1)
    return torch.nan_to_num(delta)


@dataclass(frozen=True)
class ScoreWindow(ContextWindow):
    """The frames [start, start + length) of a rollout as a clip for the bidirectional scores:
    frame `start` is their clean first frame, its action the static one (as in a cropped clip); with
    `context`, those earlier frames of the rollout come first, clean, at their own times (context
    forcing: training/context.py)."""

    def clip(self, video: torch.Tensor, actions: torch.Tensor, poses: torch.Tensor) -> ClipBatch:
        """The window (and its context) of a rollout (B, F, C, H, W) with its per-frame actions and poses."""
        return self.take(ClipBatch(video, actions, poses))

    def place(self, delta: torch.Tensor, generated: int) -> torch.Tensor:
        """The window's Δ (B, length-1, ...) in a rollout of `generated` frames after its first: zero
        elsewhere, scaled by generated/(length-1) so the whole-sequence mean the replay normalises by
        is the window's own mean (the gradient a rollout of the window's length would get)."""
        full = delta.new_zeros((delta.shape[0], generated) + delta.shape[2:])
        full[:, self.start:self.start + self.length - 1] = delta * (generated / (self.length - 1))
        return full


def score_window(frames: int, length: int | None, generator: torch.Generator | None = None,
                 context: int = 0) -> ScoreWindow:
    """A window of `length` frames (None: all) at a uniform random start in a `frames`-frame rollout,
    with up to `context` earlier frames (training/context.context_indices: all there are, up to it)."""
    if length is None or length >= frames:
        return ScoreWindow(0, frames)
    start = int(torch.randint(0, frames - length + 1, (1,), generator=generator,
                              device=draw_device(generator, "cpu")))
    return ScoreWindow(start, length, context_indices(start, context))


def critic_loss(fake: VideoDiT, clip: ClipBatch, shift: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flow matching of the fake score on detached student samples (the same loss as the teacher's)."""
    detached = ClipBatch(clip.frames.detach(), clip.actions, clip.poses, clip.posed, clip.clean, clip.times)
    return teacher_loss(fake, detached, shift, dropout=0.0, generator=generator)
