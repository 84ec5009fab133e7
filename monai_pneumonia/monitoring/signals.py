"""The signals a drift monitor compares, read from per-film records (:mod:`monai_pneumonia.results`).

One place says which record field each signal comes from and whether it is continuous or categorical, so the
reference, the window tests and the plots agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from monai_pneumonia.results import IMAGE_STATISTICS

__all__ = ["ABSENT", "CATEGORICAL", "CONTINUOUS", "categorical_values", "continuous_values", "is_refused"]

#: The category of an acquisition attribute the film does not have (PNG, JPEG, or a DICOM without it).
ABSENT = "(absent)"
#: Continuous signals (classified films only).
CONTINUOUS: tuple[str, ...] = ("probability", "atypicality", *IMAGE_STATISTICS, "rows", "columns", "pixel_spacing")
#: Categorical signals; ``refused`` counts every record, the others classified films only.
CATEGORICAL: tuple[str, ...] = ("decision", "refused", "flagged", "Manufacturer", "ManufacturerModelName", "Modality",
                                "PhotometricInterpretation", "ViewPosition")


def is_refused(record: Mapping) -> bool:
    """True for the record of a refused film."""
    return bool(record.get("refused", False))


def _continuous(record: Mapping, name: str) -> float | None:
    if name in ("probability", "atypicality"):
        value = record.get(name)
    elif name == "pixel_spacing":
        spacing = (record.get("acquisition") or {}).get("PixelSpacing")
        value = spacing[0] if isinstance(spacing, Sequence) and spacing else None
    else:
        value = (record.get("image_statistics") or {}).get(name)
    return None if value is None else float(value)


def _categorical(record: Mapping, name: str) -> str:
    if name == "refused":
        return "refused" if is_refused(record) else "classified"
    if name == "decision":
        return str(record.get("decision", ""))
    if name == "flagged":
        return "flagged" if record.get("flags") else "none"
    return str((record.get("acquisition") or {}).get(name) or ABSENT)


def continuous_values(records: Iterable[Mapping], name: str) -> list[float]:
    """The values of a continuous signal over the classified records that have it."""
    values = (_continuous(r, name) for r in records if not is_refused(r))
    return [v for v in values if v is not None]


def categorical_values(records: Iterable[Mapping], name: str) -> list[str]:
    """The categories of a categorical signal (every record for ``refused``, classified records otherwise)."""
    return [_categorical(r, name) for r in records if name == "refused" or not is_refused(r)]
