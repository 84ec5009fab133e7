"""CamWriter: switched off by a command-line string; on, it needs the preprocessing it draws with."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from monai_pneumonia.workflows import CamWriter


def test_cam_writer_disabled_by_command_line_string():
    engine = Engine(lambda e, b: None)
    CamWriter("/nonexistent", network=torch.nn.Identity(), enabled="false").attach(engine)
    assert not engine.has_event_handler(CamWriter._save, Events.ITERATION_COMPLETED)
    assert engine._event_handlers[Events.ITERATION_COMPLETED] == []


def test_cam_writer_enabled_needs_the_preprocessing():
    with pytest.raises(ValueError, match="preprocessing"):
        CamWriter("/nonexistent", network=torch.nn.Identity(), enabled="true").attach(Engine(lambda e, b: None))
