"""The drift reference: the distribution of each signal on films the model was validated on, bound to the model.

Stored as a small JSON sidecar beside the checkpoint (``bundle/models/model.reference.json``): the values of
every continuous signal (the two-sample tests need the sample), the category counts of every categorical one, a
human-readable summary (positive rate, probability quantiles and histogram) and the checkpoint's SHA-256. A
site's own accepted sample -- any records file -- can be the reference instead (:meth:`Reference.from_records`).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monai_pneumonia.monitoring.signals import (
    CATEGORICAL,
    CONTINUOUS,
    categorical_values,
    continuous_values,
    is_refused,
)
from monai_pneumonia.results import atomic_write, read_records

__all__ = ["REFERENCE_SCHEMA", "Reference", "DriftReferenceError", "load_reference", "reference_path"]

#: ``"schema"`` value of a reference sidecar.
REFERENCE_SCHEMA = "monai-pneumonia/drift-reference/1"


class DriftReferenceError(ValueError):
    """A reference file that cannot be used (names the file and the problem)."""


def reference_path(checkpoint: str | os.PathLike) -> Path:
    """Where a checkpoint's reference sidecar lives: ``model.pt`` -> ``model.reference.json`` beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.reference.json")



@dataclass
class Reference:
    """Per-signal reference distributions.

    Attributes:
        continuous: signal name -> its values.
        categorical: signal name -> category counts.
        model_sha256: SHA-256 of the checkpoint the records came from (``""``: not bound).
        source: where the reference came from, in words.
        count: records it was built from (refused included).
    """

    continuous: dict[str, list[float]] = field(default_factory=dict)
    categorical: dict[str, dict[str, int]] = field(default_factory=dict)
    model_sha256: str = ""
    source: str = ""
    count: int = 0

    @classmethod
    def from_records(cls, records: Iterable[Mapping], model_sha256: str = "", source: str = "") -> Reference:
        """Build a reference from per-film records (e.g. ``predict --json`` of validation films).

        Args:
            records: per-film records.
            model_sha256: the checkpoint's SHA-256 (default: the one the records name, when they all agree).
            source: a description stored with it.
        """
        records = list(records)
        if not model_sha256:
            named = {r.get("model_sha256") for r in records if r.get("model_sha256")}
            model_sha256 = named.pop() if len(named) == 1 else ""
        continuous = {name: [round(v, 6) for v in continuous_values(records, name)] for name in CONTINUOUS}
        categorical = {name: dict(Counter(categorical_values(records, name))) for name in CATEGORICAL}
        return cls({k: v for k, v in continuous.items() if v}, {k: v for k, v in categorical.items() if v},
                   model_sha256, source, len(records))

    def summary(self) -> dict:
        """Positive rate, refusal rate, probability quantiles and ten-bin histogram (for people reading the file)."""
        decisions = self.categorical.get("decision", {})
        classified = sum(decisions.values())
        out = {"films": self.count, "classified": classified,
               "refused": self.categorical.get("refused", {}).get("refused", 0),
               "positive_rate": round(decisions.get("PNEUMONIA", 0) / classified, 4) if classified else None}
        if probabilities := self.continuous.get("probability"):
            quantiles = np.quantile(probabilities, [0.05, 0.25, 0.5, 0.75, 0.95])
            out["probability_quantiles"] = dict(zip(("q05", "q25", "q50", "q75", "q95"),
                                                    (round(float(q), 4) for q in quantiles), strict=True))
            out["probability_histogram"] = np.histogram(probabilities, bins=10, range=(0, 1))[0].tolist()
        return out

    def to_json(self) -> dict:
        """The sidecar's content."""
        return {"schema": REFERENCE_SCHEMA, "model_sha256": self.model_sha256, "source": self.source,
                "created": round(time.time()), "count": self.count, "summary": self.summary(),
                "categorical": self.categorical, "continuous": self.continuous}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the sidecar (compact JSON)."""
        return atomic_write(path, json.dumps(self.to_json(), separators=(",", ":")) + "\n", mode=0o644)

    @classmethod
    def from_json(cls, data: Mapping, origin: str = "") -> Reference:
        """Read a sidecar's content.

        Raises:
            DriftReferenceError: not a reference of this schema.
        """
        if data.get("schema") != REFERENCE_SCHEMA:
            raise DriftReferenceError(f"{origin or 'reference'}: not a drift reference (schema {REFERENCE_SCHEMA} expected)")
        return cls({k: [float(v) for v in vs] for k, vs in data.get("continuous", {}).items()},
                   {k: {str(c): int(n) for c, n in cs.items()} for k, cs in data.get("categorical", {}).items()},
                   str(data.get("model_sha256", "")), str(data.get("source", "")), int(data.get("count", 0)))


def load_reference(path: str | os.PathLike) -> Reference:
    """A reference from a sidecar (``*.reference.json``) or from any records file (a site's accepted sample).

    Raises:
        DriftReferenceError: the file is missing, unreadable, or holds no classified record.
    """
    path = Path(path)
    if not path.is_file():
        raise DriftReferenceError(f"{path}: no such reference file")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None  # JSON lines: a records file
    if isinstance(data, dict) and "schema" in data:
        return Reference.from_json(data, os.fspath(path))
    try:
        records = list(read_records(path))
    except ValueError as error:
        raise DriftReferenceError(str(error)) from None
    if not any(not is_refused(r) for r in records):
        raise DriftReferenceError(f"{path}: no classified film to build a reference from")
    return Reference.from_records(records, source=f"records of {path.name} ({len(records)} films)")
