"""Word list, fonts, held-out split, glyph rendering and word crops."""

import itertools
import subprocess
import sys
from collections import Counter
from functools import partial

import numpy as np
import pytest
import torch

from udifftext.config import DEFAULT_ALPHABET, DataConfig
from udifftext.data.font_check import font_problems, glyph_likeness, glyph_shapes
from udifftext.data.render import GLYPH_FONT, render_glyph, render_word
from udifftext.data.synth import WordCropDataset, weakest_char_contrast, weakest_char_visibility
from udifftext.data.words import REPO_ROOT, TextSampler, list_fonts, load_words, split_fonts

# In the training set of every shipped model since the start; documented in docs/data.md, kept so they reproduce.
KNOWN_FONT_PROBLEMS = {"Humor-Sans.ttf"}


@pytest.mark.parametrize("folder", ["data/fonts", "data/fonts_extra", "data/fonts_extra2", "data/fonts_extra3"])
def test_every_font_shows_every_label(folder):
    fonts = list_fonts(folder)
    assert len(fonts) >= 12
    problems = {p.name: font_problems(p) for p in fonts if p.name not in KNOWN_FONT_PROBLEMS}
    assert not {name: found for name, found in problems.items() if found}


def test_fontsource_batch_keeps_away_from_the_heldout_fonts():
    """data/fonts_extra3 was screened at glyph IoU 0.80 against each held-out font (docs/data.md); the held-out
    families that Google Fonts also ships (Caladea, Comic Neue) are left out whole."""
    heldout = [glyph_shapes(p) for p in split_fonts(DataConfig(), "heldout")]
    fonts = list_fonts("data/fonts_extra3")
    assert not {p.parent.name for p in fonts} & {"caladea", "comic-neue"}
    likeness = {p.name: max(glyph_likeness(glyph_shapes(p), other) for other in heldout) for p in fonts}
    assert max(likeness.values()) < 0.80
    assert likeness["courier-prime-latin-700-normal.woff"] > 0.75  # the check can see a Courier next to Nimbus Mono


def test_font_check_names_what_a_reader_cannot_see(tmp_path):
    (tmp_path / "page.ttf").write_text("<!doctype html>")  # what a broken font package shipped as its fonts
    assert font_problems(tmp_path / "page.ttf") == ["FreeType cannot read it (unknown file format)"]
    humor = font_problems("data/fonts/humor-sans/Humor-Sans.ttf")
    assert any("without ascenders" in p for p in humor)
    boxed = font_problems("data/fonts/dejavu/DejaVuSans.ttf", alphabet=DEFAULT_ALPHABET + "\u4e00")
    assert boxed == ["draws the missing-glyph box for '\u4e00'"]


def test_extra_font_folders_join_the_training_fonts():
    base = DataConfig()
    extra = DataConfig(extra_fonts_dirs=["data/fonts_extra"])
    train, more = split_fonts(base, "train"), split_fonts(extra, "train")
    added = list_fonts("data/fonts_extra")
    assert more == sorted(train + added, key=lambda p: p.name)
    assert split_fonts(extra, "heldout") == split_fonts(base, "heldout")
    with pytest.raises(ValueError, match="found twice"):
        split_fonts(DataConfig(extra_fonts_dirs=["data/fonts/dejavu"]), "train")


def test_heldout_split_is_disjoint_from_train():
    cfg = DataConfig()
    train, heldout = load_words(cfg, "train"), load_words(cfg, "heldout")
    assert not {w.lower() for w in train} & {w.lower() for w in heldout}
    assert 0.07 < len(heldout) / (len(train) + len(heldout)) < 0.13
    train_fonts, heldout_fonts = split_fonts(cfg, "train"), split_fonts(cfg, "heldout")
    assert sorted(p.name for p in heldout_fonts) == sorted(cfg.heldout_fonts)
    assert not {p.name for p in train_fonts} & set(cfg.heldout_fonts)
    # texts drawn for training never hit a held-out word, in any case variant
    sampler = TextSampler.from_config(cfg, "train")
    rng = np.random.default_rng(0)
    heldout_lower = {w.lower() for w in heldout}
    texts = [sampler.sample(rng) for _ in range(3000)]
    assert not [t for t in texts if t.lower() in heldout_lower]
    assert set("".join(texts)) == set(DEFAULT_ALPHABET)  # case variants + random strings cover the alphabet
    assert all(1 <= len(t) <= 12 for t in texts)


