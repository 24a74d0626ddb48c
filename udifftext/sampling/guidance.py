"""One guided UNet evaluation: classifier-free guidance batched with the zero context, optional attention capture.

The unconditional half comes first and the conditional half second, as upstream's guider; attention maps
and L_aae scores are read from the conditional half only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from udifftext.config import LossConfig


@dataclass
class Conditioning:
    """Everything the UNet needs besides the noisy sample, for a batch of B identical or distinct crops."""

    context: torch.Tensor  # (B, L, W) char-encoder tokens
    null_context: torch.Tensor  # (B, L, W) zeros: the unconditional context
    mask: torch.Tensor  # (B, 1, h, w) at the UNet's working resolution, 1 = generate
    masked: torch.Tensor  # (B, C, h, w) masked image in the first stage's space
    glyph: torch.Tensor | None  # (B, 1, h, w) rendered text, only for glyph-channel models
    region_mask: torch.Tensor  # (B, 1, H, W) at model resolution: where L_aae looks for attention
    char_mask: torch.Tensor  # (B, L) 1 for real characters (the tokens a padding-masked cross-attention reads)

    def repeat(self, n: int) -> Conditioning:
        """The same conditioning for n samples (a batch of candidate noises)."""

        def rep(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.repeat(n, *([1] * (x.ndim - 1)))

        return Conditioning(*(rep(getattr(self, f)) for f in self.__dataclass_fields__))

    def doubled(self) -> Conditioning:
        """[uncond; cond] batch for classifier-free guidance (contexts: zeros first, text second)."""

        def cat(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else torch.cat([x, x])

        doubled = Conditioning(*(cat(getattr(self, f)) for f in self.__dataclass_fields__))
        return replace(doubled, context=torch.cat([self.null_context, self.context]))


class GuidedDenoiser:
    """Calls the UNet with CFG; optionally captures cross-attention and scores it with L_aae.

    `store` is the `AttentionStore` installed on `unet`; it records maps only while `store.enabled`.
    """

    def __init__(self, unet: Any, store: Any, guidance_scale: float, loss: LossConfig):
        self.unet = unet
        self.store = store
        self.guidance_scale = guidance_scale
        self.loss = loss

    def __call__(
        self, scheduler: Any, z: torch.Tensor, t: torch.Tensor, cond: Conditioning, capture: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Guided model output for z (B, C, h, w) at timestep t, and the cond half's maps when `capture`."""
        z_in = scheduler.scale_model_input(z, t)  # (B, C, h, w)
        guided = self.guidance_scale != 1.0
        batch = cond.doubled() if guided else cond
        if guided:
            z_in = torch.cat([z_in, z_in])  # (2B, C, h, w)
        out, maps = self._forward(z_in, t, batch, capture)
        if guided:
            out_u, out_c = out.chunk(2)  # (B, C, h, w) each
            out = out_u + self.guidance_scale * (out_c - out_u)
            maps = None if maps is None else [m[z.shape[0] :] for m in maps]  # (B, L, h_l, w_l) each
        return out, maps

    def _forward(
        self, z_in: torch.Tensor, t: torch.Tensor, cond: Conditioning, capture: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        self.store.clear()
        self.store.enabled = capture
        try:
            out = self.unet(z_in, t, cond.context, cond.mask, cond.masked, cond.glyph, cond.char_mask)  # (B, C, h, w)
            maps = self.store.maps() if capture else None
        finally:
            self.store.enabled = False
        return out, maps

    def aae_loss(self, maps: list[torch.Tensor], cond: Conditioning) -> torch.Tensor:
        """L_aae per sample (B,) from captured cond maps (upstream `get_min_local_loss`)."""
        from udifftext.losses import attention_excite_loss

        loss = self.loss
        return attention_excite_loss(maps, cond.region_mask, cond.char_mask, loss.blur_kernel, loss.blur_sigma)

    def conditional_maps(
        self, scheduler: Any, z: torch.Tensor, t: torch.Tensor, cond: Conditioning
    ) -> list[torch.Tensor]:
        """Captured maps of a conditional-only forward at z: the cond half of a CFG batch, at half the cost."""
        z_in = scheduler.scale_model_input(z, t)  # (B, C, h, w)
        return self._forward(z_in, t, cond, capture=True)[1]

    def conditional_aae(self, scheduler: Any, z: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """L_aae (B,) of a conditional-only forward at z, differentiable w.r.t. z (for refinement)."""
        return self.aae_loss(self.conditional_maps(scheduler, z, t, cond), cond)
