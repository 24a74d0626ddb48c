"""The paper's training losses (Eq. 7: L = L_DSM + lambda_loc L_loc + lambda_str L_str) and L_aae (Sec. 3.4).

Each takes tensors (or the recognizer) and returns a loss; none reaches into the UNet: attention maps
come from `udifftext.unet.attention.AttentionStore.maps()`, each (B, L, h, w) head-averaged softmax
probabilities over tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from udifftext.config import DiffusionConfig


def dsm_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, cfg: DiffusionConfig) -> torch.Tensor:
    """L_DSM (paper Eq. 2): weighted mean squared error between the UNet output and its target.

    With eps-prediction and the paper's weighting lambda_sigma = sigma^-2 this is the plain eps MSE.
    pred/target (B, C, h, w); mask (B, 1, h, w), 1 inside the text region, weighted
    `cfg.mask_loss_weight` there and `cfg.outside_loss_weight` elsewhere; the result is the weighted
    average per element, so equal weights give the ordinary MSE.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} vs {tuple(target.shape)}")
    w = cfg.mask_loss_weight * mask + cfg.outside_loss_weight * (1 - mask)  # (B, 1, h, w)
    w = w.expand_as(pred)  # (B, C, h, w)
    return (w * (pred.float() - target.float()) ** 2).sum() / w.sum().clamp_min(1e-8)


