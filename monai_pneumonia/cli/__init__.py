"""The ``monai-pneumonia`` command line (also ``python -m monai_pneumonia``).

Each subcommand lives in its own module of this package and exposes ``add_parser(subparsers)``, which
registers an ``argparse`` sub-parser whose ``func`` default runs it. Heavy imports (torch, MONAI, pydicom)
happen inside the subcommand, so ``--help`` and ``--version`` stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from monai_pneumonia import __version__
from monai_pneumonia.errors import (
    CheckpointError,
    DatalistError,
    DeviceUnavailableError,
    NoInputError,
    SiteProfileError,
    XrayInputError,
    find_cause,
)
from monai_pneumonia.redaction import install_log_hygiene

__all__ = ["USER_ERRORS", "add_bundle_argument", "build_parser", "main"]

#: Errors in what the user gave (a path, a device, a data set folder, a site profile): one line on stderr and exit
#: status 2.
#: ``DatalistError`` covers a data set folder or list that cannot be read (``SourceNotFoundError`` names the path).
USER_ERRORS: tuple[type[Exception], ...] = (CheckpointError, DatalistError, DeviceUnavailableError, NoInputError,
                                          SiteProfileError, XrayInputError)

#: Modules of this package that each contribute one subcommand, in the order ``--help`` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = ("predict", "train", "evaluate", "promote", "datalist", "demo", "site", "monitor",
                                        "study", "serve")


def add_bundle_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add the ``--bundle`` option every subcommand that runs the model shares.

    Args:
        parser: the sub-parser (or one of its argument groups) to extend.
    """
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle folder (default: $MONAI_PNEUMONIA_BUNDLE, else the bundle/ shipped with the package)")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand.

    Returns:
        The parser; ``parse_args`` yields a namespace whose ``func`` runs the chosen subcommand.
    """
    parser = argparse.ArgumentParser(
        prog="monai-pneumonia",
        description="Pneumonia vs normal on pediatric chest radiographs (DICOM, PNG, JPEG, NIfTI) with MONAI.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: arguments without the program name; ``sys.argv[1:]`` when ``None``.

    Returns:
        The process exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    install_log_hygiene()  # third-party warnings never quote attribute values into the log; messages escaped
    try:
        return int(args.func(args) or 0)
    except Exception as error:
        # the user's input, not a bug: one line, no traceback, also when MONAI re-raised it as a RuntimeError
        # (a missing --dataset-dir fails inside the bundle config's datalist expression)
        cause = next(filter(None, (find_cause(error, kind) for kind in USER_ERRORS)), None)
        if cause is None:
            raise
        print(f"{parser.prog}: error: {cause}", file=sys.stderr)
        return 2
