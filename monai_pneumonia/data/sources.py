"""Datalist sources: a class-folder tree, a ``path,label[,patient]`` CSV, or DICOM files with a labels CSV.

* a folder with class sub-folders (``NORMAL``/``normal``/``Pneumonia``..., searched recursively):
  :func:`datalist_from_folder`;
* a CSV ``path,label[,patient]``: :func:`datalist_from_csv`;
* a DICOM folder plus a CSV ``sop_instance_uid,label``: :func:`datalist_from_dicom` (patients are
  SHA-256 pseudonyms of PatientID, never the real id).

Each builder assigns patients, splits by patient (:func:`~monai_pneumonia.data.split.split_by_patient`) and
returns the datalist with its :class:`~monai_pneumonia.data.summary.DatalistSummary`.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import pydicom
from pydicom.errors import InvalidDicomError

from monai_pneumonia.data.discovery import find_images
from monai_pneumonia.data.errors import CsvRowError, EmptyClassError, NoClassFoldersError, SourceNotFoundError
from monai_pneumonia.data.patients import Item, assign_patients, mixed_label_warnings, parse_label, pseudonymize
from monai_pneumonia.data.split import Datalist, split_by_patient
from monai_pneumonia.data.summary import DatalistSummary, summarize
from monai_pneumonia.decision import CLASS_NAMES
from monai_pneumonia.io.formats import DICOM

__all__ = ["build_datalist", "datalist_from_csv", "datalist_from_dicom", "datalist_from_folder", "require_source"]

logger = logging.getLogger(__name__)

#: Class sub-folder names, compared lower-case: the decision's class names.
_CLASS_FOLDER_NAMES: Final = {name.lower(): label for label, name in enumerate(CLASS_NAMES)}


def require_source(path: str, folder: bool) -> str:
    """``path`` when it is an existing folder (``folder``) or file.

    Raises:
        SourceNotFoundError: it does not exist.
    """
    exists = os.path.isdir(path) if folder else os.path.isfile(path)
    if not exists:
        raise SourceNotFoundError(path, f"no such {'folder' if folder else 'file'}")
    return path


def _class_folders(dataset_dir: str) -> dict[int, list[str]]:
    """The class sub-folders of a folder, by label (names compared case-insensitively)."""
    folders: dict[int, list[str]] = defaultdict(list)
    with os.scandir(dataset_dir) as entries:
        for entry in entries:
            label = _CLASS_FOLDER_NAMES.get(entry.name.lower())
            if label is not None and entry.is_dir():
                folders[label].append(entry.path)
    if not folders:
        raise NoClassFoldersError(dataset_dir, "no class sub-folder (expected NORMAL and PNEUMONIA, any case)")
    return folders


def _folder_items(dataset_dir: str) -> list[Item]:
    """Items of a class-folder layout; every class must have images."""
    items = []
    folders = _class_folders(dataset_dir)
    for label, name in enumerate(CLASS_NAMES):
        images = find_images(sorted(folders.get(label, [])))
        if not images:
            raise EmptyClassError(dataset_dir, f"class {name.upper()} has no image (folder missing or empty)")
        items.extend({"image": image, "label": label} for image in images)
    return items


def _finish(
    items: list[Item],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    patient_pattern: str | re.Pattern | None,
    validation_patients: str | re.Pattern | None,
    unlabeled: Sequence[str] = (),
    warnings: Sequence[str] = (),
) -> tuple[Datalist, DatalistSummary]:
    """Assign patients, split, and summarise: the common tail of every builder."""
    warnings = list(warnings) + assign_patients(items, patient_pattern)
    warnings += mixed_label_warnings(items)
    datalist = split_by_patient(items, val_fraction, test_fraction, seed, validation_patients)
    return datalist, summarize(datalist, warnings, unlabeled)


def datalist_from_folder(
    dataset_dir: str | os.PathLike,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    patient_pattern: str | re.Pattern | None = None,
    validation_patients: str | re.Pattern | None = None,
) -> tuple[Datalist, DatalistSummary]:
    """Build a datalist from a folder with class sub-folders.

    Sub-folders named ``normal`` and ``pneumonia`` in any case are the classes (others are ignored); images
    are found recursively inside them by content (:func:`~monai_pneumonia.data.discovery.find_images`), so
    extensionless DICOM counts.

    Args:
        dataset_dir: the folder.
        val_fraction: fraction of each class's patients for validation.
        test_fraction: fraction of each class's patients for test.
        seed: seed of the split.
        patient_pattern: regex with one group for the patient id (see :func:`patient_from_path`); the
            public data set's file-name patterns when ``None``.
        validation_patients: regex of patient ids forced into validation.

    Returns:
        The datalist (absolute image paths) and its summary.

    Raises:
        SourceNotFoundError: the folder does not exist.
        NoClassFoldersError: it has no class sub-folder.
        EmptyClassError: a class has no image.
        ValueError: bad fractions or regexes.
    """
    dataset_dir = require_source(os.path.abspath(os.fspath(dataset_dir)), folder=True)
    items = _folder_items(dataset_dir)
    return _finish(items, val_fraction, test_fraction, seed, patient_pattern, validation_patients)


def _read_csv_rows(csv_path: str, required: Sequence[str]) -> Iterable[tuple[int, dict[str, str]]]:
    """Yield ``(line number, row)`` of a CSV with a header, column names lower-cased and stripped.

    Raises:
        CsvRowError: missing columns, or a row with too few or too many fields.
    """
    with open(csv_path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream)
        header = [name.strip().lower() for name in next(reader, [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise CsvRowError(csv_path, f"header {header} lacks column(s) {missing}", line=1)
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if len(row) != len(header):
                raise CsvRowError(csv_path, f"{len(row)} field(s), expected {len(header)}", line=reader.line_num)
            yield reader.line_num, {name: cell.strip() for name, cell in zip(header, row, strict=True)}


def _csv_items(csv_path: str) -> list[Item]:
    """Items of a ``path,label[,patient]`` CSV, relative paths resolved against its folder."""
    base = os.path.dirname(csv_path)
    items = []
    for line, row in _read_csv_rows(csv_path, ("path", "label")):
        if not row["path"]:
            raise CsvRowError(csv_path, "empty path", line=line)
        item = {"image": os.path.join(base, row["path"]), "label": parse_label(row["label"], csv_path, line)}
        if row.get("patient"):
            item["patient"] = row["patient"]
        items.append(item)
    return items


def _require_both_classes(items: Sequence[Item], source: str) -> None:
    present = {int(item["label"]) for item in items}
    for label, name in enumerate(CLASS_NAMES):
        if label not in present:
            raise EmptyClassError(source, f"class {name.upper()} has no image")


def datalist_from_csv(
    csv_path: str | os.PathLike,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    patient_pattern: str | re.Pattern | None = None,
    validation_patients: str | re.Pattern | None = None,
) -> tuple[Datalist, DatalistSummary]:
    """Build a datalist from a CSV ``path,label[,patient]`` with a header row.

    Labels are ``0``/``1`` or ``NORMAL``/``PNEUMONIA`` (any case); relative paths are resolved against the
    CSV's folder; an empty or absent ``patient`` is parsed from the path as in :func:`datalist_from_folder`.
    Files are not opened here (the loader reports unreadable ones).

    Args:
        csv_path: the CSV.
        val_fraction: fraction of each class's patients for validation.
        test_fraction: fraction of each class's patients for test.
        seed: seed of the split.
        patient_pattern: regex with one group for patient ids not given in the CSV.
        validation_patients: regex of patient ids forced into validation.

    Returns:
        The datalist and its summary.

    Raises:
        SourceNotFoundError: the CSV does not exist.
        CsvRowError: a missing column or a malformed row (with its line number).
        UnknownLabelError: a label that is not recognised (with its line number).
        EmptyClassError: a class has no row.
    """
    csv_path = require_source(os.path.abspath(os.fspath(csv_path)), folder=False)
    items = _csv_items(csv_path)
    _require_both_classes(items, csv_path)
    return _finish(items, val_fraction, test_fraction, seed, patient_pattern, validation_patients)


def _label_table(labels_csv: str) -> dict[str, int]:
    """``sop_instance_uid -> label`` from the labels CSV."""
    table: dict[str, int] = {}
    for line, row in _read_csv_rows(labels_csv, ("sop_instance_uid", "label")):
        uid = row["sop_instance_uid"]
        if not uid:
            raise CsvRowError(labels_csv, "empty sop_instance_uid", line=line)
        label = parse_label(row["label"], labels_csv, line)
        if table.setdefault(uid, label) != label:
            raise CsvRowError(labels_csv, f"SOP Instance UID {uid} labelled twice with different labels", line=line)
    return table


def _dicom_identity(path: str, salt: str) -> tuple[str, str] | None:
    """``(SOP Instance UID, patient pseudonym)`` of a DICOM file, or ``None`` when its header is unreadable."""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    uid = str(header.get("SOPInstanceUID", "") or "")
    identifier = str(header.get("PatientID", "") or "").strip() or str(header.get("StudyInstanceUID", "") or "")
    return uid, pseudonymize(identifier or uid or path, salt)


def _dicom_items(dicom_dir: str, table: Mapping[str, int], salt: str) -> tuple[list[Item], list[str], list[str]]:
    """Items of the labelled DICOM files under a folder.

    Returns:
        The items, the unlabeled files, and warnings (unreadable headers, labels without a file).
    """
    items, unlabeled, unreadable, found = [], [], [], set()
    for path in find_images(dicom_dir, formats=(DICOM,)):
        identity = _dicom_identity(path, salt)
        if identity is None:
            unreadable.append(path)
            continue
        uid, patient = identity
        if uid in table:
            found.add(uid)
            items.append({"image": path, "label": table[uid], "patient": patient})
        else:
            unlabeled.append(path)
    warnings = []
    if unreadable:
        warnings.append(f"{len(unreadable)} DICOM file(s) with an unreadable header left out, e.g. {unreadable[0]}")
    if unlabeled:
        warnings.append(f"{len(unlabeled)} DICOM file(s) have no label in the labels CSV and are left out")
    orphans = len(table) - len(found)
    if orphans:
        warnings.append(f"{orphans} label(s) in the labels CSV match no DICOM file")
    for message in warnings:
        logger.warning(message)
    return items, unlabeled, warnings


def datalist_from_dicom(
    dicom_dir: str | os.PathLike,
    labels_csv: str | os.PathLike,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    validation_patients: str | re.Pattern | None = None,
    salt: str = "",
) -> tuple[Datalist, DatalistSummary]:
    """Build a datalist from a DICOM folder and a CSV ``sop_instance_uid,label``.

    Headers are read without pixels. Patients are :func:`pseudonymize` of PatientID (StudyInstanceUID when
    PatientID is empty), so no real id or name reaches the datalist. DICOM files without a label are left
    out and listed in :attr:`DatalistSummary.unlabeled`; labels without a file and unreadable headers are
    warnings.

    Args:
        dicom_dir: the folder (searched recursively, extensionless files included, ``DICOMDIR`` skipped).
        labels_csv: the labels CSV.
        val_fraction: fraction of each class's patients for validation.
        test_fraction: fraction of each class's patients for test.
        seed: seed of the split.
        validation_patients: regex of (pseudonymised) patient ids forced into validation.
        salt: secret mixed into the pseudonyms (see :func:`pseudonymize`).

    Returns:
        The datalist and its summary.

    Raises:
        SourceNotFoundError: the folder or the CSV does not exist.
        CsvRowError: a malformed labels CSV.
        UnknownLabelError: an unrecognised label.
        EmptyClassError: no labelled DICOM of a class.
    """
    dicom_dir = require_source(os.path.abspath(os.fspath(dicom_dir)), folder=True)
    labels_csv = require_source(os.path.abspath(os.fspath(labels_csv)), folder=False)
    items, unlabeled, warnings = _dicom_items(dicom_dir, _label_table(labels_csv), salt)
    _require_both_classes(items, dicom_dir)
    return _finish(items, val_fraction, test_fraction, seed, None, validation_patients, unlabeled, warnings)


def build_datalist(
    source: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    patient_pattern: str | re.Pattern | None = None,
    validation_patients: str | re.Pattern | None = None,
) -> tuple[Datalist, DatalistSummary]:
    """Build a datalist from whichever source is given (what the ``datalist`` command runs).

    Args:
        source: a class-folder folder, a CSV, or (with ``labels``) a DICOM folder.
        labels: the ``sop_instance_uid,label`` CSV of a DICOM folder.
        val_fraction: fraction of each class's patients for validation.
        test_fraction: fraction of each class's patients for test.
        seed: seed of the split.
        patient_pattern: regex with one group for patient ids (not used for DICOM, whose ids are in headers).
        validation_patients: regex of patient ids forced into validation.

    Returns:
        The datalist and its summary.

    Raises:
        DatalistError: see :func:`datalist_from_folder`, :func:`datalist_from_csv`, :func:`datalist_from_dicom`.
    """
    source = os.fspath(source)
    if labels is not None:
        return datalist_from_dicom(source, labels, val_fraction, test_fraction, seed, validation_patients)
    if os.path.isfile(source):
        return datalist_from_csv(source, val_fraction, test_fraction, seed, patient_pattern, validation_patients)
    return datalist_from_folder(source, val_fraction, test_fraction, seed, patient_pattern, validation_patients)
