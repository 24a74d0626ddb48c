"""Where to write: regions given as a box, a quadrilateral or a mask image, turned into boolean masks.

Every check raises a one-line `ValueError` naming the argument and showing expected vs actual, so the CLI
can print it and exit before anything is written. Imports only numpy and Pillow (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

REGION_KINDS = ("box", "quad", "mask")


@dataclass(frozen=True)
class Region:
    """One region to inpaint: `kind` is box | quad | mask; `value` is the coordinates or the mask.

    box: (x0, y0, x1, y1) in pixels, x1/y1 exclusive; quad: four (x, y) corners in order;
    mask: a path, a PIL image (white > 127 = generate) or an (H, W) array, same size as the image.
    """

    kind: str
    value: Any

    def describe(self) -> str | list:
        """JSON-friendly form for the sampling record."""
        if self.kind == "mask":
            return str(self.value) if isinstance(self.value, str | Path) else "<mask image>"
        return [list(p) for p in self.value] if self.kind == "quad" else list(self.value)


def _numbers(text: str, count: int, arg: str, form: str) -> list[float]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != count:
        raise ValueError(f"{arg} must be {form} ({count} numbers), got '{text}'")
    return values


def parse_box(text: str) -> Region:
    """`"x0,y0,x1,y1"` -> box region (pixels, x1/y1 exclusive)."""
    return Region("box", tuple(int(round(v)) for v in _numbers(text, 4, "--box", "x0,y0,x1,y1")))


def parse_quad(text: str) -> Region:
    """`"x0,y0,x1,y1,x2,y2,x3,y3"` -> quadrilateral region, corners in drawing order."""
    v = _numbers(text, 8, "--quad", "x0,y0,x1,y1,x2,y2,x3,y3")
    return Region("quad", tuple((v[i], v[i + 1]) for i in range(0, 8, 2)))


def parse_region(kind: str, value: Any) -> Region:
    """A region from a CLI flag or a manifest field; box/quad accept strings or number lists."""
    if kind not in REGION_KINDS:
        raise ValueError(f"region kind must be one of {REGION_KINDS}, got '{kind}'")
    if kind == "mask":
        return Region("mask", value)
    if isinstance(value, list | tuple):
        value = ",".join(str(x) for x in np.asarray(value, dtype=float).ravel())
    return parse_box(value) if kind == "box" else parse_quad(value)


def load_image(path: str | Path, arg: str = "image") -> Image.Image:
    """Read any image file Pillow understands and convert it to RGB (alpha dropped, palette expanded)."""
    return read_image(path, arg).convert("RGB")


def read_image(path: str | Path, arg: str) -> Image.Image:
    """Read an image file keeping its mode; a missing or unreadable file is a one-line ValueError."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except (FileNotFoundError, IsADirectoryError):
        raise ValueError(f"{arg} not found: '{path}'") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read {arg} '{path}': {err}") from None


def region_mask(region: Region, size: tuple[int, int], index: int = 0) -> np.ndarray:
    """Boolean (H, W) mask of `region` on an image of `size` = (W, H); True where text is generated."""
    width, height = size
    name = f"region {index} ({region.kind})"
    if region.kind == "box":
        x0, y0, x1, y1 = region.value
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(
                f"{name}: box {x0},{y0},{x1},{y1} must satisfy 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height} "
                f"(image is {width}x{height})"
            )
        mask = np.zeros((height, width), dtype=bool)
        mask[y0:y1, x0:x1] = True
        return mask
    if region.kind == "quad":
        pts = np.asarray(region.value, dtype=float)  # (4, 2)
        if (pts[:, 0] < 0).any() or (pts[:, 0] > width).any() or (pts[:, 1] < 0).any() or (pts[:, 1] > height).any():
            raise ValueError(f"{name}: corners {pts.tolist()} must lie inside the {width}x{height} image")
        canvas = Image.new("L", (width, height), 0)
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts], fill=255)
        mask = np.asarray(canvas) > 127
    else:
        mask = _mask_array(region.value, f"{name} mask")
        if mask.shape != (height, width):
            size = f"{mask.shape[1]}x{mask.shape[0]}"
            raise ValueError(f"{name}: mask size {size} differs from the image {width}x{height}")
    if not mask.any():
        raise ValueError(f"{name}: the mask is empty (no pixel > 127 / zero-area polygon)")
    return mask


def _mask_array(source: Any, arg: str) -> np.ndarray:
    """(H, W) bool from a mask path, PIL image (> 127 after `convert('L')`) or array (bool, > 127 or > 0.5)."""
    if isinstance(source, np.ndarray):
        if source.ndim != 2:
            raise ValueError(f"{arg} array must be (H, W), got shape {source.shape}")
        if source.dtype == bool:
            return source
        return source > (127 if np.issubdtype(source.dtype, np.integer) else 0.5)
    img = source if isinstance(source, Image.Image) else read_image(source, arg)
    return np.asarray(img.convert("L")) > 127
