"""Class counts of a datalist per split, for the ``datalist`` command and the training log."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monai_pneumonia.data.patients import Item, patient_classes
from monai_pneumonia.decision import CLASS_NAMES

__all__ = ["DatalistSummary", "summarize"]

#: The summary's class keys: the decision's class names in lower case (as the data set's folders).
_KEYS = tuple(name.lower() for name in CLASS_NAMES)


@dataclass
class DatalistSummary:
    """Class counts per split, plus what the builder had to report.

    Attributes:
        counts: ``counts[split][kind][class]`` with kind ``"images"`` or ``"patients"`` and class a lower-case
            :data:`~monai_pneumonia.decision.CLASS_NAMES` entry (a patient's class is the majority label of
            its images).
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
                row += f"{sum(per_class.values()):>{width}}" + "".join(f"{per_class[c]:>8}" for c in _KEYS)
            lines.append(row)
        if self.unlabeled:
            lines.append(f"unlabeled (left out): {len(self.unlabeled)} file(s), e.g. {self.unlabeled[0]}")
        lines.extend(f"warning: {message}" for message in self.warnings)
        return "\n".join(lines)


def summarize(
    datalist: Mapping[str, Sequence[Item]], warnings: Sequence[str] = (), unlabeled: Sequence[str] = ()
) -> DatalistSummary:
    """Count images and patients per class in every split.

    Args:
        datalist: a datalist; every list in it is counted.
        warnings: messages to carry in the summary.
        unlabeled: files left out for want of a label.

    Returns:
        A :class:`DatalistSummary`; ``print(summary)`` shows a table.
    """
    counts = {}
    for split, items in datalist.items():
        images = Counter(_KEYS[int(item["label"])] for item in items)
        patients = Counter(_KEYS[c] for c in patient_classes(i for i in items if "patient" in i).values())
        counts[split] = {
            "images": {name: images[name] for name in _KEYS},
            "patients": {name: patients[name] for name in _KEYS},
        }
    return DatalistSummary(counts=counts, warnings=list(warnings), unlabeled=list(unlabeled))
