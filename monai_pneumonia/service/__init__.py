"""The DICOM service: a C-STORE listener that classifies chest radiographs and stores the results back.

Modules mirror the DICOM concepts: :mod:`.scp` (Storage/Verification SCP event handlers), :mod:`.spool`
(atomic storage before Success), :mod:`.journal` (durable per-SOP-Instance state and the delivery queue),
:mod:`.screening` (which instances are chest radiographs), :mod:`.worker` (batched classification),
:mod:`.reports` (TID 1500 Comprehensive SR and Grad-CAM Secondary Capture with highdicom), :mod:`.delivery`
(C-STORE / STOW-RS with retries), :mod:`.app` (the whole service). ``monai-pneumonia serve`` runs it.
"""

from __future__ import annotations

import importlib

#: Public names and the module that defines them; imported on first access, so that a report-building process
#: (which needs only :mod:`.reports`) does not import torch and MONAI.
_EXPORTS = {
    "PneumoniaService": "app", "ServiceConfig": "app",
    "CStoreDestination": "delivery", "Deliverer": "delivery", "StowDestination": "delivery",
    "parse_destination": "delivery",
    "Journal": "journal", "StateFileError": "journal",
    "AlgorithmInfo": "reports", "PneumoniaFinding": "reports", "build_cam_secondary_capture": "reports",
    "build_pneumonia_sr": "reports",
    "AssociationLimits": "scp", "StorageSCP": "scp", "TLSConfig": "scp",
    "screen": "screening",
    "Spool": "spool",
    "InvalidUIDError": "uids", "derive_uid": "uids", "is_valid_uid": "uids",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AlgorithmInfo",
    "AssociationLimits",
    "CStoreDestination",
    "Deliverer",
    "InvalidUIDError",
    "Journal",
    "PneumoniaFinding",
    "PneumoniaService",
    "ServiceConfig",
    "Spool",
    "StateFileError",
    "StorageSCP",
    "StowDestination",
    "TLSConfig",
    "build_cam_secondary_capture",
    "build_pneumonia_sr",
    "derive_uid",
    "is_valid_uid",
    "parse_destination",
    "screen",
]
