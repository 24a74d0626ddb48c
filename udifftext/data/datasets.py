"""The batch contract, dataset dispatch and collation: every source gives the same sample dict.

One sample, at the model size (h, w) = `crop_shape(cfg)` (R x R with R = cfg.resolution, or R x cfg.crop_width
for rectified crops), L = cfg.max_len:

| key | shape, dtype | meaning |
|---|---|---|
| `image` | (3, h, w) float32 in [-1, 1] | the view through the crop around the text (`transforms.py`) |
| `mask` | (1, h, w) float32 in {0, 1} | 1 = region to generate: the text polygon (or box), filled |
| `masked_image` | (3, h, w) float32 | `image * (1 - mask)` |
| `text` | str | 1..L characters of cfg.alphabet (upstream: `string.printable[:-6]`, case-sensitive) |
| `char_seg` | (L, h, w) float32 in {0, 1} | map j = pixels of the j-th character; zero maps for padding positions |
| `char_seg_mask` | (L,) float32 | 1 for the len(text) real character positions, 0 for padding |
| `bbox` | (4,) int64 | mask box (top, bottom, left, right), end-exclusive: `image[:, top:bottom, left:right]` |
| `word_crop` | (1, h, w) float32 in [0, 1] | grayscale `image[bbox]` stretched to (word_crop_height, word_crop_width) |

Sources without character masks (ICDAR13) give all-zero `char_seg` with `char_seg_mask` still 1 for real
characters (the sampler's L_aae needs it); a loss over `char_seg` must skip samples whose maps are empty.
`collate_batch` stacks tensors and turns `text` into a list of str.

Samples failing a filter (length, alphabet, box or character size, character masks that cannot be
separated) are skipped and counted in `dataset.skipped` (a dict reason -> count; with DataLoader
workers each worker counts its own). Unreadable files are counted too, or raise a ValueError naming
the file when cfg.strict is set.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from udifftext.config import DataConfig
from udifftext.data.render import fill_polygon, resize
from udifftext.data.transforms import RectifiedCrop, RoiCrop, compute_rectified_crop, compute_roi_crop

SOURCES = ("synthetic", "folder", "synthtext", "laion_ocr", "icdar13", "textseg")
NO_ZOOM = 1e-12  # a min_area_ratio that no box falls below
MAX_SKIPS_IN_A_ROW = 1000  # give up (and say why) instead of looping forever over a fully filtered dataset


class SkipSample(Exception):
    """A sample that fails a filter; `reason` is the counter key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnreadableFile(Exception):
    def __init__(self, path: str | Path, detail: str = "") -> None:
        super().__init__(f"unreadable file {path}" + (f": {detail}" if detail else ""))
        self.path = path


def text_skip_reason(text: str, cfg: DataConfig) -> str | None:
    """Upstream's text filters: length within min_len..max_len (or max_word_len), characters in the alphabet."""
    if not cfg.min_len <= len(text) <= (min(cfg.max_word_len, cfg.max_len) if cfg.max_word_len else cfg.max_len):
        return "text_length"
    if not set(text) <= set(cfg.alphabet):
        return "alphabet"
    return None


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, or UnreadableFile."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableFile(path, "not an image or missing")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def crop_shape(cfg: DataConfig) -> tuple[int, int]:
    """The model's (h, w): square R x R, or R x crop_width for rectified crops."""
    if cfg.crop_width < 0:
        raise ValueError(f"data.crop_width must be >= 0 (0 = square crops), got {cfg.crop_width}")
    return cfg.resolution, cfg.crop_width or cfg.resolution


def compute_crop(image_hw: tuple[int, int], polygon: np.ndarray, cfg: DataConfig) -> RoiCrop | RectifiedCrop:
    """The crop this config trains on: upstream's square window, or the rectified window when crop_width > 0."""
    if cfg.crop_width:
        return compute_rectified_crop(image_hw, polygon, crop_shape(cfg), cfg.crop_margin)
    return compute_roi_crop(image_hw, polygon, cfg.resolution, cfg.crop_min_area_ratio)


def roi_view(
    image: np.ndarray, polygon: np.ndarray, cfg: DataConfig, zoom: bool = True
) -> tuple[RoiCrop, np.ndarray, np.ndarray]:
    """Crop around `polygon` (original xy): the RoiCrop, the (R, R, 3) view and the (R, R) filled mask.

    zoom=False only pads to a square and resizes (for data that was cropped when it was written).
    """
    ratio = cfg.crop_min_area_ratio if zoom else NO_ZOOM
    crop = compute_roi_crop(image.shape[:2], polygon, cfg.resolution, ratio)
    mask = fill_polygon(cfg.resolution, cfg.resolution, crop.apply_points(polygon))
    return crop, crop.apply_image(image), mask


def check_box(polygon: np.ndarray, image_hw: tuple[int, int], cfg: DataConfig) -> None:
    """SkipSample("box_size") unless the box (polygon bounds) covers at least cfg.min_box_ratio of the image."""
    pts = np.asarray(polygon, np.float64).reshape(-1, 2)
    extent = pts.max(axis=0) - pts.min(axis=0)
    if extent.min() <= 0 or extent[0] * extent[1] < cfg.min_box_ratio * image_hw[0] * image_hw[1]:
        raise SkipSample("box_size")


