"""Options that ``train`` and ``evaluate`` share: pass-through bundle overrides and the common knobs.

Both commands are thin front-ends over the bundle's configs: every option becomes a config override of
``python -m monai.bundle run`` and nothing else, so the two ways of running give the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["add_common_options", "common_overrides", "logs_to_stderr", "parse_set"]


@contextlib.contextmanager
def logs_to_stderr() -> Iterator[None]:
    """Send what a bundle run prints (MONAI's bundle loggers write to ``sys.stdout``) to stderr.

    Inside, ``sys.stdout`` is ``sys.stderr``; the command prints its results (data) after leaving it, so stdout
    holds data only.
    """
    with contextlib.redirect_stdout(sys.stderr):
        yield


def parse_set(item: str) -> tuple[str, Any]:
    """One ``--set KEY=VALUE``: the value as JSON when it parses (numbers, booleans, lists), else the string.

    Args:
        item: e.g. ``"train#trainer#max_epochs=1"`` or ``"network_def#attention=se"``.

    Returns:
        ``(key, value)``.

    Raises:
        argparse.ArgumentTypeError: no ``=``, or an empty key.
    """
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a bundle config id), got {item!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--device``, ``--batch-size``, ``--num-workers``, ``--no-progress`` and ``--set``."""
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: the bundle's choice)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch (default: the bundle's)")
    parser.add_argument("--num-workers", type=int, default=None, help="data loader workers (default: the bundle's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--set", type=parse_set, action="append", default=[], metavar="KEY=VALUE",
                        help="any other bundle config override, e.g. --set image_size=128 (repeatable; "
                             "VALUE is JSON when it parses, and always data: never a $ expression)")


def common_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config overrides of the options :func:`add_common_options` added (``None`` for options not given)."""
    overrides = {
        "device": args.device,
        "batch_size": args.batch_size,
        "num_workers": args.num_workers,
        "progress_bar": not args.no_progress,
    }
    overrides.update(dict(args.set))
    return overrides
