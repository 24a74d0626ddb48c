"""The pipeline folder: everything sampling needs, written once and loaded without conversion.

Layout (written by training export, `UDiffTextPipeline.save_pretrained` and `convert_checkpoint.py`)::

    FOLDER/model.yaml                  the resolved UNetStageConfig describing every part
    FOLDER/unet.safetensors            full UNet state dict, replaced cross-attention included
    FOLDER/text_encoder.safetensors    CharTextEncoder without pretraining heads
    FOLDER/first_stage.safetensors     the VAE (absent for an identity first stage)
    FOLDER/recognizer.safetensors      optional: ViTSTR used by L_ocr and as a second judge

Weights given by path in the config (`unet.base_weights`, `text_encoder.weights`, ...) are ignored
when loading a folder: the folder's own files are the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from udifftext.config import UNetStageConfig, load_config, save_config
from udifftext.io import load_state_dict, load_strict, require_path, save_state_dict

MODEL_CONFIG = "model.yaml"
PART_FILES = {
    "unet": "unet.safetensors",
    "text_encoder": "text_encoder.safetensors",
    "first_stage": "first_stage.safetensors",
    "recognizer": "recognizer.safetensors",
}
FOLDER_SOURCE = "`scripts/train_unet.py` (export), `scripts/convert_checkpoint.py`, or the shipped checkpoints/"


@dataclass
class PipelineParts:
    cfg: UNetStageConfig
    unet: Any
    text_encoder: Any
    first_stage: Any
    recognizer: Any | None


def without_weight_paths(cfg: UNetStageConfig) -> UNetStageConfig:
    """`cfg` with every weight path emptied: a folder's config must not point at files outside the folder,
    and conversion (`udifftext.convert.build`) loads every file itself."""
    return replace(
        cfg,
        unet=replace(cfg.unet, base_weights=""),
        text_encoder=cfg.text_encoder.exported(),
        first_stage=replace(cfg.first_stage, weights=""),
        recognizer=cfg.recognizer.exported(),
        init_from="",
    )


def save_pipeline_folder(folder: str | Path, parts: PipelineParts) -> Path:
    """Write a pipeline folder (see the module docstring) from built modules."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(without_weight_paths(parts.cfg), folder, MODEL_CONFIG)
    modules = {"unet": parts.unet, "text_encoder": parts.text_encoder, "recognizer": parts.recognizer}
    if parts.cfg.first_stage.kind != "identity":
        modules["first_stage"] = parts.first_stage
    for name, module in modules.items():
        if module is not None:
            save_state_dict(module.state_dict(), folder / PART_FILES[name])
    return folder


def load_pipeline_folder(folder: str | Path, overrides: list[str] | None = None) -> PipelineParts:
    """Build every part from `model.yaml` and load its weights strictly from the folder."""
    from udifftext.first_stage import build_first_stage
    from udifftext.recognizer.vitstr import ViTSTR
    from udifftext.text.encoder import CharTextEncoder
    from udifftext.unet.model import build_unet

    folder = require_path(folder, "a udifftext pipeline folder with model.yaml and *.safetensors", FOLDER_SOURCE)
    config_path = require_path(folder / MODEL_CONFIG, "the pipeline's model.yaml", FOLDER_SOURCE)
    cfg = without_weight_paths(load_config(UNetStageConfig, config_path, overrides))

    def load(module: Any, name: str) -> Any:
        what = f"{name} weights of the pipeline folder"
        load_strict(module, load_state_dict(folder / PART_FILES[name], what, FOLDER_SOURCE), what=what)
        return module.eval()

    unet = load(build_unet(cfg), "unet")
    text_encoder = load(CharTextEncoder(cfg.text_encoder), "text_encoder")
    first_stage = build_first_stage(cfg.first_stage)
    if cfg.first_stage.kind != "identity":
        load(first_stage, "first_stage")
    recognizer = None
    if (folder / PART_FILES["recognizer"]).exists():
        recognizer = load(ViTSTR(cfg.recognizer), "recognizer")
    return PipelineParts(cfg, unet, text_encoder, first_stage.eval(), recognizer)
