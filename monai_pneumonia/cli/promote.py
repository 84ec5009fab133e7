"""``monai-pneumonia promote``: make a trained checkpoint the shipped model, deliberately and on the record."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from monai_pneumonia.cli import add_bundle_argument

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Replace the bundle's shipped model (<bundle>/models/model.pt, the one predict, serve and the MONAI Label app
load) with CKPT, typically RUN/models/model.pt of `monai-pneumonia train`. CKPT must load into the network of the
bundle's inference.json and carry its operating threshold. The replaced file is kept in models/replaced/, the
new one is swapped in atomically, and one JSON line (date, package version, source, SHA-256 and threshold of the
new model, SHA-256 of the replaced one) is appended to models/promotions.jsonl and printed.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``promote`` subcommand.

    Args:
        subparsers: the top-level parser's sub-parsers.

    Returns:
        The sub-parser.
    """
    parser = subparsers.add_parser("promote", help="make a trained checkpoint the shipped model (recorded)",
                                   description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", help="the checkpoint to ship")
    add_bundle_argument(parser)
    parser.add_argument("--note", default="", help="why (stored in the promotion record)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Promote the checkpoint; print the record (JSON on stdout); 1 with a one-line error when refused.

    Args:
        args: the parsed arguments.

    Returns:
        The exit status.
    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.bundle import default_bundle_root
    from monai_pneumonia.registry import promote

    try:
        record = promote(args.checkpoint, args.bundle or default_bundle_root(), note=args.note)
    except (FileNotFoundError, ValueError) as error:
        print(f"monai-pneumonia promote: {error}", file=sys.stderr)
        return 1
    json.dump(record, sys.stdout, indent=2)
    print()
    return 0
