"""File plumbing shared by every stage: required local weights, safetensors, atomic writes.

Nothing here downloads: every pretrained file comes from a local path, and a missing one stops the
program with a message naming the path, the file expected and where it comes from.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


class MissingWeightsError(FileNotFoundError):
    """A pretrained file that must be on local disk is not there."""


def require_path(path: str | Path, expected: str, source: str) -> Path:
    """Return `path` if it exists; otherwise raise naming it, what it should be and where it comes from.

    `expected` describes the file ("SD-2-inpainting UNet: a diffusers folder or 512-inpainting-ema.ckpt"),
    `source` says where a user gets it ("stabilityai/stable-diffusion-2-inpainting on Hugging Face").
    """
    if not str(path):
        raise MissingWeightsError(f"no path given for {expected}; it comes from {source}")
    path = Path(path)
    if not path.exists():
        raise MissingWeightsError(f"{path} does not exist: expected {expected}, which comes from {source}")
    return path


def same_device_dir_tempfile(path: Path, suffix: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | Path, write: Any) -> Path:
    """Call `write(tmp_path)` then rename onto `path`, so a crash never leaves a half-written output.

    The file gets the permissions a plain `open(path, "w")` would give (mkstemp's are owner-only).
    """
    path = Path(path)
    tmp = same_device_dir_tempfile(path, path.suffix)
    try:
        write(tmp)
        os.chmod(tmp, _default_file_mode())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_image(path: str | Path, image: Any) -> Path:
    """Save a PIL image atomically; the format follows the final suffix."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(), "PNG")
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt))


def save_state_dict(state: Mapping[str, Any], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write tensors as safetensors (contiguous CPU copies), atomically."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_state_dict(path: str | Path, expected: str, source: str) -> dict[str, Any]:
    """Read a safetensors file (or a torch pickle for upstream .pth/.ckpt files) onto the CPU."""
    path = require_path(path, expected, source)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def load_strict(module: Any, state: Mapping[str, Any], expected_missing: Iterable[str] = (), what: str = "") -> None:
    """`load_state_dict(strict=True)` except for keys listed as expected to be missing.

    Any other missing or unexpected key is an error naming the first few offenders.
    """
    allowed = set(expected_missing)
    result = module.load_state_dict(dict(state), strict=False)
    missing = [k for k in result.missing_keys if k not in allowed]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:
        raise KeyError(
            f"{what or type(module).__name__}: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}"
        )
