"""The denoising UNet: diffusers' `UNet2DConditionModel` with UDiffText's character cross-attention.

`build_unet(cfg)` builds the UNet from config (never downloaded), removes its own text cross-attention,
loads base weights strictly (all but the removed keys), then gives every transformer block a new
cross-attention reading the char encoder's context (paper Sec. 3.3; upstream `t_attn` / `t_norm`). The new
output projection starts at zero, so before any training the model computes exactly what the base
inpainting model computes without a text path.

`mode: base` stops before adding the new attention: a text-free inpainting UNet, trained from scratch
for the small CPU model in the role SD-2-inpainting plays in the paper. It ignores the context.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from udifftext.config import GLYPH_CONTENTS, UNetStageConfig
from udifftext.convert.common import select_prefix, unwrap_checkpoint
from udifftext.convert.sd2 import sd2_unet_state
from udifftext.io import load_state_dict, load_strict, require_path

BASE_SOURCE = (
    "stabilityai/stable-diffusion-2-inpainting on Hugging Face (the diffusers folder, or 512-inpainting-ema.ckpt), "
    "or the pipeline folder of a `mode: base` run of scripts/train_unet.py"
)
BASE_EXPECTED = "base UNet weights: a diffusers folder, 512-inpainting-ema.ckpt, or a unet .safetensors"
MODES = ("udifftext", "base")
STEMS = ("none", "pixel_unshuffle")


def first_stage_channels(cfg: UNetStageConfig) -> int:
    """Channels of the space the UNet denoises: VAE latents or RGB pixels."""
    return 3 if cfg.first_stage.kind == "identity" else cfg.first_stage.latent_channels


def expected_in_channels(cfg: UNetStageConfig) -> int:
    """[noisy (C), mask (1), masked image (C)] (+ glyph (1)), SD-2-inpainting's order."""
    return 2 * first_stage_channels(cfg) + 1 + int(cfg.unet.glyph_channel)


def check_in_channels(cfg: UNetStageConfig) -> None:
    """Raise if the UNet's input/output channels do not match the first stage and the glyph switch."""
    c = first_stage_channels(cfg)
    want = expected_in_channels(cfg)
    if cfg.unet.in_channels != want:
        parts = f"noisy {c} + mask 1 + masked {c}" + (" + glyph 1" if cfg.unet.glyph_channel else "")
        raise ValueError(f"unet.in_channels={cfg.unet.in_channels}, expected {want} ({parts}); set unet.in_channels")
    if cfg.unet.out_channels != c:
        kind = cfg.first_stage.kind
        raise ValueError(f"unet.out_channels={cfg.unet.out_channels}, expected {c} (first_stage.kind={kind})")


