"""Synthetic text in images: full training samples with exact per-character masks, and word crops.

Every sample is a pure function of (cfg.seed, split, index): `np.random.default_rng` is seeded with
those numbers, so the same index gives the same pixels in any process or DataLoader worker.
The held-out split (words and fonts) is defined in `udifftext/data/words.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from udifftext.config import DataConfig
from udifftext.data.backgrounds import BackgroundSampler
from udifftext.data.datasets import compute_crop, crop_shape, make_sample
from udifftext.data.render import RenderedWord, fill_polygon, ink_box, render_glyph, render_word, resize
from udifftext.data.words import SYNTHETIC_SPLITS, TextSampler, check_split, split_fonts

__all__ = ["SyntheticTextDataset", "WordCropDataset", "render_glyph"]

SCENE_STREAM, CROP_STREAM = 0, 1  # separate random streams for the two datasets
MIN_CONTRAST = 0.3  # minimum luminance difference between text and the background under it
CHAR_THRESHOLD = 0.3  # soft ink above this (after resizing) belongs to a character's mask
POLYGON_PAD = 0.12  # word polygon = ink box grown by this share of the font size
WORD_SIZE = (0.06, 0.25)  # a scene word's font size, as a share of the scene's short side
TRACKING = (-0.03, 0.2)  # extra space between characters, as a share of the font size
MAX_CROP_FONT = 64  # word crops are rendered at 64..128 px at most (upstream: Arial 128 pt)
CONTRAST_TRIES = 20  # word crops: background and colour draws before the most legible one is kept
VISIBLE_DIFFERENCE = 0.1  # a text pixel whose luminance differs from the background's under it by more is visible
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # RGB -> luminance (ITU-R BT.601)


def _luminance(rgb: np.ndarray) -> float:
    return float(np.dot(rgb, LUMA_WEIGHTS))


def text_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random RGB colour, pushed to dark or light when its luminance is within MIN_CONTRAST of the
    mean `background` colour (busy backgrounds can still hide parts of a word, as in photos)."""
    bg = _luminance(background.reshape(-1, 3).mean(axis=0))
    colour = rng.random(3).astype(np.float32)
    if abs(_luminance(colour) - bg) < MIN_CONTRAST:
        colour = colour * 0.3 if bg > 0.5 else 0.7 + 0.3 * colour  # push to dark or light
    return colour


def _colour_over_background(background: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(h, w) luminance(colour) - luminance(background) of an (h, w, 3) background and a (3,) colour."""
    return _luminance(colour) - background @ np.asarray(LUMA_WEIGHTS, np.float32)


def _luminance_difference(background: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(h, w) |luminance(colour) - luminance(background)|."""
    return np.abs(_colour_over_background(background, colour))


def _weakest_ink_mean(char_alphas: np.ndarray, values: np.ndarray) -> float:
    """The least, over characters, of the ink-weighted mean of (h, w) `values` under each character's (L, h, w)
    alpha; characters with no ink in the window are left out (1.0 when none has any)."""
    alphas = char_alphas.reshape(len(char_alphas), -1)  # (L, h * w)
    ink = alphas.sum(axis=1)  # (L,)
    inked = ink > 0
    return float(((alphas @ values.reshape(-1))[inked] / ink[inked]).min()) if inked.any() else 1.0


def weakest_char_contrast(char_alphas: np.ndarray, background: np.ndarray, colour: np.ndarray) -> float:
    """The least, over characters, of the ink-weighted mean |luminance(colour) - luminance(background)| under each
    character's ink: (L, h, w) alphas, (h, w, 3) background, (3,) colour; near 0 when a letter is invisible.
    Characters with no ink in the window are left out (1.0 when none has any)."""
    return _weakest_ink_mean(char_alphas, _luminance_difference(background, colour))


def weakest_char_visibility(char_alphas: np.ndarray, background: np.ndarray, colour: np.ndarray) -> float:
    """The least, over characters, of the share of each character's ink (alpha-weighted) over background pixels
    whose luminance differs from the text colour's by more than VISIBLE_DIFFERENCE. A letter half under an object
    of its own colour scores about 0.5 even where its mean contrast (`weakest_char_contrast`) is fair. Characters
    with no ink in the window are left out (1.0 when none has any)."""
    visible = (_luminance_difference(background, colour) > VISIBLE_DIFFERENCE).astype(np.float32)  # (h, w)
    return _weakest_ink_mean(char_alphas, visible)


def _rng(cfg: DataConfig, split: str, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, SYNTHETIC_SPLITS.index(split), stream, index])


