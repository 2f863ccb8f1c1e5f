import math

import numpy as np
import pytest
import torch

from diffexplain.errors import UserError
from diffexplain.metrics.localisation import area_share, chance_iou, mass_inside, pointing_game, top_k_iou


@pytest.fixture
def mask():
    m = torch.zeros(8, 8, dtype=torch.bool)
    m[2:5, 3:7] = True  # 12 of 64 pixels
    return m


def test_top_k_iou_of_perfect_inverse_and_partial_maps(mask):
    noise = 0.01 * torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
    assert top_k_iou(mask.float() + noise, mask) == 1.0
    assert top_k_iou(-mask.float() + noise, mask) == 0.0
    small = torch.zeros(8, 8, dtype=torch.bool)
    small[0, :4] = True
    s = torch.zeros(8, 8)
    s[0, :2] = 2.0  # two of the 4 pixels inside ...
    s[7, :2] = 1.0  # ... and the next two outside
    assert top_k_iou(s, small) == pytest.approx(2 / 6)
    assert math.isnan(top_k_iou(s, torch.zeros(8, 8, dtype=torch.bool)))


def test_chance_iou_is_the_mean_iou_of_random_maps(mask):
    g = torch.Generator().manual_seed(0)
    ious = [top_k_iou(torch.rand(8, 8, generator=g), mask) for _ in range(3000)]
    assert np.mean(ious) == pytest.approx(chance_iou(mask), abs=0.01)
    flat = [top_k_iou(torch.zeros(8, 8), mask, torch.Generator().manual_seed(k)) for k in range(1000)]
    assert np.mean(flat) == pytest.approx(chance_iou(mask), abs=0.015), "a flat map scores chance, not raster luck"
    assert chance_iou(torch.ones(8, 8, dtype=torch.bool)) == 1.0


def test_mass_inside_counts_the_positive_part_and_has_the_area_as_chance(mask):
    assert area_share(mask) == pytest.approx(12 / 64)
    assert mass_inside(mask.float(), mask) == 1.0
    assert mass_inside(torch.ones(8, 8), mask) == pytest.approx(12 / 64)
    assert mass_inside(mask.float() - 2 * (~mask).float(), mask) == 1.0, "negative evidence is ignored"
    assert math.isnan(mass_inside(-torch.ones(8, 8), mask))
    g = torch.Generator().manual_seed(1)
    assert np.mean([mass_inside(torch.rand(8, 8, generator=g), mask) for _ in range(2000)]) == pytest.approx(
        12 / 64, abs=0.005)


def test_maps_and_masks_must_share_the_grid(mask):
    with pytest.raises(UserError, match="mask"):
        top_k_iou(torch.rand(4, 4), mask)
    with pytest.raises(UserError, match="mask"):
        mass_inside(torch.rand(4, 4), mask)


def test_pointing_game_still_counts_tied_maxima_by_share(mask):
    assert pointing_game(mask.float(), mask) == 1.0
    assert pointing_game(torch.zeros(8, 8), mask) == pytest.approx(12 / 64)
