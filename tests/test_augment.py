"""Batch flips / 90-degree rotations: exact, identical for image and mask."""

from __future__ import annotations

import pytest
import torch

from senland_geo.augment import FlipRotate


def _reference(x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    if p[0]:
        x = x.transpose(-1, -2)
    if p[1]:
        x = x.flip(-1)
    if p[2]:
        x = x.flip(-2)
    return x


def test_each_sample_gets_one_exact_d4_element_for_image_and_mask():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(64, 10, 8, 8, generator=gen)
    mask = image.argmax(1)  # the label is a function of the pixel: must stay aligned
    aug = FlipRotate(generator=torch.Generator().manual_seed(1))
    out, out_mask = aug(image, mask)
    assert torch.equal(out_mask, out.argmax(1))
    for b in range(64):
        assert torch.equal(out[b], _reference(image[b], aug.last_params[b]))
    elements = {tuple(p.tolist()) for p in aug.last_params}
    assert len(elements) == 8  # all of D4 drawn


def test_time_series_fold_and_rotation_example():
    series = torch.arange(2 * 3 * 2 * 4 * 4, dtype=torch.float32).reshape(2, 3, 2, 4, 4)
    mask = torch.arange(2 * 16).reshape(2, 4, 4)
    params = torch.tensor([[True, True, False], [False, False, True]])
    aug = FlipRotate()
    out, out_mask = aug(series, mask, params=params)
    assert out.shape == (2, 3, 2, 4, 4) and out_mask.dtype == torch.int64
    # transpose + horizontal flip = 90 degrees clockwise, for every date and band.
    assert torch.equal(out[0], torch.rot90(series[0], k=-1, dims=(-2, -1)))
    assert out_mask[0].tolist() == [[12, 8, 4, 0], [13, 9, 5, 1], [14, 10, 6, 2], [15, 11, 7, 3]]
    assert torch.equal(out[1], series[1].flip(-2)) and torch.equal(out_mask[1], mask[1].flip(-2))


def test_options_and_errors():
    gen = torch.Generator().manual_seed(0)
    flips_only = FlipRotate(rotate=False, generator=gen)
    flips_only(torch.zeros(32, 1, 4, 6))
    assert not flips_only.last_params[:, 0].any()
    with pytest.raises(ValueError, match="need square patches"):
        FlipRotate(p=1.0)(torch.zeros(2, 1, 4, 6))
    with pytest.raises(ValueError, match="does not match image"):
        FlipRotate()(torch.zeros(2, 1, 4, 4), torch.zeros(3, 4, 4))
    same = FlipRotate(generator=torch.Generator().manual_seed(5))(
        torch.arange(16.0).view(1, 1, 4, 4)
    )
    again = FlipRotate(generator=torch.Generator().manual_seed(5))(
        torch.arange(16.0).view(1, 1, 4, 4)
    )
    assert torch.equal(same, again)


def test_kornia_nearest_rotation_is_exact_and_bilinear_is_not():
    import kornia.augmentation as K

    from senland_geo.augment import kornia_flip_rotate

    image = torch.arange(32 * 2 * 64 * 64, dtype=torch.float32).view(32, 2, 64, 64) + 1
    mask = torch.arange(32 * 64 * 64).view(32, 1, 64, 64) % 11
    torch.manual_seed(0)
    out, out_mask = kornia_flip_rotate()(image, mask)
    d4 = [torch.tensor(p) for p in [[t, h, v] for t in (0, 1) for h in (0, 1) for v in (0, 1)]]
    for b in range(32):
        (p,) = [p for p in d4 if torch.equal(out[b], _reference(image[b], p))]  # exactly one
        assert torch.equal(out_mask[b], _reference(mask[b], p))
    bilinear = K.RandomRotation90(times=(1, 1), p=1.0)(image[:1])  # kornia's default
    assert not any(torch.equal(bilinear[0], _reference(image[0], p)) for p in d4)
