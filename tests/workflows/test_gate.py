"""The bundle workflow's atypicality handler: refused films move to the refusals, flagged ones keep their place."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from monai.data import MetaTensor

from monai_pneumonia.networks import AttentionResNet
from monai_pneumonia.networks.atypicality import pooled_features
from monai_pneumonia.networks.atypicality_fit import fit_reference
from monai_pneumonia.workflows.gate import AtypicalityGate


def test_handler_refuses_flags_and_keeps_the_rest():
    torch.manual_seed(0)
    network = AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18).eval()
    smooth = torch.linspace(0, 1, 32).expand(32, 32)
    typical = torch.stack([smooth * (0.8 + 0.02 * i) for i in range(12)])[:, None]
    reference = fit_reference(pooled_features(network, typical, ("layer1", "layer4")), [0, 1] * 6, "0" * 64,
                              n_components=4)
    images = torch.stack([smooth * 0.85, (torch.rand(32, 32) > 0.5).float(), 1 - smooth * 0.85])[:, None]
    scores = reference.score(pooled_features(network, images, ("layer1", "layer4")))
    order = np.argsort(scores)  # lowest: typical; then the middle tier; highest: refused
    flag, refuse = (scores[order[0]] + scores[order[1]]) / 2, (scores[order[1]] + scores[order[2]]) / 2
    gate = AtypicalityGate(network, reference.with_limits(flag, refuse))
    outputs = [{"image": MetaTensor(images[i], meta={"filename_or_obj": f"/x/{i}.png", "xray_flags": "view_missing"}),
                "pred": torch.tensor([0.5, 0.5])} for i in range(3)]
    engine = SimpleNamespace(state=SimpleNamespace(output=outputs, refused=[]))
    gate(engine)
    assert [r.image for r in engine.state.refused] == [f"/x/{order[2]}.png"]
    assert "not a frontal chest radiograph" in engine.state.refused[0].error
    assert "/x/" not in engine.state.refused[0].error  # the reason alone: a spool path would hold the UID
    flags = {item["image"].meta["filename_or_obj"]: item["image"].meta["xray_flags"] for item in engine.state.output}
    assert flags == {f"/x/{order[0]}.png": "view_missing", f"/x/{order[1]}.png": "view_missing;atypical"}


def test_handler_without_reference_does_nothing():
    outputs = [{"image": MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "/x/a.png"})}]
    engine = SimpleNamespace(state=SimpleNamespace(output=list(outputs), refused=[]))
    AtypicalityGate(torch.nn.Identity(), None)(engine)
    assert engine.state.output == outputs and engine.state.refused == []


def test_handler_scores_in_eval_mode():
    """The bundle's evaluator puts only its runtime network in eval mode; batch-norm statistics must not move."""
    network = AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18).train()
    AtypicalityGate(network, None)
    assert not network.training
