"""Training-state checkpoints: finding the latest, and the best-model record a resumed run keeps."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from monai_pneumonia.workflows import BestModelState, latest_state_checkpoint


def test_latest_state_checkpoint_orders_epochs_by_number(tmp_path):
    for name in ("state_checkpoint_epoch=9.pt", "state_checkpoint_epoch=10.pt", "checkpoint_epoch=11.pt",
                 "state_checkpoint_epoch=12.pt.tmp", "model_final.pt"):
        (tmp_path / name).write_bytes(b"")
    assert latest_state_checkpoint(tmp_path).name == "state_checkpoint_epoch=10.pt"


def test_latest_state_checkpoint_names_the_folder_when_there_is_none(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no training-state checkpoint"):
        latest_state_checkpoint(tmp_path)


class _Saver:
    def __init__(self) -> None:
        self.loaded = None

    def load_state_dict(self, state_dict: dict) -> None:
        self.loaded = state_dict


def test_best_model_state_round_trip_restores_the_evaluator_and_the_saver():
    evaluator = SimpleNamespace(state=SimpleNamespace(best_metric=0.97, best_metric_epoch=3))
    state = BestModelState(evaluator, _Saver(), "model.pt").state_dict()
    assert state == {"best_metric": 0.97, "best_metric_epoch": 3}

    fresh, saver = SimpleNamespace(state=SimpleNamespace(best_metric=-1, best_metric_epoch=-1)), _Saver()
    BestModelState(fresh, saver, "model.pt").load_state_dict(state)
    assert (fresh.state.best_metric, fresh.state.best_metric_epoch) == (0.97, 3)
    assert saver.loaded["_saved"] == [(0.97, "model.pt")]


def test_best_model_state_before_any_validation_leaves_the_saver_empty():
    evaluator, saver = SimpleNamespace(state=SimpleNamespace(best_metric=-1, best_metric_epoch=-1)), _Saver()
    BestModelState(evaluator, saver, "model.pt").load_state_dict({"best_metric": -1.0, "best_metric_epoch": -1})
    assert saver.loaded is None and evaluator.state.best_metric_epoch == -1
