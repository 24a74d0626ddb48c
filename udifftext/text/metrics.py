"""Held-out figures of the encoder stage: recognizer word/char accuracy, text->image retrieval, and the
per-position character reconstruction accuracy of the pretraining classifier."""

from __future__ import annotations

import torch


def retrieval_top1(text_emb: torch.Tensor, image_emb: torch.Tensor) -> float:
    """Share of texts whose own image (same row) is the most similar of all images.

    (N, E) text and (N, E) image embeddings, unit norm; ties count as misses unless the own image
    is the first maximum.
    """
    if text_emb.shape != image_emb.shape or text_emb.ndim != 2:
        shapes = f"{tuple(text_emb.shape)} and {tuple(image_emb.shape)}"
        raise ValueError(f"text_emb and image_emb must both be (N, E) with equal shapes, got {shapes}")
    similarity = text_emb @ image_emb.T  # (N, N)
    targets = torch.arange(text_emb.shape[0], device=text_emb.device)
    return (similarity.argmax(dim=1) == targets).float().mean().item()


def position_accuracy(logits: torch.Tensor, ids: torch.Tensor, text_only: bool = False) -> float:
    """Per-position accuracy of (B, L, C) logits against (B, L) ids; `text_only` skips padding positions."""
    hits = logits.argmax(dim=-1) == ids  # (B, L)
    if text_only:
        keep = ids != 0
        return (hits & keep).sum().item() / max(1, keep.sum().item())
    return hits.float().mean().item()


def word_accuracy(predicted: list[str], target: list[str], ignore_case: bool = False) -> float:
    """Exact-match share; case-sensitive unless `ignore_case` (the paper's SeqAcc ignores case)."""
    if len(predicted) != len(target):
        raise ValueError(f"predicted has {len(predicted)} texts, target has {len(target)}")
    if ignore_case:
        predicted, target = [p.lower() for p in predicted], [t.lower() for t in target]
    return sum(p == t for p, t in zip(predicted, target, strict=True)) / max(1, len(target))


def char_accuracy(predicted: list[str], target: list[str]) -> float:
    """Position-wise character accuracy: sum of same-index matches / sum of max(len(pred), len(true)),
    so missing and extra characters both count as errors."""
    if len(predicted) != len(target):
        raise ValueError(f"predicted has {len(predicted)} texts, target has {len(target)}")
    matches = sum(sum(a == b for a, b in zip(p, t, strict=False)) for p, t in zip(predicted, target, strict=True))
    total = sum(max(len(p), len(t)) for p, t in zip(predicted, target, strict=True))
    return matches / max(1, total)
