"""Readers side by side on the held-out crops (udifftext/recognizer/compare.py, scripts/compare_recognizers.py)."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from udifftext.config import EncoderStageConfig, load_config
from udifftext.data.words import load_words
from udifftext.io import save_state_dict
from udifftext.recognizer.compare import compare_readers, heldout_crops, markdown, squeeze_crops, training_crops
from udifftext.recognizer.vitstr import ViTSTR

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "encoder" / "recognizer_tiny.yaml"


@pytest.fixture(scope="module")
def heldout():
    cfg = load_config(EncoderStageConfig, TINY, ["eval_samples=40"])
    return cfg, heldout_crops(cfg)


def test_heldout_crops_are_the_fixed_heldout_split(heldout):
    cfg, crops = heldout
    assert len(crops.crops) == len(crops.texts) == len(crops.is_list_word) == 40
    assert all(c.shape == (16, 64, 3) and c.dtype == np.uint8 for c in crops.crops)
    assert all(np.array_equal(c[..., 0], c[..., 2]) for c in crops.crops)  # grayscale, as the recognizer sees it
    again = heldout_crops(cfg)
    assert again.texts == crops.texts
    assert all(np.array_equal(a, b) for a, b in zip(again.crops, crops.crops, strict=True))
    words = {w.lower() for w in load_words(replace(cfg.data, split="heldout"), "heldout")}
    assert crops.is_list_word == [t.lower() in words for t in crops.texts]
    assert 0 < sum(crops.is_list_word) < 40  # both kinds of text are drawn
    assert again.fonts == crops.fonts and set(crops.fonts) == set(cfg.data.heldout_fonts)  # 40 crops hit all five


def test_training_crops_are_training_words_and_fonts_without_per_font_rows(heldout):
    cfg, held = heldout
    crops = training_crops(cfg)
    assert len(crops.texts) == 40 and training_crops(cfg).texts == crops.texts
    assert not set(crops.fonts) & set(cfg.data.heldout_fonts)
    words = {w.lower() for w in load_words(cfg.data, "train")}
    assert crops.is_list_word == [t.lower() in words for t in crops.texts] and any(crops.is_list_word)
    assert not {t.lower() for t, w in zip(crops.texts, crops.is_list_word, strict=True) if w} & {
        t.lower() for t, w in zip(held.texts, held.is_list_word, strict=True) if w
    }
    groups = {r["texts"] for r in compare_readers(crops, {"oracle": lambda _: list(crops.texts)})}
    assert "all" in groups and not groups & set(crops.fonts)  # more fonts than MAX_FONT_ROWS: no per-font rows


def test_rows_split_by_text_kind_and_score_each_reader(heldout):
    _, crops = heldout
    readers = {
        "oracle": lambda _: list(crops.texts),
        "lower": lambda _: [t.lower() for t in crops.texts],
        "blank": lambda c: [""] * len(c),
    }
    rows = compare_readers(crops, readers)
    by = {(r["reader"], r["texts"]): r for r in rows}
    assert by[("oracle", "list words")]["n"] + by[("oracle", "random strings")]["n"] == by[("oracle", "all")]["n"] == 40
    assert all(by[("oracle", g)]["word_acc"] == by[("oracle", g)]["char_acc"] == 1.0 for g in ("all", "list words"))
    has_upper = [t != t.lower() for t in crops.texts]
    assert by[("lower", "all")]["word_acc_nocase"] == 1.0
    assert by[("lower", "all")]["word_acc"] == pytest.approx(1 - sum(has_upper) / 40)
    assert by[("blank", "all")]["word_acc"] == by[("blank", "all")]["char_acc"] == 0.0
    lengths = [g for (reader, g) in by if reader == "oracle" and g.endswith(" chars")]
    assert sum(by[("oracle", g)]["n"] for g in lengths) == 40  # each text in exactly one length group
    short = sum(len(t) <= 4 for t in crops.texts)
    assert by[("oracle", "1-4 chars")]["n"] == short and by[("oracle", "1-4 chars")]["word_acc"] == 1.0
    per_font = [by[("lower", f)] for f in sorted(set(crops.fonts))]
    assert sum(r["n"] for r in per_font) == 40  # each crop in exactly one font group
    assert [r["word_acc"] for r in per_font] == pytest.approx(
        [1 - sum(u for u, f in zip(has_upper, crops.fonts, strict=True) if f == r["texts"]) / r["n"] for r in per_font]
    )
    assert "| oracle | random strings |" in markdown(rows)
    per_length = {r["texts"]: r["n"] for r in compare_readers(crops, {"oracle": readers["oracle"]}, length_bucket=1)}
    counts = {f"{n} chars": sum(len(t) == n for t in crops.texts) for n in range(1, 13)}
    assert {g: n for g, n in per_length.items() if g.endswith(" chars")} == {g: n for g, n in counts.items() if n}


def test_script_prints_both_readers(tmp_path):
    cfg = load_config(EncoderStageConfig, TINY)
    weights = tmp_path / "recognizer.safetensors"
    save_state_dict(ViTSTR(cfg.recognizer).state_dict(), weights)
    cmd = [sys.executable, str(ROOT / "scripts" / "compare_recognizers.py"), "--config", str(TINY), "--threads", "1"]
    args = [*cmd, f"recognizer.weights={weights}", "eval_samples=8"]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "| ours (ViTSTR) | all | 8 |" in done.stdout and "| PP-OCRv4 (judge) | all | 8 |" in done.stdout
    train = [*cmd, "--split", "train", "--squeeze", "8x64", *args[len(cmd) :]]
    train = subprocess.run(train, capture_output=True, text=True, cwd=ROOT)
    assert train.returncode == 0 and "| ours (ViTSTR) | all | 8 |" in train.stdout, train.stderr
    malformed = subprocess.run([*args, "--squeeze", "8by64"], capture_output=True, text=True, cwd=ROOT)
    assert malformed.returncode == 2 and "--squeeze takes HxW" in malformed.stderr
    missing = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode != 0 and "recognizer.weights" in missing.stderr


def test_squeeze_crops_keeps_only_the_detail_of_the_smaller_size(heldout):
    _, crops = heldout  # 16 x 64
    assert all(np.array_equal(a, b) for a, b in zip(squeeze_crops(crops, 16, 64).crops, crops.crops, strict=True))
    one_row = squeeze_crops(crops, 1, 64)
    assert one_row.texts == crops.texts and one_row.fonts == crops.fonts
    for squeezed, crop in zip(one_row.crops, crops.crops, strict=True):
        assert squeezed.shape == crop.shape and np.array_equal(squeezed[..., 0], squeezed[..., 2])
        assert (squeezed == squeezed[:1]).all()  # every row the same: no vertical detail left
        column_means = crop[..., 0].astype(float).mean(axis=0)
        assert np.abs(squeezed[0, :, 0] - column_means).max() <= 1  # each column's mean ink survives
    halved = squeeze_crops(crops, 8, 64)
    assert any(not np.array_equal(a, b) for a, b in zip(halved.crops, crops.crops, strict=True))
    with pytest.raises(ValueError, match="height, width >= 1"):
        squeeze_crops(crops, 0, 64)
