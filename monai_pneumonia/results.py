"""The output files of a run: ``predictions.csv``, ``errors.csv`` and the one atomic write they all go through.

Every writer of results — the bundle's handlers, ``monai-pneumonia predict``, the DICOM listener's spool and
outbox, the model registry — writes with :func:`atomic_write`, so a crash leaves the old file or the new one,
never half of one. The columns are declared here once; the readers (studies, distillation) read them with
:func:`read_predictions`. Standard library and NumPy only: no torch, so any layer can use it.


Per-film record
---------------
One JSON object per film: what a drift monitor needs and nothing that identifies a patient. ``predict --json``
prints one per line; the DICOM listener writes one under ``"record"`` in each ``classified`` event of its results
log; :mod:`monai_pneumonia.monitoring` reads both. Fields (:data:`RECORD_FIELDS`):

* ``time``: when the film was processed (Unix seconds, UTC) -- the only date or time in a record;
* ``probability``, ``decision`` (``"NORMAL"``/``"PNEUMONIA"``), ``threshold``, ``flags`` (the loader's and the
  gate's flags, ``;``-separated, ``""`` when none);
* ``atypicality``: the intended-use gate's distance score (image metadata key ``"atypicality"``), ``null`` when
  absent; ``unfit_score``: its unfit detector's log-odds (key ``"unfit_score"``), ``null`` when absent;
* ``image_statistics``: statistics of the loaded [0, 1] image (:data:`IMAGE_STATISTICS`, see
  :class:`~monai_pneumonia.transforms.ImageStatisticsd`) and its ``rows``/``columns``;
* ``acquisition``: non-identifying acquisition attributes when the file is DICOM (:data:`ACQUISITION_FIELDS`;
  absent ones are left out); ``PixelSpacing`` is the spacing actually used, with ``SpacingSource`` naming the
  attribute it came from (``PixelSpacing`` or ``ImagerPixelSpacing``);
* ``model_sha256``: SHA-256 of the checkpoint that produced the answer (``""`` when unknown), and
  ``site_profile_sha256``: SHA-256 of the site profile whose rule decided (``""`` without one).

A refused film has ``refused: true`` and its ``reason`` instead of the model's answer. No name, ID, UID, accession
number or date of the patient or study is ever copied into a record (:func:`film_record` takes only the fields
above from the metadata).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
import time as _time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DISCLAIMER",
    "file_sha256",
    "IDENTITY_COLUMNS",
    "FLAGS_KEY",
    "format_flags",
    "join_flags",
    "split_flags",
    "ACQUISITION_FIELDS",
    "ERRORS_FILE",
    "ERROR_COLUMNS",
    "EVALUATION_COLUMNS",
    "IMAGE_STATISTICS",
    "IMAGE_STATISTICS_KEY",
    "PREDICTIONS_FILE",
    "PREDICTION_COLUMNS",
    "RECORD_FIELDS",
    "RecordError",
    "Refusal",
    "atomic_write",
    "event_record",
    "film_record",
    "read_predictions",
    "read_records",
    "refusal_record",
    "write_csv",
    "write_errors",
    "write_predictions",
]

#: File of the per-input answers of a run.
PREDICTIONS_FILE = "predictions.csv"
#: File of the refused inputs of a run, with their reasons.
ERRORS_FILE = "errors.csv"
#: The model's identity in every result: the checkpoint's SHA-256 and the site profile's (empty without one).
IDENTITY_COLUMNS: tuple[str, ...] = ("model_sha256", "site_profile_sha256")
#: ``predictions.csv`` of an inference run: the source, the pneumonia probability, the decision (``NORMAL`` /
#: ``PNEUMONIA``), the stored threshold it was decided at, the Grad-CAM overlay written in the same run (empty
#: without one) and the loader's policy flags (``;``-separated).
PREDICTION_COLUMNS: tuple[str, ...] = ("image", "prob_pneumonia", "prediction", "threshold", "cam", "flags",
                                       *IDENTITY_COLUMNS)
#: ``predictions.csv`` of a labelled evaluation: the ground truth (0 normal, 1 pneumonia) after the source, and no
#: overlay column (the report holds the Grad-CAM gallery).
EVALUATION_COLUMNS: tuple[str, ...] = ("image", "label", "prob_pneumonia", "prediction", "threshold", "flags",
                                       *IDENTITY_COLUMNS)
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


# Intended use ------------------------------------------------------------------------------------------------
#: Shown on every human-readable result: the evaluation report, the site acceptance report, the drift dashboard.
DISCLAIMER = ("Research use only; not for diagnosis or triage. Not a medical device: not cleared or approved, and "
              "not to be used for clinical decisions.")


# Identity ----------------------------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, hex (the model's identity in every result)."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()



# Flags -----------------------------------------------------------------------------------------------------
#: Image-metadata key of the loader's policy flags (a ``;``-joined string, see the module docstring).
FLAGS_KEY = "xray_flags"


def join_flags(flags: Iterable[str]) -> str:
    """Join flags into the collatable ``meta[FLAGS_KEY]`` string (``""`` when there are none; repeats dropped)."""
    return ";".join(dict.fromkeys(map(str, flags)))


def split_flags(flags: str | Iterable[str] | None) -> list[str]:
    """The flags of a ``meta[FLAGS_KEY]`` value: a joined string, or a sequence of flags (``[]`` when none)."""
    if flags is None:
        return []
    if isinstance(flags, str):
        return [flag for flag in flags.split(";") if flag]
    return [flag for flag in map(str, flags) if flag]


def format_flags(meta: Mapping[str, Any]) -> str:
    """The policy flags in image metadata as one ``;``-separated string (``""`` when none), e.g. for a results file."""
    return join_flags(split_flags(meta.get(FLAGS_KEY)))


# Per-film records ------------------------------------------------------------------------------------------

#: Top-level fields of a per-film record, in order.
RECORD_FIELDS: tuple[str, ...] = ("time", "probability", "decision", "threshold", "flags", "atypicality",
                                  "unfit_score", "image_statistics", "acquisition", "model_sha256",
                                  "site_profile_sha256")
#: Image metadata key under which the loader's statistics step stores :data:`IMAGE_STATISTICS`.
IMAGE_STATISTICS_KEY = "image_statistics"
#: Statistics of the loaded [0, 1] image: intensity percentiles 1/50/99, mean, and sharpness (mean absolute
#: difference of neighbouring pixels, the first thing blur or heavier compression lowers).
IMAGE_STATISTICS: tuple[str, ...] = ("p1", "p50", "p99", "mean", "sharpness")
#: DICOM attributes copied into ``acquisition`` when present (the device and how the film was made, never who).
ACQUISITION_FIELDS: tuple[str, ...] = ("Manufacturer", "ManufacturerModelName", "Modality",
                                       "PhotometricInterpretation", "ViewPosition", "PixelSpacing", "SpacingSource")


class RecordError(ValueError):
    """A records file that cannot be read (names the file and the line)."""


def _number(value: Any) -> float | None:
    """A plain float from a Python, NumPy or torch scalar (``None`` for missing or NaN)."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def _text(value: Any) -> str:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, (list, tuple)):
        value = value[0] if value else ""
    return "" if value is None else str(value).strip()


