import numpy as np
import pytest
import torch

from monai_pneumonia.transforms import RandBorderErase, RandBorderErased


def _image(shape=(1, 40, 30)):
    return torch.rand(shape) * 0.8 + 0.1


def test_erasing_touches_only_edges_and_corners():
    eraser = RandBorderErase(prob=1.0, max_band=0.12, max_corner=0.2, edge_prob=1.0, corner_prob=1.0)
    eraser.set_random_state(3)
    for _ in range(20):
        image = _image()
        out = eraser(image)
        changed = (out != image)[0].numpy()
        assert changed.any()
        centre = changed[12:28, 9:21]  # beyond the widest band (12%) and corner square (20% of 30 = 6)
        assert not centre.any()
        assert torch.all(out[out != image] == image.min())


def test_prob_zero_returns_the_image_unchanged_and_input_is_never_modified():
    image = _image()
    before = image.clone()
    assert RandBorderErase(prob=0.0)(image) is image
    RandBorderErase(prob=1.0, edge_prob=1.0)(image)
    assert torch.equal(image, before)


def test_numpy_input_and_validation():
    out = RandBorderErase(prob=1.0, edge_prob=1.0, corner_prob=0.0).set_random_state(0)(np.ones((1, 20, 20)) * 0.5)
    assert isinstance(out, np.ndarray) and out.shape == (1, 20, 20)
    with pytest.raises(ValueError, match="max_band"):
        RandBorderErase(max_band=0.6)


def test_dictionary_version_erases_the_same_regions_in_every_key_and_is_seeded():
    data = {"image": torch.full((1, 40, 30), 0.5), "other": torch.full((1, 40, 30), 0.7)}
    for image in data.values():
        image[0, 20, 15] = 0.0  # the minimum, the fill value, sits in the centre
    first = RandBorderErased(keys=["image", "other"], prob=1.0).set_random_state(7)(data)
    second = RandBorderErased(keys=["image", "other"], prob=1.0).set_random_state(7)(data)
    assert torch.equal(first["image"], second["image"])
    erased = first["image"] == 0.0
    assert erased.sum() > 1
    assert torch.equal(erased, first["other"] == 0.0)
