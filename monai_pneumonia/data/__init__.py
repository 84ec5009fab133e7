"""Datalists (MONAI's ``{"training", "validation", "test"}`` JSON) and image discovery.

One module per job: :mod:`~monai_pneumonia.data.errors` (typed ``ValueError`` subclasses),
:mod:`~monai_pneumonia.data.patients` (labels, patient ids, pseudonyms), :mod:`~monai_pneumonia.data.split`
(split by patient), :mod:`~monai_pneumonia.data.summary` (class counts), :mod:`~monai_pneumonia.data.sources`
(folder, CSV, DICOM builders), :mod:`~monai_pneumonia.data.datalist` (JSON in and out),
:mod:`~monai_pneumonia.data.discovery` (image files by content), :mod:`~monai_pneumonia.data.balance`.
"""

from __future__ import annotations

from monai_pneumonia.data.balance import class_weights
from monai_pneumonia.data.datalist import evaluation_items, load_datalist, write_datalist
from monai_pneumonia.data.discovery import find_images, iter_images
from monai_pneumonia.data.errors import (
    CsvRowError,
    DatalistError,
    EmptyClassError,
    NoClassFoldersError,
    SourceNotFoundError,
    UnknownLabelError,
)
from monai_pneumonia.data.patients import parse_label, patient_from_path, pseudonymize
from monai_pneumonia.data.sources import build_datalist, datalist_from_csv, datalist_from_dicom, datalist_from_folder
from monai_pneumonia.data.split import SPLITS, assert_patients_disjoint, split_by_patient
from monai_pneumonia.data.summary import DatalistSummary, summarize

__all__ = [
    "SPLITS",
    "CsvRowError",
    "DatalistError",
    "DatalistSummary",
    "EmptyClassError",
    "NoClassFoldersError",
    "SourceNotFoundError",
    "UnknownLabelError",
    "assert_patients_disjoint",
    "build_datalist",
    "class_weights",
    "datalist_from_csv",
    "datalist_from_dicom",
    "datalist_from_folder",
    "evaluation_items",
    "find_images",
    "iter_images",
    "load_datalist",
    "parse_label",
    "patient_from_path",
    "pseudonymize",
    "split_by_patient",
    "summarize",
    "write_datalist",
]
