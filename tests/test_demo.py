"""The demo's logic without a browser: page inputs -> regions and texts, readable messages for every bad input,
one run on a tiny random-weight pipeline, the model fallback, and scripts/demo.py's CLI (fast --help, bad --model).
The real-browser test is tests/test_demo_browser.py."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udifftext.config import NoiseSelectionConfig, SampleConfig, UNetStageConfig, load_config
from udifftext.demo import (
    collect_inputs,
    example_rows,
    layer_masks,
    load_demo_pipeline,
    parse_boxes,
    parse_texts,
    run_demo,
    sample_config,
)

ROOT = Path(__file__).resolve().parents[1]
STOREFRONT = ROOT / "data/examples/storefront.png"
BOX = (52, 38, 268, 79)
FAST = SampleConfig(steps=1, noise_selection=NoiseSelectionConfig(enabled=False))


@pytest.fixture(scope="module")
def pipe():
    from udifftext.pipeline import UDiffTextPipeline

    return UDiffTextPipeline.from_config(load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml"))


def editor(layers: list | None = None) -> dict:
    """What gr.ImageEditor(type='numpy', image_mode='RGBA') hands the callback."""
    background = np.asarray(Image.open(STOREFRONT).convert("RGBA"))  # (H, W, 4)
    return {"background": background, "layers": layers or [], "composite": background}


def painted_layer(box: tuple[int, int, int, int], size: tuple[int, int] = (320, 240)) -> np.ndarray:
    layer = np.zeros((size[1], size[0], 4), np.uint8)  # (H, W, 4) transparent
    x0, y0, x1, y1 = box
    layer[y0:y1, x0:x1] = (255, 64, 160, 255)
    return layer


def run(pipe, page_editor, boxes: str, texts: str, **settings):
    args = {"seed": 0, "steps": 1, "guidance": 3.0, "candidates": 1, "refine": False, **settings}
    return run_demo(pipe, FAST, page_editor, boxes, texts, **args)


def test_parse_texts_and_boxes():
    assert parse_texts("  open \n\nCOFFEE\r\n") == ["open", "COFFEE"]
    assert parse_texts(None) == []
    assert [b.value for b in parse_boxes("52,38,268,79\n\n 1, 2, 30.4, 40 ")] == [BOX, (1, 2, 30, 40)]
    with pytest.raises(ValueError, match=r"box line 2 must be x0,y0,x1,y1 \(four numbers\), got '1,2,3'"):
        parse_boxes("52,38,268,79\n1,2,3")


def test_layer_masks_use_alpha_skip_empty_layers_and_match_the_image_size():
    empty = np.zeros((240, 320, 4), np.uint8)
    masks = layer_masks([empty, painted_layer((10, 20, 30, 40)), None], (320, 240))
    assert [number for number, _ in masks] == [2]  # layer numbers as the user sees them
    assert masks[0][1].sum() == 20 * 20 and masks[0][1][20:40, 10:30].all()
    half = painted_layer((5, 10, 15, 20), (160, 120))  # a canvas at half the image size
    [(_, mask)] = layer_masks([half], (320, 240))
    assert mask.shape == (240, 320) and mask[20:40, 10:30].all() and mask.sum() == 400


def test_collect_inputs_pairs_layers_then_boxes_with_texts():
    inputs = collect_inputs(editor([painted_layer((230, 150, 290, 180))]), "52,38,268,79", "open\nCOFFEE")
    assert inputs.labels == ["layer 1", "box 1"] and inputs.texts == ["open", "COFFEE"]
    assert inputs.image.mode == "RGB" and inputs.image.size == (320, 240)
    assert inputs.regions[0].kind == "mask" and inputs.regions[1].value == BOX


@pytest.mark.parametrize(
    ("page_editor", "boxes", "texts", "message"),
    [
        (None, "", "open", "no image: upload one in the editor"),
        ({"background": None, "layers": [], "composite": None}, "1,1,9,9", "a", "no image"),
        ("EMPTY", "", "open", "no region drawn: paint over the place for the text with the brush"),
        ("EMPTY", "52,38,268,79\n0,0,10,10", "COFFEE", r"2 region\(s\) \(box 1, box 2\) but 1 text\(s\)"),
        ("EMPTY", "52,38,268,79", "", r"1 region\(s\) \(box 1\) but 0 text\(s\)"),
    ],
)
def test_collect_inputs_explains_what_is_missing(page_editor, boxes, texts, message):
    page_editor = editor([np.zeros((240, 320, 4), np.uint8)]) if page_editor == "EMPTY" else page_editor
    with pytest.raises(ValueError, match=message):
        collect_inputs(page_editor, boxes, texts)


@pytest.mark.parametrize(
    ("boxes", "texts", "message"),
    [
        ("", "open", "no region drawn"),
        ("52,38,268,79", "HELLOWORLDXYZ", r"text longer than max_len=12: 'HELLOWORLDXYZ' \(13 chars\)"),
        ("52,38,268,79", "café", r"text 'café' has characters outside the alphabet: \['é'\]"),
        ("52,38,268,79", "open\nCOFFEE", r"1 region\(s\) \(box 1\) but 2 text\(s\)"),
        ("52,38,400,79", "COFFEE", r"box 52,38,400,79 must satisfy .* \(image is 320x240\)"),
        ("a,b,c,d", "COFFEE", "box line 1 must be x0,y0,x1,y1"),
    ],
)
def test_bad_inputs_become_a_readable_status_and_no_output(pipe, boxes, texts, message):
    image, crops, attention, preview, status = run(pipe, editor(), boxes, texts)
    assert image is None and crops == [] and attention is None and preview is None
    assert status.startswith("**Cannot run:** ")
    assert re.search(message, status), status


def test_a_run_changes_only_the_regions_and_returns_crops_attention_and_a_preview(pipe):
    layer = painted_layer((230, 150, 290, 180))
    image, crops, attention, preview, status = run(pipe, editor([layer]), "52,38,268,79", "open\nCOFFEE", candidates=2)
    before = np.asarray(Image.open(STOREFRONT).convert("RGB")).astype(int)
    changed = np.abs(np.asarray(image).astype(int) - before).sum(-1) > 0  # (H, W)
    inside = np.zeros_like(changed)
    inside[38:79, 52:268] = inside[150:180, 230:290] = True
    assert not changed[~inside].any()  # bit-identical outside the regions
    assert changed[38:79, 52:268].mean() > 0.5 and changed[150:180, 230:290].mean() > 0.5
    assert [caption for _, caption in crops] == ["1: 'open'", "2: 'COFFEE'"]
    assert all(crop.size == (64, 64) for crop, _ in crops)
    assert attention.size == (64 * 7, 2 * (16 + 64))  # per region: caption band, crop + one map per character
    assert preview.size == (320, 240)
    assert status.startswith("**Done** in ") and "layer 1 → 'open', box 1 → 'COFFEE' (seed 0, 1 steps)" in status


def test_the_seed_setting_reaches_the_pipeline(pipe):
    first = run(pipe, editor(), "52,38,268,79", "COFFEE", seed=3)
    other = run(pipe, editor(), "52,38,268,79", "COFFEE", seed=4)
    assert "(seed 3, 1 steps)" in first[-1] and "(seed 4, 1 steps)" in other[-1]
    assert not np.array_equal(np.asarray(first[0]), np.asarray(other[0]))


def test_sample_config_maps_the_page_settings():
    base = SampleConfig()
    cfg = sample_config(base, 7.0, 12.0, 4.5, 1, True)
    assert (cfg.seed, cfg.steps, cfg.guidance_scale) == (7, 12, 4.5)
    assert not cfg.noise_selection.enabled and cfg.refinement.enabled
    cfg = sample_config(base, 0, 20, 3, 6, False)
    assert cfg.noise_selection.enabled and cfg.noise_selection.candidates == 6 and not cfg.refinement.enabled
    assert base.noise_selection.candidates == 10 and not base.refinement.enabled  # the base is not modified
    with pytest.raises(ValueError, match="seed must be a whole number, got an empty field"):
        sample_config(base, None, 20, 3, 6, False)


def test_bundled_examples_exist_and_pair_regions_with_texts():
    for value, boxes, texts in example_rows():
        paths = [value["background"], value["composite"], *value["layers"]]
        assert all(Path(p).is_file() for p in paths)
        layers = [np.asarray(Image.open(p)) for p in value["layers"]]
        page = {**value, "background": np.asarray(Image.open(value["background"])), "layers": layers}
        inputs = collect_inputs(page, boxes, texts)
        assert len(inputs.regions) == len(inputs.texts)


def test_load_demo_pipeline_falls_back_only_for_the_default_folder(tmp_path, capsys):
    from udifftext.io import MissingWeightsError

    pipe, note = load_demo_pipeline(str(tmp_path / "default"), "cpu", explicit=False)
    assert pipe.source.startswith("random weights") and "RANDOM weights" in note
    assert "RANDOM weights" in capsys.readouterr().err
    with pytest.raises(MissingWeightsError, match="does not exist"):
        load_demo_pipeline(str(tmp_path / "given"), "cpu", explicit=True)


def test_demo_script_help_is_fast_and_a_missing_model_is_a_one_line_error(tmp_path, capsys):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "scripts/demo.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "--model" in done.stdout and "127.0.0.1" in done.stdout
    assert time.perf_counter() - start < 5
    pytest.importorskip("gradio", reason="the demo extra (gradio) is not installed")
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts/demo.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    missing = tmp_path / "nothing"
    assert script.main(script.parse_args(["--model", str(missing), "--device", "cpu"])) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {missing} does not exist")
    assert script.main(script.parse_args(["--device", "cpu", "steps=0"])) == 2
    assert capsys.readouterr().err.strip() == "error: steps must be >= 1, got 0"
