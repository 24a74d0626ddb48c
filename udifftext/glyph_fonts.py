"""How well a reader reads texts drawn in a font the way the sampler draws the glyph, to choose
`SampleConfig.glyph_font` on texts of its own rather than on the evaluation's cases.

A glyph model trained on the target's own ink (`unet.glyph_ink_prob` 1) writes the letterforms its glyph shows, so
the glyph's font bounds how well its writing reads: random strings most of all, where `l I | 1`, `O 0` and the
quotes are told apart by the letterforms alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from udifftext.data.render import GLYPH_FONT_SIZE, render_glyph, render_word
from udifftext.judge import Reader


def draw_text_crop(text: str, font: str | Path, height: int = 44, margin: int = 10) -> np.ndarray:
    """`text` in `font`, black on white, its ink box scaled to `height` px at its own aspect, `margin` px blank
    around it: (height + 2 margin, w, 3) uint8, the crop a judge would read off a perfect copy of the glyph."""
    top, bottom, left, right = render_word(text, font, GLYPH_FONT_SIZE).ink_box
    width = max(1, round((right - left) * height / (bottom - top)))
    ink = np.pad(render_glyph(text, height, width, font), margin)
    gray = np.round(255 * (1 - ink)).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def glyph_font_legibility(
    fonts: Sequence[str | Path], texts: Sequence[str], list_words: set[str], read: Reader
) -> list[dict]:
    """One row per font: the share of `texts` read exactly (case-insensitive, and case-sensitive), split into list
    words (lowercase in `list_words`) and random strings."""
    listed = np.array([t.lower() in list_words for t in texts])
    rows = []
    for font in fonts:
        reads = read([draw_text_crop(t, font) for t in texts])
        exact = np.array([r.lower() == t.lower() for r, t in zip(reads, texts, strict=True)])
        rows.append(
            {
                "font": Path(font).name,
                "n": len(texts),
                "seq_acc": float(exact.mean()),
                "seq_acc_case": float(np.mean([r == t for r, t in zip(reads, texts, strict=True)])),
                "list_words": float(exact[listed].mean()) if listed.any() else float("nan"),
                "random_strings": float(exact[~listed].mean()) if (~listed).any() else float("nan"),
                "n_list_words": int(listed.sum()),
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table, best-read font first."""
    lines = [
        "| font | SeqAcc | SeqAcc (case) | list words | random strings |",
        "|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: -r["seq_acc"]):
        n_random = row["n"] - row["n_list_words"]
        lines.append(
            f"| {row['font']} | {row['seq_acc']:.3f} | {row['seq_acc_case']:.3f} | "
            f"{row['list_words']:.3f} ({row['n_list_words']}) | {row['random_strings']:.3f} ({n_random}) |"
        )
    return "\n".join(lines)
