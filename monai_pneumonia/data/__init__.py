"""Datalists (MONAI's ``{"training", "validation", "test"}`` JSON) and image discovery.

Importing this package stays light: torch is imported only when :func:`class_weights` runs.
"""

from __future__ import annotations

from monai_pneumonia.data.balance import class_weights
from monai_pneumonia.data.datalist import (
    CLASS_NAMES,
    SPLITS,
    CsvRowError,
    DatalistError,
    DatalistSummary,
    EmptyClassError,
    NoClassFoldersError,
    SourceNotFoundError,
    UnknownLabelError,
    assert_patients_disjoint,
    build_datalist,
    datalist_from_csv,
    datalist_from_dicom,
    datalist_from_folder,
    evaluation_items,
    load_datalist,
    parse_label,
    patient_from_path,
    pseudonymize,
    split_by_patient,
    summarize,
    write_datalist,
)
from monai_pneumonia.data.discovery import find_images, iter_images

__all__ = [
    "CLASS_NAMES",
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
