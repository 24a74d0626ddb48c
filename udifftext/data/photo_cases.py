"""Writing cases on photographs the synthetic engine never used (a `sample.py` / `evaluate.py` manifest).

The held-out synthetic split has unseen words and fonts but the training photos as backgrounds; these cases
measure the model on photographs it has never seen. Each photo gets `per_photo` axis-aligned boxes at random
places, each box the one the engine would draw around a held-out text (its held-out text sampler: list words
in random case and random strings) rendered in a held-out font at the engine's word sizes (6-25 % of the
photo's short side), ink box grown by the engine's polygon pad. The boxes hold no text before: the protocol
is writing, and SeqAcc on the unchanged photos shows how often the judge reads the target there anyway.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from udifftext.config import DataConfig
from udifftext.data.backgrounds import PHOTO_SUFFIXES
from udifftext.data.render import render_word
from udifftext.data.synth import POLYGON_PAD, TRACKING, WORD_SIZE
from udifftext.data.words import TextSampler, split_fonts

PROTOCOL = "photo"


def photo_box(
    text: str, font: str | Path, size: int, tracking: float, image_size: tuple[int, int], rng: np.random.Generator
) -> list[int] | None:
    """[x0, y0, x1, y1] around `text` as rendered, at a random place inside `image_size` (w, h); None if too big."""
    word = render_word(text, font, size, tracking * size)
    top, bottom, left, right = word.ink_box
    pad = POLYGON_PAD * size
    box_w, box_h = int(np.ceil(right - left + 2 * pad)), int(np.ceil(bottom - top + 2 * pad))
    width, height = image_size
    if box_w > width or box_h > height:
        return None
    x0, y0 = int(rng.integers(0, width - box_w + 1)), int(rng.integers(0, height - box_h + 1))
    return [x0, y0, x0 + box_w, y0 + box_h]


def photo_cases(photos_dir: str | Path, data: DataConfig, per_photo: int, seed: int) -> list[dict]:
    """Manifest entries (image paths relative to `photos_dir`): `per_photo` writing cases on every photo there."""
    photos = sorted(p for p in Path(photos_dir).iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise ValueError(f"no {PHOTO_SUFFIXES} photos in {photos_dir}")
    texts = TextSampler.from_config(data, "heldout")
    fonts = split_fonts(data, "heldout")
    rng = np.random.default_rng(seed)
    entries = []
    for photo in photos:
        with Image.open(photo) as img:
            image_size = img.size
        for k in range(per_photo):
            box = None
            while box is None:  # a long text at a large size can outgrow the photo: draw the text again
                text = texts.sample(rng)
                font = fonts[int(rng.integers(len(fonts)))]
                size = max(int(rng.uniform(*WORD_SIZE) * min(image_size)), 6)
                tracking = float(rng.uniform(*TRACKING))
                box = photo_box(text, font, size, tracking, image_size, rng)
            entry = {"id": f"{PROTOCOL}-{photo.stem}-{k}", "image": photo.name, "box": box, "text": text}
            entries.append({**entry, "protocol": PROTOCOL, "font": font.name, "size": size, "tracking": tracking})
    return entries


def write_photo_cases(photos_dir: str | Path, data: DataConfig, per_photo: int, seed: int) -> Path:
    """Write `photos_dir/cases.jsonl` (see `photo_cases`); returns its path."""
    path = Path(photos_dir) / "cases.jsonl"
    lines = [json.dumps(entry) for entry in photo_cases(photos_dir, data, per_photo, seed)]
    path.write_text("\n".join(lines) + "\n")
    return path
