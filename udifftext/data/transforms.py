"""The crop around the text region (upstream's dataset preprocessing) and its exact inverse for sampling.

Two crops share one interface (apply_image / apply_mask / apply_labels / apply_points / inverse_points /
paste_back / matrix / describe): `RoiCrop`, upstream's square window, and `RectifiedCrop`, a rotated
(h, w) window along the text's reading direction.

Upstream (§6 of UPSTREAM.md): pad the image to a square with a replicated border; when the text box
covers less than `min_area_ratio` (4 %) of that square, cut a square window of side
max(sqrt(box_area / ratio), box h, box w) centred on the box (clamped to the square); resize the window
to the model resolution. `RoiCrop` records that mapping so a generated crop can be pasted back into the
original image, changing only pixels under the mask.

Coordinates are continuous: pixel (i, j) covers [j, j+1) x [i, i+1); points are (x, y).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from udifftext.data.render import resize


def _box_points(polygon_or_box: Any) -> np.ndarray:
    """(N, 2) xy points from an (N, 2) polygon or a (top, bottom, left, right) box."""
    arr = np.asarray(polygon_or_box, np.float64)
    if arr.shape == (4,):
        top, bottom, left, right = arr
        return np.array([[left, top], [right, top], [right, bottom], [left, bottom]])
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
        raise ValueError(f"polygon_or_box must be (N, 2) xy or (top, bottom, left, right), got shape {arr.shape}")
    return arr


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@dataclass(frozen=True)
class RoiCrop:
    """Image -> model-resolution square: pad to square, cut a window, resize. See the module docstring."""

    image_hw: tuple[int, int]  # original (H, W)
    pad: tuple[int, int]  # (top, left) padding that makes the image a square of side max(H, W)
    window: tuple[int, int, int]  # (y0, x0, side) of the square window, in original-image coordinates
    resolution: int  # model resolution R

    @property
    def scale(self) -> float:
        return self.resolution / self.window[2]

    @property
    def matrix(self) -> np.ndarray:
        """(3, 3) affine map from original-image xy to model xy."""
        y0, x0, _ = self.window
        s = self.scale
        return np.array([[s, 0, -x0 * s], [0, s, -y0 * s], [0, 0, 1]], np.float64)

    def describe(self) -> list[int]:
        """The window (y0, x0, side) in original-image pixels, for a sample's JSON record."""
        return list(self.window)

    def _window_of(self, array: np.ndarray, border: int) -> np.ndarray:
        """The (side, side, ...) window of `array`, padding outside the image with `border`."""
        height, width = self.image_hw
        if array.shape[:2] != (height, width):
            raise ValueError(f"array must be {self.image_hw} in its first two dims, got {array.shape[:2]}")
        y0, x0, side = self.window
        sub = array[max(y0, 0) : min(y0 + side, height), max(x0, 0) : min(x0 + side, width)]
        pads = (max(-y0, 0), max(y0 + side - height, 0), max(-x0, 0), max(x0 + side - width, 0))
        if any(pads):
            sub = cv2.copyMakeBorder(np.ascontiguousarray(sub), *pads, border, value=0)
        return sub

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W[, C]) image -> (R, R[, C]): replicated border, area/bilinear resize, same dtype."""
        window = self._window_of(image, cv2.BORDER_REPLICATE)
        out = resize(window, self.resolution, self.resolution)
        return out.reshape(self.resolution, self.resolution, *image.shape[2:])

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) binary mask -> (R, R) uint8; outside the image counts as 0; kept where >= half covered."""
        window = self._window_of(np.asarray(mask, np.float32), cv2.BORDER_CONSTANT)
        return (resize(window, self.resolution, self.resolution) >= 0.5).astype(np.uint8)

    def apply_labels(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) integer label map (e.g. character classes) -> (R, R), nearest neighbour, 0 outside."""
        window = self._window_of(labels, cv2.BORDER_CONSTANT)
        r = self.resolution
        return cv2.resize(window, (r, r), interpolation=cv2.INTER_NEAREST)

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) original xy -> (N, 2) model xy."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        y0, x0, _ = self.window
        return (pts - (x0, y0)) * self.scale

    def inverse_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) model xy -> (N, 2) original xy."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        y0, x0, _ = self.window
        return pts / self.scale + (x0, y0)

    def paste_back(self, original: Any, generated: Any, mask: Any, blend_width: int = 3) -> Any:
        """Put a generated (R, R) crop back into the original image; pixels outside `mask` stay bit-identical.

        `original` (H, W, C) and `generated` (R, R, C) share a dtype/range (uint8 or float numpy), or are
        torch tensors (C, H, W) / (C, R, R). `mask` (H, W) (or (1, H, W)) marks the generated region in the
        original image. Inside it, the blend weight rises from 1/blend_width at the edge to 1 at
        `blend_width` px deep (blend_width=0: a hard paste).
        """
        return _paste_torch_or_numpy(self._paste_numpy, original, generated, mask, blend_width)

    def _paste_numpy(self, original: np.ndarray, generated: np.ndarray, mask: np.ndarray, blend_width: int):
        height, width = self.image_hw
        r = self.resolution
        if original.shape[:2] != (height, width):
            raise ValueError(f"original must be {self.image_hw} (H, W, ...), got {original.shape}")
        if generated.shape[:2] != (r, r) or generated.shape[2:] != original.shape[2:]:
            raise ValueError(f"generated must be ({r}, {r}, {original.shape[2:]}), got {generated.shape}")
        mask = mask.reshape(height, width) if mask.size == height * width else mask
        if mask.shape != (height, width):
            raise ValueError(f"mask must be {self.image_hw}, got {mask.shape}")
        y0, x0, side = self.window
        full = resize(generated.astype(np.float32), side, side).reshape(side, side, *generated.shape[2:])
        weight = _blend_weight(mask, blend_width)
        ys, xs = np.nonzero(weight > 0)
        keep = (ys >= y0) & (ys < y0 + side) & (xs >= x0) & (xs < x0 + side)  # the crop covers these
        ys, xs = ys[keep], xs[keep]
        return _blend_into(original, ys, xs, full[ys - y0, xs - x0], weight[ys, xs])


def compute_roi_crop(
    image_hw: tuple[int, int], polygon_or_box: Any, resolution: int, min_area_ratio: float = 0.04
) -> RoiCrop:
    """The crop for a text region given as an (N, 2) xy polygon or a (top, bottom, left, right) box.

    As upstream, the zoom test and window side use the polygon's area (cv2.contourArea) and its
    axis-aligned bounds' height and width; "image area" is the padded square's.
    """
    height, width = (int(v) for v in image_hw)
    if height < 1 or width < 1:
        raise ValueError(f"image_hw must be positive (H, W), got {image_hw}")
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    if not 0 < min_area_ratio <= 1:
        raise ValueError(f"min_area_ratio must be in (0, 1], got {min_area_ratio}")
    pts = _box_points(polygon_or_box)
    side = max(height, width)
    pad_top, pad_left = (side - height) // 2, (side - width) // 2
    left, top = np.clip(pts.min(axis=0), 0, (width, height))
    right, bottom = np.clip(pts.max(axis=0), 0, (width, height))
    area = _polygon_area(pts) if len(pts) > 2 else 0.0
    # window in padded-square coordinates
    box_h = math.ceil(bottom) - math.floor(top)
    box_w = math.ceil(right) - math.floor(left)
    d = min(max(math.ceil(math.sqrt(area / min_area_ratio)), box_h, box_w, 1), side)
    if area < min_area_ratio * side * side:
        cy, cx = (top + bottom) / 2 + pad_top, (left + right) / 2 + pad_left
        y0 = int(np.clip(round(cy - d / 2), 0, side - d))
        x0 = int(np.clip(round(cx - d / 2), 0, side - d))
        y0 = int(np.clip(y0, math.ceil(bottom) + pad_top - d, math.floor(top) + pad_top))
        x0 = int(np.clip(x0, math.ceil(right) + pad_left - d, math.floor(left) + pad_left))
    else:
        d, y0, x0 = side, 0, 0
    return RoiCrop((height, width), (pad_top, pad_left), (y0 - pad_top, x0 - pad_left, d), resolution)


def _pixel_affine(matrix: np.ndarray) -> np.ndarray:
    """A continuous-xy (3, 3) map as cv2 wants it (pixel centres at integers, ours at +0.5): (2, 3)."""
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], np.float64)
    return (np.linalg.inv(shift) @ matrix @ shift)[:2]


def reading_direction(points: np.ndarray) -> float:
    """Angle (radians, in [-pi/4, pi/4]) of the side of the points' minimum-area rectangle nearer to horizontal.

    Text is never read at more than 45 degrees here, as in the sampler's glyph (`pipeline.glyph_canvas`).
    """
    corners = cv2.boxPoints(cv2.minAreaRect(np.asarray(points, np.float32).reshape(-1, 2)))  # (4, 2)
    edges = [corners[1] - corners[0], corners[2] - corners[1]]
    along = min(edges, key=lambda e: abs(e[1]) - abs(e[0]))  # the flatter edge
    if not np.any(along):
        return 0.0
    along = along if along[0] >= 0 else -along
    return float(math.atan2(along[1], along[0]))


@dataclass(frozen=True, eq=False)
class RectifiedCrop:
    """Image -> (h, w) view of a rotated window whose x axis follows the text: rotation, scale and shift.

    A long word keeps its characters' size instead of shrinking to fit a square, so a model of the same
    cost per sample sees a 12-character word at twice the scale of a square crop with four times the area.
    """

    image_hw: tuple[int, int]  # original (H, W)
    out_hw: tuple[int, int]  # model (h, w)
    matrix: np.ndarray  # (3, 3) affine map from original-image xy to model xy

    @property
    def scale(self) -> float:
        return float(math.sqrt(abs(np.linalg.det(self.matrix[:2, :2]))))

    def describe(self) -> dict:
        """Window centre (original xy), angle (degrees), size (h, w in original pixels), for a sample's record."""
        h, w = self.out_hw
        centre = self.inverse_points(np.array([[w / 2, h / 2]]))[0]
        angle = math.degrees(math.atan2(self.matrix[0, 1], self.matrix[0, 0]))
        return {
            "centre": [round(float(v), 2) for v in centre],
            "angle": round(angle, 3),
            "size": [round(h / self.scale, 2), round(w / self.scale, 2)],
        }

    def _warp(self, array: np.ndarray, border: int, interpolation: int) -> np.ndarray:
        height, width = self.image_hw
        if array.shape[:2] != (height, width):
            raise ValueError(f"array must be {self.image_hw} in its first two dims, got {array.shape[:2]}")
        h, w = self.out_hw
        return cv2.warpAffine(array, _pixel_affine(self.matrix), (w, h), flags=interpolation, borderMode=border)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """(H, W[, C]) image -> (h, w[, C]): blurred first when shrinking (as an area resize averages),
        bilinear, replicated border, same dtype."""
        sigma = 0.5 * (1.0 / self.scale - 1.0)
        if sigma > 0.2:
            image = cv2.GaussianBlur(image, (0, 0), sigma)
        out = self._warp(image, cv2.BORDER_REPLICATE, cv2.INTER_LINEAR)
        return out.reshape(*self.out_hw, *image.shape[2:])

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) binary mask -> (h, w) uint8; outside the image counts as 0; kept where >= half covered."""
        warped = self._warp(np.asarray(mask, np.float32), cv2.BORDER_CONSTANT, cv2.INTER_LINEAR)
        return (warped >= 0.5).astype(np.uint8)

    def apply_labels(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) integer label map -> (h, w), nearest neighbour, 0 outside."""
        return self._warp(labels, cv2.BORDER_CONSTANT, cv2.INTER_NEAREST)

    def apply_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) original xy -> (N, 2) model xy."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        return pts @ self.matrix[:2, :2].T + self.matrix[:2, 2]

    def inverse_points(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) model xy -> (N, 2) original xy."""
        inverse = np.linalg.inv(self.matrix)
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        return pts @ inverse[:2, :2].T + inverse[:2, 2]

    def paste_back(self, original: Any, generated: Any, mask: Any, blend_width: int = 3) -> Any:
        """As `RoiCrop.paste_back`: `generated` is (h, w, C) (or (C, h, w) tensors); outside `mask`, and outside
        the window, the original pixels stay bit-identical."""
        return _paste_torch_or_numpy(self._paste_numpy, original, generated, mask, blend_width)

    def _paste_numpy(self, original: np.ndarray, generated: np.ndarray, mask: np.ndarray, blend_width: int):
        height, width = self.image_hw
        if original.shape[:2] != (height, width):
            raise ValueError(f"original must be {self.image_hw} (H, W, ...), got {original.shape}")
        if generated.shape[:2] != self.out_hw or generated.shape[2:] != original.shape[2:]:
            raise ValueError(f"generated must be ({self.out_hw}, {original.shape[2:]}), got {generated.shape}")
        mask = mask.reshape(height, width) if mask.size == height * width else mask
        if mask.shape != (height, width):
            raise ValueError(f"mask must be {self.image_hw}, got {mask.shape}")
        inverse = cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR
        affine = _pixel_affine(self.matrix)
        full = cv2.warpAffine(generated.astype(np.float32), affine, (width, height), flags=inverse)
        full = full.reshape(height, width, *generated.shape[2:])
        covered = cv2.warpAffine(np.ones(self.out_hw, np.float32), affine, (width, height), flags=inverse)
        weight = _blend_weight(mask, blend_width)
        weight = weight * (covered > 0.999)  # the window's own edge: bilinear there mixes in zeros
        ys, xs = np.nonzero(weight > 0)
        return _blend_into(original, ys, xs, full[ys, xs], weight[ys, xs])


def compute_rectified_crop(
    image_hw: tuple[int, int], points: Any, out_hw: tuple[int, int], margin: float = 0.25
) -> RectifiedCrop:
    """The rotated window around a text region (an (N, 2) xy polygon or point set, or a (top, bottom, left,
    right) box) whose x axis follows the reading direction (`reading_direction`).

    The region, rotated upright, gets `margin` times its height of context on every side; the window is the
    smallest of aspect w / h that holds it, centred on the region, so short words fill the height and long
    ones the width.
    """
    height, width = (int(v) for v in image_hw)
    if height < 1 or width < 1:
        raise ValueError(f"image_hw must be positive (H, W), got {image_hw}")
    out_h, out_w = (int(v) for v in out_hw)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"out_hw must be positive (h, w), got {out_hw}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    pts = _box_points(points)
    angle = reading_direction(pts)
    cos, sin = math.cos(angle), math.sin(angle)
    upright = pts @ np.array([[cos, -sin], [sin, cos]])  # rotated by -angle: x along the text
    low, high = upright.min(axis=0), upright.max(axis=0)
    box_w, box_h = max(high[0] - low[0], 1.0), max(high[1] - low[1], 1.0)
    pad = margin * box_h
    window_h = max(box_h + 2 * pad, (box_w + 2 * pad) * out_h / out_w)
    scale = out_h / window_h
    centre = (low + high) / 2  # in the upright frame
    rotate = np.array([[cos, sin], [-sin, cos]])  # original xy -> upright xy
    matrix = np.eye(3)
    matrix[:2, :2] = scale * rotate
    matrix[:2, 2] = np.array([out_w / 2, out_h / 2]) - scale * centre
    return RectifiedCrop((height, width), (out_h, out_w), matrix)


def _paste_torch_or_numpy(paste_numpy, original, generated, mask, blend_width: int):
    """Run a crop's numpy paste on numpy/PIL inputs, or on (C, H, W) tensors and return a tensor on their device."""
    if blend_width < 0:
        raise ValueError(f"blend_width must be >= 0, got {blend_width}")
    if type(original).__module__.startswith("torch"):
        import torch

        result = paste_numpy(
            original.detach().cpu().permute(1, 2, 0).numpy(),
            generated.detach().cpu().permute(1, 2, 0).numpy(),
            mask.detach().cpu().numpy(),
            blend_width,
        )
        return torch.from_numpy(result).permute(2, 0, 1).to(original.device)  # (C, H, W)
    return paste_numpy(np.asarray(original), np.asarray(generated), np.asarray(mask), blend_width)


def _blend_weight(mask: np.ndarray, blend_width: float) -> np.ndarray:
    """(H, W) paste weight: 1 deep inside the mask, ramping to 0 over `blend_width` px at its edge (hard if 0)."""
    inside = (mask > 0.5).astype(np.uint8)
    if blend_width <= 0:
        return inside.astype(np.float32)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 3)  # px to the nearest unmasked pixel
    return np.clip(dist / blend_width, 0.0, 1.0)


def _blend_into(original: np.ndarray, ys: np.ndarray, xs: np.ndarray, values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A copy of `original` with pixels (ys, xs) set to w * values + (1 - w) * original, in its own dtype."""
    w = w.reshape(-1, *([1] * (original.ndim - 2)))
    blended = original[ys, xs].astype(np.float32) * (1 - w) + values * w
    if np.issubdtype(original.dtype, np.integer):
        info = np.iinfo(original.dtype)
        blended = np.clip(np.rint(blended), info.min, info.max)
    out = original.copy()
    out[ys, xs] = blended.astype(original.dtype)
    return out
