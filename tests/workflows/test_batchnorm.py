"""Batch-norm statistics of an averaged model, recomputed from training images."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine

from monai_pneumonia.workflows import BatchNormRecalibration


def _model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU())


def test_statistics_are_those_of_the_training_images_not_the_stale_ones():
    torch.manual_seed(0)
    model = _model().eval()
    bn = model[1]
    bn.running_mean.fill_(50.0)
    bn.running_var.fill_(1e-3)  # stale, as averaged buffers can be
    images = [torch.randn(4, 1, 8, 8) * 2 + 1 for _ in range(3)]
    BatchNormRecalibration(model, [{"image": x} for x in images])()
    with torch.no_grad():
        features = torch.cat([model[0](x) for x in images])
    expected_mean = features.mean(dim=(0, 2, 3))
    expected_var = features.var(dim=(0, 2, 3), unbiased=True)
    assert torch.allclose(bn.running_mean, expected_mean, atol=1e-4)
    assert torch.allclose(bn.running_var, expected_var, rtol=0.05)  # per-batch variances, averaged
    assert not model.training


def test_max_batches_limits_the_pass_and_attach_runs_it_at_each_epoch_end():
    model = _model()
    seen = []

    class Loader:
        def __iter__(self):
            for index in range(5):
                seen.append(index)
                yield {"image": torch.randn(2, 1, 8, 8)}

    trainer = Engine(lambda engine, batch: None)
    BatchNormRecalibration(model, Loader(), max_batches=2).attach(trainer)
    trainer.run([0], max_epochs=2)
    assert seen == [0, 1, 0, 1]
    with pytest.raises(ValueError, match="max_batches"):
        BatchNormRecalibration(model, Loader(), max_batches=0)