def gaussian_blur(maps: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Depthwise Gaussian blur of (B, L, h, w) maps with a normalised kernel and zero padding (upstream G)."""
    x = torch.arange(kernel_size, dtype=torch.float32, device=maps.device) - (kernel_size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    k2 = g[:, None] * g[None, :]
    k2 = (k2 / k2.sum()).to(maps.dtype)  # (k, k)
    L = maps.shape[1]
    weight = k2.expand(L, 1, kernel_size, kernel_size)  # (L, 1, k, k)
    return F.conv2d(maps, weight, padding=kernel_size // 2, groups=L)  # (B, L, h, w)


def _check_maps(maps: list[torch.Tensor], char_seg_mask: torch.Tensor) -> None:
    if not maps:
        raise ValueError("maps is empty: was attention capture installed and the UNet run?")
    L = char_seg_mask.shape[1]
    for m in maps:
        if m.ndim != 4 or m.shape[1] != L or m.shape[0] != char_seg_mask.shape[0]:
            want = f"(B={char_seg_mask.shape[0]}, L={L}, h, w)"
            raise ValueError(f"each attention map must be {want}, got {tuple(m.shape)}")


MASK_RESIZES = ("nearest", "cover")  # LossConfig.local_mask_resize


def resize_char_masks(char_seg: torch.Tensor, size: tuple[int, int], how: str) -> torch.Tensor:
    """(B, L, H, W) character masks in {0, 1} -> (B, L, h, w): nearest sampling, or "cover" (any overlap)."""
    if how == "cover":
        return F.adaptive_max_pool2d(char_seg.float(), tuple(size))
    if how == "nearest":
        return F.interpolate(char_seg.float(), size=tuple(size), mode="nearest")
    raise ValueError(f"mask_resize must be one of {MASK_RESIZES}, got '{how}'")


def local_attention_loss(
    maps: list[torch.Tensor],
    char_seg: torch.Tensor,
    char_seg_mask: torch.Tensor,
    kernel_size: int = 3,
    sigma: float = 1.0,
    mask_resize: str = "nearest",
) -> torch.Tensor:
    """L_loc (paper Eq. 5; upstream `get_local_loss`): pull each character's attention inside its own mask.

    Per layer and character j: blur A_j (Gaussian G), n_j = max over pixels of G(A_j)·(1 - S_j),
    p_j = max of G(A_j)·S_j, with S_j the char mask resized to the map size; average n and p over
    the real characters (`char_seg_mask`); layer loss = mean n - mean p; mean over layers, then batch.
    `mask_resize`: "nearest" (upstream) samples one pixel per map cell, so on maps much coarser than the
    characters a thin one can vanish (p_j = 0, a term no attention can lower); "cover" gives a character
    every cell it touches (max-pooling), so it always keeps its place.
    maps: list of (B, L, h, w); char_seg (B, L, H, W) in {0, 1}; char_seg_mask (B, L), 1 for real characters.
    Samples with no character masks (all-zero `char_seg`, e.g. ICDAR13) or no real characters are skipped;
    with none left in the batch the loss is 0 (still in the graph).
    """
    _check_maps(maps, char_seg_mask)
    if char_seg.shape[:2] != char_seg_mask.shape:
        want = f"(B, L, H, W) with (B, L)={tuple(char_seg_mask.shape)}"
        raise ValueError(f"char_seg must be {want}, got {tuple(char_seg.shape)}")
    valid = char_seg_mask.float()  # (B, L)
    count = valid.sum(1)  # (B,)
    keep = (count > 0) & (char_seg.flatten(1).amax(1) > 0)  # (B,) real characters with masks
    if not keep.any():
        return sum(m.sum() for m in maps) * 0.0
    per_layer = []
    for attn in maps:
        blurred = gaussian_blur(attn.float(), kernel_size, sigma)  # (B, L, h, w)
        seg = resize_char_masks(char_seg, attn.shape[-2:], mask_resize)  # (B, L, h, w)
        p = (blurred * seg).amax(dim=(2, 3))  # (B, L)
        n = (blurred * (1 - seg)).amax(dim=(2, 3))  # (B, L)
        mean_p = (p * valid).sum(1) / count.clamp_min(1)  # (B,)
        mean_n = (n * valid).sum(1) / count.clamp_min(1)  # (B,)
        per_layer.append(mean_n - mean_p)
    per_sample = torch.stack(per_layer).mean(0)  # (B,)
    return per_sample[keep].mean()


def attention_excite_loss(
    maps: list[torch.Tensor],
    mask: torch.Tensor,
    char_seg_mask: torch.Tensor,
    kernel_size: int = 3,
    sigma: float = 1.0,
) -> torch.Tensor:
    """L_aae per sample (paper Sec. 3.4; upstream `get_min_local_loss`): excite the weakest character.

    L_aae = -(1/C) sum_layers min_j max_pixels(G(A_j)·M), M the inpainting mask resized (nearest) to the
    map; padding tokens get +1 so they never are the minimum. maps: list of (B, L, h, w); mask (B, 1, H, W);
    char_seg_mask (B, L). Returns (B,): used for noise selection and latent refinement while sampling.
    """
    _check_maps(maps, char_seg_mask)
    pad = 1 - char_seg_mask.float()  # (B, L)
    per_layer = []
    for attn in maps:
        blurred = gaussian_blur(attn.float(), kernel_size, sigma)  # (B, L, h, w)
        m = F.interpolate(mask.float(), size=attn.shape[-2:], mode="nearest")  # (B, 1, h, w)
        peak = (blurred * m).amax(dim=(2, 3)) + pad  # (B, L)
        per_layer.append(-peak.amin(dim=1))  # (B,)
    return torch.stack(per_layer).mean(0)  # (B,)


def ocr_loss(
    recognizer: torch.nn.Module,
    images: torch.Tensor,
    bboxes: torch.Tensor,
    text_ids: torch.Tensor,
    clamp: float = 1.0,
) -> torch.Tensor:
    """L_str (paper Eq. 6; upstream `get_ocr_loss`): the frozen recognizer must read the text in the box.

    images (B, 3, H, W) in [-1, 1], decoded from the predicted x0 (gradients flow back to the UNet);
    bboxes (B, 4) as the recognizer's `preprocess` takes them; text_ids (B, L) token ids, 0 = padding.
    The recognizer's own per-sample loss (ViTSTR: cross-entropy over all L positions, the padding class after
    the word included, averaged; or CTC per character), clamped at `clamp` per sample as upstream (so hopeless
    samples stop pulling), mean over batch.
    """
    crops = recognizer.preprocess(images, bboxes)  # (B, 1, h, w) in [0, 1]
    return recognizer.sequence_loss(recognizer(crops), text_ids).clamp(max=clamp).mean()
