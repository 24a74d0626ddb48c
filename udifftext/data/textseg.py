"""TextSeg (Xu et al. 2021): `root/<split>/image/<name>.jpg`, `root/<split>/annotation/<name>_anno.json`
and `<name>_mask.png`.

The json maps word ids to {"text", "bbox": 8 ints (x1, y1, ..., x4, y4), "char": {id: {"text",
"mask_value", ...}}}; `_mask.png` holds each character's `mask_value` at its pixels. As upstream: words
whose character texts do not spell the word, or that contain '#', are skipped; the mask of position j is
the union of the masks of every character of the word equal to text[j] (position-unaware), opened with
1x2 and 2x1 kernels twice and dilated 3x3 seven times (scaled to the model resolution).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

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

IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")


def _read_label_png(path: Path) -> np.ndarray:
    """(H, W) integer map from a palette, grayscale or RGB png (first channel)."""
    try:
        with Image.open(path) as image:
            labels = np.array(image)
    except OSError as err:
        raise UnreadableFile(path, str(err)) from None
    return labels[..., 0] if labels.ndim == 3 else labels


class TextSegDataset(FilteredDataset):
    def __init__(self, cfg: DataConfig) -> None:
        super().__init__(cfg)
        split_dir = Path(cfg.root) / cfg.split
        annos = split_dir / "annotation"
        if not annos.is_dir():
            raise ValueError(f"TextSeg annotations not found: {annos} (expected <root>/<split>/annotation/)")
        for anno in sorted(annos.glob("*_anno.json")):
            name = anno.name[: -len("_anno.json")]
            try:
                words = json.loads(anno.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                self.count_unreadable(f"unreadable file {anno}: {err}")
                continue
            image = first_existing([split_dir / "image" / (name + s) for s in IMAGE_SUFFIXES])
            for key in sorted(words):
                word = words[key]
                text = str(word.get("text", ""))
                chars = [word["char"][k] for k in sorted(word.get("char", {}))]
                if "#" in text or "".join(str(c.get("text", "")) for c in chars) != text:
                    self.skipped["annotation"] += 1
                    continue
                reason = text_skip_reason(text, cfg)
                if reason:
                    self.skipped[reason] += 1
                    continue
                polygon = np.asarray(word["bbox"], np.float64).reshape(4, 2)
                values = [int(c["mask_value"]) for c in chars]
                self.items.append((image, annos / f"{name}_mask.png", text, polygon, values))

    def load(self, item: tuple) -> dict:
        image_path, mask_path, text, polygon, values = item
        cfg = self.cfg
        image = read_image(image_path)
        check_box(polygon, image.shape[:2], cfg)
        labels = _read_label_png(mask_path)
        if labels.shape != image.shape[:2]:
            raise UnreadableFile(mask_path, f"mask {labels.shape} does not match image {image.shape[:2]}")
        crop, view, mask = roi_view(image, polygon, cfg)
        labels = crop.apply_labels(labels.astype(np.int32)) * mask
        scale = cfg.resolution / 512
        char_seg = np.zeros((len(text), cfg.resolution, cfg.resolution), bool)
        for j, char in enumerate(text):
            same = [v for c, v in zip(text, values, strict=True) if c == char]
            binary = np.isin(labels, same).astype(np.uint8)
            binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((1, 2), np.uint8), iterations=2)
            binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((2, 1), np.uint8), iterations=2)
            char_seg[j] = cv2.dilate(binary, np.ones((3, 3), np.uint8), iterations=max(1, round(7 * scale))) > 0
        return make_sample(view, mask, char_seg, text, cfg)
