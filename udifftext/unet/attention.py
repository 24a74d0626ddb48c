"""Capture the char cross-attention probabilities that L_loc and L_aae read (paper Eq. 5, Sec. 3.4).

`install_attention_capture(unet, store)` sets a capturing processor on the replaced cross-attention
layers only; every other attention keeps diffusers' fast SDPA processor. The processor computes the
softmax explicitly (so the probabilities exist and carry gradients) and writes the head-averaged maps
of the first `max_len` tokens into the store, keyed by layer name: one forward call fills the store,
`clear()` empties it before the next. Losses read `store.maps()`; they never reach into the UNet.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class AttentionStore:
    """Per-layer head-averaged cross-attention maps of the latest UNet forward call.

    `min_size`: layers whose map side (the shorter one) is smaller are not recorded (upstream: 16 at
    512 px, i.e. the 64², 32² and 16² layers). `enabled=False` records nothing, and without gradients
    the processor then falls back to SDPA.
    """

    def __init__(self, max_len: int, min_size: int):
        self.max_len = max_len
        self.min_size = min_size
        self.enabled = True
        self.input_size: tuple[int, int] | None = None  # the diffusers UNet's sample size, set by a pre-hook
        self._maps: dict[str, torch.Tensor] = {}

    def clear(self) -> None:
        self._maps = {}

    def maps(self) -> list[torch.Tensor]:
        """Recorded maps in call order, each (B, max_len, h, w), softmax probabilities over all tokens."""
        return list(self._maps.values())

    def names(self) -> list[str]:
        return list(self._maps)

    def map_size(self, positions: int) -> tuple[int, int]:
        """The (h, w) of a layer with `positions` queries: the UNet input halved k times (ceil)."""
        if self.input_size is None:
            raise RuntimeError("AttentionStore.input_size is unset: install_attention_capture adds the hook")
        H, W = self.input_size
        for k in range(12):
            h, w = math.ceil(H / 2**k), math.ceil(W / 2**k)
            if h * w == positions:
                return h, w
        raise RuntimeError(f"{positions} attention positions match no downsampling of {H}x{W}")

    def record(self, name: str, probs: torch.Tensor, batch: int) -> None:
        """probs (B * heads, h * w, L) -> store (B, max_len, h, w) averaged over heads."""
        h, w = self.map_size(probs.shape[1])
        if min(h, w) < self.min_size:
            return
        if probs.shape[2] < self.max_len:
            raise ValueError(f"context has {probs.shape[2]} tokens, fewer than AttentionStore.max_len={self.max_len}")
        heads = probs.shape[0] // batch
        maps = probs.view(batch, heads, h * w, -1)[..., : self.max_len].mean(1)  # (B, h*w, max_len)
        self._maps[name] = maps.transpose(1, 2).reshape(batch, self.max_len, h, w)  # (B, max_len, h, w)


class CapturingAttnProcessor:
    """Cross-attention with an explicit softmax whose probabilities go to an `AttentionStore`."""

    def __init__(self, store: AttentionStore, name: str):
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.store = store
        self.name = name
        self.fast = AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        # With gradients on, always take the explicit path: gradient checkpointing recomputes the forward
        # with the store disabled, and the recomputation must save the same tensors as the first pass.
        if encoder_hidden_states is None or not (self.store.enabled or torch.is_grad_enabled()):
            return self.fast(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        B = hidden_states.shape[0]
        q = attn.head_to_batch_dim(attn.to_q(hidden_states))  # (B*heads, N, d)
        k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))  # (B*heads, L, d)
        v = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))  # (B*heads, L, d)
        mask = attn.prepare_attention_mask(attention_mask, k.shape[1], B) if attention_mask is not None else None
        probs = attn.get_attention_scores(q, k, mask)  # (B*heads, N, L)
        self.store.record(self.name, probs, B)
        out = attn.batch_to_head_dim(torch.bmm(probs, v))  # (B, N, heads*d)
        out = attn.to_out[1](attn.to_out[0](out))  # (B, N, C)
        return out / attn.rescale_output_factor


def _diffusers_unet(model: nn.Module) -> nn.Module:
    return model.unet if hasattr(model, "cross_attention_blocks") else model


def capture_layer_names(model: nn.Module) -> list[str]:
    """Processor names of the cross-attention layers to capture: `attn2` outside the mid block."""
    unet = _diffusers_unet(model)
    return [n for n in unet.attn_processors if n.endswith("attn2.processor") and not n.startswith("mid_block")]


def install_attention_capture(model: nn.Module, store: AttentionStore) -> list[str]:
    """Put a capturing processor on the cross-attention layers of a `TextUNet` or diffusers UNet.

    Returns the captured layer names. The mid block is skipped (upstream: its 8x8 maps are too coarse).
    """
    unet = _diffusers_unet(model)
    names = capture_layer_names(unet)
    processors = dict(unet.attn_processors)
    for name in names:
        processors[name] = CapturingAttnProcessor(store, name.removesuffix(".processor"))
    unet.set_attn_processor(processors)

    def remember_input_size(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        store.input_size = tuple(sample.shape[-2:])

    unet.register_forward_pre_hook(remember_input_size, with_kwargs=True)
    return names
