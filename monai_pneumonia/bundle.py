"""The shipped bundle: where it lives, and running its workflows from Python.

The CLI, the DICOM service and the MONAI Label app all go through here, so they run the bundle's own configs
rather than a copy of their contents.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["BUNDLE_ENV", "available_device", "bundle_file", "default_bundle_root", "run_workflow"]

#: Environment variable that points every entry point (CLI, DICOM service, MONAI Label app) at another bundle.
BUNDLE_ENV = "MONAI_PNEUMONIA_BUNDLE"


def default_bundle_root() -> Path:
    """The bundle used when none is given: ``$MONAI_PNEUMONIA_BUNDLE``, else ``bundle/`` of this source tree.

    Returns:
        An absolute path (it may not exist for a wheel install without the variable set).
    """
    configured = os.environ.get(BUNDLE_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(__file__).resolve().parent.parent / "bundle"


def bundle_file(bundle_root: str | os.PathLike, name: str) -> Path:
    """A file of a bundle: ``configs/<name>`` for configs and metadata, ``models/<name>`` for checkpoints.

    Args:
        bundle_root: the bundle folder.
        name: e.g. ``"inference.json"``, ``"metadata.json"``, ``"model.pt"``.

    Returns:
        The path (not checked for existence).
    """
    folder = "models" if name.endswith((".pt", ".ts", ".onnx")) else "configs"
    return Path(bundle_root) / folder / name


def available_device(name: str) -> Any:
    """A ``torch.device`` from its name, checked to exist on this machine.

    Args:
        name: e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``.

    Returns:
        The ``torch.device``.

    Raises:
        DeviceUnavailableError: a malformed name, a device type without an available backend, or an index past
            the number of devices.
    """
    import torch

    from monai_pneumonia.errors import DeviceUnavailableError

    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise DeviceUnavailableError(f"device {name!r}: {str(error).splitlines()[0]}") from None
    if device.type == "cpu":
        return device
    backend = getattr(torch, device.type, None)
    available = bool(backend is not None and hasattr(backend, "is_available") and backend.is_available())
    count = backend.device_count() if available and hasattr(backend, "device_count") else (1 if available else 0)
    if not available or (device.index is not None and device.index >= count):
        raise DeviceUnavailableError(f"device {name!r} is not available on this machine "
                                     f"({count} {device.type} device(s)); use --device cpu")
    return device


def run_workflow(config_name: str, bundle_root: str | os.PathLike | None = None, **overrides: Any) -> Any:
    """Run one of the bundle's configs as ``python -m monai.bundle run`` would (initialize, run, finalize).

    The bundle's ``logging.conf`` is not applied: the caller owns logging. The executed config is not saved.

    Args:
        config_name: e.g. ``"inference.json"`` or ``"evaluate.json"``.
        bundle_root: the bundle (default: :func:`default_bundle_root`).
        overrides: config overrides (``None`` values are left out); a ``device`` string becomes a ``torch.device``.

    Returns:
        The finished workflow (its ``parser`` gives the engines and their final state).

    Raises:
        NoReadableInputError: every input was refused (unwrapped from MONAI's ``RuntimeError`` around it).
        NoInputError: the inputs hold no image file (unwrapped likewise).
        DeviceUnavailableError: the ``device`` override names a device this machine does not have.
    """
    from monai.bundle import create_workflow

    from monai_pneumonia.errors import NoInputError, NoReadableInputError, find_cause

    root = Path(bundle_root) if bundle_root is not None else default_bundle_root()
    overrides = {key: value for key, value in overrides.items() if value is not None}
    if isinstance(overrides.get("device"), str):
        overrides["device"] = available_device(overrides["device"])
    workflow = create_workflow(
        config_file=str(bundle_file(root, config_name)),
        meta_file=str(bundle_file(root, "metadata.json")),
        logging_file=False,
        bundle_root=str(root),
        save_execute_config=False,
        **overrides,
    )
    try:
        workflow.run()
    except Exception as error:
        for error_type in (NoReadableInputError, NoInputError):
            typed = find_cause(error, error_type)
            if typed is not None:
                raise typed from error
        raise
    finally:
        workflow.finalize()
    return workflow
