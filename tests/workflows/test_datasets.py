"""Refusal-tolerant datasets and collation."""

from __future__ import annotations

import logging

import pytest
import torch
from monai.transforms import Compose, Lambdad

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.results import Refusal
from monai_pneumonia.workflows import REFUSED_KEY, RefusingDataset, collate_with_refusals, find_input_error


def _loader(item):
    if item.endswith(".bad"):
        raise XrayInputError(item, "corrupt")
    if item.endswith(".bug"):
        raise KeyError("a bug, not an input problem")
    return torch.ones(1, 4, 4)


TRANSFORM = Compose([Lambdad(keys="image", func=_loader)])


def test_find_input_error_unwraps_monai_transform_errors():
    with pytest.raises(RuntimeError) as caught:
        TRANSFORM({"image": "x.bad"})
    found = find_input_error(caught.value)
    assert isinstance(found, XrayInputError) and found.reason == "corrupt"
    assert find_input_error(RuntimeError("unrelated")) is None


def test_refusing_dataset_turns_typed_refusals_into_records():
    dataset = RefusingDataset([{"image": "a.png"}, {"image": "b.bad"}], transform=TRANSFORM)
    assert dataset[0]["image"].shape == (1, 4, 4)
    assert dataset[1] == {REFUSED_KEY: Refusal("b.bad", "corrupt", 1)}


def test_refusing_dataset_lets_bugs_propagate():
    dataset = RefusingDataset([{"image": "c.bug"}], transform=TRANSFORM)
    with pytest.raises(RuntimeError):
        dataset[0]


def test_collate_keeps_refusals_beside_the_batch():
    dataset = RefusingDataset([{"image": "a.png"}, {"image": "b.bad"}, {"image": "c.png"}], transform=TRANSFORM)
    batch = collate_with_refusals([dataset[i] for i in range(3)])
    assert batch["image"].shape == (2, 1, 4, 4)
    assert batch[REFUSED_KEY] == [Refusal("b.bad", "corrupt", 1)]
    only_refused = collate_with_refusals([dataset[1]])
    assert set(only_refused) == {REFUSED_KEY}


def test_the_training_loader_drops_a_last_batch_only_when_it_holds_one_image(caplog):
    """61 images at batch 32: all 61 train (drop_last=True dropped 29); 65: one is left out, and it is logged."""
    from monai_pneumonia.workflows import drop_last_batch

    assert drop_last_batch(61, 32) is False and drop_last_batch(20, 32) is False and drop_last_batch(64, 32) is False
    with caplog.at_level(logging.INFO, logger="monai_pneumonia.workflows.datasets"):
        assert drop_last_batch(65, 32) is True
    assert "1 of 65 images" in caplog.text
