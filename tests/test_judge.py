import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from udifftext.judge import (
    OcrJudge,
    box_to_quad,
    crop_quad,
    mask_to_quad,
    order_quad,
    recognizer_judge_from_export,
    recognizer_judge_from_folder,
)

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["hello", "World", "TEXT", "diffusion", "Paper"]


def judge_fonts() -> list[Path]:
    """Every font in data/fonts (the data engine's fonts), else the DejaVu fonts on disk."""
    fonts = sorted(p for p in (ROOT / "data/fonts").glob("*/*") if p.suffix in (".ttf", ".otf"))
    if not fonts:
        fonts = sorted(Path("/usr/share/fonts/truetype/dejavu").glob("*.ttf"))
    if len(fonts) < 3:
        pytest.skip("fewer than 3 fonts on disk")
    return fonts


def render_word(word: str, font: Path, size: int = 48) -> np.ndarray:
    """A clean dark-on-light word with a small margin, (h, w, 3) uint8."""
    face = ImageFont.truetype(str(font), size)
    left, top, right, bottom = face.getbbox(word)
    pad = size // 4
    img = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), (245, 240, 230))
    ImageDraw.Draw(img).text((pad - left, pad - top), word, font=face, fill=(20, 20, 40))
    return np.asarray(img)


@pytest.fixture(scope="module")
def judge():
    return OcrJudge()


def test_judge_reads_clean_words_in_several_fonts(judge):
    fonts = judge_fonts()
    crops = [render_word(w, f) for f in fonts for w in WORDS]
    targets = [w for _ in fonts for w in WORDS]
    start = time.perf_counter()
    preds = judge.read(crops)
    ms = 1000 * (time.perf_counter() - start) / len(crops)
    correct = sum(p.lower() == t.lower() for p, t in zip(preds, targets, strict=True))
    wrong = [(t, p) for p, t in zip(preds, targets, strict=True) if p.lower() != t.lower()]
    print(f"judge: {correct}/{len(crops)} over {len(fonts)} fonts, {ms:.1f} ms/crop, wrong: {wrong}")
    assert correct / len(crops) >= 0.95, wrong


def test_judge_describes_itself(judge):
    info = judge.describe()
    assert info["name"] == "rapidocr_onnxruntime"
    assert info["version"][0].isdigit()
    assert info["model"].endswith(".onnx") and "rec" in info["model"]


def test_blank_crop_reads_as_a_string(judge):
    (text,) = judge.read([np.full((32, 100, 3), 255, np.uint8)])
    assert isinstance(text, str)


def test_judge_rejects_bad_crops(judge):
    with pytest.raises(ValueError, match=r"crops\[0\].*uint8"):
        judge.read([np.zeros((32, 100, 3), np.float32)])
    with pytest.raises(ValueError, match=r"crops\[1\]"):
        judge.read([np.zeros((32, 100, 3), np.uint8), np.zeros((32, 100), np.uint8)])


def _rotated_scene(word: str, font: Path, angle: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The word pasted into a larger canvas and rotated: returns image, the word's quad, and its filled mask."""
    crop = render_word(word, font, 44)
    h, w = crop.shape[:2]
    canvas = np.full((260, 360, 3), (245, 240, 230), np.uint8)
    x0, y0 = (360 - w) // 2, (260 - h) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = crop
    import cv2

    matrix = cv2.getRotationMatrix2D((180, 130), angle, 1.0)
    image = cv2.warpAffine(canvas, matrix, (360, 260), borderMode=cv2.BORDER_REPLICATE)
    corners = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]], np.float32)
    quad = np.hstack([corners, np.ones((4, 1), np.float32)]) @ matrix.T.astype(np.float32)
    mask = np.zeros((260, 360), np.uint8)
    cv2.fillPoly(mask, [np.round(quad).astype(np.int32)], 1)
    return image, quad, mask.astype(bool)