def test_unknown_heldout_font_is_an_error():
    with pytest.raises(ValueError, match="Nope.ttf"):
        split_fonts(DataConfig(heldout_fonts=["Nope.ttf"]), "train")


def test_render_word_char_maps_union_is_the_word():
    word = render_word("Hi!j", "data/fonts/dejavu/DejaVuSans.ttf", 40)
    assert word.char_alphas.shape[0] == 4
    assert all(a.max() > 0.9 for a in word.char_alphas)
    top, bottom, left, right = word.ink_box
    assert 0 <= top < bottom <= word.alpha.shape[0] and 0 <= left < right <= word.alpha.shape[1]
    # characters advance left to right
    centres = [np.nonzero(a.max(axis=0) > 0.5)[0].mean() for a in word.char_alphas]
    assert centres == sorted(centres)


def test_render_glyph_fills_the_box():
    glyph = render_glyph("Hello", 32, 128)
    assert glyph.shape == (32, 128) and glyph.dtype == np.float32
    assert 0.0 <= glyph.min() and glyph.max() <= 1.0
    assert glyph[:, :8].max() > 0.5 and glyph[:, -8:].max() > 0.5  # ink reaches both ends
    assert np.array_equal(render_glyph("", 8, 8), np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="height"):
        render_glyph("a", 0, 8)


def test_word_crops_are_deterministic_and_split_aware():
    cfg = DataConfig(length=16, word_crop_height=16, word_crop_width=64)
    ds = WordCropDataset(cfg)
    a, b = ds[3], WordCropDataset(cfg)[3]
    assert a["word_crop"].shape == (1, 16, 64) and a["word_crop"].dtype == torch.float32
    assert torch.equal(a["word_crop"], b["word_crop"]) and a["text"] == b["text"]
    assert 0.0 <= a["word_crop"].min() and a["word_crop"].max() <= 1.0
    assert a["word_crop"].std() > 0.02  # there is a word on it
    assert ds[4]["text"] != a["text"] or not torch.equal(ds[4]["word_crop"], a["word_crop"])
    heldout = WordCropDataset(DataConfig(length=16, split="heldout", random_string_prob=0.0))
    heldout_words = {w.lower() for w in load_words(heldout.cfg, "heldout")}
    assert all(heldout[i]["text"].lower() in heldout_words for i in range(8))
    assert all(heldout[i]["font"] in heldout.cfg.heldout_fonts for i in range(8))
    assert a["font"] in {p.name for p in split_fonts(cfg, "train")}


def test_weakest_char_contrast_finds_the_hidden_letter():
    """Two letters, one over a black half and one over a white half: black ink hides the first (contrast 0), mid
    grey shows both equally; a letter with no ink in the window is left out."""
    alphas = np.zeros((3, 4, 8), np.float32)
    alphas[0, :, 1:3] = 1.0
    alphas[1, :, 5:7] = 0.5
    background = np.zeros((4, 8, 3), np.float32)
    background[:, 4:] = 1.0
    assert weakest_char_contrast(alphas, background, np.zeros(3, np.float32)) == pytest.approx(0.0)
    assert weakest_char_contrast(alphas, background, np.full(3, 0.5, np.float32)) == pytest.approx(0.5)
    assert weakest_char_contrast(alphas[1:], background, np.zeros(3, np.float32)) == pytest.approx(1.0)