class _TextSource:
    """Texts, fonts and backgrounds of one split of the synthetic engine."""

    def __init__(self, cfg: DataConfig) -> None:
        check_split(cfg.split)
        self.cfg = cfg
        self.texts = TextSampler.from_config(cfg, cfg.split)
        self.fonts = [str(p) for p in split_fonts(cfg, cfg.split)]
        self.backgrounds = BackgroundSampler(cfg.backgrounds_dir, cfg.photo_background_prob)

    def draw(self, rng: np.random.Generator, size: int) -> _Drawn:
        """A random text in a random font at `size` px, with random letter spacing."""
        text = self.texts.sample(rng)
        font = self.fonts[int(rng.integers(len(self.fonts)))]
        return _Drawn(text, font, rng.uniform(*TRACKING), size)


@dataclass
class _Drawn:
    text: str
    font: str
    tracking: float  # extra space between characters, as a share of the font size
    size: int

    def render(self) -> RenderedWord:
        margin = int(np.ceil(POLYGON_PAD * self.size)) + 2  # room for the padded polygon
        return render_word(self.text, self.font, self.size, self.tracking * self.size, margin)


class WordCropDataset(Dataset):
    """Fast word crops for recognizer and char-encoder training: {"word_crop": (1, h, w) in [0, 1], "text", "font"}.

    Each crop: one word, random font/size/colour/background, a small rotation, cut tightly around the ink
    with a small random margin, grayscale, stretched to (word_crop_height, word_crop_width) as upstream.
    """

    def __init__(self, cfg: DataConfig) -> None:
        self.source = _TextSource(cfg)
        self.cfg = cfg

    def __len__(self) -> int:
        return self.cfg.length

    def __getitem__(self, index: int) -> dict:
        rng = _rng(self.cfg, self.cfg.split, CROP_STREAM, index)
        layers = self._compose(rng)
        alpha = layers.alpha[..., None]
        image = layers.background * (1 - alpha) + layers.colour * alpha  # (h, w, 3)
        if rng.random() < 0.3:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.2))
        gray = cv2.cvtColor(np.clip(image, 0, 1).astype(np.float32), cv2.COLOR_RGB2GRAY)
        crop = np.clip(resize(gray, self.cfg.word_crop_height, self.cfg.word_crop_width), 0, 1)
        return {
            "word_crop": torch.from_numpy(crop)[None],
            "text": layers.ink.drawn.text,
            "font": Path(layers.ink.drawn.font).name,
            "char_contrast": layers.contrast,  # the weakest character's, before blur (weakest_char_contrast)
            "char_visibility": layers.visibility,  # the same character's or another's (weakest_char_visibility)
        }

    def stretched_ink(self, index: int, text: str | None = None) -> tuple[str, np.ndarray]:
        """The text of crop `index` and its ink alone, (word_crop_height, word_crop_width) in [0, 1], cut and
        stretched as the crop is: the text's shape as a reader sees it. `text` replaces the drawn text while every
        other random draw (font, size, spacing, angle, margins) stays: the shape `text` would have had there
        (udifftext.data.ambiguity)."""
        ink = self._place_ink(_rng(self.cfg, self.cfg.split, CROP_STREAM, index), text)
        alpha = resize(ink.cut(ink.word.alpha), self.cfg.word_crop_height, self.cfg.word_crop_width)
        return ink.drawn.text, np.clip(alpha, 0, 1)

    def stretched_contrast(self, index: int) -> np.ndarray:
        """(word_crop_height, word_crop_width) luminance of crop `index`'s text colour minus its background's, stretched
        as the crop is: what a unit of ink changes in the crop's grey level at each pixel (before the blur)."""
        layers = self._compose(_rng(self.cfg, self.cfg.split, CROP_STREAM, index))
        difference = _colour_over_background(layers.background, layers.colour).astype(np.float32)  # (h, w)
        return resize(difference, self.cfg.word_crop_height, self.cfg.word_crop_width)

    def _compose(self, rng: np.random.Generator) -> _CropLayers:
        """The crop's ink with a background and colour drawn for it, redrawn while its weakest letter is below the
        contrast or visibility floor (the best of CONTRAST_TRIES kept)."""
        cfg = self.cfg
        ink = self._place_ink(rng)
        alpha = ink.cut(ink.word.alpha)  # (h, w)
        char_alphas = np.stack([ink.cut(a) for a in ink.word.char_alphas])  # (L, h, w)
        best = None
        for _ in range(CONTRAST_TRIES):
            background = self.source.backgrounds.sample(rng, *alpha.shape)  # (h, w, 3)
            colour = text_colour(rng, background)
            contrast = weakest_char_contrast(char_alphas, background, colour)
            visibility = weakest_char_visibility(char_alphas, background, colour)
            margin = min(contrast - cfg.min_char_contrast, visibility - cfg.min_char_visibility)  # >= 0: both met
            if best is None or margin > best[0]:
                best = margin, contrast, visibility, background, colour
            if margin >= 0:
                break
        _, contrast, visibility, background, colour = best
        return _CropLayers(ink, alpha, background, colour, contrast, visibility)

    def _place_ink(self, rng: np.random.Generator, text: str | None = None) -> _CropInk:
        """The crop's text drawn, turned by a small angle and cut tightly around its ink with a random margin."""
        # font px between 1x and 2x the crop height, capped: larger renders only cost time before the resize
        base = min(max(self.cfg.word_crop_height, 24), MAX_CROP_FONT)
        size = int(rng.integers(base, 2 * base + 1))
        drawn = self.source.draw(rng, size)
        if text is not None:
            drawn = replace(drawn, text=text)
        word = drawn.render()
        angle = float(np.clip(rng.normal(0, 3), -8, 8))
        h, w = word.alpha.shape
        rotation = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        cos, sin = abs(rotation[0, 0]), abs(rotation[0, 1])
        nw, nh = int(h * sin + w * cos) + 1, int(h * cos + w * sin) + 1
        rotation[:, 2] += ((nw - w) / 2, (nh - h) / 2)
        turned = cv2.warpAffine(word.alpha, rotation, (nw, nh), flags=cv2.INTER_LINEAR)  # (nh, nw)
        top, bottom, left, right = ink_box(turned, 0.1)
        pad = rng.uniform(0, 0.15, 4) * (bottom - top)
        top, left = max(int(top - pad[0]), 0), max(int(left - pad[1]), 0)
        bottom, right = min(int(bottom + pad[2]) + 1, nh), min(int(right + pad[3]) + 1, nw)
        return _CropInk(drawn, word, rotation, (nw, nh), (top, bottom, left, right))


