"""Character-level text encoder (paper Sec. 3.2; upstream ``LabelEncoder``): the UNet's cross-attention context.

Architecture, exactly as upstream: ``nn.Embedding(len(alphabet) + 1, width)`` -> fixed sinusoidal positions
added, then dropout -> ``nn.TransformerEncoder`` (post-norm, ReLU, batch_first, no final norm). There is no
padding mask: padded positions (id 0) are attended like any other token, as upstream.

Submodule and state-dict names match upstream's ``LabelEncoder`` one to one, so its checkpoint maps by
dropping keys only (issue 10)::

    label_embedding.weight           (num_classes, width)
    pos_embedding.pe                 (max_len, width)  the sinusoidal table (a buffer, saved like upstream)
    encoder.layers.{i}.self_attn.in_proj_weight / in_proj_bias / out_proj.weight / out_proj.bias
    encoder.layers.{i}.linear1.* / linear2.* / norm1.* / norm2.*

Upstream keys to drop: ``cls_head.*``, ``pos_head.*``, ``text_head.*``, ``visual_head.*``, ``logit_scale``,
``visual_encoder.*`` (pretraining only).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from udifftext.config import TextEncoderConfig
from udifftext.io import load_state_dict, load_strict
from udifftext.text.tokenizer import CharTokenizer

WEIGHTS_SOURCE = "`scripts/train_encoder.py` (task: contrastive) export, or the shipped checkpoints/encoders/"


class SinusoidalPositions(nn.Module):
    """Adds the fixed sin/cos table of "Attention is all you need" to (B, max_len, width) tokens, then dropout."""

    def __init__(self, width: int, max_len: int, dropout: float):
        super().__init__()
        if width % 2:
            raise ValueError(f"width must be even for sin/cos positions, got {width}")
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len, dtype=torch.float32)[:, None]  # (L, 1)
        freq = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))  # (W/2,)
        pe = torch.zeros(max_len, width)  # (L, W)
        pe[:, 0::2] = torch.sin(position * freq)
        pe[:, 1::2] = torch.cos(position * freq)
        self.register_buffer("pe", pe)  # persistent, as upstream, so checkpoints map key for key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[None])  # (B, L, W)


class CharTextEncoder(nn.Module):
    """Texts of at most `max_len` characters -> (B, max_len, width) context tokens."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        if cfg.width % cfg.heads:
            raise ValueError(f"text_encoder.width={cfg.width} must be divisible by text_encoder.heads={cfg.heads}")
        self.cfg = cfg
        self.tokenizer = CharTokenizer(cfg.alphabet, cfg.max_len)
        self.label_embedding = nn.Embedding(self.tokenizer.num_classes, cfg.width)
        self.pos_embedding = SinusoidalPositions(cfg.width, cfg.max_len, cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=cfg.width, nhead=cfg.heads, dim_feedforward=cfg.ff_dim, dropout=cfg.dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=cfg.layers, enable_nested_tensor=False)

    @property
    def width(self) -> int:
        return self.cfg.width

    @property
    def max_len(self) -> int:
        return self.cfg.max_len

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, max_len) token ids -> (B, max_len, width)."""
        if ids.ndim != 2 or ids.shape[1] != self.max_len:
            raise ValueError(f"ids must have shape (B, {self.max_len}), got {tuple(ids.shape)}")
        x = self.label_embedding(ids)  # (B, L, W)
        x = self.pos_embedding(x)  # (B, L, W)
        return self.encoder(x)  # (B, L, W)

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Tokenize on the encoder's device and encode: (B,) texts -> (B, max_len, width)."""
        ids = self.tokenizer.encode(texts).to(self.label_embedding.weight.device)  # (B, L)
        return self(ids)

    def null_context(self, batch_size: int) -> torch.Tensor:
        """The unconditional context: all zeros (upstream), never ``encode_text("")``."""
        weight = self.label_embedding.weight
        return torch.zeros(batch_size, self.max_len, self.width, device=weight.device, dtype=weight.dtype)


def load_text_encoder(cfg: TextEncoderConfig, init_seed: int | None = None) -> CharTextEncoder:
    """Build the encoder; load `cfg.weights` (exported safetensors) strictly when set, else random init.

    `init_seed` draws the random init from that seed without touching the global stream: a frozen random encoder
    (the "not pretrained" ablation) must come out the same in every launch, and a resumed launch reseeds.
    """
    if cfg.weights or init_seed is None:
        encoder = CharTextEncoder(cfg)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            encoder = CharTextEncoder(cfg)
    if cfg.weights:
        what = "char text encoder weights (.safetensors exported by train_encoder.py)"
        load_strict(encoder, load_state_dict(cfg.weights, what, WEIGHTS_SOURCE), what=what)
    return encoder
