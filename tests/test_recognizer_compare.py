"""Readers side by side on the held-out crops (udifftext/recognizer/compare.py, scripts/compare_recognizers.py)."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udifftext.config import EncoderStageConfig, config_to_yaml, load_config
from udifftext.data.words import load_words
from udifftext.io import save_state_dict
from udifftext.recognizer.compare import compare_readers, heldout_crops, markdown, squeeze_crops, training_crops
from udifftext.recognizer.transcribe import LABEL_WIDTH, read_transcription, sample_positions, subset, write_sheets
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
    sheets = [*cmd, "--sheets", str(tmp_path / "reading"), "--sheet-crops", "4", "eval_samples=8"]  # no weights needed
    sheets = subprocess.run(sheets, capture_output=True, text=True, cwd=ROOT)
    assert sheets.returncode == 0 and (tmp_path / "reading" / "sheet_00.png").is_file(), sheets.stderr
    (tmp_path / "reading" / "transcription.txt").write_text("0: a\n1: b\n2: c\n3: d\n")
    ctc = dict(decoder="ctc", patch_size=16, patch_width=4, stem="conv")  # a text prior reads CTC outputs
    save_state_dict(ViTSTR(replace(cfg.recognizer, **ctc)).state_dict(), tmp_path / "ctc.safetensors")
    ctc_args = [f"recognizer.weights={tmp_path / 'ctc.safetensors'}", "eval_samples=8"]
    ctc_args += [f"recognizer.{key}={value}" for key, value in ctc.items()]
    (tmp_path / "ctc.yaml").write_text(config_to_yaml(replace(cfg.recognizer, **ctc)))  # as train_encoder exports
    scored = [*cmd, "--transcription", str(tmp_path / "reading"), "--prior-weight", "0.7", "--view-shifts", "2"]
    scored = [*scored, "--ensemble", str(tmp_path / "ctc.safetensors")]  # a second recognizer's views vote too
    scored = [*scored, *ctc_args]
    scored = subprocess.run(scored, capture_output=True, text=True, cwd=ROOT)
    assert scored.returncode == 0 and "| person (transcription) | all | 4 |" in scored.stdout, scored.stderr
    assert "| ours (ViTSTR) | all | 4 |" in scored.stdout  # every reader on the transcribed crops only
    assert "| ours + text prior, views -2..2 px + 1 more recognizers | all | 4 |" in scored.stdout
    lone = [*cmd, "--prior-weight", "0.7", "--ensemble", str(tmp_path / "lone.safetensors"), *ctc_args]
    lone = subprocess.run(lone, capture_output=True, text=True, cwd=ROOT)
    assert lone.returncode == 1 and "lone.yaml does not exist" in lone.stderr
    no_prior = subprocess.run([*args, "--view-shifts", "2"], capture_output=True, text=True, cwd=ROOT)
    assert no_prior.returncode == 2 and "--prior-weight" in no_prior.stderr


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


def test_blind_sheets_and_their_transcription_score_a_person_as_a_reader(heldout, tmp_path):
    _, crops = heldout
    indices = sample_positions(len(crops.texts), 25, seed=0)
    assert len(set(indices)) == 25 and indices == sample_positions(40, 25, seed=0) != sample_positions(40, 25, seed=1)
    sheets = write_sheets(crops, indices, tmp_path)
    assert [s.name for s in sheets] == ["sheet_00.png", "sheet_01.png"]  # 20 crops a sheet
    assert Image.open(sheets[1]).size == (LABEL_WIDTH + 2 * 64, 5 * (2 * 16 + 6))
    assert not any(text in (tmp_path / "crops.json").read_text() for text in crops.texts if len(text) > 3)
    lines = [f"{k}: {crops.texts[i] if k % 5 else 'wrong'}" for k, i in enumerate(indices)]  # every fifth wrong
    (tmp_path / "transcription.txt").write_text("\n".join(reversed(lines)) + "\n")  # any order
    read_indices, reads = read_transcription(tmp_path, crops)
    assert read_indices == indices and reads[1] == crops.texts[indices[1]] and reads[0] == "wrong"
    rows = compare_readers(subset(crops, indices), {"person": lambda _: reads})
    assert rows[0]["n"] == 25 and rows[0]["word_acc"] == pytest.approx(20 / 25)
    with pytest.raises(FileExistsError, match="transcription.txt exists"):
        write_sheets(crops, indices, tmp_path)  # a reading is never overwritten
    (tmp_path / "transcription.txt").write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(ValueError, match=r"positions \[0\] are missing"):
        read_transcription(tmp_path, crops)
    (tmp_path / "transcription.txt").write_text("\n".join([*lines, "3 wrong"]) + "\n")
    with pytest.raises(ValueError, match="expected 'position: text'"):
        read_transcription(tmp_path, crops)
    (tmp_path / "transcription.txt").write_text("\n".join([*lines, "3: again"]) + "\n")
    with pytest.raises(ValueError, match="position 3 read twice"):
        read_transcription(tmp_path, crops)
    shuffled = replace(crops, texts=crops.texts[1:] + crops.texts[:1])
    with pytest.raises(ValueError, match="drawn from other crops"):
        read_transcription(tmp_path, shuffled)
    with pytest.raises(ValueError, match="1 to 40 crops"):
        sample_positions(40, 41, seed=0)
