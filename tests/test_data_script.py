"""scripts/make_synthetic.py: writes, resumes, refuses a different config, renders a preview."""

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from udifftext.config import DataConfig
from udifftext.data.datasets import build_dataset

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("make_synthetic", ROOT / "scripts" / "make_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_synthetic_writes_resumes_and_previews(tmp_path):
    script = _script()
    tiny = ["resolution=64", "word_crop_height=16", "word_crop_width=64", "crop_min_area_ratio=0.2"]
    out, preview = tmp_path / "synth", tmp_path / "preview.png"
    script.main(script.parse_args(["--num", "3", "--out", str(out), "--preview", str(preview), *tiny]))
    folders = sorted((out / "train").iterdir())
    assert [f.name for f in folders] == ["0000000", "0000001", "0000002"]
    assert {p.name for p in folders[0].iterdir()} == {"image.png", "ocr.txt", "charseg.npy", "charpos.npy"}
    assert Image.open(preview).size == (2 * 3 * 160, 2 * 160)  # 3 samples, 2 per row, 3 tiles each

    stamp = folders[0].stat().st_mtime_ns
    script.main(script.parse_args(["--num", "4", "--out", str(out), *tiny]))  # resume
    assert len(list((out / "train").iterdir())) == 4 and folders[0].stat().st_mtime_ns == stamp
    assert len(build_dataset(DataConfig(source="folder", root=str(out), resolution=64))) == 4

    with pytest.raises(SystemExit, match="different config"):
        script.main(script.parse_args(["--num", "4", "--out", str(out), *tiny, "seed=5"]))
