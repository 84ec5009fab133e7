"""Datalist JSON in and out: MONAI's ``{"training", "validation", "test"}`` layout the bundle configs read.

Items are ``{"image": path, "label": 0 | 1, "patient": id}`` (normal = 0, pneumonia = 1), the layout
``monai.data.load_decathlon_datalist`` reads. The bundle's ``train.json`` calls :func:`load_datalist`,
``evaluate.json`` :func:`evaluation_items`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence

from monai_pneumonia.data.errors import DatalistError
from monai_pneumonia.data.patients import Item, assign_patients, parse_label
from monai_pneumonia.data.sources import datalist_from_folder, require_source
from monai_pneumonia.data.split import SPLITS, Datalist, assert_patients_disjoint, split_by_patient
from monai_pneumonia.data.summary import summarize
from monai_pneumonia.results import atomic_write

__all__ = ["evaluation_items", "load_datalist", "write_datalist"]

logger = logging.getLogger(__name__)


def write_datalist(datalist: Mapping[str, Sequence[Item]], path: str | os.PathLike) -> str:
    """Write a datalist as JSON (indented, parent folders created).

    Args:
        datalist: the datalist.
        path: the JSON file.

    Returns:
        The path written.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, json.dumps(datalist, indent=2) + "\n", mode=0o644)
    return path


def _read_json_datalist(path: str) -> Datalist:
    """Read a datalist JSON, resolving relative image paths against its folder and checking the labels."""
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except json.JSONDecodeError as error:
        raise DatalistError(path, f"not valid JSON: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("training"), list):
        raise DatalistError(path, "expected an object with a 'training' list")
    base = os.path.dirname(path)
    datalist: Datalist = {}
    for split, items in data.items():
        if not isinstance(items, list):
            continue  # other keys (name, description...) are not splits
        datalist[split] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or "image" not in item or "label" not in item:
                raise DatalistError(path, f"{split}[{index}] needs 'image' and 'label'")
            resolved = dict(item, image=os.path.join(base, item["image"]))
            resolved["label"] = parse_label(item["label"], path)
            datalist[split].append(resolved)
    return datalist


def load_datalist(
    dataset_dir: str | os.PathLike | None = None,
    datalist: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.0,
    patient_pattern: str | re.Pattern | None = None,
    validation_patients: str | re.Pattern | None = None,
) -> Datalist:
    """The datalist the bundle trains on: from a JSON file, else from a class-folder folder.

    With ``datalist``, the JSON is read (relative image paths resolved against its folder); when it has no
    ``validation`` list, its ``training`` items are split by patient (patients parsed from paths when
    absent). Otherwise the datalist is built from ``dataset_dir`` (:func:`datalist_from_folder`). The
    summary is logged at INFO level.

    Args:
        dataset_dir: folder with ``NORMAL``/``PNEUMONIA`` sub-folders (any case).
        datalist: a datalist JSON; takes precedence over ``dataset_dir``.
        val_fraction: fraction of each class's patients for validation.
        seed: seed of the split.
        test_fraction: fraction of each class's patients for test.
        patient_pattern: regex with one group for patient ids.
        validation_patients: regex of patient ids forced into validation.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}`` (other lists of the JSON kept).

    Raises:
        ValueError: neither source is given.
        DatalistError: a missing or malformed source (the path is named), or patients shared by two splits
            of a given JSON.
    """
    if datalist is not None:
        path = require_source(os.path.abspath(os.fspath(datalist)), folder=False)
        result = _read_json_datalist(path)
        warnings: list[str] = []
        if "validation" not in result:
            training = result.pop("training")
            warnings = assign_patients(training, patient_pattern)
            has_test = "test" in result  # a given test list is kept, not re-split
            split = split_by_patient(
                training, val_fraction, 0.0 if has_test else test_fraction, seed, validation_patients
            )
            if has_test:
                del split["test"]
            result.update(split)
        try:
            assert_patients_disjoint(result)
        except AssertionError as error:
            raise DatalistError(path, str(error)) from None
        for split in SPLITS:
            result.setdefault(split, [])
        logger.info("datalist %s:\n%s", path, summarize(result, warnings))
        return result
    if dataset_dir is None:
        raise ValueError("load_datalist needs dataset_dir or datalist")
    result, summary = datalist_from_folder(
        dataset_dir, val_fraction, test_fraction, seed, patient_pattern, validation_patients
    )
    logger.info("datalist from %s:\n%s", dataset_dir, summary)
    return result


def evaluation_items(
    dataset_dir: str | os.PathLike | None = None,
    datalist: str | os.PathLike | None = None,
    split: str = "test",
) -> list[dict]:
    """The labelled items an evaluation runs on.

    Args:
        dataset_dir: folder with ``NORMAL``/``PNEUMONIA`` sub-folders (any case): every image in it is evaluated.
        datalist: a datalist JSON (takes precedence): its ``split`` list is evaluated, as written (no re-split).
        split: which list of the JSON.

    Returns:
        Items ``{"image", "label", "patient"}``.

    Raises:
        ValueError: neither source is given.
        DatalistError: a missing or malformed source, or an empty/missing ``split`` (the path is named).
    """
    if datalist is not None:
        path = require_source(os.path.abspath(os.fspath(datalist)), folder=False)
        items = _read_json_datalist(path).get(split) or []
        if not items:
            raise DatalistError(path, f"no items in the {split!r} list to evaluate")
        return items
    if dataset_dir is None:
        raise ValueError("evaluation_items needs dataset_dir or datalist")
    result, summary = datalist_from_folder(dataset_dir, val_fraction=0.0)
    evaluation = result["training"]  # the whole folder, under the builder's name for an unsplit list
    logger.info("evaluation set from %s:\n%s", dataset_dir,
                summarize({"evaluation": evaluation}, summary.warnings, summary.unlabeled))
    return evaluation
