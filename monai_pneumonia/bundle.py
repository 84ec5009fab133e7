"""The shipped bundle: where it lives, and running its workflows from Python.

The CLI, the DICOM service and the MONAI Label app all go through here, so they run the bundle's own configs
rather than a copy of their contents.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import BundleWorkflow, create_workflow

from monai_pneumonia.errors import (
    DeviceUnavailableError,
    NoInputError,
    NoReadableInputError,
    SiteProfileError,
    find_cause,
)

__all__ = ["BUNDLE_ENV", "EVALUATE_CONFIGS", "available_device", "bundle_file", "config_literal", "default_bundle_root",
           "load_workflow", "monai_logs_to_stderr", "run_workflow"]

#: Environment variable that points every entry point (CLI, DICOM service, MONAI Label app) at another bundle.
BUNDLE_ENV = "MONAI_PNEUMONIA_BUNDLE"

#: The labelled evaluation: ``evaluate.json`` is an overlay of ``inference.json``, merged by file list as
#: ``python -m monai.bundle run --config_file "['configs/inference.json','configs/evaluate.json']"`` does.
EVALUATE_CONFIGS: tuple[str, ...] = ("inference.json", "evaluate.json")


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


#: MONAI's bundle loggers: ``monai.apps.utils.get_logger`` gives them a handler on stdout, where our commands
#: write their data.
_MONAI_BUNDLE_LOGGERS = ("monai.bundle.scripts", "monai.bundle.workflows", "monai.bundle.config_parser",
                         "monai.bundle.reference_resolver", "monai.bundle.utils")

#: Prefixes that make a string in a MONAI bundle config something other than data: ``$`` an expression passed to
#: ``eval``, ``@`` a reference to another config item, ``%`` a macro that reads another config file.
_CONFIG_SYNTAX_PREFIXES = ("$", "@", "%")


def config_literal(value: Any) -> Any:
    """``value`` as a config override that MONAI's ``ConfigParser`` keeps as data, never evaluates.

    Strings from the command line (an output folder, an input file) are data, but the parser evaluates a string
    starting with ``$`` (``--output-dir '$print(42) or "/tmp/o"'`` would run ``print``), resolves ``@`` as a
    reference and ``%`` as a macro. Such a string becomes an expression whose only effect is to return the
    original text: ``$bytes.fromhex('<hex of its UTF-8>').decode(...)`` (hex, so no ``@`` inside the expression is
    taken for a reference). Other strings, and non-strings, are returned unchanged; lists, tuples and dicts are
    converted element by element.

    Args:
        value: an override value.

    Returns:
        The value to pass to the parser.
    """
    if isinstance(value, str):
        if not value.startswith(_CONFIG_SYNTAX_PREFIXES):
            return value
        data = value.encode("utf-8", "surrogateescape").hex()
        return f"$bytes.fromhex('{data}').decode('utf-8', 'surrogateescape')"
    if isinstance(value, (list, tuple)):
        return type(value)(config_literal(v) for v in value)
    if isinstance(value, dict):
        return {k: config_literal(v) for k, v in value.items()}
    return value


def monai_logs_to_stderr() -> None:
    """Take MONAI's bundle log messages off stdout and silence the input summary (INFO) of ``create_workflow``.

    Our commands write data (tables, JSON) on stdout; MONAI's bundle modules log to stdout by default. Their
    stdout handlers are removed and their messages (warnings and above) propagate to the application's logging
    (the CLI's handler on stderr, or Python's last-resort handler, which writes to stderr).
    """
    for name in _MONAI_BUNDLE_LOGGERS:
        monai_logger = logging.getLogger(name)
        monai_logger.setLevel(logging.WARNING)
        for handler in list(monai_logger.handlers):
            if type(handler) is logging.StreamHandler:  # MONAI's own; not file handlers or a test's capture
                monai_logger.removeHandler(handler)
        monai_logger.propagate = True
    workflows_logger = logging.getLogger("monai.bundle.workflows")
    if not any(isinstance(f, _OwnLoggingNotice) for f in workflows_logger.filters):
        workflows_logger.addFilter(_OwnLoggingNotice())


class _OwnLoggingNotice(logging.Filter):
    """Drop ``ConfigWorkflow``'s "Logging file is set to False" warning: ``logging_file=False`` is how a caller says
    it owns logging (MONAI 1.6 warns on every workflow it creates so)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Logging file is set to False")


