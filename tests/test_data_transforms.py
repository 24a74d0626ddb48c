"""The crop around the text region and its paste-back."""

import math

import numpy as np
import pytest
import torch

from udifftext.data.render import fill_polygon
from udifftext.data.transforms import compute_rectified_crop, compute_roi_crop, reading_direction


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_small_box_gets_a_zoomed_square_window_around_it():
    box = (100, 120, 200, 260)  # top, bottom, left, right: 20 x 60 px in a 300 x 400 image
    crop = compute_roi_crop((300, 400), box, 64, 0.04)
    y0, x0, side = crop.window
    assert side == max(math.ceil(math.sqrt(20 * 60 / 0.04)), 20, 60)
    assert y0 <= 100 and y0 + side >= 120 and x0 <= 200 and x0 + side >= 260
    pts = np.array([[200, 100], [260, 120]])
    assert np.allclose(crop.inverse_points(crop.apply_points(pts)), pts)
    assert crop.apply_image(_image(300, 400)).shape == (64, 64, 3)


def test_large_box_keeps_the_whole_image_padded_to_a_square():
    image = _image(100, 200)
    crop = compute_roi_crop((100, 200), (10, 90, 20, 180), 50, 0.04)
    assert crop.window == (-50, 0, 200)  # 50 px of replicated border above and below
    out = crop.apply_image(image)
    assert out.shape == (50, 50, 3) and out.dtype == np.uint8
    # the replicated border repeats the first row (4x shrink: the top 12 output rows come from padding)
    assert np.abs(out[:10].astype(int) - out[10:11].astype(int)).max() < 40


def test_window_near_the_border_is_clamped_inside_the_padded_square():
    crop = compute_roi_crop((400, 400), (0, 10, 390, 400), 32, 0.04)
    y0, x0, side = crop.window
    assert y0 == 0 and x0 + side == 400


@pytest.mark.parametrize("hw", [(300, 400), (400, 250)])
def test_paste_back_changes_only_masked_pixels(hw):
    h, w = hw
    original = _image(h, w)
    polygon = np.array([[150, 110], [230, 118], [228, 140], [148, 132]], np.float64)
    mask = fill_polygon(h, w, polygon)
    crop = compute_roi_crop((h, w), polygon, 64, 0.04)
    generated = np.full((64, 64, 3), 255, np.uint8)
    out = crop.paste_back(original, generated, mask, blend_width=3)
    assert out.dtype == np.uint8 and out.shape == original.shape
    assert np.array_equal(out[mask == 0], original[mask == 0])  # bit-identical outside
    ys, xs = np.nonzero(mask)
    deep = [(y, x) for y, x in zip(ys, xs, strict=True) if mask[y - 3 : y + 4, x - 3 : x + 4].all()]
    assert deep and all((out[y, x] == 255).all() for y, x in deep)  # fully generated 3+ px inside
    edge = [(y, x) for y, x in zip(ys, xs, strict=True) if not mask[y - 1 : y + 2, x - 1 : x + 2].all()]
    assert np.mean([out[y, x].astype(int).sum() < 3 * 255 for y, x in edge]) > 0.5  # soft at the edge


def test_round_trip_reproduces_the_original_inside_the_mask():
    yy, xx = np.mgrid[0:300, 0:400]
    smooth = np.stack([xx * 0.5, yy * 0.7, (xx + yy) * 0.3], -1).astype(np.float32)  # (H, W, 3), no aliasing
    polygon = np.array([[150, 110], [230, 110], [230, 140], [150, 140]], np.float64)
    mask = fill_polygon(300, 400, polygon)
    crop = compute_roi_crop((300, 400), polygon, 128, 0.04)
    out = crop.paste_back(smooth, crop.apply_image(smooth), mask, blend_width=0)
    assert np.array_equal(out[mask == 0], smooth[mask == 0])
    assert np.abs(out - smooth)[mask > 0].max() < 1.0


def test_paste_back_accepts_torch_chw_tensors():
    original = torch.rand(3, 120, 160) * 2 - 1
    mask = torch.zeros(1, 120, 160)
    mask[:, 50:70, 40:100] = 1
    crop = compute_roi_crop((120, 160), (50, 70, 40, 100), 32, 0.04)
    out = crop.paste_back(original, torch.ones(3, 32, 32), mask, blend_width=2)
    assert out.shape == original.shape
    assert torch.equal(out[:, mask[0] == 0], original[:, mask[0] == 0])
    assert torch.allclose(out[:, 55:65, 45:95], torch.ones(3, 10, 50))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="polygon_or_box"):
        compute_roi_crop((10, 10), np.zeros((3, 3)), 8)
    with pytest.raises(ValueError, match="min_area_ratio"):
        compute_roi_crop((10, 10), (0, 5, 0, 5), 8, 0.0)
    crop = compute_roi_crop((10, 10), (0, 5, 0, 5), 8)
    with pytest.raises(ValueError, match="generated"):
        crop.paste_back(np.zeros((10, 10, 3)), np.zeros((4, 4, 3)), np.ones((10, 10)))


