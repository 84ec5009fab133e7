"""OperatingThresholdHandler: the threshold chosen on validation is stored in the network."""

from __future__ import annotations

import numpy as np
import torch
from ignite.engine import Engine

from monai_pneumonia.evaluation import choose_threshold
from monai_pneumonia.networks import AttentionResNet
from monai_pneumonia.workflows.threshold_handler import OperatingThresholdHandler


def _validation_run(labels, probs, **handler_kwargs):
    batches = [(probs[i : i + 8], labels[i : i + 8]) for i in range(0, len(labels), 8)]

    def step(engine, batch):
        return [{"pred": torch.tensor([1 - p, p]), "label": torch.nn.functional.one_hot(torch.tensor(y), 2)}
                for p, y in zip(*batch, strict=True)]

    engine = Engine(step)
    network = AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18)
    OperatingThresholdHandler(network, **handler_kwargs).attach(engine)
    engine.run(batches, max_epochs=1)
    return engine, network


def _validation_predictions():
    rng = np.random.default_rng(0)
    labels = np.array([0] * 20 + [1] * 20)
    probs = np.clip(np.where(labels == 1, 0.7, 0.3) + rng.normal(0, 0.2, 40), 0.01, 0.99)
    return labels, probs


def test_threshold_handler_stores_the_validation_threshold_in_the_network():
    labels, probs = _validation_predictions()
    engine, network = _validation_run(labels, probs)
    expected = choose_threshold(labels, probs, method="youden")
    assert float(network.operating_threshold) == np.float32(expected)
    assert engine.state.metrics["val_threshold"] == expected
    assert 0 <= engine.state.metrics["val_specificity"] <= 1


def test_threshold_handler_runs_the_named_rule_with_its_target():
    labels, probs = _validation_predictions()
    engine, network = _validation_run(labels, probs, method="sensitivity", method_kwargs={"target": 0.95})
    expected = choose_threshold(labels, probs, method="sensitivity", target=0.95)
    assert expected != choose_threshold(labels, probs)  # the rule matters on these predictions
    assert engine.state.metrics["val_threshold"] == expected
    assert engine.state.metrics["val_sensitivity"] >= 0.95


def test_threshold_handler_leaves_the_threshold_when_validation_has_one_class():
    engine = Engine(lambda e, b: [{"pred": torch.tensor([0.2, 0.8]), "label": torch.tensor([0.0, 1.0])}])
    network = AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18)
    OperatingThresholdHandler(network).attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert float(network.operating_threshold) == 0.5
