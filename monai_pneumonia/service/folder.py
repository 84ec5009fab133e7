"""Keeping results in a folder (``serve --keep-results DIR``), as a destination like the PACS.

For a trial run without a PACS to send to: every result instance (SR, and the Grad-CAM SC with ``--cam``) is
written to ``DIR/<result SOP Instance UID>.dcm`` through the same journaled delivery queue as C-STORE and
STOW-RS, so results are kept (never cleaned up by the service), listed in the results log (``delivered`` events
name the destination) and logged when written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from monai_pneumonia.results import atomic_write
from monai_pneumonia.service.delivery import DamagedResultError, Destination, Outcome, read_result

__all__ = ["FolderDestination"]

logger = logging.getLogger(__name__)


@dataclass
class FolderDestination(Destination):
    """Result instances copied (atomically, ``0600``) into a folder that the service never cleans.

    Args:
        folder: where the results are kept (created, ``0700``).
    """

    folder: Path

    def __post_init__(self) -> None:
        self.folder = Path(self.folder).resolve()

    @property
    def name(self) -> str:
        return f"folder:{self.folder}"

    def send(self, files: Sequence[Path]) -> Outcome:
        """Copy the files into the folder; a file that is not readable DICOM is damaged (never copied)."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        outcome = Outcome()
        for path in map(Path, files):
            try:
                read_result(path, stop_before_pixels=True)
                data = path.read_bytes()
            except (DamagedResultError, OSError) as error:
                outcome.damaged[path] = error.reason if isinstance(error, DamagedResultError) else (
                    f"cannot be read ({type(error).__name__})")
                continue
            atomic_write(self.folder / path.name, data)  # an OSError here (folder full): the batch is retried
            outcome.delivered.append(path)
        if outcome.delivered:
            logger.info("kept %d result file(s) in %s", len(outcome.delivered), os.fspath(self.folder))
        return outcome