def _image(meta: Mapping) -> dict:
    stats = meta.get(IMAGE_STATISTICS_KEY) or {}
    image = {name: round(v, 6) for name in IMAGE_STATISTICS if (v := _number(stats.get(name))) is not None}
    for name in ("rows", "columns"):  # as loaded (a JPEG 2000 film decoded at reduced resolution: that size)
        if (v := _number(stats.get(name))) is not None:
            image[name] = int(v)
    return image


def _acquisition(meta: Mapping) -> dict:
    fields = {}
    if _text(meta.get("format")) == "dicom":
        for name in ACQUISITION_FIELDS[:5]:
            if value := _text(meta.get(name)):
                fields[name] = value
    known = meta.get("spacing_known", False)
    known = bool(known.item() if hasattr(known, "item") else known)
    if known and (spacing := meta.get("spacing")) is not None:
        values = [float(v) for v in (spacing.tolist() if hasattr(spacing, "tolist") else spacing)]
        fields["PixelSpacing"] = [round(values[1], 6), round(values[0], 6)]  # row, column as DICOM orders it
        if source := _text(meta.get("spacing_source")):
            fields["SpacingSource"] = source
    return fields


def film_record(probability: float, decision: str, threshold: float, meta: Mapping | None = None,
                flags: str | None = None, model_sha256: str = "", site_profile_sha256: str = "",
                time: float | None = None) -> dict:
    """The per-film record of one classified film (module docstring).

    Args:
        probability: the pneumonia probability.
        decision: the class name decided.
        threshold: the operating threshold used.
        meta: the loader's image metadata (collated/decollated values such as 0-d tensors are accepted); only the
            fields of the schema are read from it.
        flags: the film's flags (default: ``meta[FLAGS_KEY]``).
        model_sha256: SHA-256 of the checkpoint.
        site_profile_sha256: SHA-256 of the site profile applied (``""``: none).
        time: processing time (default: now).

    Returns:
        A JSON-serialisable dictionary with the keys of :data:`RECORD_FIELDS`.
    """
    meta = meta or {}
    if flags is None:
        flags = format_flags(meta)
    atypicality, unfit = _number(meta.get("atypicality")), _number(meta.get("unfit_score"))
    return {"time": round(_time.time() if time is None else float(time), 6), "probability": round(float(probability), 6),
            "decision": str(decision), "threshold": round(float(threshold), 6), "flags": flags,
            "atypicality": None if atypicality is None else round(atypicality, 6),
            "unfit_score": None if unfit is None else round(unfit, 6), "image_statistics": _image(meta),
            "acquisition": _acquisition(meta), "model_sha256": model_sha256,
            "site_profile_sha256": site_profile_sha256}


