"""Build MONAI datalists for pneumonia vs normal, split by patient.

A datalist is ``{"training": [...], "validation": [...], "test": [...]}`` whose items are
``{"image": path, "label": 0 | 1, "patient": id}`` (normal = 0, pneumonia = 1), the JSON layout that
``monai.data.load_decathlon_datalist`` and the bundle configs read. Sources:

* a folder with class sub-folders (``NORMAL``/``normal``/``Pneumonia``..., searched recursively):
  :func:`datalist_from_folder`;
* a CSV ``path,label[,patient]``: :func:`datalist_from_csv`;
* a DICOM folder plus a CSV ``sop_instance_uid,label``: :func:`datalist_from_dicom` (patients are
  SHA-256 pseudonyms of PatientID, never the real id).

Several images of one patient are strongly correlated (and the public set has byte-identical pairs), so
validation and test are carved out **by patient**, stratified by the patient's class, deterministically
for a seed: :func:`split_by_patient`. The bundle configs call :func:`load_datalist`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pydicom
from pydicom.errors import InvalidDicomError

from monai_pneumonia import decision
from monai_pneumonia.data.discovery import find_images
from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.formats import DICOM

__all__ = [
    "CLASS_NAMES",
    "SPLITS",
    "CsvRowError",
    "DatalistError",
    "DatalistSummary",
    "EmptyClassError",
    "NoClassFoldersError",
    "SourceNotFoundError",
    "UnknownLabelError",
    "assert_patients_disjoint",
    "build_datalist",
    "datalist_from_csv",
    "datalist_from_dicom",
    "datalist_from_folder",
    "load_datalist",
    "parse_label",
    "patient_from_path",
    "pseudonymize",
    "split_by_patient",
    "summarize",
    "write_datalist",
]

logger = logging.getLogger(__name__)

#: Class names by label, lower case as in the datalist summary and the data set's folders.
CLASS_NAMES: Final = tuple(name.lower() for name in decision.CLASS_NAMES)
#: Splits of a datalist, in order.
SPLITS: Final = ("training", "validation", "test")

#: File-name patterns of the public Kermany et al. set: ``personN_{bacteria,virus}_M`` -> ``personN``,
#: ``NORMAL2-IM-XXXX-YYYY`` -> ``NORMAL2-IM-XXXX``, ``IM-XXXX-YYYY`` -> ``IM-XXXX`` (tried in this order).
#: Some files carry one more number (``IM-0429-0001-0002``, ``person1_virus_7_1``): same patient.
PUBLIC_PATIENT_PATTERNS: Final = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)(?:_\d+)+$", re.IGNORECASE),
    re.compile(r"^(NORMAL2-IM-\d+)(?:-\d+)+$", re.IGNORECASE),
    re.compile(r"^(IM-\d+)(?:-\d+)+$", re.IGNORECASE),
)
_LABEL_WORDS: Final = {"0": 0, "1": 1, "normal": 0, "pneumonia": 1}
_CLASS_FOLDER_NAMES: Final = {"normal": 0, "pneumonia": 1}
_PSEUDONYM_PREFIX: Final = "anon-"

Item = dict[str, Any]
Datalist = dict[str, list[Item]]


# ----------------------------------------------------------------------------------------------- errors
class DatalistError(XrayInputError):
    """A datalist source that cannot be used; the message names the path (a ``ValueError``)."""


class SourceNotFoundError(DatalistError):
    """The folder, CSV or JSON does not exist."""


class NoClassFoldersError(DatalistError):
    """A folder has no ``normal``/``pneumonia`` sub-folder."""


class EmptyClassError(DatalistError):
    """A class has no image."""


class UnknownLabelError(DatalistError):
    """A label is neither ``0``/``1`` nor ``NORMAL``/``PNEUMONIA``."""


class CsvRowError(DatalistError):
    """A CSV row is malformed; ``line`` is its 1-based line number."""

    def __init__(self, path: str | os.PathLike | None, reason: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(path, reason if line is None else f"line {line}: {reason}")


# ---------------------------------------------------------------------------------------------- summary
@dataclass
class DatalistSummary:
    """Class counts per split, plus what the builder had to report.

    Attributes:
        counts: ``counts[split][kind][class]`` with kind ``"images"`` or ``"patients"`` and class a
            :data:`CLASS_NAMES` entry (a patient's class is the majority label of its images).
        warnings: things a user should know (files whose patient id was not recognised, mixed-label patients).
        unlabeled: files left out because no label was found for them (DICOM source).
    """

    counts: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unlabeled: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON-serialisable data."""
        return {"counts": self.counts, "warnings": list(self.warnings), "unlabeled": list(self.unlabeled)}

    def __str__(self) -> str:
        header = f"{'split':<12}{'images':>8}{'normal':>8}{'pneum.':>8}{'patients':>10}{'normal':>8}{'pneum.':>8}"
        lines = [header]
        for split, kinds in self.counts.items():
            row = f"{split:<12}"
            for kind, width in (("images", 8), ("patients", 10)):
                per_class = kinds[kind]
                row += f"{sum(per_class.values()):>{width}}" + "".join(f"{per_class[c]:>8}" for c in CLASS_NAMES)
            lines.append(row)
        if self.unlabeled:
            lines.append(f"unlabeled (left out): {len(self.unlabeled)} file(s), e.g. {self.unlabeled[0]}")
        lines.extend(f"warning: {message}" for message in self.warnings)
        return "\n".join(lines)


def _patient_classes(items: Iterable[Item]) -> dict[str, int]:
    """Each patient's class: the majority label of its images (pneumonia on a tie)."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for item in items:
        votes[item["patient"]][int(item["label"])] += 1
    return {patient: int(count[1] >= count[0]) for patient, count in votes.items()}


def summarize(
    datalist: Mapping[str, Sequence[Item]], warnings: Sequence[str] = (), unlabeled: Sequence[str] = ()
) -> DatalistSummary:
    """Count images and patients per class in every split.

    Args:
        datalist: a datalist; splits other than :data:`SPLITS` are counted too.
        warnings: messages to carry in the summary.
        unlabeled: files left out for want of a label.

    Returns:
        A :class:`DatalistSummary`; ``print(summary)`` shows a table.
    """
    counts = {}
    for split, items in datalist.items():
        images = Counter(CLASS_NAMES[int(item["label"])] for item in items)
        patients = Counter(CLASS_NAMES[c] for c in _patient_classes(i for i in items if "patient" in i).values())
        counts[split] = {
            "images": {name: images[name] for name in CLASS_NAMES},
            "patients": {name: patients[name] for name in CLASS_NAMES},
        }
    return DatalistSummary(counts=counts, warnings=list(warnings), unlabeled=list(unlabeled))


# ------------------------------------------------------------------------------------ labels, patients
def parse_label(value: Any, source: str | os.PathLike | None = None, line: int | None = None) -> int:
    """Read a label: ``0``/``1`` or ``NORMAL``/``PNEUMONIA`` in any case, surrounding blanks ignored.

    Args:
        value: the label as found (string or int).
        source: the file it comes from, for the error message.
        line: its line number, for the error message.

    Returns:
        0 (normal) or 1 (pneumonia).

    Raises:
        UnknownLabelError: any other value.
    """
    label = _LABEL_WORDS.get(str(value).strip().lower())
    if label is None:
        where = f"line {line}: " if line is not None else ""
        raise UnknownLabelError(source, f"{where}unknown label {value!r} (expected 0/1 or NORMAL/PNEUMONIA)")
    return label


def _compile_pattern(pattern: str | re.Pattern | None, what: str) -> re.Pattern | None:
    """Compile a user regex, checking the number of groups."""
    if pattern is None or isinstance(pattern, re.Pattern):
        compiled = pattern
    else:
        try:
            compiled = re.compile(pattern)
        except re.error as error:
            raise ValueError(f"{what} {pattern!r} is not a valid regular expression: {error}") from error
    if what == "patient_pattern" and compiled is not None and compiled.groups != 1:
        raise ValueError(f"patient_pattern {compiled.pattern!r} must have exactly one group, has {compiled.groups}")
    return compiled


def _stem(path: str) -> str:
    """The file name without its extension(s) (``a.nii.gz`` -> ``a``)."""
    name = os.path.basename(path)
    return name.split(".", 1)[0] if not name.startswith(".") else name


def patient_from_path(path: str, patient_pattern: str | re.Pattern | None = None) -> str | None:
    """The patient id in an image path.

    Args:
        path: the image path.
        patient_pattern: a regex with one group, searched (``re.search``) in the path with ``/`` separators;
            the group is the patient id. When ``None``, the file name (without extension) is matched against
            the public data set's patterns (:data:`PUBLIC_PATIENT_PATTERNS`).

    Returns:
        The patient id, or ``None`` when nothing matches.
    """
    compiled = _compile_pattern(patient_pattern, "patient_pattern")
    if compiled is not None:
        match = compiled.search(path.replace(os.sep, "/"))
        return match.group(1) if match and match.group(1) else None
    stem = _stem(path)
    for public in PUBLIC_PATIENT_PATTERNS:
        match = public.match(stem)
        if match:
            return match.group(1)
    return None


def _assign_patients(items: list[Item], patient_pattern: str | re.Pattern | None) -> list[str]:
    """Fill missing ``patient`` keys from the paths; an unmatched file becomes its own patient.

    Returns:
        Warnings about unmatched files (one summary line plus an example).
    """
    compiled = _compile_pattern(patient_pattern, "patient_pattern")
    unmatched = []
    for item in items:
        if item.get("patient"):
            continue
        patient = patient_from_path(item["image"], compiled)
        if patient is None:
            unmatched.append(item["image"])
            patient = item["image"]
        item["patient"] = patient
    if not unmatched:
        return []
    message = f"{len(unmatched)} file(s) match no patient pattern and are each their own patient, e.g. {unmatched[0]}"
    logger.warning(message)
    return [message]


def _mixed_label_warnings(items: Sequence[Item]) -> list[str]:
    labels: dict[str, set[int]] = defaultdict(set)
    for item in items:
        labels[item["patient"]].add(int(item["label"]))
    mixed = sorted(patient for patient, found in labels.items() if len(found) > 1)
    if not mixed:
        return []
    return [f"{len(mixed)} patient(s) have both labels and are split by their majority label, e.g. {mixed[0]}"]


# ------------------------------------------------------------------------------------------------ split
def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in [0, 1) with a sum below 1"
        )


def _held_out_count(fraction: float, n_patients: int) -> int:
    """Patients of one class for a held-out split: rounded, at least one when the fraction is positive."""
    if fraction <= 0.0 or n_patients < 2:
        return 0
    return max(1, round(fraction * n_patients))


def _assign_splits(
    patients_by_class: Mapping[int, list[str]], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, str]:
    """Shuffle each class's sorted patients with the seed and cut test, then validation, off the front."""
    rng = random.Random(seed)
    split_of: dict[str, str] = {}
    for label in sorted(patients_by_class):
        patients = sorted(patients_by_class[label])
        rng.shuffle(patients)
        n_test = min(_held_out_count(test_fraction, len(patients)), max(0, len(patients) - 1))
        n_val = min(_held_out_count(val_fraction, len(patients)), max(0, len(patients) - 1 - n_test))
        for index, patient in enumerate(patients):
            split_of[patient] = "test" if index < n_test else "validation" if index < n_test + n_val else "training"
    return split_of


def assert_patients_disjoint(datalist: Mapping[str, Sequence[Item]]) -> None:
    """Check that no patient appears in two splits.

    Args:
        datalist: a datalist; items without ``patient`` are not checked.

    Raises:
        AssertionError: naming a patient found in two splits (raised explicitly, also under ``python -O``).
    """
    seen: dict[str, str] = {}
    for split, items in datalist.items():
        for item in items:
            patient = item.get("patient")
            if patient is None:
                continue
            if seen.setdefault(patient, split) != split:
                raise AssertionError(f"patient {patient!r} is in both {seen[patient]!r} and {split!r}")


def split_by_patient(
    items: Sequence[Item],
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
    validation_patients: str | re.Pattern | None = None,
) -> Datalist:
    """Split items into training, validation and test by patient, stratified by class.

    Each patient's class is the majority label of its images. Patients matching ``validation_patients`` go
    to validation first; the fractions then apply to the remaining patients of each class (rounded, at
    least one patient per class when positive, at least one training patient kept). The result depends only
    on the items' content and the seed, not on their order.

    Args:
        items: items with ``image``, ``label`` and ``patient``.
        val_fraction: fraction of each class's patients for validation.
        test_fraction: fraction of each class's patients for test.
        seed: seed of the shuffle.
        validation_patients: regex searched (``re.search``) in patient ids; matches are forced into validation
            (e.g. ``"^NORMAL2-"`` to hold out a series as a distribution-shift check).

    Returns:
        The datalist; each split sorted by image path.

    Raises:
        ValueError: fractions out of range, an invalid regex, or an item without a patient.
    """
    _check_fractions(val_fraction, test_fraction)
    forced = _compile_pattern(validation_patients, "validation_patients")
    if any(not item.get("patient") for item in items):
        raise ValueError("every item needs a 'patient' before splitting")
    classes = _patient_classes(items)
    patients_by_class: dict[int, list[str]] = defaultdict(list)
    split_of = {}
    for patient, label in classes.items():
        if forced is not None and forced.search(patient):
            split_of[patient] = "validation"
        else:
            patients_by_class[label].append(patient)
    split_of.update(_assign_splits(patients_by_class, val_fraction, test_fraction, seed))
    datalist: Datalist = {split: [] for split in SPLITS}
    for item in sorted(items, key=lambda i: (i["image"], i["patient"])):
        datalist[split_of[item["patient"]]].append(dict(item))
    assert_patients_disjoint(datalist)
    return datalist


# ----------------------------------------------------------------------------------------------- sources
def _require(path: str, folder: bool) -> str:
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
    warnings = list(warnings) + _assign_patients(items, patient_pattern)
    warnings += _mixed_label_warnings(items)
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
    dataset_dir = _require(os.path.abspath(os.fspath(dataset_dir)), folder=True)
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
    csv_path = _require(os.path.abspath(os.fspath(csv_path)), folder=False)
    items = _csv_items(csv_path)
    _require_both_classes(items, csv_path)
    return _finish(items, val_fraction, test_fraction, seed, patient_pattern, validation_patients)


def pseudonymize(identifier: str, salt: str = "") -> str:
    """A stable pseudonym for a patient identifier: ``anon-`` and 16 hex digits of SHA-256.

    Args:
        identifier: the real identifier (PatientID or StudyInstanceUID); never stored.
        salt: a site secret mixed in, so pseudonyms cannot be recomputed from a list of known ids.

    Returns:
        The pseudonym.
    """
    return _PSEUDONYM_PREFIX + hashlib.sha256(f"{salt}\x00{identifier}".encode()).hexdigest()[:16]


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
    dicom_dir = _require(os.path.abspath(os.fspath(dicom_dir)), folder=True)
    labels_csv = _require(os.path.abspath(os.fspath(labels_csv)), folder=False)
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


# ------------------------------------------------------------------------------------------ JSON in/out
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
    with open(path, "w", encoding="utf-8") as stream:
        json.dump(datalist, stream, indent=2)
        stream.write("\n")
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
        path = _require(os.path.abspath(os.fspath(datalist)), folder=False)
        result = _read_json_datalist(path)
        warnings: list[str] = []
        if "validation" not in result:
            training = result.pop("training")
            warnings = _assign_patients(training, patient_pattern)
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
        path = _require(os.path.abspath(os.fspath(datalist)), folder=False)
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