@dataclass
class _CropInk:
    """A word crop's text before background and colour: drawn, turned and cut."""

    drawn: _Drawn
    word: RenderedWord
    rotation: np.ndarray  # (2, 3) affine map of the word canvas onto the turned canvas
    turned_size: tuple[int, int]  # (width, height) of the turned canvas
    box: tuple[int, int, int, int]  # (top, bottom, left, right) of the crop in the turned canvas

    def cut(self, alpha: np.ndarray) -> np.ndarray:
        """(h, w) of the crop: an (H, W) map on the word canvas turned and cut as the crop is."""
        top, bottom, left, right = self.box
        return cv2.warpAffine(alpha, self.rotation, self.turned_size, flags=cv2.INTER_LINEAR)[top:bottom, left:right]


@dataclass
class _CropLayers:
    """A word crop before blur and grey: its ink over a background, in one colour."""

    ink: _CropInk
    alpha: np.ndarray  # (h, w) the ink cut for the crop
    background: np.ndarray  # (h, w, 3)
    colour: np.ndarray  # (3,) the text's
    contrast: float  # weakest_char_contrast
    visibility: float  # weakest_char_visibility


def heldout_word_crops(cfg: DataConfig, samples: int) -> WordCropDataset:
    """The first `samples` crops of the heldout split, fixed by index: the recognizer and encoder stages
    validate on them and scripts/compare_recognizers.py reads the same ones."""
    return WordCropDataset(replace(cfg, split="heldout", length=samples))


@dataclass
class _PlacedWord:
    drawn: _Drawn
    word: RenderedWord
    homography: np.ndarray  # (3, 3) word canvas -> scene
    region: tuple[int, int, int, int]  # (top, bottom, left, right) of the warped word in the scene


