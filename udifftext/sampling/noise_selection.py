"""Noise selection (paper Sec. 3.4; upstream `get_init_noise`): keep the candidate whose early attention is best.

K candidate noises run a short schedule (upstream: 2 steps) with classifier-free guidance; each is scored by
L_aae on the conditional half at the last step, and the lowest-scoring noise starts the full schedule.
Candidates run as batches of `chunk_size` rather than a Python loop over K.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from udifftext.config import DiffusionConfig, NoiseSelectionConfig
from udifftext.sampling.guidance import Conditioning, GuidedDenoiser
from udifftext.sampling.schedulers import build_scheduler


def select_noise(
    candidates: torch.Tensor, score: Callable[[torch.Tensor], torch.Tensor], chunk_size: int
) -> tuple[int, list[float]]:
    """Score (K, C, h, w) candidates chunk by chunk with `score` ((k, C, h, w) -> (k,)); return argmin and scores."""
    if chunk_size < 1:
        raise ValueError(f"noise_selection.chunk_size must be >= 1, got {chunk_size}")
    scores = torch.cat([score(chunk).detach().float().cpu() for chunk in candidates.split(chunk_size)])  # (K,)
    return int(torch.argmin(scores)), scores.tolist()


def short_run_scores(
    denoiser: GuidedDenoiser,
    scheduler_name: str,
    diffusion: DiffusionConfig,
    cfg: NoiseSelectionConfig,
    noises: torch.Tensor,
    cond: Conditioning,
) -> torch.Tensor:
    """L_aae (k,) of k noises at the last step of a `cfg.steps`-step guided schedule (upstream's search).

    The guided steps before the last move the candidates; at the last one only the conditional attention
    is read (upstream discards that step's update), so it runs the conditional half alone.
    """
    scheduler = build_scheduler(scheduler_name, diffusion, cfg.steps, noises.device)
    batch = cond.repeat(noises.shape[0])
    z = noises * scheduler.init_noise_sigma  # (k, C, h, w)
    *moves, last = scheduler.timesteps
    for t in moves:
        out, _ = denoiser(scheduler, z, t, batch)  # (k, C, h, w)
        z = scheduler.step(out, t, z).prev_sample  # (k, C, h, w)
    return denoiser.aae_loss(denoiser.conditional_maps(scheduler, z, last, batch), batch)  # (k,)


def choose_initial_noise(
    denoiser: GuidedDenoiser,
    scheduler_name: str,
    diffusion: DiffusionConfig,
    cfg: NoiseSelectionConfig,
    shape: tuple[int, ...],
    cond: Conditioning,
    generator: torch.Generator,
    device: Any,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Draw the initial noise (1, C, h, w); with selection on, the best of `cfg.candidates` draws.

    Returns the noise and a record {enabled, scores, chosen}.
    """
    if not cfg.enabled:
        noise = torch.randn((1, *shape), generator=generator).to(device)  # (1, C, h, w)
        return noise, {"enabled": False}
    if cfg.candidates < 1 or cfg.steps < 1:
        raise ValueError(f"noise_selection needs candidates >= 1 and steps >= 1, got {cfg.candidates}, {cfg.steps}")
    candidates = torch.randn((cfg.candidates, *shape), generator=generator).to(device)  # (K, C, h, w)
    with torch.no_grad():
        best, scores = select_noise(
            candidates,
            lambda chunk: short_run_scores(denoiser, scheduler_name, diffusion, cfg, chunk, cond),
            cfg.chunk_size,
        )
    return candidates[best : best + 1], {"enabled": True, "scores": scores, "chosen": best}
