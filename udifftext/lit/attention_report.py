"""Is the text path alive? Where a UNet's char cross-attention sends its probability, and whether L_loc can move it.

A model that learned to ignore its text (a glyph model) parks the attention on the padding tokens after the word;
the softmax is then saturated and passes almost no gradient to the queries and keys, so a later fine-tune that
needs the text (a token-only twin) cannot learn from those weights (docs/results.md).
"""

from __future__ import annotations

from typing import Any

import torch

from udifftext.losses import resize_char_masks


def character_share(attn: torch.Tensor, char_seg_mask: torch.Tensor) -> torch.Tensor:
    """Mean share of the attention that falls on the word's own characters, per sample.

    attn (B, L, h, w) softmax probabilities over the L tokens; char_seg_mask (B, L), 1 for real characters.
    The rest goes to the padding tokens after the word. A uniform softmax gives n / L for an n-character word.
    """
    return (attn.mean(dim=(2, 3)) * char_seg_mask.to(attn)).sum(1)  # (B,)


def own_mask_share(attn: torch.Tensor, seg: torch.Tensor, char_seg_mask: torch.Tensor) -> torch.Tensor:
    """How localised each character's attention is: the share of its map inside its own mask, per sample.

    attn (B, L, h, w); seg (B, L, h, w) the character masks at the map's size (`resize_char_masks`, "cover": every
    cell a character touches); averaged over the real characters that have a mask. A map flat over space gives
    each character its mask's share of the cells (`flat_mask_share`); a map entirely inside the mask gives 1.
    Samples without masks give NaN.
    """
    inside = (attn * seg).sum(dim=(2, 3)) / attn.sum(dim=(2, 3)).clamp_min(1e-12)  # (B, L)
    return _mean_over_characters(inside, seg, char_seg_mask)


def flat_mask_share(seg: torch.Tensor, char_seg_mask: torch.Tensor) -> torch.Tensor:
    """`own_mask_share` of a map flat over space: the mean share of the cells each character's mask covers."""
    return _mean_over_characters(seg.mean(dim=(2, 3)), seg, char_seg_mask)


def _mean_over_characters(values: torch.Tensor, seg: torch.Tensor, char_seg_mask: torch.Tensor) -> torch.Tensor:
    real = char_seg_mask.to(values) * (seg.flatten(2).amax(2) > 0)  # (B, L) real characters with a mask
    return (values * real).sum(1) / real.sum(1)  # (B,)


def attention_report(module: Any, batch: dict, timestep: int) -> list[dict[str, Any]]:
    """Per captured cross-attention layer of a `LitUDiffText` on `batch` at one noise level.

    For each layer: its map size, the attention share on the word's characters (and what a uniform softmax
    would give), the share of each character's attention inside its own mask (and a spatially flat map's), the
    mean peak probability of a character token, and that layer's L_loc with the norm of its
    gradient on the layer's query and key weights (the signal L_loc can send).
    """
    B = len(batch["text"])
    cond = module._condition(batch)
    context = module._context(batch["text"], torch.zeros(B, dtype=torch.bool))
    t = torch.full((B,), timestep, dtype=torch.long)
    noise = torch.randn(cond["x0"].shape, generator=torch.Generator().manual_seed(0))
    noisy = module.scheduler.add_noise(cond["x0"], noise, t)
    _, maps = module.predict(noisy, t, context, cond, capture=True)
    chars = batch["char_seg_mask"].float()  # (B, L)
    rows = []
    for name, attn in maps.items():
        layer = module.unet.unet.get_submodule(name)
        weights = [layer.to_q.weight, layer.to_k.weight]
        loss = module.local_loss([attn], batch["char_seg"], batch["char_seg_mask"])
        grads = torch.autograd.grad(loss, weights, retain_graph=True)
        peak = (attn.amax(dim=(2, 3)) * chars).sum() / chars.sum()
        seg = resize_char_masks(batch["char_seg"], attn.shape[-2:], "cover")  # (B, L, h, w)
        rows.append(
            {
                "layer": name,
                "size": tuple(attn.shape[-2:]),
                "char_share": character_share(attn, chars).mean().item(),
                "uniform_share": 1.0 if module.unet.mask_padding else (chars.sum(1) / chars.shape[1]).mean().item(),
                "own_mask_share": own_mask_share(attn, seg, chars).nanmean().item(),
                "flat_mask_share": flat_mask_share(seg, chars).nanmean().item(),
                "char_peak": peak.item(),
                "l_loc": loss.item(),
                "l_loc_grad_qk": sum(g.norm() ** 2 for g in grads).sqrt().item(),
            }
        )
    return rows


def report_for_config(cfg: Any, samples: int, timestep: int, seed: int) -> list[dict[str, Any]]:
    """`attention_report` of the training module `cfg` builds (init_from: the weights) on `samples` training samples."""
    from udifftext.lit.unet_module import LitUDiffText

    torch.manual_seed(seed)
    return attention_report(LitUDiffText(cfg).eval(), training_samples(cfg, samples), timestep)


def training_samples(cfg: Any, n: int) -> dict:
    """The first `n` samples of the config's training data as one batch."""
    from dataclasses import replace

    from udifftext.data.datasets import build_dataset, collate_batch

    data = build_dataset(replace(cfg.data, length=n))
    return collate_batch([data[i] for i in range(n)])


def markdown(rows: list[dict[str, Any]]) -> str:
    """The report as a markdown table."""
    lines = [
        "| layer | map | share on characters (uniform) | inside own mask (flat) | char peak | L_loc "
        "| L_loc grad on q, k |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['layer']} | {r['size'][0]}x{r['size'][1]} | {r['char_share']:.3f} ({r['uniform_share']:.3f}) | "
            f"{r['own_mask_share']:.3f} ({r['flat_mask_share']:.3f}) | {r['char_peak']:.3f} | {r['l_loc']:.4f} | "
            f"{r['l_loc_grad_qk']:.2e} |"
        )
    return "\n".join(lines)
