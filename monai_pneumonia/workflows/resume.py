"""Resumable training: what a stopped run needs to continue from its last epoch."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ignite.engine import Engine
from monai.handlers import CheckpointSaver

__all__ = ["STATE_PREFIX", "BestModelState", "latest_state_checkpoint"]

#: ``file_prefix`` of the training-state ``CheckpointSaver`` of ``train.json``: files ``state_checkpoint_epoch=N.pt``.
STATE_PREFIX = "state"
_STATE_FILE = re.compile(rf"^{STATE_PREFIX}_checkpoint_epoch=(\d+)\.pt$")


class BestModelState:
    """The best validation metric so far and the saver of its checkpoint, as one object a checkpoint can hold.

    MONAI's key-metric ``CheckpointSaver`` keeps the score of the checkpoint it saved only in memory, and the
    evaluator's ``best_metric`` restarts at -1, so a resumed run would replace the best model of its earlier
    epochs by its first, maybe worse, one. Saved with the trainer state and loaded on resume, this object restores
    both; the best model file itself stays a plain state dict.

    Args:
        evaluator: the validation engine (``state.best_metric``, ``state.best_metric_epoch``).
        saver: the evaluator's key-metric ``CheckpointSaver``.
        filename: its ``key_metric_filename``.
    """

    def __init__(self, evaluator: Engine, saver: CheckpointSaver, filename: str) -> None:
        self.evaluator = evaluator
        self.saver = saver
        self.filename = filename

    def state_dict(self) -> dict[str, Any]:
        """The best metric and its epoch (epoch -1: no validation yet)."""
        state = self.evaluator.state
        return {"best_metric": float(state.best_metric), "best_metric_epoch": int(state.best_metric_epoch)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the evaluator's best metric and the saver's record of the checkpoint that holds it."""
        best, epoch = float(state_dict["best_metric"]), int(state_dict["best_metric_epoch"])
        self.evaluator.state.best_metric = best
        self.evaluator.state.best_metric_epoch = epoch
        if epoch > 0:
            saved = [(best, self.filename)]
            # ignite's Checkpoint.load_state_dict: its docstring names the key "saved", its code reads "_saved"
            self.saver.load_state_dict({"_saved": saved, "saved": saved})


def latest_state_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The training-state checkpoint of the latest epoch in ``run_dir``.

    Args:
        run_dir: a training run's ``output_dir``.

    Returns:
        The path of ``state_checkpoint_epoch=N.pt`` with the largest ``N``.

    Raises:
        FileNotFoundError: ``run_dir`` holds no training-state checkpoint.
    """
    found = [(int(match.group(1)), path) for path in Path(run_dir).glob(f"{STATE_PREFIX}_checkpoint_epoch=*.pt")
             if (match := _STATE_FILE.match(path.name))]
    if not found:
        raise FileNotFoundError(f"{run_dir}: no training-state checkpoint ({STATE_PREFIX}_checkpoint_epoch=N.pt) to "
                                "resume from; it is written at the end of every epoch by train.json")
    return max(found)[1]
