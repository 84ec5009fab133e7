"""The "no picture" rule of :mod:`monai_pneumonia.io.content`."""

from __future__ import annotations

import numpy as np
import pytest

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.content import MIN_DISPLAY_SPREAD, MIN_STORED_LEVELS, require_picture
from tests.factories import gradient_picture


def test_a_picture_passes():
    picture = gradient_picture(128, 96)
    require_picture("x.png", picture / 255.0, picture)


@pytest.mark.parametrize("image", [np.zeros((64, 64)), np.full((64, 64), 0.7), np.full((64, 64), np.nan),
                                   np.where(np.eye(64) > 0, np.inf, 0.5)])
def test_blank_constant_and_non_finite_images_are_refused(image):
    with pytest.raises(XrayInputError, match="no picture") as caught:
        require_picture("film.dcm", image)
    assert caught.value.path == "film.dcm"


def test_the_limits_are_the_documented_ones():
    just_below = np.tile(np.linspace(0.5, 0.5 + 0.9 * MIN_DISPLAY_SPREAD, 64), (64, 1))
    with pytest.raises(XrayInputError):
        require_picture("a", just_below)
    require_picture("a", np.tile(np.linspace(0.5, 0.5 + 1.2 * MIN_DISPLAY_SPREAD, 64), (64, 1)))


def test_near_constant_stored_values_are_refused_even_when_the_window_stretches_them():
    stored = 1000 + np.random.default_rng(0).integers(0, MIN_STORED_LEVELS // 2, (64, 64))
    stretched = (stored - stored.min()) / np.ptp(stored)  # what a percentile window makes of it
    with pytest.raises(XrayInputError, match="stored pixel values"):
        require_picture("a.dcm", stretched, stored)
