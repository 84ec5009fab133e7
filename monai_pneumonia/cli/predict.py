"""``monai-pneumonia predict``: classify files and folders with the bundle's own inference workflow.

This command does not re-implement inference: it runs ``configs/inference.json`` of the bundle (the same
workflow as ``python -m monai.bundle run --config_file bundle/configs/inference.json``) with the inputs as an
override, then reads back the ``predictions.csv`` and ``errors.csv`` it wrote.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from monai_pneumonia.cli import add_bundle_argument

__all__ = ["add_parser", "print_table", "run", "run_inference"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``predict`` subcommand."""
    parser = subparsers.add_parser(
        "predict",
        help="classify chest radiographs (files or folders) with the shipped model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER",
                        help="DICOM, PNG, JPEG or NIfTI files, or folders searched recursively for them")
    add_bundle_argument(parser)
    parser.add_argument("--ckpt-dir", type=Path, default=None, help="folder holding model.pt (default: <bundle>/models)")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where predictions.csv, errors.csv and overlays go (default: a new temporary folder)")
    parser.add_argument("--save-cam", action="store_true", help="also write Grad-CAM overlay PNGs to <output-dir>/cam")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default: the bundle's)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: the bundle's choice)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run_inference(
    inputs: list[str | os.PathLike],
    output_dir: str | os.PathLike,
    bundle_root: str | os.PathLike | None = None,
    progress_bar: bool = False,
    **overrides: Any,
) -> tuple[list[dict], list[dict]]:
    """Run the bundle's inference workflow and read its results.

    Args:
        inputs: files and folders.
        output_dir: where the workflow writes ``predictions.csv`` and ``errors.csv``.
        bundle_root: the bundle (default: :func:`~monai_pneumonia.bundle.default_bundle_root`).
        progress_bar: show the workflow's progress bar on stderr.
        overrides: further config overrides (``ckpt_dir``, ``save_cam``, ``batch_size``, ``device``, ...).

    Returns:
        ``(predictions, refusals)``: rows of ``predictions.csv`` (``prob_pneumonia`` as float) and ``errors.csv``.

    Raises:
        NoReadableInputError: when no input could be read (the refusals are in ``errors.csv``).
    """
    from monai_pneumonia.bundle import run_workflow

    run_workflow(
        "inference.json",
        bundle_root=bundle_root,
        input_paths=[os.fspath(Path(p).absolute()) for p in inputs],
        output_dir=os.fspath(output_dir),
        progress_bar=progress_bar,
        **overrides,
    )
    return _read_csv(Path(output_dir) / "predictions.csv"), _read_csv(Path(output_dir) / "errors.csv")


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    for row in rows:
        if "prob_pneumonia" in row:
            row["prob_pneumonia"] = float(row["prob_pneumonia"])
    return rows


def print_table(predictions: list[dict], refusals: list[dict]) -> None:
    """Print predictions as an aligned table, then the refused inputs with their reasons."""
    if predictions:
        width = max(len("image"), *(len(row["image"]) for row in predictions))
        print(f"{'image':<{width}}  {'prob_pneumonia':>14}  prediction")
        for row in predictions:
            print(f"{row['image']:<{width}}  {row['prob_pneumonia']:>14.4f}  {row['prediction']}")
    if refusals:
        print(f"\nrefused ({len(refusals)}):")
        for row in refusals:
            print(f"  {row['image']}: {row['error']}")


def run(args: argparse.Namespace) -> int:
    """Run ``predict`` from parsed arguments; exit status 0 when at least one input was classified."""
    from monai_pneumonia.errors import NoReadableInputError

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="monai-pneumonia-"))
    output_dir.mkdir(parents=True, exist_ok=True)
    has_folder = any(Path(p).is_dir() for p in args.inputs)
    try:
        predictions, refusals = run_inference(
            args.inputs,
            output_dir,
            bundle_root=args.bundle,
            progress_bar=has_folder,
            ckpt_dir=os.fspath(args.ckpt_dir) if args.ckpt_dir else None,
            save_cam=args.save_cam,
            batch_size=args.batch_size,
            device=args.device,
        )
        status = 0
    except NoReadableInputError as error:
        predictions, refusals, status = [], _read_csv(output_dir / "errors.csv"), 1
        print(f"monai-pneumonia predict: {error}", file=sys.stderr)
    if args.json:
        json.dump({"predictions": predictions, "refused": refusals, "output_dir": os.fspath(output_dir)},
                  sys.stdout, indent=2)
        print()
    else:
        print_table(predictions, refusals)
        print(f"\nresults in {output_dir}", file=sys.stderr)
    return status
