"""The spool: received instances on disk, written atomically before the sender is told Success.

Each instance is one file ``<SOP Instance UID>.dcm`` (the UID validated against the UID grammar) holding the
DICOM file as received (PS3.10 file meta + data set in the negotiated transfer syntax). A write goes to a
temporary file in the same folder, is flushed with ``fsync``, renamed over the final name (atomic on POSIX),
and the folder is ``fsync``-ed, so after a crash the spool holds either the whole instance or nothing. Files
are created owner-only (``0600``) in an owner-only folder (``0700``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from monai_pneumonia.results import atomic_write
from monai_pneumonia.service.uids import is_valid_uid, require_valid_uid

__all__ = ["Spool"]

_SUFFIX = ".dcm"


def _uid_of(path: Path) -> str:
    """The SOP Instance UID a spool file is named after (``""`` when its name is not ``<valid UID>.dcm``)."""
    uid = path.name[: -len(_SUFFIX)] if path.name.endswith(_SUFFIX) else ""
    return uid if is_valid_uid(uid) and path.is_file() else ""


class Spool:
    """A folder of received instances, one file per SOP Instance UID.

    Args:
        root: the folder (created ``0700`` if missing).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def path_for(self, sop_instance_uid: str) -> Path:
        """The file of an instance.

        Raises:
            InvalidUIDError: ``sop_instance_uid`` is not a UID (it never reaches the file system).
        """
        return self.root / f"{require_valid_uid(sop_instance_uid, 'SOP Instance UID')}{_SUFFIX}"

    def write(self, sop_instance_uid: str, data: bytes) -> Path:
        """Store an encoded DICOM file atomically; returns its path once it is on disk."""
        return atomic_write(self.path_for(sop_instance_uid), data)

    def __contains__(self, sop_instance_uid: str) -> bool:
        return self.path_for(sop_instance_uid).is_file()

    def remove(self, sop_instance_uid: str) -> None:
        """Delete an instance (no error if it is already gone)."""
        self.path_for(sop_instance_uid).unlink(missing_ok=True)

    def pending(self) -> Iterator[tuple[str, Path]]:
        """``(SOP Instance UID, path)`` of every complete instance, oldest first (:meth:`strays` are not)."""
        files = [p for p in self.root.glob(f"*{_SUFFIX}") if not p.name.startswith(".") and _uid_of(p)]
        for path in sorted(files, key=lambda p: p.stat().st_mtime):
            yield _uid_of(path), path

    def strays(self) -> list[Path]:
        """Entries that are neither an instance (``<valid UID>.dcm``) nor a partial write: never written here."""
        return sorted(p for p in self.root.iterdir() if not p.name.startswith(".") and not _uid_of(p))

    def discard_partial(self) -> int:
        """Delete temporary files left by a crash mid-write (never acknowledged); returns how many.

        Every hidden file is one: :func:`~monai_pneumonia.results.atomic_write` writes to ``.<name>.*.partial``
        (earlier versions to ``.incoming-*``), and nothing else writes here.
        """
        partial = [path for path in self.root.glob(".*") if path.is_file()]
        for path in partial:
            path.unlink(missing_ok=True)
        return len(partial)
