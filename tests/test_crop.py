"""Crop geometry: box round trips, pixel alignment, padding colour, grayscale, extreme boxes."""
import numpy as np
import pytest
import torch

from lighttrack_nas.data.crop import (IMAGENET_MEAN, IMAGENET_STD, CropWindow, as_rgb, context_side, crop,
                                      grid_points, search_window, template_window, to_tensor, xywh_to_xyxy,
                                      xyxy_to_xywh)


def test_context_and_window_sides():
    assert context_side(40, 20) == pytest.approx(np.sqrt(70 * 50))
    z = template_window([10, 20, 40, 20], 128)
    x = search_window([10, 20, 40, 20], 128, 256)
    assert (z.cx, z.cy) == (30, 30) and (x.cx, x.cy) == (30, 30)
    assert x.side == pytest.approx(2 * z.side)
    assert z.scale == pytest.approx(128 / np.sqrt(70 * 50))


def test_box_round_trip_and_centre():
    window = search_window([100.5, 40.25, 33.0, 71.0], 128, 256)
    box = xywh_to_xyxy([100.5, 40.25, 33.0, 71.0])
    in_crop = window.to_crop(box)
    assert np.allclose((in_crop[:2] + in_crop[2:]) / 2, 128)            # target centred in the crop
    assert np.allclose(in_crop[2:] - in_crop[:2], np.array([33.0, 71.0]) * window.scale)
    assert np.allclose(window.to_image(in_crop), box)
    assert np.allclose(xyxy_to_xywh(box), [100.5, 40.25, 33.0, 71.0])
    boxes = np.random.default_rng(0).uniform(0, 300, size=(5, 4))
    assert np.allclose(window.to_image(window.to_crop(boxes)), boxes)


def test_pixels_land_where_the_box_maps():
    image = np.zeros((200, 300, 3), np.uint8)
    image[60:100, 120:180] = 255                                         # box x 120..180, y 60..100
    window = CropWindow(cx=140.0, cy=90.0, side=120.0, out_size=240)     # 2 crop px per image px
    out = crop(image, window)
    ys, xs = np.nonzero(out[..., 0] > 127)
    expected = window.to_crop([120, 60, 180, 100])
    assert np.allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], expected, atol=1)


def test_padding_is_image_mean_colour():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(50, 80, 3), dtype=np.uint8)
    mean = image.reshape(-1, 3).mean(axis=0)
    out = crop(image, CropWindow(cx=-500.0, cy=-500.0, side=100.0, out_size=32))   # entirely outside
    assert np.abs(out.reshape(-1, 3) - mean).max() <= 1
    out = crop(image, template_window([70, 40, 20, 20], 64))                        # at the corner
    assert np.abs(out[-1, -1].astype(float) - mean).max() <= 1                     # bottom-right padded


def test_explicit_pad_colour():
    image = np.full((10, 10, 3), 200, np.uint8)
    out = crop(image, CropWindow(cx=0.0, cy=0.0, side=10.0, out_size=10), pad=(1, 2, 3))
    assert tuple(out[0, 0]) == (1, 2, 3) and tuple(out[-1, -1]) == (200, 200, 200)


@pytest.mark.parametrize("shape", [(40, 60), (40, 60, 1)])
def test_grayscale_input(shape):
    image = np.arange(np.prod(shape), dtype=np.int64).reshape(shape) % 256
    rgb = as_rgb(image)
    assert rgb.shape == (40, 60, 3) and rgb.dtype == np.uint8
    out = crop(image.astype(np.uint8), template_window([10, 10, 20, 20], 32))
    assert out.shape == (32, 32, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


@pytest.mark.parametrize("box", [[50, 50, 1, 1], [0, 0, 2, 1], [-20, -30, 1000, 800], [95, 95, 30, 30], [0, 0, 0, 0]])
def test_tiny_huge_and_border_boxes(box):
    image = np.random.default_rng(2).integers(0, 256, size=(100, 100, 3), dtype=np.uint8)
    z = template_window(box, 64)
    x = search_window(box, 64, 128)
    assert np.isfinite(z.scale) and z.side >= 1
    assert crop(image, z).shape == (64, 64, 3) and crop(image, x).shape == (128, 128, 3)
    b = xywh_to_xyxy(box)
    assert np.allclose(x.to_image(x.to_crop(b)), b)


def test_grid_points_are_centred():
    assert np.allclose(grid_points(256, 16, 16), 8 + 16 * np.arange(16))
    assert np.allclose(grid_points(256, 32, 8), 4 + 8 * np.arange(32))
    p = grid_points(128, 8, 16)
    assert np.isclose(p.mean(), 64)


def test_to_tensor_normalisation():
    crops = np.zeros((2, 4, 5, 3), np.uint8)
    crops[1] = 255
    t = to_tensor(crops)
    assert t.shape == (2, 3, 4, 5) and t.dtype == torch.float32 and t.is_contiguous()
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    assert torch.allclose(t[0, :, 0, 0], -mean / std)
    assert torch.allclose(t[1, :, 0, 0], (1 - mean) / std)
    assert to_tensor(crops[0]).shape == (1, 3, 4, 5)
    with pytest.raises(ValueError):
        to_tensor(np.zeros((4, 5)))