def refusal_record(reason: str, model_sha256: str = "", site_profile_sha256: str = "",
                   time: float | None = None) -> dict:
    """The per-film record of a refused film: ``{"time", "refused": true, "reason", "model_sha256",
    "site_profile_sha256"}``."""
    return {"time": round(_time.time() if time is None else float(time), 6), "refused": True, "reason": str(reason),
            "model_sha256": model_sha256, "site_profile_sha256": site_profile_sha256}


def event_record(item: Mapping) -> dict | None:
    """The per-film record in one line of a records file (:func:`read_records`), ``None`` for other events."""
    event = item.get("event")
    if event is None:
        return {k: v for k, v in item.items() if k != "image"}
    if event == "classified" and isinstance(item.get("record"), dict):
        return dict(item["record"])
    if event in ("refused", "quarantined"):
        return refusal_record(item.get("reason", event), time=item.get("time"))
    return None


def read_records(path: str | os.PathLike) -> Iterator[dict]:
    """Per-film records of a ``predict --json`` output or a service results log, in file order.

    A line with an ``"event"`` is a results-log event: ``classified`` gives its ``"record"``, ``refused`` and
    ``quarantined`` give a refusal record at the event's time, other events are skipped. Any other line is a
    record as ``predict --json`` prints it (its ``"image"`` path is dropped: records carry no file names).

    Raises:
        RecordError: a line is not a JSON object (the message names the file and line number).
    """
    path = Path(path)
    with path.open(encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as error:
                raise RecordError(f"{path}:{number}: not a JSON line ({error.msg})") from None
            if not isinstance(item, dict):
                raise RecordError(f"{path}:{number}: not a JSON object")
            if (record := event_record(item)) is not None:
                yield record
