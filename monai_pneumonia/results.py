"""The output files of a run: ``predictions.csv``, ``errors.csv`` and the one atomic write they all go through.

Every writer of results — the bundle's handlers, ``monai-pneumonia predict``, the DICOM listener's spool and
outbox, the model registry — writes with :func:`atomic_write`, so a crash leaves the old file or the new one,
never half of one. The columns are declared here once; the readers (studies, distillation) read them with
:func:`read_predictions`. Standard library and NumPy only: no torch, so any layer can use it.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ERRORS_FILE",
    "ERROR_COLUMNS",
    "EVALUATION_COLUMNS",
    "PREDICTIONS_FILE",
    "PREDICTION_COLUMNS",
    "Refusal",
    "atomic_write",
    "read_predictions",
    "write_csv",
    "write_errors",
    "write_predictions",
]

#: File of the per-input answers of a run.
PREDICTIONS_FILE = "predictions.csv"
#: File of the refused inputs of a run, with their reasons.
ERRORS_FILE = "errors.csv"
#: ``predictions.csv`` of an inference run: the source, the pneumonia probability, the decision (``NORMAL`` /
#: ``PNEUMONIA``), the stored threshold it was decided at, the Grad-CAM overlay written in the same run (empty
#: without one) and the loader's policy flags (``;``-separated).
PREDICTION_COLUMNS: tuple[str, ...] = ("image", "prob_pneumonia", "prediction", "threshold", "cam", "flags")
#: ``predictions.csv`` of a labelled evaluation: the ground truth (0 normal, 1 pneumonia) after the source, and no
#: overlay column (the report holds the Grad-CAM gallery).
EVALUATION_COLUMNS: tuple[str, ...] = ("image", "label", "prob_pneumonia", "prediction", "threshold", "flags")
#: ``errors.csv``: the fields of :class:`Refusal` a user needs.
ERROR_COLUMNS: tuple[str, ...] = ("image", "error")
#: Columns written with six decimals.
_DECIMAL_COLUMNS = frozenset({"prob_pneumonia", "threshold"})


@dataclass(frozen=True)
class Refusal:
    """An input the loader refused, with the reason (one row of ``errors.csv``).

    Attributes:
        image: the source path, as given.
        error: why it was refused (no identifiers: the loader's reason).
        index: its position in the run's input list, where the refusal was met while batching.
    """

    image: str
    error: str
    index: int | None = None


def atomic_write(path: str | os.PathLike, data: bytes | str, *, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` atomically and durably: temporary file, ``fsync``, rename, ``fsync`` of the folder.

    On any error the temporary file is removed and the error raised; ``path`` then holds its previous content, or
    is absent. The temporary file is hidden in the same folder (``.<name>.<random>.partial``), so a folder's
    reader can skip, and its owner sweep up, what a crash left. Text is UTF-8, with file names that are not valid
    UTF-8 (undecodable bytes, held by Python as surrogates) written as backslash escapes rather than failing.

    Args:
        path: the file; its folder must exist.
        data: the whole content.
        mode: the file's permissions (owner-only by default: results may hold study identifiers).

    Returns:
        ``path``.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8", errors="backslashreplace")
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:  # mkstemp creates it 0600
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if mode != 0o600:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return path


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write a CSV file with :func:`atomic_write` (owner-only), creating its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write(path, text.getvalue())


def _cell(record: Mapping[str, Any], column: str) -> Any:
    value = record.get(column, "")
    return f"{value:.6f}" if column in _DECIMAL_COLUMNS else value


def write_errors(output_dir: str | os.PathLike, refused: Sequence[Refusal]) -> Path:
    """Write ``errors.csv`` (:data:`ERROR_COLUMNS`), one row per refused input, in order."""
    return write_csv(Path(output_dir) / ERRORS_FILE, ERROR_COLUMNS, [(r.image, r.error) for r in refused])


def write_predictions(output_dir: str | os.PathLike, predictions: Sequence[Mapping[str, Any]],
                      refused: Sequence[Refusal], *, labelled: bool = False) -> Path:
    """Write ``predictions.csv`` and ``errors.csv`` of a run.

    Args:
        output_dir: the folder (created if needed).
        predictions: one record per classified input with the keys of :data:`PREDICTION_COLUMNS` (``cam`` and
            ``flags`` may be missing: empty), or of :data:`EVALUATION_COLUMNS` when ``labelled``; ``prediction``
            is the class name, ``prob_pneumonia`` and ``threshold`` are floats (written with six decimals).
        refused: the refused inputs.
        labelled: a labelled evaluation (:data:`EVALUATION_COLUMNS`).

    Returns:
        The path of ``predictions.csv``.
    """
    write_errors(output_dir, refused)
    columns = EVALUATION_COLUMNS if labelled else PREDICTION_COLUMNS
    return write_csv(Path(output_dir) / PREDICTIONS_FILE, columns,
                     [[_cell(record, column) for column in columns] for record in predictions])


def read_predictions(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Read the ``predictions.csv`` of a labelled evaluation (:data:`EVALUATION_COLUMNS`).

    Args:
        path: the file.

    Returns:
        ``(images, labels, probabilities)`` in file order.

    Raises:
        OSError: the file cannot be read.
        KeyError: a column is missing (not a labelled ``predictions.csv``).
        ValueError: a label or probability is not a number.
    """
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    return (
        [row["image"] for row in rows],
        np.array([int(row["label"]) for row in rows]),
        np.array([float(row["prob_pneumonia"]) for row in rows]),
    )
