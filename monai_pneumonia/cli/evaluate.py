"""``monai-pneumonia evaluate``: the bundle's evaluation (``inference.json`` + ``evaluate.json``) with a summary table."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from monai_pneumonia.cli import add_bundle_argument
from monai_pneumonia.cli.overrides import add_common_options, common_overrides, logs_to_stderr
from monai_pneumonia.errors import NoReadableInputError

__all__ = ["add_parser", "format_summary", "run"]

_DESCRIPTION = """\
Evaluate a model with the bundle's configs/inference.json and its configs/evaluate.json overlay, exactly as

    python -m monai.bundle run --config_file "['bundle/configs/inference.json','bundle/configs/evaluate.json']" \
        --dataset_dir D --output_dir O

would (every option below is one override of that command): metrics with 95% confidence intervals at the
model's stored threshold (metrics.json), predictions.csv, errors.csv (refused inputs) and report.html in the
output folder. Evaluate on data the model and its threshold never saw (the test split).
"""

#: Metrics printed in the summary, in order.
SUMMARY_METRICS = ("auc", "accuracy", "sensitivity", "specificity")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``evaluate`` subcommand.

    Args:
        subparsers: the top-level parser's sub-parsers.

    Returns:
        The sub-parser.
    """
    parser = subparsers.add_parser("evaluate", help="evaluate a model on labelled images with the bundle's evaluate.json",
                                   description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--dataset-dir", type=Path, help="folder with NORMAL/ and PNEUMONIA/ sub-folders")
    data.add_argument("--datalist", type=Path, help="datalist JSON (monai-pneumonia datalist)")
    parser.add_argument("--split", default=None, help="list of the datalist to evaluate (default: the bundle's, test)")
    parser.add_argument("--output-dir", type=Path, required=True, help="folder for metrics.json, predictions.csv, "
                        "errors.csv and report.html")
    add_bundle_argument(parser)
    parser.add_argument("--ckpt-dir", type=Path, default=None, help="folder of model.pt (default: <bundle>/models)")
    parser.add_argument("--site", type=Path, default=None, metavar="SITE_JSON",
                        help="decide by this site profile (monai-pneumonia site fit); it must be bound to the model")
    add_common_options(parser)
    parser.set_defaults(func=run)
    return parser


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_summary(metrics: dict) -> str:
    """A short table of the headline metrics with their 95% confidence intervals.

    Args:
        metrics: the contents of ``metrics.json``.

    Returns:
        Lines ``metric  value  [low, high]``, then the counts.
    """
    lines = []
    for name in SUMMARY_METRICS:
        interval = metrics.get(f"{name}_ci95") or [None, None]
        lines.append(f"{name:<12} {_value(metrics.get(name)):>6}  95% CI [{_value(interval[0])}, {_value(interval[1])}]")
    lines.append(f"threshold    {_value(metrics.get('threshold')):>6}")
    counts = ", ".join(f"{key} {metrics[key]}" for key in ("n", "n_positive", "n_negative", "n_refused") if key in metrics)
    if counts:
        lines.append(counts)
    lines.extend(f"note: {note}" for note in metrics.get("notes", []))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print the summary table (stdout); 1 when nothing could be evaluated.

    Args:
        args: the parsed arguments.

    Returns:
        The exit status.
    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.bundle import EVALUATE_CONFIGS, run_workflow

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    output_dir = args.output_dir.resolve()
    overrides = common_overrides(args)
    overrides.update(
        dataset_dir=os.fspath(args.dataset_dir.resolve()) if args.dataset_dir else None,
        datalist=os.fspath(args.datalist.resolve()) if args.datalist else None,
        datalist_split=args.split,
        output_dir=os.fspath(output_dir),
        ckpt_dir=os.fspath(args.ckpt_dir.resolve()) if args.ckpt_dir else None,
        site_profile=os.fspath(args.site.resolve()) if args.site else None,
    )
    try:
        with logs_to_stderr():
            run_workflow(EVALUATE_CONFIGS, bundle_root=args.bundle, **overrides)
    except NoReadableInputError as error:
        print(f"monai-pneumonia evaluate: {error}", file=sys.stderr)
        return 1
    metrics = json.loads((output_dir / "metrics.json").read_text())
    print(format_summary(metrics))
    print(f"\nreport: {output_dir / 'report.html'}", file=sys.stderr)
    return 0