def test_weakest_char_visibility_finds_the_half_hidden_letter():
    """A letter with its left half over a black patch and its right half over mid grey: black ink shows half of it
    (visibility 0.5) though its mean contrast is 0.25; a letter wholly over the grey shows all its ink."""
    alphas = np.zeros((2, 4, 8), np.float32)
    alphas[0, :, 0:4] = 1.0  # columns 0-1 over black, 2-3 over grey
    alphas[1, :, 5:7] = 1.0  # over grey
    background = np.full((4, 8, 3), 0.5, np.float32)
    background[:, :2] = 0.0
    black = np.zeros(3, np.float32)
    assert weakest_char_visibility(alphas, background, black) == pytest.approx(0.5)
    assert weakest_char_contrast(alphas, background, black) == pytest.approx(0.25)
    assert weakest_char_visibility(alphas[1:], background, black) == pytest.approx(1.0)
    assert weakest_char_visibility(np.zeros((1, 4, 8), np.float32), background, black) == 1.0  # no ink in the window


@pytest.mark.parametrize(("floor_key", "score_key", "floor"), [
    ("min_char_contrast", "char_contrast", 0.25),
    ("min_char_visibility", "char_visibility", 0.9),
])  # fmt: skip
def test_legibility_floors_redraw_only_the_crops_that_hide_a_letter(floor_key, score_key, floor):
    """data.min_char_contrast / min_char_visibility: a crop whose every letter already stands out is drawn exactly
    as without the floor; one with a letter below it gets another background and colour, now above the floor."""
    cfg = DataConfig(length=32, split="heldout", word_crop_height=16, word_crop_width=64)
    plain, clean = WordCropDataset(cfg), WordCropDataset(DataConfig(**{**cfg.__dict__, floor_key: floor}))
    redrawn = 0
    for i in range(len(plain)):
        a, b = plain[i], clean[i]
        assert a["text"] == b["text"] and b[score_key] >= floor
        if a[score_key] >= floor:
            assert torch.equal(a["word_crop"], b["word_crop"])
        else:
            redrawn += 1
            assert not torch.equal(a["word_crop"], b["word_crop"])
    assert 0 < redrawn < len(plain) // 2


def test_check_fonts_script_fails_on_a_font_that_hides_labels():
    script = [sys.executable, "scripts/check_fonts.py"]
    run = partial(subprocess.run, capture_output=True, text=True, cwd=REPO_ROOT)
    failed = run(script + ["data/fonts/humor-sans", GLYPH_FONT])
    assert failed.returncode == 1, failed.stderr
    assert "FAIL data/fonts/humor-sans/Humor-Sans.ttf: " in failed.stdout and "1 of 2 fonts pass" in failed.stdout
    assert run(script + [GLYPH_FONT]).returncode == 0
    # FreeMono Bold (training) is a Courier like the held-out Nimbus Mono PS Bold
    clone = run(script + ["data/fonts/freefont/FreeMonoBold.ttf", "--compare-to", "data/fonts/urw-base35"])
    assert clone.returncode == 1 and "glyphs like NimbusMonoPS-Bold.otf's (IoU 0.89)" in clone.stdout


@pytest.mark.parametrize("forbidden", [frozenset(), frozenset({"ab", "c"})])
def test_text_probability_is_the_samplers_distribution(forbidden):
    sampler = TextSampler(["ab", "Ba", "ab"], "abcAB", 1, 2, 0.4, forbidden)
    every_text = ["".join(chars) for n in (1, 2) for chars in itertools.product("abcAB", repeat=n)]
    assert sum(sampler.probability(t) for t in every_text) == pytest.approx(1.0)
    assert sampler.probability("abc") == sampler.probability("x") == 0.0  # too long; not in the alphabet
    rng = np.random.default_rng(0)
    counts = Counter(sampler.sample(rng) for _ in range(20000))
    for text in ("ab", "Ab", "AB", "ba", "Ba", "BA", "c", "cA"):
        assert counts[text] / 20000 == pytest.approx(sampler.probability(text), abs=0.01)
    if forbidden:  # a random string equal to a forbidden word in any case is redrawn
        assert counts["C"] == counts["aB"] == 0
