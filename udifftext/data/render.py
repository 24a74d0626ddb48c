"""Glyph drawing: words rendered character by character, so every character's exact ink is known.

A word's ink is the union (max) of its characters' ink, each drawn alone at its pen position; the
per-character maps are therefore exact masks of the pixels each character paints, not boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from udifftext.config import GLYPH_FONT
from udifftext.data.words import resolve_data_path

GLYPH_FONT_SIZE = 64


@lru_cache(maxsize=256)
def load_font(path: str | Path, size: int) -> ImageFont.FreeTypeFont:
    """A cached FreeType font; each DataLoader worker keeps its own cache."""
    return ImageFont.truetype(str(resolve_data_path(path)), int(size))


@dataclass
class RenderedWord:
    """Per-character ink of one word on a tight canvas (padded by `margin` pixels on every side)."""

    char_alphas: np.ndarray  # (L, h, w) float32 in [0, 1], one map per character
    ink_box: tuple[int, int, int, int]  # (top, bottom, left, right) of the union ink, bottom/right exclusive

    @property
    def alpha(self) -> np.ndarray:
        return self.char_alphas.max(axis=0)  # (h, w)


@lru_cache(maxsize=4096)
def _char_bitmap(path: str, size: int, char: str) -> tuple[np.ndarray, int, int]:
    """One character's ink and its offset from the pen position (top of the ascender line)."""
    font = load_font(path, size)
    left, top, right, bottom = font.getbbox(char)
    image = Image.new("L", (max(right - left, 1), max(bottom - top, 1)), 0)
    ImageDraw.Draw(image).text((-left, -top), char, font=font, fill=255)
    return np.asarray(image, dtype=np.float32) / 255.0, left, top


def render_word(text: str, font_path: str | Path, size: int, tracking: float = 0.0, margin: int = 2) -> RenderedWord:
    """Draw `text` at font `size` px with `tracking` extra px between characters.

    Pen positions come from the font's advance widths (with kerning where the font has it), so the word
    looks as if drawn in one call, but each character lands in its own map.
    """
    if not text:
        raise ValueError("text must have at least one character, got ''")
    path = str(font_path)
    font = load_font(path, size)
    pens = [font.getlength(text[:i]) + i * tracking for i in range(len(text))]
    glyphs = [_char_bitmap(path, int(size), c) for c in text]
    lefts = [round(p) + g[1] for p, g in zip(pens, glyphs, strict=True)]
    tops = [g[2] for g in glyphs]
    x0, y0 = min(lefts), min(tops)
    width = max(x + g[0].shape[1] for x, g in zip(lefts, glyphs, strict=True)) - x0 + 2 * margin
    height = max(y + g[0].shape[0] for y, g in zip(tops, glyphs, strict=True)) - y0 + 2 * margin
    alphas = np.zeros((len(text), height, width), np.float32)  # (L, h, w)
    for j, ((bitmap, _, _), x, y) in enumerate(zip(glyphs, lefts, tops, strict=True)):
        ys, xs = y - y0 + margin, x - x0 + margin
        alphas[j, ys : ys + bitmap.shape[0], xs : xs + bitmap.shape[1]] = bitmap
    return RenderedWord(alphas, ink_box(alphas.max(axis=0)))


def ink_box(alpha: np.ndarray, threshold: float = 0.0) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the pixels above `threshold`, bottom/right exclusive; whole map if none."""
    rows = np.flatnonzero((alpha > threshold).any(axis=1))
    cols = np.flatnonzero((alpha > threshold).any(axis=0))
    if rows.size == 0:
        return 0, alpha.shape[0], 0, alpha.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), bilinear when enlarging."""
    shrinking = height * width < image.shape[0] * image.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def render_glyph(text: str, height: int, width: int, font: str | Path = GLYPH_FONT) -> np.ndarray:
    """The text in one plain font (DejaVu Sans unless `font`), its ink box stretched to fill a (height, width) box.

    Returns float32 (height, width) in [0, 1], 1 = ink; all zeros for "". This is the optional glyph
    channel of the UNet and sampler: the target word drawn where the mask's box is.
    """
    if height < 1 or width < 1:
        raise ValueError(f"render_glyph needs height, width >= 1, got ({height}, {width})")
    if not text:
        return np.zeros((height, width), np.float32)
    word = render_word(text, font, GLYPH_FONT_SIZE)
    top, bottom, left, right = word.ink_box
    ink = np.ascontiguousarray(word.alpha[top:bottom, left:right])
    return np.clip(resize(ink, height, width), 0.0, 1.0).astype(np.float32)


def fill_polygon(height: int, width: int, polygon: np.ndarray) -> np.ndarray:
    """(height, width) uint8 map, 1 inside the (N, 2) xy polygon (sub-pixel vertices, pixel centres)."""
    polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
    out = np.zeros((height, width), np.uint8)
    shift = 4  # cv2 fixed-point vertices: 1/16 px precision
    pts = np.round((polygon - 0.5) * (1 << shift)).astype(np.int32)  # pixel (i, j) covers [j, j+1) x [i, i+1)
    cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=shift)
    return out
