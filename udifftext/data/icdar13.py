"""ICDAR 2013 focused scene text: `root/<split>/annos/gt_<name>.txt` and `root/<split>/images/<name>.jpg`.

Each ground-truth line is `left, top, right, bottom, "word"` (the training set omits the commas); as
upstream, right and bottom are exclusive (`mask[top:bottom, left:right]`). Boxes only: `char_seg` is
all zero (no character masks), so a loss over it must skip these samples. Upstream evaluates words of
1..8 characters (data.max_word_len=8).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from udifftext.config import DataConfig
from udifftext.data.datasets import (
    FilteredDataset,
    UnreadableFile,
    check_box,
    first_existing,
    make_sample,
    read_image,
    roi_view,
    text_skip_reason,
)

LINE = re.compile(r'^\s*(-?\d+)[,\s]+(-?\d+)[,\s]+(-?\d+)[,\s]+(-?\d+)[,\s]+"(.*)"\s*$')
IMAGE_SUFFIXES = (".jpg", ".png", ".JPG", ".jpeg")


class Icdar13Dataset(FilteredDataset):
    def __init__(self, cfg: DataConfig) -> None:
        super().__init__(cfg)
        annos = Path(cfg.root) / cfg.split / "annos"
        if not annos.is_dir():
            raise ValueError(f"ICDAR13 annotations not found: {annos} (expected <root>/<split>/annos/gt_*.txt)")
        for gt in sorted(annos.glob("gt_*.txt")):
            name = gt.stem[len("gt_") :]
            images = Path(cfg.root) / cfg.split / "images"
            image = first_existing([images / (name + s) for s in IMAGE_SUFFIXES])
            for line in gt.read_text(encoding="utf-8-sig", errors="replace").splitlines():
                match = LINE.match(line)
                if match is None:
                    if line.strip():
                        self.skipped["annotation"] += 1
                    continue
                left, top, right, bottom = (int(v) for v in match.groups()[:4])
                text = match.group(5)
                reason = text_skip_reason(text, cfg)
                if reason:
                    self.skipped[reason] += 1
                else:
                    self.items.append((image, (top, bottom, left, right), text))

    def load(self, item: tuple) -> dict:
        path, (top, bottom, left, right), text = item
        if not Path(path).exists():
            raise UnreadableFile(path, "image missing")
        image = read_image(path)
        polygon = np.array([[left, top], [right, top], [right, bottom], [left, bottom]], np.float64)
        check_box(polygon, image.shape[:2], self.cfg)
        _, view, mask = roi_view(image, polygon, self.cfg)
        return make_sample(view, mask, None, text, self.cfg)
