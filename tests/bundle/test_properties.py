"""The configs define every property MONAI's bundle workflows require (``ConfigWorkflow.check_properties``)."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigWorkflow

from tests.conftest import CONFIGS


@pytest.mark.parametrize(("configs", "workflow_type"), [(["train"], "train"), (["inference", "evaluate"], "infer"),
                                                       (["inference"], "infer")])
def test_config_has_the_required_bundle_properties(configs, workflow_type, trained_bundle):
    workflow = ConfigWorkflow(
        config_file=[str(CONFIGS / f"{config}.json") for config in configs], meta_file=str(CONFIGS / "metadata.json"), logging_file=False,
        workflow_type=workflow_type, dataset_dir=str(trained_bundle["dataset_dir"]),
        ckpt_dir=str(trained_bundle["ckpt_dir"]), output_dir=str(trained_bundle["output_dir"]),
        **{"network_def#depth": 18, "image_size": 32, "num_workers": 0, "val_fraction": 0.34},
    )
    workflow.initialize()
    assert workflow.check_properties() == []
