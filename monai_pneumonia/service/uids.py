"""DICOM Unique Identifiers: validation against the UID grammar and deterministic derivation.

A UID (PS3.5 Section 9.1) is at most 64 characters of digits and dots, made of components separated by single
dots; a component is ``0`` or a number without a leading zero. Only a UID that passes :func:`is_valid_uid`
ever becomes part of a file name, so a peer cannot steer a path with ``../`` or other characters.
"""

from __future__ import annotations

import re
import uuid

__all__ = ["InvalidUIDError", "derive_uid", "is_valid_uid", "require_valid_uid"]

#: PS3.5 9.1: components of digits without leading zeros (``0`` alone allowed), separated by single dots.
_UID_GRAMMAR = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_MAX_LENGTH = 64
#: Namespace of the UUIDs behind derived UIDs (fixed, so a derivation gives the same UID on every run).
_NAMESPACE = uuid.UUID("6f1a3c52-9d0e-4f6b-8a4e-2b7c1d5e9f30")


class InvalidUIDError(ValueError):
    """A string that is not a DICOM UID (PS3.5 Section 9.1)."""


def is_valid_uid(uid: object) -> bool:
    """True when ``uid`` follows the UID grammar of PS3.5 Section 9.1 (at most 64 characters)."""
    return isinstance(uid, str) and 0 < len(uid) <= _MAX_LENGTH and _UID_GRAMMAR.fullmatch(uid) is not None


def require_valid_uid(uid: object, what: str = "UID") -> str:
    """Return ``uid`` if it is a valid UID.

    Raises:
        InvalidUIDError: it is not (the message shows it with ``repr`` so control characters stay visible).
    """
    if not is_valid_uid(uid):
        raise InvalidUIDError(f"{what} {uid!r} is not a valid DICOM UID (PS3.5 9.1)")
    return uid  # type: ignore[return-value]


def derive_uid(*parts: str) -> str:
    """A UID derived deterministically from ``parts`` (PS3.5 Annex B.2: ``2.25.`` + a UUID as an integer).

    The result UIDs of an instance are derived from its SOP Instance UID, so processing an instance again
    (after a crash) reproduces the same result UIDs and a PACS keeps one copy instead of two.
    """
    return f"2.25.{uuid.uuid5(_NAMESPACE, '|'.join(parts)).int}"
