"""Read upstream files from local disk, map them (sd2.py / upstream.py) and build our loaded parts.

Every file is read once; a missing one raises `MissingWeightsError` naming the file expected and where
it comes from. The result is a `PipelineParts` ready for `udifftext.checkpoint.save_pipeline_folder`,
plus a report saying where each part came from and what was ignored.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from udifftext.checkpoint import PipelineParts, without_weight_paths
from udifftext.config import UNetStageConfig
from udifftext.convert.common import check_state, unwrap_checkpoint
from udifftext.convert.sd2 import LDM_VAE, sd2_unet_state, vae_state
from udifftext.convert.upstream import ignored_parts, label_encoder_prefix, label_encoder_state, upstream_unet_state
from udifftext.io import MissingWeightsError, load_state_dict, load_strict, require_path

SD2_EXPECTED = "SD-2-inpainting weights: the diffusers folder (unet/ and vae/) or 512-inpainting-ema.ckpt"
SD2_SOURCE = "stabilityai/stable-diffusion-2-inpainting on Hugging Face (download it yourself; nothing is fetched)"
UPSTREAM_EXPECTED = "the UDiffText UNet checkpoint (Lightning .ckpt of the sgm DiffusionEngine)"
RELEASE = "the UDiffText release (Google Drive folder linked from github.com/ZYM-PKU/UDiffText)"
VAE_EXPECTED = "the VAE AE_inpainting_2.safetensors (or a diffusers vae/ folder)"
ENCODER_EXPECTED = "the LabelEncoder checkpoint epoch=19-step=7820.ckpt"
RECOGNIZER_EXPECTED = "ViTSTR-Base vitstr_base_patch16_224.pth"
DIFFUSERS_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")
DIFFUSERS_FILES += ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin")


def diffusers_file(folder: Path, part: str) -> Path:
    """The weights file of `folder/part/` in a diffusers pipeline folder."""
    for name in DIFFUSERS_FILES:
        if (folder / part / name).is_file():
            return folder / part / name
    expected = f"{part}/{DIFFUSERS_FILES[0]} of the SD-2-inpainting diffusers folder ({SD2_SOURCE})"
    raise MissingWeightsError(f"{folder / part / DIFFUSERS_FILES[0]} does not exist: expected {expected}")


def read(path: str | Path, expected: str, source: str) -> dict[str, Any]:
    """A state dict from a .safetensors / .ckpt / .pth / .bin file (Lightning checkpoints unwrapped)."""
    return unwrap_checkpoint(load_state_dict(path, expected, source))


def _load(module: Any, state: dict[str, Any], what: str, expected_missing: list[str] | tuple = ()) -> Any:
    check_state(module.state_dict(), state, what, expected_missing)
    load_strict(module, state, expected_missing, what=what)
    return module.eval()


def _parts(cfg: UNetStageConfig, seed: int) -> tuple[Any, Any, Any]:
    """Our modules, randomly initialised from the config (weights replaced by the caller)."""
    from udifftext.first_stage import build_first_stage
    from udifftext.text.encoder import CharTextEncoder
    from udifftext.unet.model import build_unet

    torch.manual_seed(seed)
    return build_unet(cfg), CharTextEncoder(cfg.text_encoder), build_first_stage(cfg.first_stage)


def _clean(cfg: UNetStageConfig) -> UNetStageConfig:
    """The config the parts are built from: no weight paths (conversion loads everything itself)."""
    if cfg.first_stage.kind != "vae":
        raise ValueError(f"conversion needs first_stage.kind=vae (SD-2 latent space), got '{cfg.first_stage.kind}'")
    if cfg.unet.mode != "udifftext":
        raise ValueError(f"conversion needs unet.mode=udifftext, got '{cfg.unet.mode}'")
    return without_weight_paths(cfg)


def _require_inputs(vae: str | None, encoder: str | None, recognizer: str | None) -> None:
    """Fail on a missing optional file before any slow reading or building."""
    for path, expected, where in (
        (vae, VAE_EXPECTED, "checkpoints/AEs/"),
        (encoder, ENCODER_EXPECTED, "checkpoints/encoders/LabelEncoder/"),
        (recognizer, RECOGNIZER_EXPECTED, "checkpoints/encoders/ViTSTR/"),
    ):
        if path:
            require_path(path, expected, f"{RELEASE}, {where}")


def _recognizer(cfg: UNetStageConfig, path: str | None, report: dict[str, str]) -> Any:
    if not path:
        return None
    from udifftext.recognizer.vitstr import load_recognizer

    report["recognizer"] = str(path)
    return load_recognizer(replace(cfg.recognizer, weights=str(path))).eval()


def _encoder_from_file(encoder: Any, path: str, report: dict[str, str]) -> None:
    state = read(path, ENCODER_EXPECTED, f"{RELEASE}, checkpoints/encoders/LabelEncoder/")
    _load(encoder, label_encoder_state(state), f"LabelEncoder {path}")
    report["text_encoder"] = str(path)


def convert_sd2(
    path: str | Path,
    cfg: UNetStageConfig,
    vae: str | None = None,
    encoder: str | None = None,
    recognizer: str | None = None,
    seed: int = 0,
) -> tuple[PipelineParts, dict[str, str]]:
    """SD-2-inpainting (diffusers folder or LDM single file) -> our parts: base UNet with a fresh char
    cross-attention (zero output, so it computes SD-2-inpainting without text), SD-2's VAE (or `vae`),
    the LabelEncoder `encoder` if given (else a random encoder: it has no effect until the UNet is trained)."""
    cfg = _clean(cfg)
    path = require_path(path, SD2_EXPECTED, SD2_SOURCE)
    _require_inputs(vae, encoder, recognizer)
    from udifftext.unet.model import diffusers_unet_kwargs

    kwargs = diffusers_unet_kwargs(cfg)
    if path.is_dir():
        unet_state = read(diffusers_file(path, "unet"), SD2_EXPECTED, SD2_SOURCE)
        vae_source = None if vae else read(diffusers_file(path, "vae"), SD2_EXPECTED, SD2_SOURCE)
    else:
        unet_state = vae_source = read(path, SD2_EXPECTED, SD2_SOURCE)
        if not vae and not any(k.startswith(LDM_VAE) for k in unet_state):
            raise MissingWeightsError(f"{path} holds no {LDM_VAE}* keys: give --vae with {VAE_EXPECTED} ({SD2_SOURCE})")
    unet_mapped = sd2_unet_state(unet_state, kwargs)  # layout errors surface before the slow model build
    if vae:
        vae_source = read(vae, VAE_EXPECTED, f"{RELEASE}, checkpoints/AEs/")
    vae_mapped = vae_state(vae_source, cfg.first_stage, f"VAE {vae or path}")
    unet, text_encoder, first_stage = _parts(cfg, seed)
    _load(unet, unet_mapped, f"SD-2-inpainting UNet {path}", unet.cross_attention_parameter_names())
    _load(first_stage, vae_mapped, f"VAE {vae or path}")
    report = {"unet": f"{path} (char cross-attention newly initialised)", "first_stage": str(vae or path)}
    if encoder:
        _encoder_from_file(text_encoder, encoder, report)
    else:
        report["text_encoder"] = f"random (seed {seed}): give --encoder {ENCODER_EXPECTED.split()[-1]}"
    parts = PipelineParts(cfg, unet, text_encoder.eval(), first_stage, _recognizer(cfg, recognizer, report))
    return parts, report


def convert_upstream(
    path: str | Path,
    cfg: UNetStageConfig,
    vae: str | None = None,
    encoder: str | None = None,
    recognizer: str | None = None,
) -> tuple[PipelineParts, dict[str, str]]:
    """A UDiffText checkpoint -> our parts. The VAE and the char encoder come from `vae` / `encoder` when
    given, else from the checkpoint itself (``first_stage_model.*``, ``conditioner.embedders.K.*``)."""
    cfg = _clean(cfg)
    require_path(path, UPSTREAM_EXPECTED, f"{RELEASE}, checkpoints/")
    _require_inputs(vae, encoder, recognizer)
    state = read(path, UPSTREAM_EXPECTED, f"{RELEASE}, checkpoints/")
    if not vae and not any(k.startswith(LDM_VAE) for k in state):
        raise MissingWeightsError(f"{path} holds no {LDM_VAE}* keys: give --vae with {VAE_EXPECTED} ({RELEASE})")
    if not encoder and label_encoder_prefix(state) is None:
        hint = f"give --encoder with {ENCODER_EXPECTED} ({RELEASE})"
        raise MissingWeightsError(f"{path} holds no LabelEncoder keys: {hint}")
    from udifftext.unet.model import diffusers_unet_kwargs

    unet_mapped = upstream_unet_state(state, diffusers_unet_kwargs(cfg), cfg.text_encoder.width)
    if vae:
        vae_source, what = read(vae, VAE_EXPECTED, f"{RELEASE}, checkpoints/AEs/"), f"VAE {vae}"
    else:
        vae_source, what = state, f"VAE {path} ({LDM_VAE}*)"
    vae_mapped = vae_state(vae_source, cfg.first_stage, what)  # layout errors surface before the slow model build
    unet, text_encoder, first_stage = _parts(cfg, 0)
    _load(unet, unet_mapped, f"UDiffText UNet {path}")
    _load(first_stage, vae_mapped, what)
    report = {"unet": str(path), "first_stage": what.removeprefix("VAE ")}
    if encoder:
        _encoder_from_file(text_encoder, encoder, report)
    else:
        what = f"LabelEncoder in {path} ({label_encoder_prefix(state)}*)"
        _load(text_encoder, label_encoder_state(state), what)
        report["text_encoder"] = what.removeprefix("LabelEncoder in ")
    ignored = ignored_parts(state)
    if ignored:
        report["ignored"] = ", ".join(f"{k} ({n} keys)" for k, n in ignored.items())
    parts = PipelineParts(cfg, unet, text_encoder.eval(), first_stage, _recognizer(cfg, recognizer, report))
    return parts, report
