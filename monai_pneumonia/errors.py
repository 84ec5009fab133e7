"""Typed errors shared by the loader, the bundle workflows and the DICOM service."""

from __future__ import annotations

import os
from typing import TypeVar

_E = TypeVar("_E", bound=BaseException)

__all__ = ["CheckpointError", "DatalistError", "DeviceUnavailableError", "NoInputError", "NoReadableInputError",
           "SiteProfileError", "XrayInputError",
           "find_cause"]


class XrayInputError(ValueError):
    """An input that cannot be used as a chest radiograph.

    The message always names the file and the reason, so a refused input can be reported back to the
    person or system that sent it (``errors.csv`` of the bundle, the DICOM service's log).

    Args:
        path: the offending file (or a description of the source when there is no file).
        reason: why it is refused, in words a user can act on.

    Attributes:
        path: the file as given.
        reason: the reason alone, without the file name.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str) -> None:
        self.path = os.fspath(path) if path is not None else "<memory>"
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keeps the two-argument signature picklable across DataLoader workers
        return (type(self), (self.path, self.reason))


class DatalistError(ValueError):
    """A datalist source that cannot be used; the message names the path and the reason.

    The user's input, not a refused radiograph: a plain ``ValueError`` (the subclasses are in
    :mod:`monai_pneumonia.data.errors`).

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


class NoReadableInputError(RuntimeError):
    """An evaluation or inference run in which every input was refused (each one is listed in ``errors.csv``)."""


class NoInputError(ValueError):
    """An evaluation or inference run given nothing to read: no image file in the inputs (message says where)."""


class SiteProfileError(ValueError):
    """A site profile that cannot be applied: missing, malformed, or bound to another model (the file is named)."""


class DeviceUnavailableError(ValueError):
    """A torch device asked for (``--device cuda:0``) that this machine does not have."""


class CheckpointError(ValueError):
    """A ``model.pt`` that cannot be used: unreadable or truncated, not this bundle's, or unable to decide.

    The message names the file and the problem in one line, so every entry point refuses the model instead of
    classifying with it (a NaN threshold or NaN weights would call every film NORMAL).
    """


def find_cause(error: BaseException, error_type: type[_E]) -> _E | None:
    """Find an exception of ``error_type`` on the cause/context chain of ``error`` (``error`` included).

    MONAI re-raises the exceptions of transforms and of bundle config expressions as ``RuntimeError`` with the
    original as the cause, so a typed error usually sits a few links down the chain.

    Args:
        error: the exception caught.
        error_type: the type looked for.

    Returns:
        The first exception of that type on the chain, or ``None``.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, error_type):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
