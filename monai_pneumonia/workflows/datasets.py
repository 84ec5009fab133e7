"""Datasets and collation for evaluation and inference runs that must go on past unreadable inputs.

A folder from a PACS export or a research archive always holds a few files the loader refuses (a report, a
lateral film under the strict policy, a truncated transfer). Training fails loudly on such files — a training set
should be clean — but evaluation and inference record each refusal with its reason and carry on:
:class:`RefusingDataset` turns an :class:`~monai_pneumonia.errors.XrayInputError` into a
:class:`~monai_pneumonia.results.Refusal`,
:func:`collate_with_refusals` moves those records out of the batch, and
:class:`~monai_pneumonia.workflows.evaluator.XrayEvaluator` hands them to the handlers that write ``errors.csv``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

from monai.data import Dataset, list_data_collate

from monai_pneumonia.data.discovery import find_images
from monai_pneumonia.errors import NoInputError, XrayInputError, find_cause
from monai_pneumonia.results import Refusal

__all__ = ["REFUSED_KEY", "RefusingDataset", "collate_with_refusals", "drop_last_batch", "find_input_error",
           "image_items"]

logger = logging.getLogger(__name__)

#: Batch key under which :func:`collate_with_refusals` passes the :class:`~monai_pneumonia.results.Refusal` records
#: (``index``: the position in the dataset).
REFUSED_KEY = "refused"


def find_input_error(error: BaseException) -> XrayInputError | None:
    """The loader's :class:`XrayInputError` behind an exception raised through MONAI's ``Compose``, or ``None``."""
    return find_cause(error, XrayInputError)


class RefusingDataset(Dataset):
    """A MONAI ``Dataset`` whose items are either transformed data or a refusal record.

    Args:
        data: items like ``{"image": path, ...}``.
        transform: the preprocessing (it must start with the X-ray loader).
        image_key: the key holding the input path.

    Only :class:`XrayInputError` (the loader's typed refusal) becomes a record; any other exception is a bug or
    an environment problem and propagates.
    """

    def __init__(self, data: Sequence[dict], transform: Any = None, image_key: str = "image") -> None:
        super().__init__(data=data, transform=transform)
        self.image_key = image_key

    def _transform(self, index: int) -> dict:
        try:
            return super()._transform(index)
        except Exception as error:  # noqa: BLE001 - re-raised below unless it is a typed refusal
            refusal = find_input_error(error)
            if refusal is None:
                raise
            source = self.data[index].get(self.image_key, refusal.path)
            return {REFUSED_KEY: Refusal(os.fspath(source), refusal.reason, index)}


def collate_with_refusals(batch: Sequence[dict]) -> dict:
    """Collate the readable items of a batch and keep the refusals beside them.

    Args:
        batch: items from :class:`RefusingDataset`.

    Returns:
        ``list_data_collate`` of the readable items (empty dict if there are none) with the list of refusal
        records under :data:`REFUSED_KEY`.
    """
    readable = [item for item in batch if REFUSED_KEY not in item]
    collated = list_data_collate(readable) if readable else {}
    collated[REFUSED_KEY] = [item[REFUSED_KEY] for item in batch if REFUSED_KEY in item]
    return collated


def image_items(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict]:
    """Inference items for files and folders (searched recursively for DICOM, PNG, JPEG and NIfTI).

    Args:
        paths: one path or several; a file given explicitly is kept even if it is no image, so that it is
            reported as refused rather than silently skipped. Files in folders that neither content nor name
            mark as an image are skipped and counted in one warning.

    Returns:
        ``[{"image": path}, ...]`` in a deterministic order.

    Raises:
        NoInputError: nothing to read (no paths, or folders without image files).
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [os.fspath(p) for p in paths]
    skipped: list[str] = []
    found = find_images(paths, skipped=skipped)
    if skipped:
        logger.warning("%d file(s) in the input folders skipped: not DICOM, PNG, JPEG or NIfTI by content or name "
                       "(e.g. %s)", len(skipped), skipped[0])
    if not found:
        where = ", ".join(paths) if paths else "(no input paths)"
        raise NoInputError(f"no images found in {where}" + (f" ({len(skipped)} other files skipped)" if skipped else ""))
    return [{"image": path} for path in found]


def drop_last_batch(n_images: int, batch_size: int) -> bool:
    """Whether a training loader drops its last, partial batch: only when it would hold a single image.

    A batch of one cannot train BatchNorm (its variance is undefined); any larger remainder trains. Dropping
    every partial batch (``drop_last=True``) would leave out up to ``batch_size - 1`` images per epoch: 29 of 61
    at batch size 32. When one image is left out it is logged (a different one each epoch: the loader shuffles).

    Args:
        n_images: images in the training set.
        batch_size: the loader's batch size.
    """
    drop = n_images > batch_size and n_images % batch_size == 1
    if drop:
        logger.info("training: 1 of %d images is left out of each epoch (a last batch of one cannot train "
                    "BatchNorm); the loader shuffles, so a different one each epoch", n_images)
    return drop