def first_existing(candidates: list[Path]) -> Path:
    """The first of `candidates` that exists, else the first one (a missing file is counted when loaded)."""
    return next((p for p in candidates if p.exists()), candidates[0])


def make_sample(image: np.ndarray, mask: np.ndarray, char_seg: np.ndarray | None, text: str, cfg: DataConfig) -> dict:
    """Assemble the contract dict from model-size numpy arrays, (h, w) = `crop_shape(cfg)`.

    image (h, w, 3) float in [0, 1] or uint8; mask (h, w) binary; char_seg (len(text), h, w) binary or
    None (no character masks). Raises SkipSample("empty_mask") when the mask has no pixel.
    """
    (h, w), max_len = crop_shape(cfg), cfg.max_len
    if image.shape != (h, w, 3):
        raise ValueError(f"image must be ({h}, {w}, 3), got {image.shape}")
    if len(text) > max_len:
        raise ValueError(f"text longer than max_len={max_len}: '{text}' ({len(text)} chars)")
    if char_seg is not None and char_seg.shape != (len(text), h, w):
        raise ValueError(f"char_seg must be ({len(text)}, {h}, {w}), got {char_seg.shape}")
    image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else np.clip(image, 0, 1).astype(np.float32)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise SkipSample("empty_mask")
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    gray = cv2.cvtColor(np.ascontiguousarray(image[top:bottom, left:right]), cv2.COLOR_RGB2GRAY)
    word_crop = np.clip(resize(gray, cfg.word_crop_height, cfg.word_crop_width), 0.0, 1.0)

    image = np.ascontiguousarray(image.transpose(2, 0, 1)) * 2 - 1  # (3, h, w) in [-1, 1]
    keep = (mask == 0).astype(np.float32)  # (h, w)
    seg = np.zeros((max_len, h, w), np.float32)  # (L, h, w)
    if char_seg is not None:
        seg[: len(text)] = char_seg
    seg_mask = np.zeros(max_len, np.float32)  # (L,)
    seg_mask[: len(text)] = 1
    return {
        "image": torch.from_numpy(image),
        "mask": torch.from_numpy(1 - keep)[None],  # (1, h, w)
        "masked_image": torch.from_numpy(image * keep),
        "text": text,
        "char_seg": torch.from_numpy(seg),
        "char_seg_mask": torch.from_numpy(seg_mask),
        "bbox": torch.tensor([top, bottom, left, right], dtype=torch.long),
        "word_crop": torch.from_numpy(word_crop.astype(np.float32))[None],  # (1, h, w)
    }


class FilteredDataset(Dataset):
    """A list of items (checked cheaply at construction) whose loading may still skip a sample.

    Subclasses fill `self.items` and implement `load(item) -> dict`, raising SkipSample or UnreadableFile.
    A skipped index serves the next item instead, so a DataLoader never sees a failure.
    """

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.items: list[Any] = []
        self.skipped: Counter[str] = Counter()

    def load(self, item: Any) -> dict:
        raise NotImplementedError

    def count_unreadable(self, message: str) -> None:
        """An unreadable file: a ValueError saying `message` when cfg.strict is set, else one more skip."""
        if self.cfg.strict:
            raise ValueError(message) from None
        self.skipped["unreadable"] += 1

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        if not self.items:
            raise ValueError(f"no usable samples in {self.cfg.root} (skipped: {dict(self.skipped)})")
        tries = min(len(self.items), MAX_SKIPS_IN_A_ROW)
        for k in range(tries):
            try:
                return self.load(self.items[(index + k) % len(self.items)])
            except SkipSample as skip:
                self.skipped[skip.reason] += 1
            except UnreadableFile as err:
                self.count_unreadable(str(err))
        raise ValueError(f"{tries} samples in a row skipped from {self.cfg.root}: {dict(self.skipped)}")


def build_dataset(cfg: DataConfig) -> Dataset:
    """The dataset named by cfg.source (and cfg.split); each module is imported only when used."""
    if cfg.source not in SOURCES:
        raise ValueError(f"data.source must be one of {SOURCES}, got '{cfg.source}'")
    crop_shape(cfg)
    if cfg.crop_width and cfg.source != "synthetic":
        raise ValueError(f"data.crop_width (rectified crops) needs source 'synthetic', got '{cfg.source}'")
    if cfg.source == "synthetic":
        from udifftext.data.synth import SyntheticTextDataset

        return SyntheticTextDataset(cfg)
    if not cfg.root:
        raise ValueError(f"data.root must name the dataset folder for source '{cfg.source}'")
    if cfg.source in ("folder", "laion_ocr"):
        from udifftext.data.laion_ocr import LaionOcrDataset

        return LaionOcrDataset(cfg)
    if cfg.source == "synthtext":
        from udifftext.data.synthtext import SynthTextDataset

        return SynthTextDataset(cfg)
    if cfg.source == "icdar13":
        from udifftext.data.icdar13 import Icdar13Dataset

        return Icdar13Dataset(cfg)
    from udifftext.data.textseg import TextSegDataset

    return TextSegDataset(cfg)


def collate_batch(samples: list[dict]) -> dict:
    """Stack tensors along a new batch dim; other values (`text`) become lists."""
    if not samples:
        raise ValueError("collate_batch needs at least one sample, got []")
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch
