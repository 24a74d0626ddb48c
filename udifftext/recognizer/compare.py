"""Readers side by side on the recognizer's held-out word crops, split into list words and random strings.

The recognizer's targets are absolute figures on a split that is hard on purpose (unseen fonts, random strings
over 94 case-sensitive characters); reading the same crops with the independent OCR judge says how hard.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from udifftext.config import EncoderStageConfig
from udifftext.judge import Reader
from udifftext.text.metrics import char_accuracy, word_accuracy

if TYPE_CHECKING:
    from udifftext.data.synth import WordCropDataset

LENGTH_BUCKET = 4  # characters per text-length group by default: 1-4, 5-8, 9-12
TRAIN_PROBE_START = 5_000_000  # first index of the training-split crops read by `training_crops`
MAX_FONT_ROWS = 10  # one row per font for the held-out split's five; the training split's hundreds get none


@dataclass
class WordCrops:
    crops: list[np.ndarray]  # (h, w, 3) uint8, the grayscale crop the recognizer trains on, repeated to RGB
    texts: list[str]
    is_list_word: list[bool]  # False: a random string over the alphabet
    fonts: list[str]  # the font file each crop is drawn in


def heldout_crops(cfg: EncoderStageConfig) -> WordCrops:
    """The `eval_samples` held-out crops that train_encoder.py validates and evaluates on."""
    from udifftext.data.synth import heldout_word_crops

    return _read_crops(heldout_word_crops(cfg.data, cfg.eval_samples), range(cfg.eval_samples))


def training_crops(cfg: EncoderStageConfig) -> WordCrops:
    """`eval_samples` crops of the training split (training words and fonts, including `data.extra_fonts_dirs`),
    from index TRAIN_PROBE_START on: a recognizer that reads these no better than the held-out crops underfits
    rather than failing to generalise. A training run shuffles all `data.length` indices, so a launch of N crops
    has drawn each of these with probability N / data.length."""
    from udifftext.data.synth import WordCropDataset

    dataset = WordCropDataset(replace(cfg.data, split="train", length=TRAIN_PROBE_START + cfg.eval_samples))
    return _read_crops(dataset, range(TRAIN_PROBE_START, TRAIN_PROBE_START + cfg.eval_samples))


def _read_crops(dataset: WordCropDataset, indices: range) -> WordCrops:
    from udifftext.data.words import load_words

    words = {w.lower() for w in load_words(dataset.cfg, dataset.cfg.split)}
    crops, texts, fonts = [], [], []
    for index in indices:
        item = dataset[index]
        gray = (item["word_crop"][0].numpy() * 255).round().astype(np.uint8)  # (h, w)
        crops.append(np.repeat(gray[..., None], 3, axis=2))
        texts.append(item["text"])
        fonts.append(item["font"])
    return WordCrops(crops, texts, [t.lower() in words for t in texts], fonts)


def squeeze_crops(probe: WordCrops, height: int, width: int) -> WordCrops:
    """The same crops with only `height` x `width` pixels of detail: each is shrunk to that size (area
    averaging) and stretched back (bilinear). A reader that reads them as well as the originals has rows or
    columns to spare; one that falls needs the detail that was averaged away."""
    from udifftext.data.render import resize

    if height < 1 or width < 1:
        raise ValueError(f"squeeze_crops needs height, width >= 1, got ({height}, {width})")
    squeezed = []
    for crop in probe.crops:
        small = resize(crop[..., 0].astype(np.float32), height, width)
        gray = np.clip(resize(small, *crop.shape[:2]), 0, 255).round().astype(np.uint8)  # (h, w)
        squeezed.append(np.repeat(gray[..., None], 3, axis=2))
    return replace(probe, crops=squeezed)


def accuracy_rows(name: str, reads: list[str], probe: WordCrops, length_bucket: int = LENGTH_BUCKET) -> list[dict]:
    """Word accuracy (case-sensitive and not) and character accuracy: all crops, list words, random strings, by
    text length in groups of `length_bucket` characters (per-character errors compound, so long words are where a
    recognizer falls first) and by font (up to MAX_FONT_ROWS fonts)."""
    groups = {
        "all": [True] * len(reads),
        "list words": probe.is_list_word,
        "random strings": [not w for w in probe.is_list_word],
    }
    longest = max(map(len, probe.texts))
    for start in range(1, longest + 1, length_bucket):
        end = min(start + length_bucket - 1, longest)
        keep = [start <= len(t) <= end for t in probe.texts]
        if any(keep):  # a length no text has gets no row
            groups[f"{start}-{end} chars" if end > start else f"{start} chars"] = keep
    fonts = sorted(set(probe.fonts))
    if len(fonts) <= MAX_FONT_ROWS:
        for font in fonts:
            groups[font] = [f == font for f in probe.fonts]
    rows = []
    for group, keep in groups.items():
        predicted = [r for r, k in zip(reads, keep, strict=True) if k]
        target = [t for t, k in zip(probe.texts, keep, strict=True) if k]
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


def compare_readers(probe: WordCrops, readers: dict[str, Reader], length_bucket: int = LENGTH_BUCKET) -> list[dict]:
    """Every reader on the same crops; one row per reader and text group."""
    return [
        row for name, read in readers.items() for row in accuracy_rows(name, read(probe.crops), probe, length_bucket)
    ]


def markdown(rows: list[dict]) -> str:
    lines = ["| reader | texts | n | word acc | word acc (no case) | char acc |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['reader']} | {r['texts']} | {r['n']} | {r['word_acc']:.3f} | {r['word_acc_nocase']:.3f} "
            f"| {r['char_acc']:.3f} |"
        )
    return "\n".join(lines)