def _rotated_quad(angle_deg: float, centre=(200.0, 150.0), size=(120.0, 30.0)) -> np.ndarray:
    """(4, 2) xy corners, clockwise from the top-left, of a w x h box rotated by angle (y down: clockwise)."""
    rad = math.radians(angle_deg)
    rot = np.array([[math.cos(rad), -math.sin(rad)], [math.sin(rad), math.cos(rad)]])
    w, h = size
    return np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]]) @ rot.T + centre


@pytest.mark.parametrize("angle", [0.0, 12.0, -30.0, 80.0])
def test_rectified_crop_puts_the_box_upright_with_its_margin(angle):
    """The quad maps to an axis-aligned box centred in the (h, w) crop, `margin` box heights from the top and
    bottom (a short box) or from the sides (a long one); points map back exactly."""
    quad = _rotated_quad(angle)
    expected = angle if abs(angle) <= 45 else angle - 90  # read along the side nearer to horizontal
    assert math.degrees(reading_direction(quad)) == pytest.approx(expected, abs=1e-3)
    crop = compute_rectified_crop((300, 400), quad, (32, 256), margin=0.25)
    mapped = crop.apply_points(quad)
    np.testing.assert_allclose(crop.inverse_points(mapped), quad, atol=1e-9)
    low, high = mapped.min(axis=0), mapped.max(axis=0)
    np.testing.assert_allclose((low + high) / 2, (128, 16), atol=1e-6)
    if abs(angle) <= 45:  # a 4:1 box in an 8:1 crop: its height decides the scale
        np.testing.assert_allclose(low[1], 0.25 * (high[1] - low[1]), atol=1e-6)
        assert high[0] - low[0] == pytest.approx(4 * (high[1] - low[1]))
    else:  # read across: a 1:4 box, upright it stands tall, so its height decides too
        assert high[1] - low[1] == pytest.approx(4 * (high[0] - low[0]))
    long_crop = compute_rectified_crop((300, 400), _rotated_quad(angle, size=(300.0, 20.0)), (32, 128), 0.25)
    long_box = long_crop.apply_points(_rotated_quad(angle, size=(300.0, 20.0)))
    if abs(angle) <= 45:  # 15:1 in a 4:1 crop: the width decides, with a quarter box height at each end
        width = long_box[:, 0].max() - long_box[:, 0].min()
        assert long_box[:, 0].min() == pytest.approx(0.25 * width / 15, abs=1e-6)


def test_rectified_crop_round_trip_and_paste_back():
    """apply_image then paste_back reproduces a smooth image inside the mask and leaves every other pixel
    bit-identical; the crop's mask is the upright box; torch tensors are accepted."""
    yy, xx = np.mgrid[0:300, 0:400]
    smooth = np.stack([xx * 0.5, yy * 0.7, (xx + yy) * 0.3], -1).astype(np.float32)  # (H, W, 3)
    quad = _rotated_quad(15.0)
    mask = fill_polygon(300, 400, quad)
    crop = compute_rectified_crop((300, 400), quad, (48, 192), margin=0.25)
    view = crop.apply_image(smooth)
    assert view.shape == (48, 192, 3) and view.dtype == np.float32
    crop_mask = crop.apply_mask(mask)
    rows, cols = np.nonzero(crop_mask)
    assert crop_mask[rows.min() + 1 : rows.max(), cols.min() + 1 : cols.max()].all()  # upright, no holes
    out = crop.paste_back(smooth, view, mask, blend_width=0)
    assert np.array_equal(out[mask == 0], smooth[mask == 0])
    assert np.abs(out - smooth)[mask > 0].max() < 2.0  # one bilinear step there and back
    image = _image(300, 400)
    pasted = crop.paste_back(image, np.zeros((48, 192, 3), np.uint8), mask, blend_width=3)
    assert np.array_equal(pasted[mask == 0], image[mask == 0]) and (pasted[mask > 0] < image[mask > 0]).mean() > 0.9
    tensor = crop.paste_back(torch.from_numpy(smooth).permute(2, 0, 1), torch.zeros(3, 48, 192), torch.from_numpy(mask))
    assert tensor.shape == (3, 300, 400) and torch.equal(tensor[:, mask == 0], torch.from_numpy(smooth[mask == 0]).T)
    assert crop.describe()["angle"] == pytest.approx(15.0, abs=1e-3)


def test_rectified_crop_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="out_hw"):
        compute_rectified_crop((10, 10), (0, 5, 0, 5), (0, 8))
    with pytest.raises(ValueError, match="margin"):
        compute_rectified_crop((10, 10), (0, 5, 0, 5), (8, 32), margin=-0.1)
    crop = compute_rectified_crop((10, 10), (0, 5, 0, 5), (8, 32))
    with pytest.raises(ValueError, match="generated"):
        crop.paste_back(np.zeros((10, 10, 3)), np.zeros((8, 8, 3)), np.ones((10, 10)))
