"""Synthetic acquisition shifts: every one keeps the image's shape, changes it (except ``none``), and is repeatable."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_pneumonia.evaluation import ACQUISITION_SHIFTS, acquisition_shift


def _film(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64] / 64
    image = np.clip(0.2 + 0.5 * yy + 0.2 * np.sin(9 * xx) + rng.normal(0, 0.02, yy.shape), 0, 1)
    return {"image": MetaTensor(torch.as_tensor(image[None], dtype=torch.float32))}


def _apply(transforms: list, data: dict) -> dict:
    # not through Compose: it re-seeds random transforms from MONAI's global seed (set_determinism)
    for transform in transforms:
        data = transform(data)
    return data


@pytest.mark.parametrize("name", sorted(ACQUISITION_SHIFTS))
def test_shift_keeps_shape_and_is_repeatable(name):
    first = _apply(acquisition_shift(name), _film())["image"]
    second = _apply(acquisition_shift(name), _film())["image"]
    assert first.shape == (1, 64, 64)
    assert torch.isfinite(first).all()
    assert torch.equal(torch.as_tensor(first), torch.as_tensor(second)), "a shift must give the same image twice"
    changed = (torch.as_tensor(first) - _film()["image"].as_tensor()).abs().mean().item()
    if name == "none":
        assert changed == 0.0
    else:
        assert changed > 1e-3, f"{name} did not change the image"


def test_unknown_shift_is_refused():
    with pytest.raises(ValueError, match="unknown acquisition shift 'fog'"):
        acquisition_shift("fog")
