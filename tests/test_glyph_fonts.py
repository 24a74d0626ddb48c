import numpy as np
import pytest

from udifftext.glyph_fonts import draw_text_crop, glyph_font_legibility, markdown

SANS = "data/fonts/dejavu/DejaVuSans.ttf"
MONO = "data/fonts/liberation/LiberationMono-Regular.ttf"


def test_draw_text_crop_is_dark_ink_on_white_with_a_blank_margin():
    crop = draw_text_crop("Hello", SANS, height=20, margin=4)
    assert crop.dtype == np.uint8 and crop.shape[0] == 28 and crop.shape[2] == 3
    gray = crop[:, :, 0]
    assert (gray[:4] == 255).all() and (gray[-4:] == 255).all() and (gray[:, :4] == 255).all()
    assert gray[4:-4, 4:-4].min() < 50  # ink reaches black inside the margin
    assert draw_text_crop("Hello", SANS, height=20).shape[1] > draw_text_crop("Hi", SANS, height=20).shape[1]


def test_legibility_counts_list_words_and_random_strings_per_font():
    """A stub reader reads every sans crop right and uppercases every mono crop (the crop's width tells them apart
    here): sans reads all; mono reads all case-insensitively but only the all-caps text with case."""
    texts = ["apple", "Pear", "x|Q0", "BB"]
    sans_widths = {draw_text_crop(t, SANS).shape[1] for t in texts}

    def read(crops):
        return [t if c.shape[1] in sans_widths else t.upper() for c, t in zip(crops, texts, strict=True)]

    rows = glyph_font_legibility([SANS, MONO], texts, {"apple", "pear"}, read)
    sans, mono = rows
    assert sans["font"] == "DejaVuSans.ttf" and sans["n"] == 4 and sans["n_list_words"] == 2
    assert sans["seq_acc"] == sans["seq_acc_case"] == 1.0
    assert mono["seq_acc"] == 1.0 and mono["seq_acc_case"] == pytest.approx(0.25)
    assert mono["list_words"] == 1.0 and mono["random_strings"] == 1.0
    table = markdown(rows)
    assert table.splitlines()[2].startswith("| DejaVuSans.ttf | 1.000 | 1.000 |")
    assert "| 0.250 |" in table


def test_script_prints_one_row_per_font_and_refuses_a_missing_font():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "compare_glyph_fonts.py"
    run = [sys.executable, str(script), "--samples", "6", "--fonts", SANS, MONO]
    out = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    named = [line for line in out.stdout.splitlines() if "DejaVuSans.ttf |" in line or "Mono-Regular.ttf |" in line]
    assert len(named) == 2
    for line in named:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert 0.0 <= float(cells[1]) <= 1.0 and 0.0 <= float(cells[2]) <= float(cells[1])
    missing = subprocess.run(run[:-2] + ["no_such_font.ttf"], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "no_such_font.ttf" in missing.stderr
