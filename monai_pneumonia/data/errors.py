"""Typed errors of the datalist builders: a source that cannot be used, named with the reason.

A bad CSV row or a missing folder is the user's input, not a refused radiograph, so these are plain
``ValueError`` subclasses (not :class:`~monai_pneumonia.errors.XrayInputError`).
"""

from __future__ import annotations

import os

from monai_pneumonia.errors import DatalistError

__all__ = [
    "CsvRowError",
    "DatalistError",
    "EmptyClassError",
    "NoClassFoldersError",
    "SourceNotFoundError",
    "UnknownLabelError",
]


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
