"""OCR judges: read the text in generated regions with a recognizer that is independent of our models.

SeqAcc is only meaningful if the reader was not trained with the generator, so the main judge is
`rapidocr_onnxruntime` (PP-OCRv4 recognition, ONNX models shipped inside the wheel, no network),
run in recognition-only mode on the tight region crop: detection on a tight crop misses words
(../shared/MEASUREMENTS.md: 40-43/60 with detection vs 59/60 without). Our own ViTSTR is reported as a
second judge beside it, never alone.

Regions are quadrilaterals (4, 2) in pixel (x, y) order top-left, top-right, bottom-right, bottom-left;
a rotated or perspective region is rectified by a perspective warp before reading.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

Reader = Callable[[list[np.ndarray]], list[str]]  # crops -> texts: a judge's `read`, or any reader compared beside it


class Judge(Protocol):
    name: str

    def read(self, crops: list[np.ndarray]) -> list[str]: ...

    def describe(self) -> dict[str, str]: ...


# --------------------------------------------------------------------------- regions


def box_to_quad(box: list[float] | tuple[float, ...]) -> np.ndarray:
    """Axis-aligned box (x0, y0, x1, y1), exclusive right/bottom edge -> quad (4, 2) float32."""
    if len(box) != 4:
        raise ValueError(f"box must be (x0, y0, x1, y1), got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box must have x1 > x0 and y1 > y0, got {box!r}")
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float32)


def order_quad(points: np.ndarray) -> np.ndarray:
    """Order 4 points as top-left, top-right, bottom-right, bottom-left (text rotated by less than 45 degrees)."""
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    s, d = pts.sum(axis=1), pts[:, 1] - pts[:, 0]
    return np.stack([pts[s.argmin()], pts[d.argmin()], pts[s.argmax()], pts[d.argmax()]])


def mask_to_quad(mask: np.ndarray) -> np.ndarray:
    """Tightest rotated rectangle around the mask's pixels, as a quad (4, 2) in pixel-edge coordinates.

    An axis-aligned rectangular mask gives exactly its box; a filled rotated polygon gives its rotated box.
    """
    import cv2

    ys, xs = np.nonzero(np.asarray(mask))
    if len(xs) == 0:
        raise ValueError("mask is empty: expected at least one pixel marking the text region")
    if ys.min() == ys.max() or xs.min() == xs.max() or _is_full_box(mask, xs, ys):
        return box_to_quad((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    # Pixel centres +0.5 on each side so the rectangle covers whole pixels, as the box case does.
    corners = np.concatenate([np.stack([xs, ys], 1) + off for off in ((0, 0), (1, 0), (0, 1), (1, 1))])
    return order_quad(cv2.boxPoints(cv2.minAreaRect(corners.astype(np.float32))))


def _is_full_box(mask: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> bool:
    return len(xs) == (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Crop an (H, W, 3) uint8 image to a quad; axis-aligned quads are sliced, others perspective-warped."""
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    quad = np.asarray(quad, dtype=np.float32).reshape(4, 2)
    tl, tr, br, bl = quad
    if tl[1] == tr[1] and bl[1] == br[1] and tl[0] == bl[0] and tr[0] == br[0]:
        h, w = image.shape[:2]
        x0, y0 = max(int(round(tl[0])), 0), max(int(round(tl[1])), 0)
        x1, y1 = min(int(round(br[0])), w), min(int(round(br[1])), h)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"region {quad.tolist()} lies outside the image of size {w}x{h}")
        return np.ascontiguousarray(image[y0:y1, x0:x1])
    out_w = max(int(round(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))), 1)
    out_h = max(int(round(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))), 1)
    target = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    return cv2.warpPerspective(image, matrix, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _check_crops(crops: list[np.ndarray]) -> None:
    for i, crop in enumerate(crops):
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8 or min(crop.shape[:2]) == 0:
            raise ValueError(f"crops[{i}] must be a non-empty (h, w, 3) uint8 RGB array, got {crop.shape} {crop.dtype}")


# --------------------------------------------------------------------------- judges


class OcrJudge:
    """rapidocr_onnxruntime recognition (PP-OCRv4) on each crop, the independent judge of SeqAcc."""

    name = "rapidocr_onnxruntime"

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self.engine = RapidOCR()
        self.version = importlib.metadata.version("rapidocr_onnxruntime")
        self.model = _rapidocr_rec_model()

    def read(self, crops: list[np.ndarray]) -> list[str]:
        """Read RGB uint8 crops (h, w, 3); an unreadable crop reads as ""."""
        _check_crops(crops)
        texts = []
        for crop in crops:
            bgr = np.ascontiguousarray(crop[:, :, ::-1])
            result, _ = self.engine(bgr, use_det=False, use_cls=False, use_rec=True)
            texts.append(str(result[0][0]).strip() if result else "")
        return texts

    def describe(self) -> dict[str, str]:
        return {
            "name": self.name,
            "version": self.version,
            "model": self.model,
            "mode": "recognition only (use_det=False, use_cls=False) on the rectified region crop",
        }


def _rapidocr_rec_model() -> str:
    """File name of the recognition model rapidocr loads, read from the package's own config.yaml."""
    import rapidocr_onnxruntime
    import yaml

    config = yaml.safe_load((Path(rapidocr_onnxruntime.__file__).parent / "config.yaml").read_text())
    return Path(config["Rec"]["model_path"]).name


class RecognizerJudge:
    """Our ViTSTR (udifftext/recognizer/vitstr.py) as a second judge: grayscale crops resized to its input size."""

    name = "vitstr"

    def __init__(self, recognizer: Any, img_height: int, img_width: int, source: str) -> None:
        self.recognizer = recognizer.eval()
        self.size = (img_height, img_width)
        self.source = source

    def inputs(self, crops: list[np.ndarray]) -> Any:
        """RGB uint8 crops -> (B, 1, h, w) grayscale in [0, 1] at the recognizer's input size."""
        import torch
        import torch.nn.functional as F

        _check_crops(crops)
        batch = []
        for crop in crops:
            gray = torch.from_numpy(crop.astype(np.float32) / 255.0).mean(dim=2)[None, None]  # (1, 1, h, w)
            batch.append(F.interpolate(gray, size=self.size, mode="bilinear", align_corners=False))
        return torch.cat(batch)

    def read(self, crops: list[np.ndarray]) -> list[str]:
        import torch

        with torch.no_grad():
            return list(self.recognizer.read(self.inputs(crops)))

    def losses(self, crops: list[np.ndarray], texts: list[str]) -> list[float]:
        """The recognizer's per-crop loss on reading `texts[i]` in `crops[i]` (`ViTSTR.sequence_loss`): lower is
        more legible as that text."""
        import torch

        ids = self.recognizer.tokenizer.encode(texts)  # (B, max_len)
        with torch.no_grad():
            return self.recognizer.sequence_loss(self.recognizer(self.inputs(crops)), ids).tolist()

    def describe(self) -> dict[str, str]:
        return {"name": self.name, "version": "ours", "model": self.source, "mode": "grayscale crop, greedy decode"}


def recognizer_judge_from_folder(folder: str | Path) -> RecognizerJudge | None:
    """Our recognizer from a pipeline folder's recognizer.safetensors, or None when the folder has none."""
    from udifftext.checkpoint import FOLDER_SOURCE, MODEL_CONFIG, PART_FILES
    from udifftext.config import UNetStageConfig, load_config
    from udifftext.io import load_state_dict, load_strict

    folder = Path(folder)
    weights = folder / PART_FILES["recognizer"]
    if not weights.is_file() or not (folder / MODEL_CONFIG).is_file():
        return None
    from udifftext.recognizer.vitstr import ViTSTR

    cfg = load_config(UNetStageConfig, folder / MODEL_CONFIG).recognizer
    recognizer = ViTSTR(cfg)
    what = "recognizer weights of the pipeline folder"
    load_strict(recognizer, load_state_dict(weights, what, FOLDER_SOURCE), what=what)
    return RecognizerJudge(recognizer, cfg.img_height, cfg.img_width, str(weights))


def recognizer_judge_from_export(weights: str | Path) -> RecognizerJudge:
    """Our recognizer from a `train_encoder.py` export: `weights` (.safetensors) and its config .yaml beside it,
    as in checkpoints/encoders/ (read instead of the pipeline folder's, which may be an older generation)."""
    from udifftext.config import RecognizerConfig, load_config
    from udifftext.io import require_path
    from udifftext.recognizer.vitstr import load_recognizer

    weights = Path(weights)
    config = require_path(
        weights.with_suffix(".yaml"),
        f"the recognizer config exported beside {weights.name}",
        "scripts/train_encoder.py (its export/ folder) or checkpoints/encoders/",
    )
    cfg = load_config(RecognizerConfig, config, [f"weights={weights}"])
    return RecognizerJudge(load_recognizer(cfg), cfg.img_height, cfg.img_width, str(weights))


def build_judge(name: str) -> OcrJudge:
    """The main judge named in EvalConfig.judge."""
    if name != "rapidocr":
        raise ValueError(f"judge must be 'rapidocr', got {name!r}")
    return OcrJudge()
