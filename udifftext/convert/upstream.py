"""Upstream UDiffText checkpoints -> our key layout. Pure mappers: state dicts in, state dicts out.

- UNet: the Lightning ``state_dict`` of the sgm ``DiffusionEngine``. The UNet is under
  ``model.diffusion_model.*`` in LDM names; every transformer block's char cross-attention is ``t_attn``
  with its pre-norm ``t_norm``, which become our replaced ``attn2``/``norm2``. SD's own ``attn2``/``norm2``,
  if a checkpoint carries them, are ignored (upstream never runs them).
- Char encoder: upstream ``LabelEncoder`` keys equal `CharTextEncoder`'s (see udifftext/text/encoder.py);
  the pretraining heads, logit scale and frozen ViTSTR of ``epoch=19-step=7820.ckpt`` are dropped. Inside a
  UDiffText checkpoint the encoder sits under ``conditioner.embedders.K.``.
- VAE: ``first_stage_model.*`` of the UDiffText checkpoint or ``AE_inpainting_2.safetensors``, see `sd2.vae_state`.
- ViTSTR: mapped by `udifftext.recognizer.vitstr.upstream_vitstr_state_dict` (the recognizer's own loader).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from udifftext.convert.common import CROSS_ATTENTION, check_state, select_prefix
from udifftext.convert.layouts import unet_layout
from udifftext.convert.sd2 import LDM_UNET, LDM_VAE, ldm_unet_to_diffusers

T_ATTN = re.compile(r"(transformer_blocks\.\d+\.)t_(attn|norm)\.")
PRETRAINING_ONLY = ("cls_head.", "pos_head.", "text_head.", "visual_head.", "visual_encoder.", "logit_scale")
EMBEDDER = re.compile(r"^(conditioner\.embedders\.\d+\.)label_embedding\.weight$")


def upstream_unet_state(state: Mapping[str, Any], unet_kwargs: dict[str, Any], context_dim: int) -> dict[str, Any]:
    """UDiffText ``DiffusionEngine`` state dict -> `TextUNet` keys (``unet.`` + diffusers), new attention included.

    `unet_kwargs`: `udifftext.unet.model.diffusers_unet_kwargs(cfg)`; `context_dim`: the char encoder's width.
    """
    unet = select_prefix(state, LDM_UNET)
    if not unet:
        raise ValueError(f"no {LDM_UNET}* keys: not a UDiffText DiffusionEngine checkpoint")
    unet = {k: v for k, v in unet.items() if not CROSS_ATTENTION.search(k)}  # SD's attn2/norm2: unused upstream
    check_state(unet_layout(unet_kwargs, ("t_attn", "t_norm"), context_dim), unet, f"UDiffText UNet ({LDM_UNET}*)")
    renamed = {T_ATTN.sub(r"\g<1>\g<2>2.", k): v for k, v in unet.items()}  # t_attn -> attn2, t_norm -> norm2
    return {f"unet.{k}": v for k, v in ldm_unet_to_diffusers(renamed, unet_kwargs).items()}


def label_encoder_prefix(state: Mapping[str, Any]) -> str | None:
    """Where the LabelEncoder's keys start: "" in its own checkpoint, ``conditioner.embedders.K.`` in a
    UDiffText checkpoint; None when there is none."""
    if "label_embedding.weight" in state:
        return ""
    found = [m[1] for k in state if (m := EMBEDDER.match(k))]
    return found[0] if found else None


def label_encoder_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """Upstream ``LabelEncoder`` (alone or inside a UDiffText checkpoint) -> `CharTextEncoder` keys."""
    prefix = label_encoder_prefix(state)
    if prefix is None:
        raise ValueError("no LabelEncoder keys (label_embedding.weight) in the checkpoint")
    return {k: v for k, v in select_prefix(state, prefix).items() if not k.startswith(PRETRAINING_ONLY)}


def ignored_parts(state: Mapping[str, Any]) -> dict[str, int]:
    """Key counts per top-level part of a UDiffText checkpoint that conversion does not use
    (the conditioner's VAE copy, the loss's OCR predictor, the denoiser's sigmas, ...)."""
    prefix = label_encoder_prefix(state) or "\0"
    used = (LDM_UNET, LDM_VAE, prefix)
    counts = Counter(
        ".".join(k.split(".")[:3]) if k.startswith("conditioner.") else k.split(".")[0]
        for k in state
        if not k.startswith(used)
    )
    return dict(sorted(counts.items()))
