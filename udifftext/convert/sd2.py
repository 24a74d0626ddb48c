"""SD-2-inpainting (UNet and VAE) -> our key layout. Pure mappers: state dicts in, state dicts out.

Both LDM single files (``512-inpainting-ema.ckpt``: ``model.diffusion_model.*``, ``first_stage_model.*``)
and diffusers state dicts are accepted. LDM names go through diffusers' own converters
(`convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`) with a config built from ours, never
fetched; before that the checkpoint is checked key by key against the layout our config predicts, and
after it every source key must have been used (diffusers skips unknown keys silently).

SD-2's text cross-attention (``attn2``/``norm2``, OpenCLIP width 1024) is dropped: our UNet replaces it
by the char cross-attention, which the caller initialises (zero output projection, paper Sec. 3.3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from udifftext.config import FirstStageConfig
from udifftext.convert.common import CROSS_ATTENTION, check_state, select_prefix, unconsumed
from udifftext.convert.layouts import unet_layout, vae_layout

LDM_UNET = "model.diffusion_model."
LDM_VAE = "first_stage_model."
VAE_IGNORED = ("loss.",)  # an LDM autoencoder training checkpoint also stores its discriminator / logvar
# diffusers folders saved before ~0.15 (the SD-2 repos' vae/) name the mid-block attention the old way.
OLD_VAE_ATTENTION = re.compile(r"(mid_block\.attentions\.0\.)(query|key|value|proj_attn)\.")
NEW_VAE_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}


def is_ldm_unet(state: Mapping[str, Any]) -> bool:
    return any(k.startswith(LDM_UNET) for k in state)


def ldm_unet_to_diffusers(unet: Mapping[str, Any], unet_kwargs: dict[str, Any]) -> dict[str, Any]:
    """LDM UNet keys (prefix already removed) -> diffusers keys via diffusers' converter; every key must map."""
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    source = {LDM_UNET + k: v for k, v in unet.items()}
    converted = convert_ldm_unet_checkpoint(source, {"layers_per_block": unet_kwargs["layers_per_block"]})
    left = unconsumed(source, converted)
    if left:
        raise ValueError(f"{len(left)} UNet keys were not converted by diffusers: {left[:6]}")
    return converted


def sd2_unet_state(state: Mapping[str, Any], unet_kwargs: dict[str, Any]) -> dict[str, Any]:
    """SD-2-inpainting UNet -> `TextUNet` keys (``unet.`` + diffusers), without SD's text cross-attention.

    `state`: an LDM single file's state dict (other parts such as ``cond_stage_model.*`` are ignored) or a
    diffusers UNet state dict. `unet_kwargs`: `udifftext.unet.model.diffusers_unet_kwargs(cfg)`.
    """
    if is_ldm_unet(state):
        unet = select_prefix(state, LDM_UNET)
        layout = unet_layout(unet_kwargs, ("attn2", "norm2"), unet_kwargs["cross_attention_dim"])
        check_state(layout, unet, "SD-2-inpainting UNet (model.diffusion_model.*)")
        state = ldm_unet_to_diffusers(unet, unet_kwargs)
    elif state and all(k.startswith("unet.") for k in state):
        state = select_prefix(state, "unet.")
    return {f"unet.{k}": v for k, v in state.items() if not CROSS_ATTENTION.search(k)}


def vae_kwargs(cfg: FirstStageConfig) -> dict[str, Any]:
    """The parts of diffusers' `AutoencoderKL` config that its LDM converter reads."""
    n = len(cfg.block_out_channels)
    return {"down_block_types": ["DownEncoderBlock2D"] * n, "up_block_types": ["UpDecoderBlock2D"] * n}


def is_ldm_vae(state: Mapping[str, Any]) -> bool:
    return any(k.startswith(LDM_VAE) or ".down.0." in k for k in state)


def ldm_vae_state(state: Mapping[str, Any], cfg: FirstStageConfig, what: str) -> dict[str, Any]:
    """An LDM-layout VAE (``first_stage_model.*`` of a single file, or upstream's ``AE_inpainting_2.safetensors``
    without prefix) -> `FirstStage` keys (``vae.`` + diffusers)."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    vae = select_prefix(state, LDM_VAE) if any(k.startswith(LDM_VAE) for k in state) else dict(state)
    vae = {k: v for k, v in vae.items() if not k.startswith(VAE_IGNORED)}
    check_state(vae_layout(cfg.block_out_channels, cfg.latent_channels), vae, what)
    converted = convert_ldm_vae_checkpoint(vae, vae_kwargs(cfg))
    left = unconsumed(vae, converted)
    if left:
        raise ValueError(f"{len(left)} VAE keys were not converted by diffusers: {left[:6]}")
    return {f"vae.{k}": v for k, v in converted.items()}


def vae_state(state: Mapping[str, Any], cfg: FirstStageConfig, what: str) -> dict[str, Any]:
    """Any supported VAE state dict (LDM layout or diffusers `AutoencoderKL`) -> `FirstStage` keys."""
    if is_ldm_vae(state):
        return ldm_vae_state(state, cfg, what)
    if state and all(k.startswith("vae.") for k in state):
        state = select_prefix(state, "vae.")
    rename = lambda k: OLD_VAE_ATTENTION.sub(lambda m: f"{m[1]}{NEW_VAE_ATTENTION[m[2]]}.", k)  # noqa: E731
    return {f"vae.{rename(k)}": v for k, v in state.items()}
