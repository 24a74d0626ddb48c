"""Synthetic scenes: the batch contract, mask/char_seg alignment, determinism, held-out split, collation."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from udifftext.config import DataConfig
from udifftext.data.datasets import build_dataset, collate_batch, crop_shape
from udifftext.data.synth import SyntheticTextDataset
from udifftext.data.words import load_words

KEYS = {"image", "mask", "masked_image", "text", "char_seg", "char_seg_mask", "bbox", "word_crop"}


def check_contract(sample: dict, cfg: DataConfig) -> None:
    """Every source's samples must pass this (imported by the loader tests)."""
    (h, w), max_len = crop_shape(cfg), cfg.max_len
    assert set(sample) == KEYS
    assert sample["image"].shape == (3, h, w) and sample["image"].dtype == torch.float32
    assert -1.0 <= sample["image"].min() and sample["image"].max() <= 1.0
    mask = sample["mask"]
    assert mask.shape == (1, h, w) and set(mask.unique().tolist()) <= {0.0, 1.0} and mask.sum() > 0
    assert torch.equal(sample["masked_image"], sample["image"] * (1 - mask))
    text = sample["text"]
    assert isinstance(text, str) and cfg.min_len <= len(text) <= max_len and set(text) <= set(cfg.alphabet)
    assert sample["char_seg"].shape == (max_len, h, w) and sample["char_seg"].dtype == torch.float32
    assert set(sample["char_seg"].unique().tolist()) <= {0.0, 1.0}
    assert sample["char_seg"][len(text) :].sum() == 0
    assert sample["char_seg_mask"].tolist() == [1.0] * len(text) + [0.0] * (max_len - len(text))
    top, bottom, left, right = sample["bbox"].tolist()
    assert sample["bbox"].dtype == torch.long
    rows, cols = mask[0].any(dim=1).nonzero(), mask[0].any(dim=0).nonzero()
    assert (top, bottom, left, right) == (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)
    assert sample["word_crop"].shape == (1, cfg.word_crop_height, cfg.word_crop_width)
    assert 0.0 <= sample["word_crop"].min() and sample["word_crop"].max() <= 1.0


def check_char_alignment(sample: dict, inside: float = 0.95, overlap: float = 0.1) -> None:
    """Each character's mask is non-empty, lies in the word mask, and barely overlaps the others."""
    n = len(sample["text"])
    seg = sample["char_seg"][:n].bool()  # (n, R, R)
    mask = sample["mask"][0].bool()
    for j in range(n):
        area = seg[j].sum().item()
        assert area > 0, f"char {j} '{sample['text'][j]}' has an empty mask"
        outside = area - (seg[j] & mask).sum().item()
        assert outside <= max((1 - inside) * area, 1)  # one pixel of slack for tiny words at 64 px
        for k in range(j + 1, n):
            shared = (seg[j] & seg[k]).sum().item()
            assert shared <= max(overlap * min(area, seg[k].sum().item()), 1)


@pytest.fixture(scope="module")
def tiny_cfg():
    return DataConfig(resolution=64, length=32, word_crop_height=16, word_crop_width=64)


def test_samples_follow_the_contract_and_char_masks_align(tiny_cfg):
    ds = build_dataset(tiny_cfg)
    assert isinstance(ds, SyntheticTextDataset) and len(ds) == 32
    for i in range(12):
        sample = ds[i]
        check_contract(sample, tiny_cfg)
        check_char_alignment(sample)


def test_char_masks_align_at_model_resolution_512():
    cfg = DataConfig(resolution=512, length=4)
    sample = SyntheticTextDataset(cfg)[1]
    check_contract(sample, cfg)
    check_char_alignment(sample, inside=0.99, overlap=0.05)
    # the ink of each character is darker or lighter than the polygon's surroundings: masks sit on ink
    seg = sample["char_seg"][: len(sample["text"])].amax(0).bool()
    ring = sample["mask"][0].bool() & ~seg
    gray = sample["image"].mean(0)
    assert abs(gray[seg].mean() - gray[ring].mean()) > 0.1


def test_same_seed_same_pixels_other_seed_other_pixels(tiny_cfg):
    a, b = SyntheticTextDataset(tiny_cfg)[5], SyntheticTextDataset(tiny_cfg)[5]
    for key in KEYS - {"text"}:
        assert torch.equal(a[key], b[key]), key
    assert a["text"] == b["text"]
    other = SyntheticTextDataset(DataConfig(resolution=64, length=32, seed=1, word_crop_height=16))[5]
    assert not torch.equal(a["image"], other["image"])


def test_heldout_split_uses_only_heldout_words(tiny_cfg):
    cfg = DataConfig(resolution=64, length=8, split="heldout", random_string_prob=0.0)
    heldout = {w.lower() for w in load_words(cfg, "heldout")}
    ds = SyntheticTextDataset(cfg)
    assert all(ds[i]["text"].lower() in heldout for i in range(6))
    with pytest.raises(ValueError, match="split"):
        SyntheticTextDataset(DataConfig(split="val"))


def test_collate_through_a_dataloader(tiny_cfg):
    loader = DataLoader(build_dataset(tiny_cfg), batch_size=4, collate_fn=collate_batch)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 64, 64) and batch["char_seg"].shape == (4, 12, 64, 64)
    assert batch["bbox"].shape == (4, 4) and batch["bbox"].dtype == torch.long
    assert isinstance(batch["text"], list) and len(batch["text"]) == 4


def test_build_dataset_rejects_unknown_sources():
    with pytest.raises(ValueError, match="data.source"):
        build_dataset(DataConfig(source="coco"))
    with pytest.raises(ValueError, match="data.root"):
        build_dataset(DataConfig(source="icdar13"))
    with pytest.raises(ValueError, match="crop_width"):
        build_dataset(DataConfig(source="icdar13", root="data", crop_width=128))
    with pytest.raises(ValueError, match="crop_width"):
        build_dataset(DataConfig(crop_width=-1))


def test_rectified_crops_are_upright_and_keep_long_words_large():
    """crop_width: every sample is resolution x crop_width, the word's box is upright (its mask fills whole
    rows between its top and bottom), its ink aligns per character, and the box's height is at least the share
    of the crop that the margin leaves it, or the word fills the width."""
    cfg = DataConfig(resolution=32, crop_width=128, length=16, split="heldout", word_crop_height=16, word_crop_width=64)
    ds = build_dataset(cfg)
    for i in range(10):
        sample = ds[i]
        check_contract(sample, cfg)
        check_char_alignment(sample)
        top, bottom, left, right = sample["bbox"].tolist()
        box = sample["mask"][0, top:bottom, left:right]
        assert box.mean() > 0.8  # upright: a rotated quad would leave its bounding box's corners empty
        assert bottom - top >= 32 / (1 + 2 * cfg.crop_margin) - 3 or right - left >= 128 - 2 * cfg.crop_margin * 32 - 3


def test_procedural_only_backgrounds(tiny_cfg):
    cfg = DataConfig(resolution=64, length=4, backgrounds_dir="", word_crop_height=16, word_crop_width=64)
    check_contract(SyntheticTextDataset(cfg)[0], cfg)
    assert np.isfinite(SyntheticTextDataset(cfg)[1]["image"].numpy()).all()
