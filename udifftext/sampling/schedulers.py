"""Inference schedulers from diffusers, discretised as upstream's sampler.

Upstream (sgm `LegacyDDPMDiscretization`) takes the timesteps `linspace(999, 0, n, endpoint=False)` rounded
down, i.e. 999, 979, ..., 19 for 50 steps and 999, 499 for the 2 noise-selection steps. diffusers'
`timestep_spacing="trailing"` gives exactly these indices, so every scheduler here uses it. The Euler
scheduler without churn is upstream's deterministic `EulerEDMSampler` (same sigmas, same input scaling
1/sqrt(sigma^2 + 1), same initial noise scale sqrt(1 + sigma_max^2)).
"""

from __future__ import annotations

from typing import Any

from udifftext.config import DiffusionConfig

SCHEDULERS = ("euler", "ddim", "dpmpp")


def build_scheduler(name: str, diffusion: DiffusionConfig, steps: int, device: Any = None) -> Any:
    """A fresh diffusers scheduler with `steps` inference steps on the model's training discretisation.

    Schedulers keep per-run state (step index, multistep history), so every run builds its own.
    """
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {SCHEDULERS}, got '{name}'")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    common = dict(
        num_train_timesteps=diffusion.num_train_timesteps,
        beta_start=diffusion.beta_start,
        beta_end=diffusion.beta_end,
        beta_schedule=diffusion.beta_schedule,
        prediction_type=diffusion.prediction_type,
        timestep_spacing="trailing",
    )
    if name == "euler":
        scheduler = EulerDiscreteScheduler(**common)
    elif name == "ddim":
        # Latents are not bounded to [-1, 1]: no x0 clipping; the last step goes to alpha_bar(0), as in SD.
        scheduler = DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False)
    else:
        scheduler = DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2)
    scheduler.set_timesteps(steps, device=device)
    return scheduler
