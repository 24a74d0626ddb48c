"""Can a font teach a reader? Checks that each training font draws every character so that its label is visible.

A font fails when a character draws nothing or the font's missing-glyph box (any shape would then mean that
character), when `I`, `l` and `|` are the same bitmap (the label is a coin toss), when its figures are
old-style (`0` and `1` drawn at x-height read as `o` and `ı`), or when its lowercase has no ascenders (small
capitals or capitals: `b` then looks like `B`). The size thresholds were set on Debian fonts of each kind (EB
Garamond, Vollkorn and Purisa figures, ADF Irianis Style and Humor Sans lowercase) against the 203 fonts kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from udifftext.config import DEFAULT_ALPHABET
from udifftext.data.render import load_font

CHECK_SIZE = 48
# Characters that must not share one bitmap in a training font.
LOOKALIKE_PAIRS = ("Il", "I|", "l|")
# `0` and `1` at most this much taller than `o` are old-style figures (kept fonts: 1.12 and up).
MIN_FIGURE_TO_O = 1.1
# `b`, `d`, `h`, `k` at most this much taller than `n` have no ascenders (kept fonts: 1.19 and up).
MIN_ASCENDER_TO_N = 1.1
UNUSED_CODE_POINT = "\U0010fffd"


def _ink_height(font, char: str) -> int:
    left, top, right, bottom = font.getbbox(char)
    return bottom - top


def font_problems(path: str | Path, alphabet: str = DEFAULT_ALPHABET) -> list[str]:
    """What keeps `path` from being a training font; an empty list when nothing does."""
    try:
        font = load_font(path, CHECK_SIZE)
    except OSError as err:  # FreeType's "unknown file format", a truncated file
        return [f"FreeType cannot read it ({err})"]
    masks = {c: font.getmask(c) for c in alphabet}
    bitmaps = {c: (mask.size, bytes(mask)) for c, mask in masks.items()}
    box = font.getmask(UNUSED_CODE_POINT)
    missing_box = (box.size, bytes(box))
    problems = []
    blank = "".join(c for c, mask in masks.items() if mask.size[0] * mask.size[1] == 0 or np.asarray(mask).max() == 0)
    boxed = "".join(c for c, mask in masks.items() if c not in blank and bitmaps[c] == missing_box)
    if blank:
        problems.append(f"draws nothing for {blank!r}")
    if boxed:
        problems.append(f"draws the missing-glyph box for {boxed!r}")
    same = [pair for pair in LOOKALIKE_PAIRS if set(pair) <= set(masks) and bitmaps[pair[0]] == bitmaps[pair[1]]]
    if same:
        problems.append(f"same bitmap for {', '.join(same)}")
    short = "".join(c for c in "01" if _ink_height(font, c) <= MIN_FIGURE_TO_O * _ink_height(font, "o"))
    if short:
        problems.append(f"old-style figures ({short!r} at most {MIN_FIGURE_TO_O} x the height of 'o')")
    flat = "".join(c for c in "bdhk" if _ink_height(font, c) <= MIN_ASCENDER_TO_N * _ink_height(font, "n"))
    if flat:
        problems.append(f"lowercase without ascenders ({flat!r} at most {MIN_ASCENDER_TO_N} x the height of 'n')")
    return problems


LIKENESS_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LIKENESS_GRID = 20


def glyph_shapes(path: str | Path) -> np.ndarray:
    """Each letter and figure's ink, scaled to a 20 x 20 grid: (62, 20, 20) bool, size and spacing ignored."""
    font = load_font(path, CHECK_SIZE)
    shapes = []
    for char in LIKENESS_CHARS:
        mask = font.getmask(char)
        ink = np.asarray(mask, dtype=np.uint8).reshape(mask.size[1], mask.size[0])
        image = Image.fromarray(ink if ink.size else np.zeros((1, 1), np.uint8))
        shapes.append(np.asarray(image.resize((LIKENESS_GRID, LIKENESS_GRID))) > 127)
    return np.stack(shapes)


def glyph_likeness(a: np.ndarray, b: np.ndarray) -> float:
    """Mean IoU of two fonts' `glyph_shapes`: 0.99 for a metric clone (STIX General vs Nimbus Roman), about 0.6 for
    unrelated text faces."""
    union = (a | b).sum(axis=(1, 2))
    return float(((a & b).sum(axis=(1, 2)) / np.maximum(union, 1)).mean())
