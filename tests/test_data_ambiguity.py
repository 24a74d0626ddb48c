"""Look-alike texts of word crops and the best possible reader's score (udifftext.data.ambiguity)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from udifftext.config import DataConfig
from udifftext.data.ambiguity import CropLookAlikes, best_reading_score, reading_ceiling
from udifftext.data.synth import WordCropDataset
from udifftext.data.words import TextSampler

KANA = "アイ"  # DejaVu Sans has neither: both are drawn as its same missing-glyph box


def test_stretched_ink_and_contrast_explain_the_crop():
    """crop = background + contrast * ink, so crop + contrast * (1 - ink) is the text colour's grey at every pixel
    (up to the resize and, in some crops, the blur); replacing the text by itself changes nothing."""
    ds = WordCropDataset(DataConfig(length=16, split="heldout", word_crop_height=16, word_crop_width=64))
    for index in range(16):
        text, ink = ds.stretched_ink(index)
        contrast = ds.stretched_contrast(index)
        crop = ds[index]["word_crop"][0].numpy()
        assert text == ds[index]["text"] and ink.shape == contrast.shape == crop.shape == (16, 64)
        assert np.array_equal(ds.stretched_ink(index, text)[1], ink)
        colour_grey = crop + contrast * (1 - ink)
        deviation = np.abs(colour_grey - np.median(colour_grey))
        assert np.median(deviation) < 0.02 and np.percentile(deviation, 90) < 0.06
        assert ds.stretched_ink(index, text + "W")[1].shape == ink.shape


def _kana_crops(tmp_path, length: int) -> WordCropDataset:
    words = tmp_path / "words.txt"
    words.write_text("a\naa\n")
    cfg = DataConfig(
        length=32, split="heldout", alphabet=KANA + "a", min_len=length, max_len=length, random_string_prob=1.0,
        word_list=str(words), heldout_word_fraction=1.0, fonts_dir="data/fonts/dejavu",
        heldout_fonts=["DejaVuSans.ttf"], word_crop_height=16, word_crop_width=64,
    )  # fmt: skip
    return WordCropDataset(cfg)


def test_glyphs_drawn_alike_are_look_alikes_alone_and_combined(tmp_path):
    ds = _kana_crops(tmp_path, 2)
    seen = set()
    for index in range(32):
        crop = CropLookAlikes(ds, index)
        kana = [i for i, c in enumerate(crop.text) if c in KANA]
        # every text with other kana at the kana positions, and nothing else: two substitutions checked together
        expected = {
            "".join(KANA[(KANA.index(c) + 1) % 2] if i in flip else c for i, c in enumerate(crop.text))
            for flip in ({0}, {1}, {0, 1})
            if flip <= set(kana)
        }
        assert crop.within(0.0) == sorted(expected)
        assert len(crop.within(1.0)) == 3**2 - 1  # no pixel moves by more than 1: every other text of two
        seen.add(len(kana))
    assert seen == {0, 1, 2}


def test_best_reader_takes_the_most_probable_look_alike():
    table = {"ア": 0.2, "イ": 0.2, "the": 0.5, "tne": 0.01}

    def chances(text: str) -> float:
        return table.get(text, 0.0)

    assert best_reading_score("ア", ["イ"], chances) == 0.5  # a tie: right half the time
    assert best_reading_score("the", ["tne"], chances) == 1.0
    assert best_reading_score("tne", ["the"], chances) == 0.0
    assert best_reading_score("x", [], chances) == 1.0  # no look-alike: always right


def test_reading_ceiling_of_kana_crops(tmp_path):
    ds = _kana_crops(tmp_path, 1)
    crops = [CropLookAlikes(ds, i) for i in range(32)]
    sampler = TextSampler.from_config(ds.cfg, "heldout")
    ceiling, found = reading_ceiling(crops, [False] * 32, sampler.probability, 0.0)
    kana = sum(c.text in KANA for c in crops)
    assert 0 < kana < 32 and found == [[KANA[1 - KANA.index(c.text)]] if c.text in KANA else [] for c in crops]
    assert ceiling.with_look_alikes == kana and ceiling.crops == 32
    assert ceiling.score == pytest.approx((32 - kana / 2) / 32) == ceiling.random_string_score
    assert np.isnan(ceiling.list_word_score)


def test_script_prints_one_ceiling_per_tolerance_and_keeps_the_look_alikes(tmp_path):
    root = Path(__file__).resolve().parents[1]
    config = root / "configs" / "encoder" / "recognizer_tiny.yaml"
    out = tmp_path / "look_alikes.json"
    cmd = [sys.executable, str(root / "scripts" / "reading_ceiling.py"), "--config", str(config)]
    args = [*cmd, "--tolerance", "1,0", "--out", str(out), "eval_samples=2"]
    done = subprocess.run(args, capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    assert "| 0 | " in done.stdout and "| 1 | 2 | " in done.stdout  # tolerance 1: every crop has look-alikes
    saved = json.loads(out.read_text())
    assert [c["tolerance"] for c in saved["ceilings"]] == [0.0, 1.0] and len(saved["look_alikes"]) == 2
    again = subprocess.run(args, capture_output=True, text=True, cwd=root)
    assert again.returncode == 2 and "exists" in again.stderr  # never overwritten
