"""A quick-look grid of contract samples: image | mask over the image (with the text) | coloured char masks."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np


def _palette(n: int) -> np.ndarray:
    return (np.array([colorsys.hsv_to_rgb(k / n, 0.8, 1.0) for k in range(n)]) * 255).astype(np.uint8)


def sample_tiles(sample: dict, tile: int) -> np.ndarray:
    """(tile, 3 * tile, 3) uint8 RGB: the three views of one sample dict (batch contract)."""
    image = ((sample["image"].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    mask = sample["mask"][0].numpy() > 0
    text = sample["text"]
    seg = sample["char_seg"][: len(text)].numpy() > 0  # (n, R, R)
    overlay = image.copy()
    overlay[mask] = (0.5 * overlay[mask] + 0.5 * np.array([255, 0, 0])).astype(np.uint8)
    chars = np.zeros_like(image)
    for colour, char_mask in zip(_palette(max(len(text), 1)), seg, strict=False):
        chars[char_mask] = colour
    views = [cv2.resize(v, (tile, tile), interpolation=cv2.INTER_AREA) for v in (image, overlay, chars)]
    cv2.putText(views[1], text, (3, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, tile / 400, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate(views, axis=1)


def preview_grid(samples: list[dict], tile: int = 160, per_row: int = 2) -> np.ndarray:
    """Samples laid out `per_row` to a row, each as three tiles; (rows * tile, per_row * 3 * tile, 3) uint8."""
    if not samples:
        raise ValueError("preview_grid needs at least one sample, got []")
    tiles = [sample_tiles(s, tile) for s in samples]
    blank = np.zeros_like(tiles[0])
    tiles += [blank] * (-len(tiles) % per_row)
    rows = [np.concatenate(tiles[i : i + per_row], axis=1) for i in range(0, len(tiles), per_row)]
    return np.concatenate(rows, axis=0)