def test_rotated_region_is_rectified_before_reading(judge):
    font = judge_fonts()[0]
    words = ["Station", "diffusion", "hello"]
    rectified, from_mask, unrectified = [], [], []
    for word, angle in zip(words, (30, -35, 40), strict=True):
        image, quad, mask = _rotated_scene(word, font, angle)
        rectified.append(crop_quad(image, quad))
        from_mask.append(crop_quad(image, mask_to_quad(mask)))
        ys, xs = np.nonzero(mask)
        unrectified.append(image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
    assert judge.read(rectified) == words
    assert judge.read(from_mask) == words
    assert judge.read(unrectified) != words  # the axis-aligned box of a rotated word does not read


def test_mask_to_quad_of_a_box_is_exact_and_crop_slices():
    mask = np.zeros((40, 60), bool)
    mask[5:17, 10:50] = True
    quad = mask_to_quad(mask)
    np.testing.assert_array_equal(quad, box_to_quad((10, 5, 50, 17)))
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    np.testing.assert_array_equal(crop_quad(image, quad), image[5:17, 10:50])


def test_order_quad_and_region_errors():
    shuffled = np.array([[10, 20], [0, 0], [10, 0], [0, 20]])
    np.testing.assert_array_equal(order_quad(shuffled), [[0, 0], [10, 0], [10, 20], [0, 20]])
    with pytest.raises(ValueError, match="empty"):
        mask_to_quad(np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="x1 > x0"):
        box_to_quad((5, 0, 5, 3))


def tiny_reader_input(crops: list[np.ndarray]):
    """The crops as the tiny config's recognizer takes them, built independently of RecognizerJudge: grayscale,
    bilinear to 16 x 64, (B, 1, 16, 64) in [0, 1]."""
    import torch
    import torch.nn.functional as F

    gray = [torch.from_numpy(c.astype(np.float32) / 255).mean(2)[None, None] for c in crops]
    return torch.cat([F.interpolate(g, size=(16, 64), mode="bilinear") for g in gray])


def test_our_recognizer_is_a_second_judge_from_a_pipeline_folder(tmp_path):
    import torch

    from udifftext.checkpoint import MODEL_CONFIG, PART_FILES
    from udifftext.config import UNetStageConfig, load_config, save_config
    from udifftext.io import save_state_dict
    from udifftext.recognizer.vitstr import ViTSTR

    assert recognizer_judge_from_folder(tmp_path) is None  # no recognizer in the folder
    cfg = load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml")
    save_config(cfg, tmp_path, MODEL_CONFIG)
    torch.manual_seed(0)
    recognizer = ViTSTR(cfg.recognizer)
    save_state_dict(recognizer.state_dict(), tmp_path / PART_FILES["recognizer"])
    second = recognizer_judge_from_folder(tmp_path)
    crops = [render_word("hello", judge_fonts()[0]), render_word("Paper", judge_fonts()[0])]
    texts = second.read(crops)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert texts == recognizer.eval().read(tiny_reader_input(crops))  # same reading as the module on the same input
    assert second.describe()["name"] == "vitstr"
    ids = recognizer.tokenizer.encode(["hello", "Paper"])
    expected = recognizer.sequence_loss(recognizer(tiny_reader_input(crops)), ids)
    losses = second.losses(crops, ["hello", "Paper"])
    assert losses == pytest.approx(expected.tolist(), rel=1e-5)
    assert second.losses(crops, ["Paper", "hello"]) != pytest.approx(losses)  # the loss is of the asked text


def test_a_recognizer_export_is_a_second_judge(tmp_path):
    import torch

    from udifftext.config import ConfigError, EvalConfig, UNetStageConfig, load_config, save_config
    from udifftext.evaluation import build_second_judge
    from udifftext.io import MissingWeightsError, save_state_dict
    from udifftext.recognizer.vitstr import ViTSTR

    cfg = load_config(UNetStageConfig, ROOT / "configs/unet/tiny.yaml").recognizer
    torch.manual_seed(0)
    recognizer = ViTSTR(cfg).eval()
    save_state_dict(recognizer.state_dict(), tmp_path / "reader.safetensors")
    with pytest.raises(MissingWeightsError, match="reader.yaml"):  # weights without their config
        recognizer_judge_from_export(tmp_path / "reader.safetensors")
    save_config(cfg, tmp_path, "reader.yaml")
    second = recognizer_judge_from_export(tmp_path / "reader.safetensors")
    crops = [render_word(word, judge_fonts()[0]) for word in WORDS]
    texts = second.read(crops)
    assert all(texts) and texts == recognizer.read(tiny_reader_input(crops))  # a random reader still reads something
    evaluation_cfg = EvalConfig(second_judge_weights=str(tmp_path / "reader.safetensors"))
    assert build_second_judge(evaluation_cfg).describe()["model"] == str(tmp_path / "reader.safetensors")
    with pytest.raises(ConfigError, match="second_judge is false"):
        build_second_judge(EvalConfig(second_judge=False, second_judge_weights=str(tmp_path / "reader.safetensors")))
