import numpy as np
import pytest
from ignite.engine import Engine
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, Resized

from monai_pneumonia.workflows import ProgressiveResize


@pytest.mark.parametrize("num_workers", [0, 2])
def test_progressive_resize_changes_the_batches_of_later_epochs(num_workers):
    resize = Resized(keys="image", spatial_size=[32, 32])
    data = [{"image": np.random.rand(1, 48, 40).astype(np.float32)} for _ in range(4)]
    loader = DataLoader(Dataset(data, Compose([resize])), batch_size=2, num_workers=num_workers)
    seen: dict[int, set] = {}

    def step(engine, batch):
        seen.setdefault(engine.state.epoch, set()).add(tuple(batch["image"].shape[2:]))

    engine = Engine(step)
    ProgressiveResize(resize, {"1": 16, "3": 24}).attach(engine)
    engine.run(loader, max_epochs=4)
    assert seen == {1: {(16, 16)}, 2: {(16, 16)}, 3: {(24, 24)}, 4: {(24, 24)}}


def test_schedule_lookup_and_validation():
    handler = ProgressiveResize(Resized(keys="image", spatial_size=[8, 8]), {1: 160, 9: 224})
    assert [handler.size_at(e) for e in (1, 8, 9, 10)] == [160, 160, 224, 224]
    with pytest.raises(ValueError):
        ProgressiveResize(Resized(keys="image", spatial_size=[8, 8]), {2: 160})
