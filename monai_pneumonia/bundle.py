"""The shipped bundle: where it lives, and running its workflows from Python.

The CLI, the DICOM service and the MONAI Label app all go through here, so they run the bundle's own configs
rather than a copy of their contents.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["BUNDLE_ENV", "bundle_file", "config_literal", "default_bundle_root", "run_workflow"]

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


def run_workflow(config_name: str, bundle_root: str | os.PathLike | None = None, **overrides: Any) -> None:
    """Run one of the bundle's configs as ``python -m monai.bundle run`` would (initialize, run, finalize).

    The bundle's ``logging.conf`` is not applied: the caller owns logging. The executed config is not saved.

    Args:
        config_name: e.g. ``"inference.json"`` or ``"evaluate.json"``.
        bundle_root: the bundle (default: :func:`default_bundle_root`).
        overrides: config overrides (``None`` values are left out); a ``device`` string becomes a ``torch.device``.
            Values are data (:func:`config_literal`): a string starting with ``$``, ``@`` or ``%`` is not evaluated.

    Raises:
        NoReadableInputError: every input was refused (unwrapped from MONAI's ``RuntimeError`` around it).
    """
    import torch
    from monai.bundle import create_workflow

    from monai_pneumonia.errors import NoReadableInputError, find_cause

    root = Path(bundle_root) if bundle_root is not None else default_bundle_root()
    overrides = {key: config_literal(value) for key, value in overrides.items() if value is not None}
    if isinstance(overrides.get("device"), str):
        overrides["device"] = torch.device(overrides["device"])
    workflow = create_workflow(
        config_file=str(bundle_file(root, config_name)),
        meta_file=str(bundle_file(root, "metadata.json")),
        logging_file=False,
        bundle_root=config_literal(str(root)),
        save_execute_config=False,
        **overrides,
    )
    try:
        workflow.run()
    except Exception as error:
        nothing_readable = find_cause(error, NoReadableInputError)
        if nothing_readable is not None:
            raise nothing_readable from error
        raise
    finally:
        workflow.finalize()