def diffusers_unet_kwargs(cfg: UNetStageConfig) -> dict[str, Any]:
    """`UNet2DConditionModel` arguments for the configured layout (SD-2-inpainting's by default)."""
    u = cfg.unet
    if u.stem not in STEMS:
        raise ValueError(f"unet.stem must be one of {STEMS}, got '{u.stem}'")
    f = u.stem_factor if u.stem == "pixel_unshuffle" else 1
    if any(c % u.head_dim for c in u.block_out_channels):
        raise ValueError(f"unet.block_out_channels {u.block_out_channels} must be multiples of head_dim={u.head_dim}")
    return dict(
        sample_size=u.sample_size // f,
        in_channels=u.in_channels * f * f,
        out_channels=u.out_channels * f * f,
        down_block_types=tuple(u.down_block_types),
        up_block_types=tuple(u.up_block_types),
        block_out_channels=tuple(u.block_out_channels),
        layers_per_block=u.layers_per_block,
        # diffusers' `attention_head_dim` is the number of heads per level (SD-2: 5/10/20/20).
        attention_head_dim=tuple(c // u.head_dim for c in u.block_out_channels),
        cross_attention_dim=u.base_cross_attention_dim,
        use_linear_projection=u.use_linear_projection,
    )


def cross_attention_blocks(unet: nn.Module) -> list[str]:
    """Names of the transformer blocks that have a cross-attention (`attn2`) in the built layout."""
    from diffusers.models.attention import BasicTransformerBlock

    return [n for n, b in unet.named_modules() if isinstance(b, BasicTransformerBlock) and b.attn2 is not None]


def remove_cross_attention(unet: nn.Module, blocks: list[str]) -> list[str]:
    """Drop `attn2`/`norm2` from `blocks`; diffusers then skips cross-attention. Returns the dropped key prefixes.

    This is the text-free base model: SD-2-inpainting without its text path, which is what UDiffText's
    fine-tuning starts from (its new cross-attention adds exactly zero at initialisation).
    """
    for name in blocks:
        block = unet.get_submodule(name)
        block.attn2 = None
        block.norm2 = None
    return [f"{b}.{m}." for b in blocks for m in ("attn2", "norm2")]


def add_cross_attention(unet: nn.Module, blocks: list[str], context_dim: int, heads: list[int]) -> None:
    """Give each of `blocks` a new cross-attention reading a `context_dim`-wide context, and its pre-norm.

    Queries come from the block, keys/values from the char encoder (no bias); the output projection is
    zero-initialised so the block's residual adds nothing until training moves it (upstream `t_attn`,
    `t_norm`). `heads[i]` is the head count of block i.
    """
    from diffusers.models.attention_processor import Attention

    for name, n_heads in zip(blocks, heads, strict=True):
        block = unet.get_submodule(name)
        dim = block.norm1.normalized_shape[0]
        attn = Attention(
            query_dim=dim, cross_attention_dim=context_dim, heads=n_heads, dim_head=dim // n_heads, bias=False
        )
        nn.init.zeros_(attn.to_out[0].weight)
        nn.init.zeros_(attn.to_out[0].bias)
        block.attn2 = attn
        block.norm2 = nn.LayerNorm(dim)


def read_base_state(path: str | Path, cfg: UNetStageConfig) -> dict[str, Any]:
    """`TextUNet` keys (``unet.`` + diffusers) from a folder, a safetensors file or an LDM checkpoint.

    The file is read here; the key mapping and its checks (LDM layout, every key converted) are
    `udifftext.convert.sd2.sd2_unet_state`'s, as in `scripts/convert_checkpoint.py`. SD's text
    cross-attention (``attn2``/``norm2``) is left out: it is replaced, never loaded.
    """
    path = require_path(path, BASE_EXPECTED, BASE_SOURCE)
    if path.is_dir():
        names = ["unet.safetensors", "unet/diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors"]
        names += ["unet/diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin"]
        found = [path / n for n in names if (path / n).is_file()]
        if not found:
            raise ValueError(f"unet.base_weights folder {path} holds none of {names}")
        path = found[0]
    state = unwrap_checkpoint(load_state_dict(path, BASE_EXPECTED, BASE_SOURCE))
    return sd2_unet_state(state, diffusers_unet_kwargs(cfg))


class TextUNet(nn.Module):
    """Predicts noise / v / x0 from [noisy, mask, masked(, glyph)] and the char encoder's context.

    `in_channels` counts the concatenated input before the optional pixel-unshuffle stem, which folds
    `stem_factor`² pixels into channels so a pixel-space UNet works at 1/stem_factor resolution.
    """

    def __init__(self, cfg: UNetStageConfig):
        super().__init__()
        from diffusers import UNet2DConditionModel

        u = cfg.unet
        if u.mode not in MODES:
            raise ValueError(f"unet.mode must be one of {MODES}, got '{u.mode}'")
        if u.glyph_content not in GLYPH_CONTENTS:
            raise ValueError(f"unet.glyph_content must be one of {GLYPH_CONTENTS}, got '{u.glyph_content}'")
        check_in_channels(cfg)
        self.mode = u.mode
        self.in_channels = u.in_channels
        self.image_channels = first_stage_channels(cfg)
        self.glyph_channel = u.glyph_channel
        self.mask_padding = u.mask_padding and u.mode == "udifftext"
        self.stem_factor = u.stem_factor if u.stem == "pixel_unshuffle" else 1
        self.unet = UNet2DConditionModel(**diffusers_unet_kwargs(cfg))
        blocks = cross_attention_blocks(self.unet)
        heads = [self.unet.get_submodule(b).attn2.heads for b in blocks]
        remove_cross_attention(self.unet, blocks)
        if u.base_weights:
            # The base's own text cross-attention (SD-2: OpenCLIP, width 1024) is replaced, never loaded.
            state = select_prefix(read_base_state(u.base_weights, cfg), "unet.")
            load_strict(self.unet, state, expected_missing=(), what=f"base UNet {u.base_weights}")
        self.cross_attention_blocks: list[str] = []
        if self.mode == "udifftext":
            add_cross_attention(self.unet, blocks, cfg.text_encoder.width, heads)
            self.cross_attention_blocks = blocks
        self.context_dim = cfg.text_encoder.width if self.mode == "udifftext" else u.base_cross_attention_dim
        self.size_multiple = self.stem_factor * 2 ** (len(u.block_out_channels) - 1)

    def cross_attention_parameter_names(self) -> list[str]:
        """Names (in `self.named_parameters()`) of the new cross-attention and its pre-norm."""
        prefixes = tuple(f"unet.{b}.{m}." for b in self.cross_attention_blocks for m in ("attn2", "norm2"))
        return [n for n, _ in self.named_parameters() if n.startswith(prefixes)]

    def _check(self, name: str, x: torch.Tensor, channels: int, ref: torch.Tensor) -> None:
        want = (ref.shape[0], channels, *ref.shape[-2:])
        if tuple(x.shape) != want:
            raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor | None,
        mask: torch.Tensor,
        masked: torch.Tensor,
        glyph: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """noisy/masked (B, C, h, w), mask/glyph (B, 1, h, w), context (B, L, W) -> prediction (B, C, h, w).

        In `mode: base` the context is ignored and a zero context is used (text-free inpainting).
        `context_mask` (B, L), 1 for the word's characters: with `unet.mask_padding` the cross-attention reads
        only those tokens (a row with none reads all); without it the mask is ignored, as in the model's
        training. A zero (unconditional) context gives the same output under any mask: its keys are all equal.
        """
        B, _, h, w = noisy.shape
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(f"noisy size {h}x{w} must be a multiple of {self.size_multiple} for this UNet")
        self._check("noisy", noisy, self.image_channels, noisy)
        self._check("mask", mask, 1, noisy)
        self._check("masked", masked, self.image_channels, noisy)
        if self.glyph_channel != (glyph is not None):
            raise ValueError(f"glyph must be {'given' if self.glyph_channel else 'None'} (unet.glyph_channel)")
        parts = [noisy, mask, masked] + ([glyph] if glyph is not None else [])
        if glyph is not None:
            self._check("glyph", glyph, 1, noisy)
        if self.mode == "base":
            context = noisy.new_zeros(B, 1, self.context_dim)  # (B, 1, W_base): no block reads it
        elif context is None or context.ndim != 3 or context.shape[0] != B or context.shape[2] != self.context_dim:
            shape = None if context is None else tuple(context.shape)
            raise ValueError(f"context must have shape ({B}, L, {self.context_dim}), got {shape}")
        x = torch.cat(parts, dim=1)  # (B, in_channels, h, w)
        if self.stem_factor > 1:
            x = F.pixel_unshuffle(x, self.stem_factor)  # (B, in_channels * f^2, h/f, w/f)
        t = timesteps.expand(B) if timesteps.ndim == 0 else timesteps
        keep = None
        if self.mask_padding:
            want = tuple(context.shape[:2])
            if context_mask is None or tuple(context_mask.shape) != want:
                shape = None if context_mask is None else tuple(context_mask.shape)
                raise ValueError(f"unet.mask_padding needs context_mask of shape {want}, got {shape}")
            keep = context_mask > 0  # (B, L)
            keep = keep | ~keep.any(dim=1, keepdim=True)  # (B, L): a row without characters reads every token
        out = self.unet(x, t, encoder_hidden_states=context, encoder_attention_mask=keep).sample  # (B, C*f^2, h/f, w/f)
        if self.stem_factor > 1:
            out = F.pixel_shuffle(out, self.stem_factor)  # (B, C, h, w)
        return out


def build_unet(cfg: UNetStageConfig) -> TextUNet:
    """Build the configured UNet, load base weights, replace cross-attention, set gradient checkpointing."""
    model = TextUNet(cfg)
    if cfg.train.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    return model


def set_trainable(model: TextUNet, which: str) -> dict[str, Any]:
    """Freeze all but `which` ("cross_attention": the new attn2 + norm2; "full": everything).

    Returns a report: trainable and total parameter counts, their ratio, and the trainable names' count.
    """
    if which not in ("cross_attention", "full"):
        raise ValueError(f"trainable must be 'cross_attention' or 'full', got '{which}'")
    if which == "cross_attention" and model.mode != "udifftext":
        raise ValueError("trainable='cross_attention' needs unet.mode='udifftext' (base mode has no new attention)")
    names = set(model.cross_attention_parameter_names()) if which == "cross_attention" else None
    for name, p in model.named_parameters():
        p.requires_grad_(names is None or name in names)
    return trainable_report(model)


def trainable_report(model: nn.Module) -> dict[str, Any]:
    """Parameter counts: total, trainable and the trainable share."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    tensors = sum(1 for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable, "share": trainable / max(total, 1), "tensors": tensors}


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters being trained: what a fine-tuning checkpoint needs to store."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
