"""Attention-guided latent refinement (paper Sec. 3.4, Attend-and-Excite style; upstream `attend_and_excite`).

Before denoising step i: z <- z - alpha_i * grad_z L_aae(z) with alpha_i = step_size * sqrt(1 - i / steps).
At the listed steps the update repeats (up to `max_iters` times) until L_aae, measured before the update,
falls below that step's threshold. Gradients are taken only here, inside the step; the denoising pass
itself runs without them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from udifftext.config import RefinementConfig
from udifftext.sampling.guidance import Conditioning, GuidedDenoiser


def check_refinement(cfg: RefinementConfig) -> None:
    """Reject schedules the loop cannot follow (one threshold per listed step, positive iteration cap)."""
    if len(cfg.iterative_steps) != len(cfg.thresholds):
        raise ValueError(
            f"refinement.iterative_steps ({len(cfg.iterative_steps)}) and refinement.thresholds "
            f"({len(cfg.thresholds)}) must have the same length"
        )
    if cfg.max_iters < 1:
        raise ValueError(f"refinement.max_iters must be >= 1, got {cfg.max_iters}")


def refine_latent(
    denoiser: GuidedDenoiser,
    scheduler: Any,
    z: torch.Tensor,
    t: torch.Tensor,
    cond: Conditioning,
    step: int,
    steps: int,
    cfg: RefinementConfig,
) -> tuple[torch.Tensor, list[float]]:
    """Refine z (1, C, h, w) before step `step` of `steps`; returns the new z and the L_aae values seen."""
    alpha = cfg.step_size * math.sqrt(1.0 - step / steps)
    iterative = step in cfg.iterative_steps
    threshold = cfg.thresholds[cfg.iterative_steps.index(step)] if iterative else -math.inf
    losses = []
    for _ in range(cfg.max_iters if iterative else 1):
        with torch.enable_grad():
            z_var = z.detach().requires_grad_(True)  # (1, C, h, w)
            loss = denoiser.conditional_aae(scheduler, z_var, t, cond)  # (1,)
            (grad,) = torch.autograd.grad(loss.sum(), [z_var])  # (1, C, h, w)
        z = (z_var - alpha * grad).detach()
        losses.append(float(loss.detach().sum()))
        if losses[-1] < threshold:
            break
    return z, losses
