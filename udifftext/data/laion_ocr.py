"""LAION-OCR as released by TextDiffuser (MARIO-LAION), and folders written by scripts/make_synthetic.py.

On disk: `root/<split>/<sample id>/` with `image.jpg` (or `image.png`), `ocr.txt` (one word per line:
`word x1,y1,x2,y2,x3,y3,x4,y4 [extra]`), `charseg.npy` ((H, W) class map: 0 background, k = alphabet
index + 1). Every word passing the text filters is one sample. As upstream, LAION-OCR images and class
maps are first resized to 512 x 512 (nearest for classes), the space of the ocr.txt coordinates.

Character masks as upstream: per distinct character, the class map of that character (or its lowercase)
inside the word polygon, opened with 1x2 and 2x1 kernels, dilated 3x3 five times (scaled to the model
resolution), split into 4-connected components; fewer components than occurrences rejects the sample,
extra components are dropped smallest first, components are assigned to occurrences left to right, and
an occurrence's mask is the dilated map inside its component's bounding box.
Folders from make_synthetic.py (`source: folder`) hold crops already: they are only resized to the model
resolution, never zoomed again, and their `charpos.npy` ((H, W): 0 background, j + 1 = position j of
the first word) gives the exact character masks.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np

from udifftext.config import DataConfig
from udifftext.data.datasets import (
    FilteredDataset,
    SkipSample,
    UnreadableFile,
    check_box,
    first_existing,
    make_sample,
    read_image,
    roi_view,
    text_skip_reason,
)

LINE = re.compile(r"^(\S+)\s+(-?[\d.]+(?:,-?[\d.]+){7})(?:\s.*)?$")
IMAGE_NAMES = ("image.jpg", "image.png")
LAION_SIZE = 512  # upstream resizes every LAION-OCR image (and its ocr.txt space) to 512 x 512


def parse_ocr_line(line: str) -> tuple[str, np.ndarray] | None:
    """`word x1,y1,...,x4,y4 [extra]` -> (word, (4, 2) xy polygon); None for a line that does not parse."""
    match = LINE.match(line.strip())
    if match is None:
        return None
    coords = np.array([float(v) for v in match.group(2).split(",")], np.float64).reshape(4, 2)
    return match.group(1), coords


def format_ocr_line(text: str, polygon: np.ndarray) -> str:
    return text + " " + ",".join(f"{v:.6f}" for v in np.asarray(polygon).reshape(-1))


def write_folder_sample(folder: Path, image: np.ndarray, char_seg: np.ndarray, text: str, polygon, alphabet: str):
    """Write one sample folder (image.png, ocr.txt, charseg.npy, charpos.npy) atomically.

    The files go to a hidden sibling first and the folder is renamed into place, so an interrupted run
    leaves either a complete sample or none (loaders ignore hidden folders).
    """
    from PIL import Image

    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    classes = np.zeros(image.shape[:2], np.uint8)
    positions = np.zeros(image.shape[:2], np.uint8)
    for j, char in enumerate(text):
        classes[char_seg[j]] = alphabet.index(char) + 1
        positions[char_seg[j]] = j + 1
    Image.fromarray(image).save(tmp / "image.png")
    np.save(tmp / "charseg.npy", classes)
    np.save(tmp / "charpos.npy", positions)
    (tmp / "ocr.txt").write_text(format_ocr_line(text, polygon) + "\n", encoding="utf-8")
    os.replace(tmp, folder)


def separate_chars(classes: np.ndarray, text: str, alphabet: str, scale: float) -> np.ndarray:
    """(R, R) class map (already zero outside the word) -> (len(text), R, R) bool, upstream's recipe.

    `scale` = model resolution / 512 scales the dilation (upstream works at 512 px).
    """
    out = np.zeros((len(text), *classes.shape), bool)
    dilations = max(1, round(5 * scale))
    for char in sorted(set(text)):
        binary = (classes == alphabet.index(char) + 1) | (classes == alphabet.index(char.lower()) + 1)
        binary = binary.astype(np.uint8)
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((1, 2), np.uint8))
        binary = cv2.morphologyEx(binary, cv2.MORPH_OPEN, np.ones((2, 1), np.uint8))
        binary = cv2.dilate(binary, np.ones((3, 3), np.uint8), iterations=dilations)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=4)
        positions = [j for j, c in enumerate(text) if c == char]
        if count - 1 < len(positions):
            raise SkipSample("char_components")
        largest = sorted(range(1, count), key=lambda k: -stats[k, cv2.CC_STAT_AREA])[: len(positions)]
        for j, k in zip(positions, sorted(largest, key=lambda k: stats[k, cv2.CC_STAT_LEFT]), strict=True):
            x, y, w, h = stats[k, :4]
            out[j, y : y + h, x : x + w] = binary[y : y + h, x : x + w] > 0
    return out


class LaionOcrDataset(FilteredDataset):
    """LAION-OCR (`source: laion_ocr`) or a make_synthetic.py folder (`source: folder`): same layout."""

    def __init__(self, cfg: DataConfig) -> None:
        super().__init__(cfg)
        split_dir = Path(cfg.root) / cfg.split
        if not split_dir.is_dir():
            raise ValueError(f"data.root/split is not a folder: {split_dir} (expected <root>/<split>/<id>/ocr.txt)")
        for folder in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            ocr = folder / "ocr.txt"
            try:
                lines = ocr.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as err:
                self.count_unreadable(f"unreadable file {ocr}: {err}")
                continue
            for index, line in enumerate(lines):
                parsed = parse_ocr_line(line)
                reason = "annotation" if parsed is None else text_skip_reason(parsed[0], cfg)
                if reason:
                    self.skipped[reason] += 1
                else:
                    self.items.append((folder, index, parsed[0], parsed[1]))

    def load(self, item: tuple) -> dict:
        folder, index, text, polygon = item
        cfg = self.cfg
        image = read_image(first_existing([folder / n for n in IMAGE_NAMES]))
        if cfg.source == "laion_ocr":
            image = cv2.resize(image, (LAION_SIZE, LAION_SIZE), interpolation=cv2.INTER_AREA)
        check_box(polygon, image.shape[:2], cfg)
        crop, view, mask = roi_view(image, polygon, cfg, zoom=cfg.source != "folder")  # folders hold crops
        positions = folder / "charpos.npy"
        if index == 0 and positions.exists():
            labels = crop.apply_labels(_load_map(positions, image.shape[:2]))
            char_seg = np.stack([labels == j + 1 for j in range(len(text))])  # (L, R, R)
        else:
            classes = crop.apply_labels(_load_map(folder / "charseg.npy", image.shape[:2])) * mask
            char_seg = separate_chars(classes, text, cfg.alphabet, cfg.resolution / 512)
            if char_seg.sum(axis=(1, 2)).mean() < cfg.seg_min_ratio * cfg.resolution**2:
                raise SkipSample("char_size")
        return make_sample(view, mask, char_seg, text, cfg)


def _load_map(path: Path, image_hw: tuple[int, int]) -> np.ndarray:
    """An (H, W) integer map, resized (nearest) to the image when its size differs."""
    try:
        labels = np.load(path)
    except (OSError, ValueError) as err:
        raise UnreadableFile(path, str(err)) from None
    if labels.ndim != 2:
        raise UnreadableFile(path, f"expected an (H, W) map, got shape {labels.shape}")
    labels = labels.astype(np.uint8)
    if labels.shape != tuple(image_hw):
        labels = cv2.resize(labels, (image_hw[1], image_hw[0]), interpolation=cv2.INTER_NEAREST)
    return labels
