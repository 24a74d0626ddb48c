"""Per-character attention heatmaps over the generated crop, for the record and the PNG outputs."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def character_heatmaps(maps: list[torch.Tensor], num_chars: int, size: tuple[int, int]) -> np.ndarray:
    """Layer-averaged maps of the first `num_chars` tokens, upsampled to `size` (H, W), each scaled to [0, 1].

    maps: captured cond-half maps, each (1, L, h_l, w_l). Returns (num_chars, H, W) float32.
    """
    up = [F.interpolate(m[:, :num_chars].float(), size=size, mode="bilinear", align_corners=False) for m in maps]
    heat = torch.stack(up).mean(0)[0]  # (num_chars, H, W)
    low = heat.amin(dim=(1, 2), keepdim=True)
    high = heat.amax(dim=(1, 2), keepdim=True)
    return ((heat - low) / (high - low).clamp_min(1e-12)).cpu().numpy().astype(np.float32)


def heatmap_strip(crop: Image.Image, heat: np.ndarray, opacity: float = 0.6) -> Image.Image:
    """[crop | crop with char 0's heatmap | char 1's | ...] side by side; heat (n, H, W) in [0, 1]."""
    import matplotlib

    colormap = matplotlib.colormaps["inferno"]
    base = np.asarray(crop.convert("RGB"), dtype=np.float32)  # (H, W, 3)
    panels = [base]
    for h in heat:
        colour = colormap(h)[..., :3] * 255.0  # (H, W, 3)
        panels.append((1 - opacity) * base + opacity * colour)
    return Image.fromarray(np.concatenate(panels, axis=1).round().clip(0, 255).astype(np.uint8))