def _quad(word: RenderedWord, pad: float) -> np.ndarray:
    """(4, 2) xy corners of the word's ink box grown by `pad` px, clockwise from top-left."""
    top, bottom, left, right = word.ink_box
    return np.array(
        [[left - pad, top - pad], [right + pad, top - pad], [right + pad, bottom + pad], [left - pad, bottom + pad]],
        np.float32,
    )


def _warp_points(homography: np.ndarray, points: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(points.reshape(-1, 1, 2).astype(np.float64), homography).reshape(-1, 2)


class SyntheticTextDataset(Dataset):
    """Scenes with 1..N words on a photo or procedural background, viewed through the crop around the target.

    The first word drawn is the target: its text, filled polygon (mask), exact per-character ink masks
    (`char_seg`) and box are returned at the model resolution; the others are distractor text that stays
    in the image. See `udifftext/data/datasets.py` for the batch contract.
    """

    def __init__(self, cfg: DataConfig) -> None:
        lo, hi = cfg.words_per_image
        if not 1 <= lo <= hi:
            raise ValueError(f"words_per_image must be [lo, hi] with 1 <= lo <= hi, got {cfg.words_per_image}")
        self.source = _TextSource(cfg)
        self.cfg = cfg
        self.skipped: dict[str, int] = {}  # nothing is filtered: every synthetic sample is valid by construction

    def __len__(self) -> int:
        return self.cfg.length

    def _place(self, rng: np.random.Generator, height: int, width: int, avoid: list[tuple]) -> _PlacedWord | None:
        """Render one word and choose a rotation/perspective/position fully inside the scene."""
        side = min(height, width)
        drawn = self.source.draw(rng, max(int(rng.uniform(*WORD_SIZE) * side), 6))
        word = drawn.render()
        h, w = word.alpha.shape
        angle = np.deg2rad(float(np.clip(rng.normal(0, 6), -20, 20)))
        jitter = rng.uniform(-0.04, 0.04, (4, 2)) * max(h, w)
        src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        centred = src - (w / 2, h / 2)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        dst = centred @ rot.T + jitter
        extent = dst.max(axis=0) - dst.min(axis=0)
        scale = min(1.0, 0.9 * width / extent[0], 0.9 * height / extent[1])
        if scale < 1.0:  # too large for the scene: render again smaller rather than resample
            drawn.size = max(int(drawn.size * scale), 6)
            word = drawn.render()
            h, w = word.alpha.shape
            src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
            dst = (src - (w / 2, h / 2)) @ rot.T + jitter * scale
            extent = dst.max(axis=0) - dst.min(axis=0)
        for _ in range(10):
            offset = (rng.uniform(0, width - extent[0]), rng.uniform(0, height - extent[1])) - dst.min(axis=0)
            corners = (dst + offset).astype(np.float32)
            left, top = np.floor(corners.min(axis=0)).astype(int)
            right, bottom = np.ceil(corners.max(axis=0)).astype(int)
            region = (max(top, 0), min(bottom, height), max(left, 0), min(right, width))
            if not any(_overlap(region, other) for other in avoid):
                homography = cv2.getPerspectiveTransform(src, corners)
                return _PlacedWord(drawn, word, homography, region)
        return None

    def _composite(self, rng: np.random.Generator, scene: np.ndarray, placed: _PlacedWord) -> None:
        """Draw the word into `scene` (in place): optional shadow or outline, then the fill colour."""
        top, bottom, left, right = placed.region
        warp = _shift(-left, -top) @ pixel_warp(placed.homography)
        alpha = cv2.warpPerspective(placed.word.alpha, warp, (right - left, bottom - top))
        patch = scene[top:bottom, left:right]
        colour = text_colour(rng, patch)
        effect = rng.random()
        if effect < 0.15:  # drop shadow
            dx, dy = rng.integers(1, 4, 2)
            shadow = cv2.GaussianBlur(np.roll(alpha, (int(dy), int(dx)), axis=(0, 1)), (0, 0), 1.0)
            patch[:] = patch * (1 - 0.6 * shadow[..., None])
        elif effect < 0.3:  # outline in the contrasting colour
            outline = cv2.dilate(alpha, np.ones((3, 3), np.uint8))
            patch[:] = patch * (1 - outline[..., None]) + (1 - colour) * outline[..., None]
        opacity = rng.uniform(0.85, 1.0)
        patch[:] = patch * (1 - opacity * alpha[..., None]) + colour * (opacity * alpha[..., None])

    def __getitem__(self, index: int) -> dict:
        scene = self.render(index)
        return make_sample(scene.image, scene.mask, scene.char_seg, scene.text, self.cfg)

    def render(self, index: int) -> SceneSample:
        """The sample as numpy arrays at the model resolution, plus the word polygon (for writing to disk)."""
        cfg = self.cfg
        rng = _rng(cfg, cfg.split, SCENE_STREAM, index)
        base = max(cfg.resolution, 256) * rng.uniform(1.0, 1.5)
        aspect = rng.uniform(0.75, 1.33)
        height, width = (int(base), int(base * aspect)) if aspect < 1 else (int(base / aspect), int(base))
        scene = self.source.backgrounds.sample(rng, height, width).copy()  # (H, W, 3)
        target = self._place(rng, height, width, [])
        assert target is not None  # the first word is placed without constraints
        lo, hi = cfg.words_per_image
        words = [target]
        for _ in range(int(rng.integers(lo, hi + 1)) - 1):
            other = self._place(rng, height, width, [_grow(w.region, 4) for w in words])
            if other is not None:
                words.append(other)
        for placed in words:
            self._composite(rng, scene, placed)
        if rng.random() < 0.3:
            scene = cv2.GaussianBlur(scene, (0, 0), rng.uniform(0.3, 1.0))
        scene = scene * 255 + rng.standard_normal(scene.shape, dtype=np.float32) * 2.5  # sensor noise
        scene = np.clip(np.rint(scene), 0, 255).astype(np.uint8)  # 8-bit like any photo: a PNG reloads identically

        polygon = _warp_points(target.homography, _quad(target.word, POLYGON_PAD * target.drawn.size))
        crop = compute_crop((height, width), polygon, cfg)
        image = crop.apply_image(scene)  # (h, w, 3)
        mask = fill_polygon(*crop_shape(cfg), crop.apply_points(polygon))  # (h, w)
        char_seg = char_masks(target.word, crop.matrix @ target.homography, crop_shape(cfg))
        return SceneSample(image, mask, char_seg, target.drawn.text, crop.apply_points(polygon))


@dataclass
class SceneSample:
    image: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) uint8, the filled polygon
    char_seg: np.ndarray  # (len(text), h, w) bool
    text: str
    polygon: np.ndarray  # (4, 2) xy in model coordinates, clockwise from the word's top-left


