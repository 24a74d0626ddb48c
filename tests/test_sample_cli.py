"""scripts/sample.py end to end on a tiny random-weight pipeline folder: outputs, manifest resume, the bundled
example with no arguments, and every bad input as a one-line error with exit status 2 and nothing written."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udifftext.config import UNetStageConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
FAST = ["steps=1", "noise_selection.candidates=2", "noise_selection.steps=1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _load_script():
    spec = importlib.util.spec_from_file_location("sample_script", ROOT / "scripts/sample.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sample = _load_script()


def run(argv: list[str]) -> int:
    return sample.main(sample.parse_args(argv))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from udifftext.pipeline import UDiffTextPipeline

    cfg = load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml", ["data.resolution=32", "unet.sample_size=32"])
    folder = tmp_path_factory.mktemp("model")
    UDiffTextPipeline.from_config(cfg).save_pretrained(folder)
    return folder


@pytest.fixture()
def inputs(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    mask = np.zeros((50, 80), np.uint8)
    mask[30:45, 40:75] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(mask[:40]).save(tmp_path / "small_mask.png")
    Image.fromarray(np.zeros_like(mask)).save(tmp_path / "empty_mask.png")
    (tmp_path / "broken.png").write_text("not an image")
    return tmp_path


@pytest.mark.parametrize(("script", "flag"), [("sample.py", "--manifest"), ("benchmark_sampling.py", "--repeats")])
def test_help_prints_fast(script, flag):
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and flag in result.stdout
    assert time.perf_counter() - start < 5


def test_benchmark_adds_read_selection_only_when_the_config_enables_it():
    from udifftext.config import ReadSelectionConfig, SampleConfig

    spec = importlib.util.spec_from_file_location("benchmark_script", ROOT / "scripts/benchmark_sampling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert list(module.settings(SampleConfig())) == ["plain", "+ noise selection", "+ refinement"]
    rows = module.settings(SampleConfig(read_selection=ReadSelectionConfig(enabled=True, candidates=3)))
    assert list(rows) == ["plain", "+ noise selection", "+ read selection", "+ refinement"]
    flags = {n: (c.noise_selection.enabled, c.read_selection.enabled, c.refinement.enabled) for n, c in rows.items()}
    assert flags == {
        "plain": (False, False, False),
        "+ noise selection": (True, False, False),
        "+ read selection": (True, True, False),
        "+ refinement": (True, False, True),
    }
    assert rows["+ read selection"].read_selection.candidates == 3


def test_one_image_two_regions_writes_every_output(model, inputs):
    out = inputs / "res" / "out.png"
    argv = ["--model", str(model), "--image", str(inputs / "in.png"), "--box", "5,5,35,20", "--text", "Hi"]
    assert run([*argv, "--mask", str(inputs / "mask.png"), "--text", "42", "--out", str(out), *FAST]) == 0
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == ["out.json", "out.png", "out_r0_attn.png", "out_r0_crop.png", "out_r1_attn.png", "out_r1_crop.png"]
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["texts"] == ["Hi", "42"] and record["config"]["steps"] == 1 and record["model"] == str(model)
    assert record["image"] == str(inputs / "in.png") and record["config"]["model"] == str(model)
    before, after = np.asarray(Image.open(inputs / "in.png")), np.asarray(Image.open(out))
    inside = np.zeros((50, 80), bool)
    inside[5:20, 5:35] = True
    inside[30:45, 40:75] = True
    assert np.array_equal(before[~inside], after[~inside])


def test_manifest_resumes_and_skips_finished_ids(model, inputs, capsys):
    manifest, out = inputs / "cases.jsonl", inputs / "outs"
    first = {"id": "a", "image": "in.png", "box": [5, 5, 35, 20], "text": "ab"}
    manifest.write_text(json.dumps(first) + "\n")
    assert run(["--model", str(model), "--manifest", str(manifest), "--out", str(out), *FAST]) == 0
    stamp = (out / "a.png").stat().st_mtime_ns
    second = {"id": "b", "image": "in.png", "mask": "mask.png", "text": "cd"}
    manifest.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    capsys.readouterr()
    assert run(["--model", str(model), "--manifest", str(manifest), "--out", str(out), *FAST]) == 0
    assert "resuming: 1 of 2 items" in capsys.readouterr().err
    assert (out / "a.png").stat().st_mtime_ns == stamp and (out / "b.png").exists()
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", "b"] and lines[1]["texts"] == ["cd"]


def test_no_arguments_runs_the_bundled_example_with_a_random_weights_note(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no checkpoints/default here: the tiny random-weight fallback
    assert run(FAST) == 0
    assert "RANDOM weights" in capsys.readouterr().err
    ids = [json.loads(line)["id"] for line in (tmp_path / "outputs/results.jsonl").read_text().splitlines()]
    assert ids == ["bakery_sign", "open_label"]
    assert Image.open(tmp_path / "outputs/bakery_sign.png").size == (320, 240)


BAD = [
    (["--image", "{d}/broken.png", "--box", "1,1,9,9", "--text", "a"], "cannot read image"),
    (["--image", "{d}/nothere.png", "--box", "1,1,9,9", "--text", "a"], "image not found"),
    (["--image", "{d}/in.png", "--mask", "{d}/small_mask.png", "--text", "a"], "differs from the image 80x50"),
    (["--image", "{d}/in.png", "--mask", "{d}/empty_mask.png", "--text", "a"], "mask is empty"),
    (["--image", "{d}/in.png", "--box", "60,10,90,30", "--text", "a"], "x1 <= 80"),
    (["--image", "{d}/in.png", "--box", "1,1,9,9", "--text", "ABCDEFGHIJKLM"], "longer than max_len=12"),
    (["--image", "{d}/in.png", "--box", "1,1,9,9", "--text", "a€b"], "outside the alphabet: ['€']"),
    (["--image", "{d}/in.png", "--box", "1,1,9,9", "--text", "a", "--text", "b"], "2 texts for 1 regions"),
    (["--image", "{d}/in.png", "--box", "1,1,9,9", "--text", "a", "--model", "{d}/none"], "none does not exist"),
    (["--image", "{d}/in.png", "--box", "1,1,9,9", "--text", "a", "--out", "{d}/in.png"], "is also an input path"),
    (["--image", "{d}/in.png", "--box", "1,1,9", "--text", "a"], "--box must be x0,y0,x1,y1"),
    (["--manifest", "{d}/cases.jsonl", "--out", "{d}/outs"], "item 'b': text longer than max_len=12"),
]


@pytest.mark.parametrize(("argv", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(model, inputs, capsys, argv, message):
    lines = [{"id": "a", "image": "in.png", "box": [1, 1, 9, 9], "text": "ok"}]
    lines.append({"id": "b", "image": "in.png", "box": [1, 1, 9, 9], "text": "much too long here"})
    (inputs / "cases.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    before = sorted(inputs.rglob("*"))
    argv = [a.format(d=inputs) for a in argv]
    defaults = ["--out", str(inputs / "out.png")] if "--out" not in argv else []
    code = run(["--model", str(model), *argv, *defaults, *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert sorted(inputs.rglob("*")) == before


def test_corrupt_results_file_stops_the_resume(model, inputs, capsys):
    (inputs / "outs").mkdir()
    (inputs / "outs/results.jsonl").write_text("{half a line\n")
    item = {"id": "a", "image": "in.png", "box": "1,1,9,9", "text": "a"}
    (inputs / "cases.jsonl").write_text(json.dumps(item) + "\n")
    assert run(["--model", str(model), "--manifest", str(inputs / "cases.jsonl"), "--out", str(inputs / "outs")]) == 2
    assert "results.jsonl:1 is not a result line" in capsys.readouterr().err
    assert sorted(p.name for p in (inputs / "outs").iterdir()) == ["results.jsonl"]
