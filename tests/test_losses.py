"""The paper's losses on hand-made tensors: L_DSM weighting, L_loc, L_aae."""

import dataclasses

import pytest
import torch

from udifftext.config import DiffusionConfig
from udifftext.losses import (
    attention_excite_loss,
    dsm_loss,
    gaussian_blur,
    local_attention_loss,
    resize_char_masks,
)

L, H, W = 4, 32, 32


def char_masks(n_chars: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Side-by-side character boxes in one text line: char_seg (1, L, H, W), char_seg_mask (1, L)."""
    seg = torch.zeros(1, L, H, W)
    width = W // n_chars
    for j in range(n_chars):
        seg[0, j, 8:24, j * width : (j + 1) * width] = 1
    valid = torch.zeros(1, L)
    valid[0, :n_chars] = 1
    return seg, valid


def attention_from(seg: torch.Tensor, size: int) -> torch.Tensor:
    """Per-token maps equal to a (resized) mask pattern, as probabilities spread over its pixels."""
    maps = torch.nn.functional.interpolate(seg, size=(size, size), mode="nearest")
    return maps / maps.sum(dim=(2, 3), keepdim=True).clamp_min(1) * 8


def test_dsm_loss_equals_mse_with_equal_weights_and_weights_the_mask():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:5, :] = 1
    torch.testing.assert_close(dsm_loss(pred, target, mask, DiffusionConfig()), torch.mean((pred - target) ** 2))
    inside_only = DiffusionConfig(mask_loss_weight=1.0, outside_loss_weight=0.0)
    m = mask.expand_as(pred).bool()
    torch.testing.assert_close(dsm_loss(pred, target, mask, inside_only), torch.mean((pred - target)[m] ** 2))
    with pytest.raises(ValueError, match="same shape"):
        dsm_loss(pred, target[:, :1], mask, DiffusionConfig())


def test_blur_kernel_is_normalised():
    x = torch.zeros(1, 2, 7, 7)
    x[0, :, 3, 3] = 1
    y = gaussian_blur(x, 3, 1.0)
    torch.testing.assert_close(y.sum(dim=(2, 3)), torch.ones(1, 2))
    assert y[0, 0, 3, 3] > y[0, 0, 3, 4] > y[0, 0, 4, 4] > 0


def test_local_loss_lower_inside_char_masks_than_outside_and_when_swapped():
    seg, valid = char_masks(3)
    inside = [attention_from(seg, 16), attention_from(seg, 8)]
    outside = [attention_from(1 - seg, 16), attention_from(1 - seg, 8)]
    swapped_seg = seg[:, [1, 2, 0, 3]]
    swapped = [attention_from(swapped_seg, 16), attention_from(swapped_seg, 8)]
    l_in = local_attention_loss(inside, seg, valid)
    l_out = local_attention_loss(outside, seg, valid)
    l_swap = local_attention_loss(swapped, seg, valid)
    assert l_in < 0 < l_out
    assert l_in < l_swap


def test_local_loss_skips_samples_without_char_masks_and_has_gradients():
    seg, valid = char_masks(2)
    noise = torch.rand(1, L, 16, 16)
    maps = torch.cat([attention_from(seg, 16), noise]).requires_grad_()  # (2, L, 16, 16)
    both = local_attention_loss([maps], torch.cat([seg, torch.zeros_like(seg)]), torch.cat([valid, 0 * valid]))
    alone = local_attention_loss([maps[:1]], seg, valid)
    torch.testing.assert_close(both, alone)
    both.backward()
    assert maps.grad[0].abs().sum() > 0 and maps.grad[1].abs().sum() == 0
    no_seg = local_attention_loss([maps], torch.cat([seg, torch.zeros_like(seg)]), torch.cat([valid, valid]))
    torch.testing.assert_close(no_seg, alone)  # char_seg_mask set but no masks (ICDAR13-like): skipped too
    none = local_attention_loss([maps], torch.zeros(2, L, H, W), torch.zeros(2, L))
    assert none.item() == 0 and none.requires_grad


def test_local_loss_padding_tokens_do_not_count():
    seg, valid = char_masks(2)
    maps = attention_from(seg, 16)
    noisy_padding = maps.clone()
    noisy_padding[:, 2:] = torch.rand(1, L - 2, 16, 16)
    want = local_attention_loss([maps], seg, valid)
    torch.testing.assert_close(local_attention_loss([noisy_padding], seg, valid), want)
    with pytest.raises(ValueError, match="each attention map"):
        local_attention_loss([maps[:, :3]], seg, valid)


def test_attention_excite_loss_is_per_sample_and_rewards_the_weakest_character():
    seg, valid = char_masks(3)
    mask = seg.amax(1, keepdim=True)  # (1, 1, H, W)
    strong = attention_from(seg, 16)
    weak_one = strong.clone()
    weak_one[:, 1] = attention_from(1 - seg, 16)[:, 1]  # character 1 attends outside the box
    maps = [torch.cat([strong, weak_one])]
    loss = attention_excite_loss(maps, mask.expand(2, -1, -1, -1), valid.expand(2, -1))
    assert loss.shape == (2,)
    assert loss[0] < loss[1]
    padding_only_changed = strong.clone()
    padding_only_changed[:, 3] = 0
    torch.testing.assert_close(attention_excite_loss([padding_only_changed], mask, valid), loss[:1])


def test_cover_resize_keeps_a_thin_character_that_nearest_loses():
    seg = torch.zeros(1, 2, 32, 32)
    seg[0, 0, 8:24, 5:8] = 1  # a thin character between the nearest samples of an 8 x 8 map (columns 0, 4, 8, ...)
    seg[0, 1, 8:24, 16:28] = 1  # a wide one
    assert resize_char_masks(seg, (8, 8), "nearest")[0, 0].sum() == 0
    cover = resize_char_masks(seg, (8, 8), "cover")
    assert cover[0, 0, 2:6, 1].eq(1).all() and cover[0, 0].sum() == 4  # column 1 (pixels 4-7), rows 2-5
    assert cover[0, 1, 2:6, 4:7].eq(1).all() and cover[0, 1].sum() == 12
    valid = torch.ones(1, 2)
    attn = cover / cover.sum(1, keepdim=True).clamp_min(1)  # each character attends only inside its cells
    nearest_loss = local_attention_loss([attn], seg, valid, mask_resize="nearest")
    cover_loss = local_attention_loss([attn], seg, valid, mask_resize="cover")
    assert cover_loss < -0.3  # perfect localisation is rewarded for both characters
    assert nearest_loss > cover_loss + 0.2  # nearest counts the thin one as all outside: p = 0
    with pytest.raises(ValueError, match="mask_resize"):
        local_attention_loss([attn], seg, valid, mask_resize="bilinear")


@pytest.mark.parametrize("decoder", ["positions", "ctc"])
def test_ocr_loss_is_the_recognizers_own_loss_clamped_and_reaches_the_pixels(decoder):
    from udifftext.config import RecognizerConfig
    from udifftext.losses import ocr_loss
    from udifftext.recognizer.vitstr import ViTSTR

    torch.manual_seed(0)
    cfg = RecognizerConfig(img_height=16, img_width=64, patch_size=16, patch_width=4, embed_dim=32, depth=2, heads=2)
    recognizer = ViTSTR(dataclasses.replace(cfg, decoder=decoder)).eval()
    images = (torch.rand(2, 3, 32, 96) * 2 - 1).requires_grad_(True)
    bboxes = torch.tensor([[0, 16, 0, 64], [8, 24, 16, 80]])  # (top, bottom, left, right)
    ids = recognizer.tokenizer.encode(["ab", "xyz"])
    loss = ocr_loss(recognizer, images, bboxes, ids, clamp=100.0)
    expected = recognizer.sequence_loss(recognizer(recognizer.preprocess(images, bboxes)), ids).mean()
    assert torch.allclose(loss, expected) and expected > 0.5
    loss.backward()
    assert images.grad[:, :, :16, :64].abs().sum() > 0 and images.grad[0, :, 16:, :].abs().sum() == 0
    assert ocr_loss(recognizer, images, bboxes, ids, clamp=0.5).item() == pytest.approx(0.5)
