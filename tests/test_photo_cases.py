import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udifftext.config import DataConfig, EvalConfig, load_config
from udifftext.data.photo_cases import photo_cases, write_photo_cases
from udifftext.data.render import render_word
from udifftext.data.synth import POLYGON_PAD
from udifftext.data.words import load_words, split_fonts
from udifftext.evaluation import config_cases

ROOT = Path(__file__).resolve().parents[1]
HELDOUT = DataConfig(split="heldout")


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    for name, size in (("wide.jpg", (300, 160)), ("small.png", (90, 70))):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a photo")
    return tmp_path


def test_boxes_fit_the_rendered_held_out_text_inside_the_photo(photos):
    entries = photo_cases(photos, HELDOUT, per_photo=5, seed=3)
    assert [e["image"] for e in entries] == ["small.png"] * 5 + ["wide.jpg"] * 5  # sorted, the .txt skipped
    assert len({e["id"] for e in entries}) == 10 and {e["protocol"] for e in entries} == {"photo"}
    heldout_fonts = {p.name for p in split_fonts(HELDOUT, "heldout")}
    train_words = {w.lower() for w in load_words(HELDOUT, "train")}
    for entry in entries:
        width, height = Image.open(photos / entry["image"]).size
        x0, y0, x1, y1 = entry["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert entry["font"] in heldout_fonts
        assert entry["text"].lower() not in train_words  # held-out list words or random strings
        font = next(p for p in split_fonts(HELDOUT, "heldout") if p.name == entry["font"])
        word = render_word(entry["text"], font, entry["size"], entry["tracking"] * entry["size"])
        top, bottom, left, right = word.ink_box
        pad = POLYGON_PAD * entry["size"]  # the box the engine would draw around that word
        assert (x1 - x0, y1 - y0) == (int(np.ceil(right - left + 2 * pad)), int(np.ceil(bottom - top + 2 * pad)))
    assert photo_cases(photos, HELDOUT, per_photo=5, seed=3) == entries
    assert photo_cases(photos, HELDOUT, per_photo=5, seed=4) != entries


def test_written_cases_are_read_as_evaluation_cases(photos, tmp_path):
    path = write_photo_cases(photos, HELDOUT, per_photo=2, seed=0)
    cfg = load_config(EvalConfig, ROOT / "configs/eval/tiny.yaml", [f"cases={path}", f"out_dir={tmp_path / 'r'}"])
    cases = config_cases(cfg)
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [c.id for c in cases] == [e["id"] for e in entries]
    for case, entry in zip(cases, entries, strict=True):
        x0, y0, x1, y1 = entry["box"]
        assert case.protocol == "photo" and case.text == entry["text"]
        assert case.mask.sum() == (x1 - x0) * (y1 - y0) and case.mask[y0:y1, x0:x1].all()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .* photos in"):
        photo_cases(tmp_path / "empty", HELDOUT, 1, 0)


def test_committed_photo_cases_are_what_the_script_writes():
    committed = [json.loads(line) for line in (ROOT / "data/photos/cases.jsonl").read_text().splitlines()]
    assert committed == photo_cases(ROOT / "data/photos", HELDOUT, per_photo=4, seed=0)
    assert len(committed) == 4 * 14
