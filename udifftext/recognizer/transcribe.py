"""A person's reading of the held-out word crops, as one more reader beside the recognizers.

How well a recognizer should read a split depends on how readable its crops are: a letter on a patch of its own
colour, under an object or lost in clutter cannot be read by anyone. `write_sheets` draws a random sample of crops
as numbered sheets without their texts, plus a ``transcription.txt`` template (``position: text`` per line); a
person fills it in blind, and `read_transcription` gives back the crops' indices and what the person read, so the
person is scored like any reader (`scripts/compare_recognizers.py --transcription DIR`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from udifftext.recognizer.compare import WordCrops

SHEET_ROWS = 20  # crops per sheet
SHEET_SCALE = 2  # each crop drawn at twice its size (nearest neighbour: no detail added)
LABEL_WIDTH = 60  # pixels left of each crop for its position
CROPS_FILE = "crops.json"
TRANSCRIPTION_FILE = "transcription.txt"


def sample_positions(total: int, count: int, seed: int) -> list[int]:
    """`count` distinct crop indices below `total` in a random order (the sheets' order)."""
    if not 0 < count <= total:
        raise ValueError(f"a reading sample needs 1 to {total} crops, got {count}")
    return np.random.default_rng(seed).permutation(total)[:count].tolist()


def subset(probe: WordCrops, indices: list[int]) -> WordCrops:
    """The crops at `indices`, in that order."""
    fields = ("crops", "texts", "is_list_word", "fonts")
    return replace(probe, **{name: [getattr(probe, name)[i] for i in indices] for name in fields})


def _fingerprint(texts: list[str]) -> str:
    """Names the crops a transcription belongs to without writing their texts beside the sheets."""
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def write_sheets(probe: WordCrops, indices: list[int], out_dir: Path) -> list[Path]:
    """Sheets of the crops at `indices` (SHEET_ROWS each, numbered 0.. in order, no texts), ``crops.json`` (the
    crop index of each position) and an empty ``transcription.txt``; returns the sheets. Refuses a folder that
    already holds a transcription, so a reading is never overwritten."""
    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    if (out_dir / TRANSCRIPTION_FILE).exists():
        raise FileExistsError(f"{out_dir / TRANSCRIPTION_FILE} exists: choose another folder for new sheets")
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = probe.crops[0].shape[:2]
    row_height = height * SHEET_SCALE + 6
    sheets = []
    for start in range(0, len(indices), SHEET_ROWS):
        chunk = indices[start : start + SHEET_ROWS]
        sheet = Image.new("L", (LABEL_WIDTH + width * SHEET_SCALE, row_height * len(chunk)), 255)
        draw = ImageDraw.Draw(sheet)
        for row, index in enumerate(chunk):
            crop = Image.fromarray(probe.crops[index][..., 0])
            crop = crop.resize((width * SHEET_SCALE, height * SHEET_SCALE), Image.NEAREST)
            sheet.paste(crop, (LABEL_WIDTH, row * row_height))
            draw.text((4, row * row_height + height * SHEET_SCALE // 2 - 5), str(start + row), fill=0)
        path = out_dir / f"sheet_{start // SHEET_ROWS:02d}.png"
        sheet.save(path)
        sheets.append(path)
    record = {"crops": indices, "fingerprint": _fingerprint([probe.texts[i] for i in indices])}
    (out_dir / CROPS_FILE).write_text(json.dumps(record, indent=1) + "\n")
    (out_dir / TRANSCRIPTION_FILE).write_text("".join(f"{position}: \n" for position in range(len(indices))))
    return sheets


def read_transcription(out_dir: Path, probe: WordCrops) -> tuple[list[int], list[str]]:
    """The crop indices of a filled-in ``transcription.txt`` and what was read at each (an empty text: nothing
    readable). The crops must be those the sheets were drawn from (same config and split)."""
    out_dir = Path(out_dir)
    for name in (CROPS_FILE, TRANSCRIPTION_FILE):
        if not (out_dir / name).is_file():
            raise FileNotFoundError(f"{out_dir / name} not found: write the sheets first (--sheets {out_dir})")
    record = json.loads((out_dir / CROPS_FILE).read_text())
    indices = record["crops"]
    if max(indices) >= len(probe.texts) or record["fingerprint"] != _fingerprint([probe.texts[i] for i in indices]):
        raise ValueError(f"{out_dir} was drawn from other crops: use the config, overrides and split of its sheets")
    reads: dict[int, str] = {}
    for number, line in enumerate((out_dir / TRANSCRIPTION_FILE).read_text().splitlines(), 1):
        position, colon, text = line.partition(":")
        if not colon or not position.strip().isdigit():
            raise ValueError(f"{out_dir / TRANSCRIPTION_FILE}:{number}: expected 'position: text', got {line!r}")
        if int(position) in reads:
            raise ValueError(f"{out_dir / TRANSCRIPTION_FILE}:{number}: position {position} read twice")
        reads[int(position)] = text.strip()  # the default alphabet has no whitespace
    if sorted(reads) != list(range(len(indices))):
        missing = sorted(set(range(len(indices))) - set(reads))
        raise ValueError(f"{out_dir / TRANSCRIPTION_FILE}: positions {missing[:10]} are missing")
    return indices, [reads[position] for position in range(len(indices))]
