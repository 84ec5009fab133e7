import torch

from monai_pneumonia.networks import AttentionResNet
from monai_pneumonia.visualize import grad_cam


def _network():
    return AttentionResNet(spatial_dims=2, in_channels=1, num_classes=2, depth=18)


def test_repeated_calls_do_not_stack_hooks_and_give_the_same_map():
    network = _network()
    layer = dict(network.named_modules())[network.cam_layer]
    images = torch.rand(2, 1, 32, 32)
    first = grad_cam(network, images)
    hooks = (len(layer._forward_hooks), len(layer._backward_hooks))
    for _ in range(3):
        again = grad_cam(network, images)
    assert (len(layer._forward_hooks), len(layer._backward_hooks)) == hooks == (1, 1)
    assert torch.allclose(first, again)
    assert first.shape == (2, 1, 32, 32) and float(first.min()) >= 0.0 and float(first.max()) <= 1.0

