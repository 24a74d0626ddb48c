"""The first stage: maps images in [-1, 1] to the space the UNet denoises, and back.

`kind: vae` is diffusers' `AutoencoderKL` built from config (SD-2's layout by default) with weights from
local disk, latents scaled by `scale_factor` (0.18215, as SD). `kind: identity` is pixel space, for the
small CPU model. Both are frozen: the paper never trains the autoencoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from udifftext.config import FirstStageConfig
from udifftext.convert.common import select_prefix, unwrap_checkpoint
from udifftext.convert.sd2 import vae_state
from udifftext.io import load_state_dict, load_strict, require_path

VAE_EXPECTED = "SD-2 VAE weights: a diffusers AutoencoderKL folder, or a .safetensors/.ckpt file"
VAE_SOURCE = (
    "stabilityai/stable-diffusion-2-inpainting on Hugging Face (vae/ folder or 512-inpainting-ema.ckpt), "
    "or upstream UDiffText's AE_inpainting_2.safetensors"
)
KINDS = ("vae", "identity")


def read_vae_state(path: str | Path, cfg: FirstStageConfig) -> dict[str, Any]:
    """`FirstStage` keys (``vae.`` + diffusers) from a folder, a safetensors file or an LDM checkpoint.

    The file is read here; the key mapping and its checks (LDM layout, every key converted, the old
    ``query/key/value/proj_attn`` names of the SD-2 repos' vae/) are `udifftext.convert.sd2.vae_state`'s,
    as in `scripts/convert_checkpoint.py`.
    """
    path = require_path(path, VAE_EXPECTED, VAE_SOURCE)
    if path.is_dir():
        names = ["vae/diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors"]
        names += ["first_stage.safetensors", "vae/diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin"]
        found = [path / n for n in names if (path / n).is_file()]
        if not found:
            raise ValueError(f"first_stage.weights folder {path} holds none of {names}")
        path = found[0]
    state = unwrap_checkpoint(load_state_dict(path, VAE_EXPECTED, VAE_SOURCE))
    return vae_state(state, cfg, f"VAE {path}")


class FirstStage(nn.Module):
    """Frozen encoder/decoder between images (B, 3, H, W) in [-1, 1] and the UNet's space (B, C, H/f, W/f)."""

    def __init__(self, cfg: FirstStageConfig):
        super().__init__()
        if cfg.kind not in KINDS:
            raise ValueError(f"first_stage.kind must be one of {KINDS}, got '{cfg.kind}'")
        self.kind = cfg.kind
        self.scale_factor = cfg.scale_factor
        self.vae = None
        if cfg.kind == "vae":
            from diffusers import AutoencoderKL

            n = len(cfg.block_out_channels)
            self.vae = AutoencoderKL(
                in_channels=3,
                out_channels=3,
                down_block_types=("DownEncoderBlock2D",) * n,
                up_block_types=("UpDecoderBlock2D",) * n,
                block_out_channels=tuple(cfg.block_out_channels),
                layers_per_block=2,
                latent_channels=cfg.latent_channels,
            )
            if cfg.weights:
                state = select_prefix(read_vae_state(cfg.weights, cfg), "vae.")
                load_strict(self.vae, state, what=f"VAE {cfg.weights}")
            self.factor = 2 ** (n - 1)
            self.channels = cfg.latent_channels
        else:
            self.factor = 1
            self.channels = 3
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FirstStage:
        """Stays in eval mode: the autoencoder is frozen."""
        return super().train(False)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [-1, 1] -> z (B, C, H/f, W/f); the VAE posterior's mode, scaled."""
        if self.vae is None:
            return images
        return self.vae.encode(images).latent_dist.mode() * self.scale_factor

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, C, h, w) -> images (B, 3, h*f, w*f), nominally in [-1, 1] (not clamped: gradients pass)."""
        if self.vae is None:
            return z
        return self.vae.decode(z / self.scale_factor).sample

    def resize_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """A (B, 1, H, W) image-size mask or glyph -> (B, 1, H/f, W/f), bilinear as upstream's SpatialRescaler."""
        if self.factor == 1:
            return mask
        size = (mask.shape[-2] // self.factor, mask.shape[-1] // self.factor)
        return F.interpolate(mask, size=size, mode="bilinear", align_corners=False)


def build_first_stage(cfg: FirstStageConfig) -> FirstStage:
    return FirstStage(cfg)
