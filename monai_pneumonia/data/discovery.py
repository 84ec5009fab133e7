"""Find radiograph files in folders (PACS exports, class folders, ad-hoc inputs).

Files are recognised by content (:func:`monai_pneumonia.io.formats.sniff_format`), not by name, so
extensionless DICOM (``IM00001``) is found and a ``.txt`` next to it is skipped. A file whose *name* says image
(:data:`IMAGE_SUFFIXES`) but whose content is none is still returned, so the loader refuses it with a reason
instead of it vanishing; the files skipped are counted (``skipped``), so callers can say how many. Walking is lazy
(:func:`iter_images`), so a folder of 100k files starts yielding at once, and it follows symbolic links to
folders exactly once per real folder, so link loops end. Every entry is ``stat``-ed before it is opened: FIFOs
(whose ``open`` would block forever), sockets, devices and file links that loop are skipped with a warning.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Collection, Iterable, Iterator

from monai_pneumonia.io.formats import DICOM, JPEG, NIFTI, PNG, RADIOGRAPH_FORMATS, sniff_format

__all__ = ["IMAGE_SUFFIXES", "find_images", "iter_images", "is_skipped_name"]

#: File names never taken from a folder: the DICOM media directory index is DICOM but not an image.
SKIPPED_FILE_NAMES = frozenset({"DICOMDIR"})
#: File name endings (lower case) that say "image of this format": such a file is kept even when its content is
#: not recognised, so that it is refused with a reason (``errors.csv``) rather than skipped.
IMAGE_SUFFIXES = {".dcm": DICOM, ".png": PNG, ".jpg": JPEG, ".jpeg": JPEG, ".nii": NIFTI, ".nii.gz": NIFTI}


def _named_format(name: str) -> str | None:
    lower = name.lower()
    return next((fmt for suffix, fmt in IMAGE_SUFFIXES.items() if lower.endswith(suffix)), None)

logger = logging.getLogger(__name__)


def is_skipped_name(name: str) -> bool:
    """Whether a file or folder name found inside a folder is skipped without reading it.

    Args:
        name: a base name.

    Returns:
        ``True`` for hidden names (leading ``.``, e.g. ``.DS_Store``, ``.git``) and ``DICOMDIR`` (any case).
    """
    return name.startswith(".") or name.upper() in SKIPPED_FILE_NAMES


def _walk_folder(
    folder: str, recursive: bool, visited: set[str], formats: Collection[str], skipped: list[str] | None = None
) -> Iterator[str]:
    """Yield the radiographs under one folder, each folder's entries in sorted order.

    Args:
        folder: the folder to search.
        recursive: search sub-folders too.
        formats: the formats kept.
        visited: real paths of folders already searched (updated), so that link loops and folders reached
            twice are searched once.
        skipped: when given, the files not yielded are appended to it.
    """
    for root, dirnames, filenames in os.walk(folder, followlinks=True):
        real_root = os.path.realpath(root)
        if real_root in visited:
            dirnames[:] = []
            continue
        visited.add(real_root)
        kept = []
        if recursive:
            for name in sorted(dirnames):
                if not is_skipped_name(name) and os.path.realpath(os.path.join(root, name)) not in visited:
                    kept.append(name)
        dirnames[:] = kept  # os.walk descends in this (sorted) order
        for name in sorted(filenames):
            path = os.path.join(root, name)
            if is_skipped_name(name) or not _regular_file(path):
                continue
            if (sniff_format(path) or _named_format(name)) in formats:
                yield path
            elif skipped is not None:
                skipped.append(path)


def _regular_file(path: str) -> bool:
    """Whether ``path`` is a regular file (``stat`` before any ``open``); logs why a file found in a folder is not."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:  # a dangling link, a link loop (ELOOP), no permission
        logger.warning("%s: skipped (%s)", path, os.strerror(error.errno) if error.errno else type(error).__name__)
        return False
    if not stat.S_ISREG(mode):
        logger.warning("%s: skipped, not a regular file (a FIFO, socket or device)", path)
        return False
    return True


def iter_images(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    recursive: bool = True,
    formats: Collection[str] = RADIOGRAPH_FORMATS,
    skipped: list[str] | None = None,
) -> Iterator[str]:
    """Lazily yield the radiograph files among files and folders.

    Folders are searched (recursively by default) for DICOM (with or without extension, Part 10 files only),
    PNG, JPEG and NIfTI files, decided by content. Hidden files and folders and ``DICOMDIR`` are skipped,
    symbolic links to folders are followed once per real folder (no loops).

    An explicitly given *file* is always yielded, image or not (even when it does not exist), so that the
    caller can report it as refused instead of it vanishing silently.

    Args:
        paths: one path or several, files or folders, searched in the given order.
        recursive: search sub-folders of the given folders.
        formats: the formats looked for in folders (:data:`~monai_pneumonia.io.formats.RADIOGRAPH_FORMATS`
            entries), e.g. ``("dicom",)`` for a PACS export; each file is read once. A file whose content is
            not recognised is kept when its name ends in an :data:`IMAGE_SUFFIXES` entry of these formats.
        skipped: when given, the files found in folders but not yielded are appended to it.

    Yields:
        Paths (the given folder joined with the relative path): each folder's files in sorted order, then its
        sub-folders in sorted order. A folder reached twice (given twice, or via a link) is searched once.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    visited: set[str] = set()
    for path in paths:
        path = os.fspath(path)
        if os.path.isdir(path):
            yield from _walk_folder(path, recursive, visited, frozenset(formats), skipped)
        else:
            yield path


def find_images(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    recursive: bool = True,
    formats: Collection[str] = RADIOGRAPH_FORMATS,
    skipped: list[str] | None = None,
) -> list[str]:
    """The radiograph files among files and folders, sorted and without repeats.

    Same rules as :func:`iter_images` (content sniffing, hidden files and ``DICOMDIR`` skipped, no link
    loops, explicit files always returned so the caller can refuse them with a reason).

    Args:
        paths: one path or several, files or folders.
        recursive: search sub-folders of the given folders.
        formats: the formats looked for in folders.
        skipped: when given, the files found in folders but not returned are appended to it.

    Returns:
        The paths, sorted, each once.
    """
    return sorted(set(iter_images(paths, recursive=recursive, formats=formats, skipped=skipped)))
