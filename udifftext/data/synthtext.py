"""SynthText in the Wild (Gupta et al. 2016): `root/gt.mat` and the images it names under `root/`.

gt.mat holds, per image i: `imnames[0, i]` (relative path), `wordBB[0, i]` (2, 4, n_words) word
quadrilaterals (x row, y row; (2, 4) when n = 1), `charBB[0, i]` (2, 4, n_chars), `txt[0, i]` text
lines whose whitespace-separated tokens are the words. Characters map to words in order. Each word is
one sample; its character masks are the filled character quadrilaterals (upstream). Samples whose mean
character quad covers less than cfg.seg_min_ratio of the image are skipped (upstream: 0.001).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from udifftext.config import DataConfig
from udifftext.data.datasets import (
    FilteredDataset,
    SkipSample,
    check_box,
    make_sample,
    read_image,
    roi_view,
    text_skip_reason,
)
from udifftext.data.render import fill_polygon


def _quads(boxes: np.ndarray) -> np.ndarray:
    """(2, 4[, n]) MATLAB boxes -> (n, 4, 2) xy quadrilaterals."""
    boxes = np.asarray(boxes, np.float64)
    if boxes.ndim == 2:
        boxes = boxes[:, :, None]
    return boxes.transpose(2, 1, 0)


def _polygon_area(quad: np.ndarray) -> float:
    x, y = quad[:, 0], quad[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


class SynthTextDataset(FilteredDataset):
    """Every word of every image in gt.mat that passes the filters (SynthText has no splits)."""

    def __init__(self, cfg: DataConfig) -> None:
        super().__init__(cfg)
        import scipy.io

        gt_path = Path(cfg.root) / "gt.mat"
        if not gt_path.is_file():
            raise ValueError(f"SynthText ground truth not found: {gt_path} (expected data.root/gt.mat)")
        gt = scipy.io.loadmat(str(gt_path))
        self.root = Path(cfg.root)
        self.names = [str(np.asarray(n).reshape(-1)[0]) for n in gt["imnames"][0]]
        self.word_quads = [_quads(b) for b in gt["wordBB"][0]]
        self.char_quads = [_quads(b) for b in gt["charBB"][0]]
        for i, lines in enumerate(gt["txt"][0]):
            words = " ".join(str(s) for s in np.asarray(lines).reshape(-1)).split()
            if len(words) != len(self.word_quads[i]) or sum(map(len, words)) != len(self.char_quads[i]):
                self.skipped["annotation"] += len(words)
                continue
            start = 0
            for w, text in enumerate(words):
                reason = text_skip_reason(text, cfg)
                if reason:
                    self.skipped[reason] += 1
                else:
                    self.items.append((i, w, start, text))
                start += len(text)

    def load(self, item: tuple) -> dict:
        i, w, start, text = item
        cfg = self.cfg
        image = read_image(self.root / self.names[i])
        polygon = self.word_quads[i][w]
        check_box(polygon, image.shape[:2], cfg)
        chars = self.char_quads[i][start : start + len(text)]  # (L, 4, 2)
        if np.mean([_polygon_area(q) for q in chars]) < cfg.seg_min_ratio * image.shape[0] * image.shape[1]:
            raise SkipSample("char_size")
        crop, view, mask = roi_view(image, polygon, cfg)
        r = cfg.resolution
        char_seg = np.stack([fill_polygon(r, r, crop.apply_points(q)) for q in chars]).astype(bool)
        return make_sample(view, mask, char_seg, text, cfg)
