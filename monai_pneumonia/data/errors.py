"""Typed errors of the datalist builders: a source that cannot be used, named with the reason.

A bad CSV row or a missing folder is the user's input, not a refused radiograph, so these are plain
``ValueError`` subclasses (not :class:`~monai_pneumonia.errors.XrayInputError`).
"""

from __future__ import annotations

import os

__all__ = [
    "CsvRowError",
    "DatalistError",
    "EmptyClassError",
    "NoClassFoldersError",
    "SourceNotFoundError",
    "UnknownLabelError",
]


class DatalistError(ValueError):
    """A datalist source that cannot be used; the message names the path and the reason.

    Args:
        path: the folder, CSV or JSON (or ``None`` when there is no file).
        reason: what is wrong with it, in words a user can act on.

    Attributes:
        path: the source as given (``"<memory>"`` when none).
        reason: the reason alone.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str) -> None:
        self.path = os.fspath(path) if path is not None else "<memory>"
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keeps the two-argument signature picklable across processes
        return (type(self), (self.path, self.reason))


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
