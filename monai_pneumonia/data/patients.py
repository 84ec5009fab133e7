"""Labels and patients of datalist items: label parsing, patient ids from paths, pseudonyms.

Several images of one patient are strongly correlated (and the public set has byte-identical pairs), so every
item carries a ``patient``: given by the source, parsed from the file name, or a SHA-256 pseudonym of the DICOM
PatientID (never the real id).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Final

from monai_pneumonia.data.errors import UnknownLabelError
from monai_pneumonia.decision import CLASS_NAMES

__all__ = [
    "PUBLIC_PATIENT_PATTERNS",
    "Item",
    "assign_patients",
    "compile_pattern",
    "mixed_label_warnings",
    "parse_label",
    "patient_classes",
    "patient_from_path",
    "pseudonymize",
]

logger = logging.getLogger(__name__)

#: A datalist item: ``{"image": path, "label": 0 | 1, "patient": id}`` (other keys kept).
Item = dict[str, Any]

#: File-name patterns of the public Kermany et al. set: ``personN_{bacteria,virus}_M`` -> ``personN``,
#: ``NORMAL2-IM-XXXX-YYYY`` -> ``NORMAL2-IM-XXXX``, ``IM-XXXX-YYYY`` -> ``IM-XXXX`` (tried in this order).
#: Some files carry one more number (``IM-0429-0001-0002``, ``person1_virus_7_1``): same patient.
PUBLIC_PATIENT_PATTERNS: Final = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)(?:_\d+)+$", re.IGNORECASE),
    re.compile(r"^(NORMAL2-IM-\d+)(?:-\d+)+$", re.IGNORECASE),
    re.compile(r"^(IM-\d+)(?:-\d+)+$", re.IGNORECASE),
)
#: Accepted spellings of a label: its index or its class name (compared lower-case).
_LABEL_WORDS: Final = {**{str(i): i for i in range(len(CLASS_NAMES))},
                       **{name.lower(): i for i, name in enumerate(CLASS_NAMES)}}
_PSEUDONYM_PREFIX: Final = "anon-"


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


def compile_pattern(pattern: str | re.Pattern | None, what: str) -> re.Pattern | None:
    """Compile a user regex (``what`` names the option in errors); a ``patient_pattern`` needs one group.

    Raises:
        ValueError: an invalid regex, or a ``patient_pattern`` without exactly one group.
    """
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
    compiled = compile_pattern(patient_pattern, "patient_pattern")
    if compiled is not None:
        match = compiled.search(path.replace(os.sep, "/"))
        return match.group(1) if match and match.group(1) else None
    stem = _stem(path)
    for public in PUBLIC_PATIENT_PATTERNS:
        match = public.match(stem)
        if match:
            return match.group(1)
    return None


def assign_patients(items: list[Item], patient_pattern: str | re.Pattern | None) -> list[str]:
    """Fill missing ``patient`` keys from the paths (in place); an unmatched file becomes its own patient.

    Returns:
        Warnings about unmatched files (one summary line plus an example).
    """
    compiled = compile_pattern(patient_pattern, "patient_pattern")
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


def patient_classes(items: Iterable[Item]) -> dict[str, int]:
    """Each patient's class: the majority label of its images (pneumonia on a tie)."""
    votes: dict[str, Counter] = defaultdict(Counter)
    for item in items:
        votes[item["patient"]][int(item["label"])] += 1
    return {patient: int(count[1] >= count[0]) for patient, count in votes.items()}


def mixed_label_warnings(items: Sequence[Item]) -> list[str]:
    """A warning when some patients have images of both labels (they are split by their majority label)."""
    labels: dict[str, set[int]] = defaultdict(set)
    for item in items:
        labels[item["patient"]].add(int(item["label"]))
    mixed = sorted(patient for patient, found in labels.items() if len(found) > 1)
    if not mixed:
        return []
    return [f"{len(mixed)} patient(s) have both labels and are split by their majority label, e.g. {mixed[0]}"]


def pseudonymize(identifier: str, salt: str = "") -> str:
    """A stable pseudonym for a patient identifier: ``anon-`` and 16 hex digits of SHA-256.

    Args:
        identifier: the real identifier (PatientID or StudyInstanceUID); never stored.
        salt: a site secret mixed in, so pseudonyms cannot be recomputed from a list of known ids.

    Returns:
        The pseudonym.
    """
    return _PSEUDONYM_PREFIX + hashlib.sha256(f"{salt}\x00{identifier}".encode()).hexdigest()[:16]
