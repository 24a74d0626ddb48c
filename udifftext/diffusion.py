"""The training noise schedule and conversions between what the UNet predicts and the clean sample.

SD-2 (and the `paper` preset) predicts the noise eps on the scaled-linear beta schedule; the small CPU
model predicts x0 directly (see docs/unet.md for why). Everything downstream (L_ocr, L_aae, the
sampler) needs x0, so `predict_x0` turns any of the three parametrisations into it.
"""

from __future__ import annotations

import torch

from udifftext.config import DiffusionConfig

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def build_train_scheduler(cfg: DiffusionConfig):
    """diffusers `DDPMScheduler` with the configured betas and prediction type (no sample clipping)."""
    from diffusers import DDPMScheduler

    if cfg.prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"diffusion.prediction_type must be one of {PREDICTION_TYPES}, got '{cfg.prediction_type}'")
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=False,
    )


def _abar(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    a = alphas_cumprod.to(device=like.device, dtype=torch.float32)[timesteps.to(like.device).long()]  # (B,)
    return a.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)  # (B, 1, 1, 1)


def predict_x0(
    model_output: torch.Tensor,
    noisy: torch.Tensor,
    timesteps: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    prediction_type: str,
) -> torch.Tensor:
    """The clean sample implied by a prediction at noise level t: x_t = sqrt(a) x0 + sqrt(1 - a) eps.

    epsilon: x0 = (x_t - sqrt(1-a) eps) / sqrt(a); v_prediction: x0 = sqrt(a) x_t - sqrt(1-a) v; sample: x0.
    Shapes (B, C, h, w); `timesteps` (B,) indexes `alphas_cumprod` (num_train_timesteps,).
    """
    if prediction_type == "sample":
        return model_output
    a = _abar(alphas_cumprod, timesteps, noisy)
    if prediction_type == "epsilon":
        return (noisy - (1 - a).sqrt() * model_output) / a.sqrt()
    if prediction_type == "v_prediction":
        return a.sqrt() * noisy - (1 - a).sqrt() * model_output
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got '{prediction_type}'")


def training_target(
    x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """What the UNet is trained to output: eps, v = sqrt(a) eps - sqrt(1-a) x0, or x0 itself."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    if prediction_type == "v_prediction":
        a = _abar(alphas_cumprod, timesteps, x0)
        return a.sqrt() * noise - (1 - a).sqrt() * x0
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got '{prediction_type}'")