def available_device(name: str) -> torch.device:
    """A ``torch.device`` from its name, checked to exist on this machine.

    Args:
        name: e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"``.

    Returns:
        The ``torch.device``.

    Raises:
        DeviceUnavailableError: a malformed name, a device type without an available backend, or an index past
            the number of devices.
    """
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


def load_workflow(
    config_name: str | Sequence[str],
    bundle_root: str | os.PathLike | None = None,
    workflow_type: str | None = None,
    **overrides: Any,
) -> BundleWorkflow:
    """One of the bundle's configs as a MONAI ``ConfigWorkflow`` (created with ``monai.bundle.create_workflow``).

    The bundle's ``logging.conf`` is not applied: the caller owns logging; MONAI's bundle messages go to stderr
    (:func:`monai_logs_to_stderr`). The executed config is not saved.

    Args:
        config_name: e.g. ``"inference.json"``; a list layers each config over the ones before it, as
            ``--config_file "['inference.json','evaluate.json']"`` does for ``python -m monai.bundle run``
            (:data:`EVALUATE_CONFIGS`); names are relative to the bundle's ``configs/`` folder.
        bundle_root: the bundle (default: :func:`default_bundle_root`).
        workflow_type: ``"inference"`` or ``"train"`` to have MONAI check and expose the standard properties.
        overrides: config overrides (``None`` values are left out); a ``device`` string becomes a ``torch.device``
            (checked with :func:`available_device`). Values are data (:func:`config_literal`): a string starting
            with ``$``, ``@`` or ``%`` is not evaluated.

    Returns:
        The initialized workflow.

    Raises:
        DeviceUnavailableError: the ``device`` override names a device this machine does not have.
    """
    root = Path(bundle_root) if bundle_root is not None else default_bundle_root()
    names = [config_name] if isinstance(config_name, str) else list(config_name)
    config_files = [bundle_file(root, name) for name in names]
    overrides = {key: config_literal(value) for key, value in overrides.items() if value is not None}
    if isinstance(overrides.get("device"), str):
        overrides["device"] = available_device(overrides["device"])
    monai_logs_to_stderr()
    with warnings.catch_warnings():
        # create_workflow's notice that configs run code: the bundle's own configs are the trusted input here
        warnings.filterwarnings("ignore", message="parsing config_file", category=UserWarning)
        return create_workflow(
            config_file=[str(file) for file in config_files] if len(config_files) > 1 else str(config_files[0]),
            meta_file=str(bundle_file(root, "metadata.json")),
            logging_file=False,
            workflow_type=workflow_type,
            bundle_root=config_literal(str(root)),
            save_execute_config=False,
            **overrides,
        )


def run_workflow(
    config_name: str | Sequence[str], bundle_root: str | os.PathLike | None = None, **overrides: Any
) -> BundleWorkflow:
    """Run one of the bundle's configs as ``python -m monai.bundle run`` would (initialize, run, finalize).

    Args:
        config_name: e.g. ``"inference.json"``, or a list of configs to layer (see :func:`load_workflow`).
        bundle_root: the bundle (default: :func:`default_bundle_root`).
        overrides: config overrides, as for :func:`load_workflow`.

    Returns:
        The finished workflow (its ``parser`` gives the engines and their final state).

    Raises:
        NoReadableInputError: every input was refused (unwrapped from MONAI's ``RuntimeError`` around it).
        NoInputError: the inputs hold no image file (unwrapped likewise).
        SiteProfileError: the ``site_profile`` is missing, malformed or bound to another model (likewise).
        DeviceUnavailableError: the ``device`` override names a device this machine does not have.
    """
    workflow = load_workflow(config_name, bundle_root=bundle_root, **overrides)
    try:
        workflow.run()
    except Exception as error:
        for error_type in (NoReadableInputError, NoInputError, SiteProfileError):
            typed = find_cause(error, error_type)
            if typed is not None:
                raise typed from error
        raise
    finally:
        workflow.finalize()
    return workflow
