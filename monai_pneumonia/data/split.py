"""Split a datalist's items into training, validation and test **by patient**, stratified by class.

Several images of one patient are strongly correlated, so validation and test are carved out by patient,
deterministically for a seed: :func:`split_by_patient`.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Final

from monai_pneumonia.data.patients import Item, compile_pattern, patient_classes

__all__ = ["SPLITS", "Datalist", "assert_patients_disjoint", "split_by_patient"]

#: Splits of a datalist, in order.
SPLITS: Final = ("training", "validation", "test")

#: A datalist: ``{"training": [...], "validation": [...], "test": [...]}``.
Datalist = dict[str, list[Item]]


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
    forced = compile_pattern(validation_patients, "validation_patients")
    if any(not item.get("patient") for item in items):
        raise ValueError("every item needs a 'patient' before splitting")
    classes = patient_classes(items)
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
