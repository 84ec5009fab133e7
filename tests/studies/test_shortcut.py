import numpy as np
import pytest
import torch

from monai_pneumonia.evaluation import cam_energy_shares, region_areas, region_masks
from monai_pneumonia.studies import shortcut_measurement


def test_region_masks_cover_what_they_say():
    masks = region_masks((100, 80))
    assert masks["thorax"][50, 40] and not masks["thorax"][5, 40] and not masks["thorax"][50, 3]
    assert masks["border"][0, 40] and masks["border"][99, 40] and not masks["border"][50, 40]
    assert masks["corners"][0, 0] and masks["corners"][99, 79] and not masks["corners"][50, 0]
    assert not (masks["thorax"] & masks["border"]).any()
    assert region_areas((100, 80))["thorax"] == pytest.approx(0.7 * 0.8)


def test_energy_shares_of_known_maps():
    maps = np.zeros((3, 1, 100, 80))
    maps[0, 0, 50, 40] = 1.0  # all energy in the centre
    maps[1, 0, 0:5, 0:5] = 1.0  # all energy in a corner
    shares = cam_energy_shares(torch.as_tensor(maps))
    assert shares["thorax"][0] == 1.0 and shares["border"][0] == 0.0
    assert shares["corners"][1] == 1.0 and shares["border"][1] == 1.0 and shares["thorax"][1] == 0.0
    uniform = region_areas((100, 80))
    assert shares["thorax"][2] == pytest.approx(uniform["thorax"])  # an all-zero map counts as uniform


def test_measurement_with_the_tiny_bundle(tiny_bundle, tiny_dataset, tmp_path):
    images = sorted(tiny_dataset.rglob("*.png"))[:6]
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    result = shortcut_measurement([*images, bad], bundle_root=tiny_bundle, batch_size=4)
    assert result["n"] == 6 and result["refused"] == 1
    assert set(result["mean"]) == {"thorax", "border", "corners"}
    for name, value in result["mean"].items():
        assert 0.0 <= value <= 1.0
        low, high = result["ci95"][name]
        assert low <= value <= high


def test_a_refused_file_changes_nothing_but_the_refused_count(tiny_bundle, tiny_dataset, tmp_path):
    images = sorted(tiny_dataset.rglob("*.png"))[:5]
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    # one film a pass, so that both runs compute every map alike (a batch's composition moves a map by ~1e-4)
    clean = shortcut_measurement(images, bundle_root=tiny_bundle, batch_size=1)
    mixed = shortcut_measurement([*images[:2], bad, *images[2:]], bundle_root=tiny_bundle, batch_size=1)
    assert (clean["n"], clean["refused"], mixed["n"], mixed["refused"]) == (5, 0, 5, 1)
    assert mixed["uniform"] == clean["uniform"] and mixed["ci95"] == clean["ci95"]
    assert mixed["mean"] == clean["mean"]
