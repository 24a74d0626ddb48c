"""Backgrounds for synthetic text: random crops of shipped photos, or procedural images.

Procedural kinds (flat, linear/radial gradient, smooth noise, stripes/checks, blobs) cover plain and
busy surfaces; photos (data/backgrounds/, licences in LICENSE.md there) bring real-image statistics,
which matter because the model is judged on photographs. All outputs are float32 (h, w, 3) in [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from udifftext.data.render import resize
from udifftext.data.words import resolve_data_path

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.random(3).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Value noise: a random (cells x cells) grid upsampled bicubically, in [0, 1]. (h, w)"""
    grid = rng.random((cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def _blend(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    return a * (1.0 - t[..., None]) + b * t[..., None]  # (h, w, 3)


def procedural_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """One procedural background (h, w, 3) in [0, 1], plus a little pixel noise."""
    kind = int(rng.integers(6))
    c0, c1 = _colour(rng), _colour(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 0:  # flat
        image = np.broadcast_to(c0, (h, w, 3)).copy()
    elif kind == 1:  # linear gradient at a random angle
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xx / w + np.sin(angle) * yy / h
        image = _blend(c0, c1, (t - t.min()) / max(float(np.ptp(t)), 1e-6))
    elif kind == 2:  # radial gradient
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        t = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        image = _blend(c0, c1, t / max(float(t.max()), 1e-6))
    elif kind == 3:  # smooth multi-octave noise between two colours
        t = sum(_smooth_noise(rng, h, w, 2 ** (o + 2)) / 2**o for o in range(4)) / 1.875
        image = _blend(c0, c1, t)
    elif kind == 4:  # stripes or checks, slightly blurred
        period = rng.uniform(6, 40)
        angle = rng.uniform(0, np.pi)
        u = np.cos(angle) * xx + np.sin(angle) * yy
        t = (np.floor(u / period) % 2).astype(np.float32)
        if rng.random() < 0.5:
            v = -np.sin(angle) * xx + np.cos(angle) * yy
            t = np.abs(t - (np.floor(v / period) % 2))
        image = cv2.GaussianBlur(_blend(c0, c1, t), (0, 0), 1.0)
    else:  # blobs: random ellipses on a flat colour, blurred
        image = np.broadcast_to(c0, (h, w, 3)).copy()
        for _ in range(int(rng.integers(3, 12))):
            centre = (int(rng.integers(w)), int(rng.integers(h)))
            axes = (int(rng.integers(4, max(w // 3, 5))), int(rng.integers(4, max(h // 3, 5))))
            cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, _colour(rng).tolist(), -1)
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(1, 6)))
    image = image + rng.normal(0, rng.uniform(0, 0.04), (h, w, 1)).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


class PhotoBank:
    """Photos from a folder, read lazily once per process, cut into random crops."""

    def __init__(self, folder: str | Path) -> None:
        root = resolve_data_path(folder)
        if not root.is_dir():
            raise ValueError(f"backgrounds_dir is not a folder: {root}")
        self.paths = sorted(p for p in root.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if not self.paths:
            raise ValueError(f"backgrounds_dir has no {PHOTO_SUFFIXES} images: {root}")
        self._cache: dict[Path, np.ndarray] = {}

    def _load(self, path: Path) -> np.ndarray:
        if path not in self._cache:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"unreadable background image: {path}")
            self._cache[path] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return self._cache[path]

    def crop(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        """A random crop (scale, position, flip, brightness/contrast) resized to (h, w, 3) in [0, 1]."""
        photo = self._load(self.paths[int(rng.integers(len(self.paths)))])
        ph, pw = photo.shape[:2]
        scale = rng.uniform(0.3, 1.0) * min(ph / h, pw / w)  # crop side relative to the output
        ch, cw = max(int(h * scale), 8), max(int(w * scale), 8)
        y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
        image = resize(photo[y0 : y0 + ch, x0 : x0 + cw], h, w).astype(np.float32) / 255.0
        if rng.random() < 0.5:
            image = image[:, ::-1]
        image = (image - 0.5) * rng.uniform(0.7, 1.2) + 0.5 + rng.uniform(-0.15, 0.15)
        return np.clip(image, 0.0, 1.0).astype(np.float32)


class BackgroundSampler:
    """Photo crops with probability `photo_prob` (when a folder is given), otherwise procedural."""

    def __init__(self, folder: str | Path, photo_prob: float) -> None:
        self.photos = PhotoBank(folder) if str(folder) else None
        self.photo_prob = photo_prob if self.photos is not None else 0.0

    def sample(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        if self.photos is not None and rng.random() < self.photo_prob:
            return self.photos.crop(rng, h, w)
        return procedural_background(rng, h, w)