def char_masks(word: RenderedWord, homography: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Each character's ink warped by `homography` (word canvas -> model xy), thresholded: (L, h, w) bool.

    Warps only the word's bounding box; when the warp shrinks, the ink is blurred first so thin strokes
    average into grey (as area resizing of the image does) instead of vanishing between samples.
    """
    h, w = word.alpha.shape
    corners = _warp_points(homography, np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32))
    height, width = shape
    left, top = np.clip(np.floor(corners.min(axis=0)).astype(int), 0, (width, height))
    right, bottom = np.clip(np.ceil(corners.max(axis=0)).astype(int), 0, (width, height))
    out = np.zeros((len(word.char_alphas), height, width), bool)  # (L, h, w)
    if right <= left or bottom <= top:
        return out
    warp = _shift(-left, -top) @ pixel_warp(homography)
    shrink = np.sqrt(abs(np.linalg.det(homography[:2, :2])))  # linear scale of the warp
    sigma = 0.5 * (1.0 / shrink - 1.0) if shrink < 1 else 0.0
    for j, alpha in enumerate(word.char_alphas):
        if sigma > 0.2:
            alpha = cv2.GaussianBlur(alpha, (0, 0), sigma)
        patch = cv2.warpPerspective(alpha, warp, (right - left, bottom - top), flags=cv2.INTER_LINEAR)
        # a character thinner than a model pixel still gets its strongest pixels rather than an empty map
        out[j, top:bottom, left:right] = patch > min(CHAR_THRESHOLD, 0.5 * float(patch.max()))
    return out


def _shift(dx: float, dy: float) -> np.ndarray:
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float64)


def pixel_warp(homography: np.ndarray) -> np.ndarray:
    """A continuous-xy homography as cv2 wants it: cv2 puts pixel centres at integers, we at +0.5."""
    return _shift(-0.5, -0.5) @ homography @ _shift(0.5, 0.5)


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def _grow(region: tuple, px: int) -> tuple:
    top, bottom, left, right = region
    return top - px, bottom + px, left - px, right + px
