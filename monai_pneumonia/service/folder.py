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
from monai_pneumonia.service.delivery import Destination

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

    def send(self, files: Sequence[Path]) -> list[Path]:
        """Copy the files into the folder; returns those written."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        kept = []
        for path in files:
            atomic_write(self.folder / Path(path).name, Path(path).read_bytes())
            kept.append(path)
        if kept:
            logger.info("kept %d result file(s) in %s", len(kept), os.fspath(self.folder))
        return kept
