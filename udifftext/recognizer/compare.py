"""Readers side by side on the recognizer's held-out word crops, split into list words and random strings.

The recognizer's targets are absolute figures on a split that is hard on purpose (unseen fonts, random strings
over 94 case-sensitive characters); reading the same crops with the independent OCR judge says how hard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from udifftext.config import EncoderStageConfig
from udifftext.text.metrics import char_accuracy, word_accuracy

Reader = Callable[[list[np.ndarray]], list[str]]
LENGTH_BUCKET = 4  # characters per text-length group by default: 1-4, 5-8, 9-12


@dataclass
class HeldOutCrops:
    crops: list[np.ndarray]  # (h, w, 3) uint8, the grayscale crop the recognizer trains on, repeated to RGB
    texts: list[str]
    is_list_word: list[bool]  # False: a random string over the alphabet
    fonts: list[str]  # the font file each crop is drawn in


def heldout_crops(cfg: EncoderStageConfig) -> HeldOutCrops:
    """The `eval_samples` held-out crops that train_encoder.py validates and evaluates on."""
    from udifftext.data.synth import heldout_word_crops
    from udifftext.data.words import load_words

    dataset = heldout_word_crops(cfg.data, cfg.eval_samples)
    words = {w.lower() for w in load_words(cfg.data, "heldout")}
    crops, texts, fonts = [], [], []
    for index in range(len(dataset)):
        item = dataset[index]
        gray = (item["word_crop"][0].numpy() * 255).round().astype(np.uint8)  # (h, w)
        crops.append(np.repeat(gray[..., None], 3, axis=2))
        texts.append(item["text"])
        fonts.append(item["font"])
    return HeldOutCrops(crops, texts, [t.lower() in words for t in texts], fonts)


def accuracy_rows(name: str, reads: list[str], heldout: HeldOutCrops, length_bucket: int = LENGTH_BUCKET) -> list[dict]:
    """Word accuracy (case-sensitive and not) and character accuracy: all crops, list words, random strings, by
    text length in groups of `length_bucket` characters (per-character errors compound, so long words are where a
    recognizer falls first) and by font."""
    groups = {
        "all": [True] * len(reads),
        "list words": heldout.is_list_word,
        "random strings": [not w for w in heldout.is_list_word],
    }
    longest = max(map(len, heldout.texts))
    for start in range(1, longest + 1, length_bucket):
        end = min(start + length_bucket - 1, longest)
        keep = [start <= len(t) <= end for t in heldout.texts]
        if any(keep):  # a length no text has gets no row
            groups[f"{start}-{end} chars" if end > start else f"{start} chars"] = keep
    for font in sorted(set(heldout.fonts)):
        groups[font] = [f == font for f in heldout.fonts]
    rows = []
    for group, keep in groups.items():
        predicted = [r for r, k in zip(reads, keep, strict=True) if k]
        target = [t for t, k in zip(heldout.texts, keep, strict=True) if k]
        rows.append(
            {
                "reader": name,
                "texts": group,
                "n": len(target),
                "word_acc": word_accuracy(predicted, target),
                "word_acc_nocase": word_accuracy(predicted, target, ignore_case=True),
                "char_acc": char_accuracy(predicted, target) if target else 0.0,
            }
        )
    return rows


def compare_readers(
    heldout: HeldOutCrops, readers: dict[str, Reader], length_bucket: int = LENGTH_BUCKET
) -> list[dict]:
    """Every reader on the same crops; one row per reader and text group."""
    return [
        row
        for name, read in readers.items()
        for row in accuracy_rows(name, read(heldout.crops), heldout, length_bucket)
    ]


def markdown(rows: list[dict]) -> str:
    lines = ["| reader | texts | n | word acc | word acc (no case) | char acc |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['reader']} | {r['texts']} | {r['n']} | {r['word_acc']:.3f} | {r['word_acc_nocase']:.3f} "
            f"| {r['char_acc']:.3f} |"
        )
    return "\n".join(lines)
