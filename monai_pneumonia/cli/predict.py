"""``monai-pneumonia predict``: classify files and folders with the bundle's own inference workflow.

This command does not re-implement inference: it classifies with the bundle's
:class:`~monai_pneumonia.inference.BundleClassifier` (the components of ``configs/inference.json``, the same as
``python -m monai.bundle run --config_file bundle/configs/inference.json``), prints the results it holds in memory
(data on stdout, messages on stderr) and writes them to ``predictions.csv`` and ``errors.csv``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from monai_pneumonia.cli import add_bundle_argument
from monai_pneumonia.errors import NoInputError

__all__ = ["add_parser", "expand_inputs", "print_table", "run", "run_inference"]

_DESCRIPTION = """\
Classify chest radiographs (DICOM, PNG, JPEG, NIfTI; files, or folders searched recursively) with the bundle's
own inference workflow (configs/inference.json). Results go to stdout (a table, or JSON with --json), messages to
stderr; with --output-dir, also to predictions.csv and errors.csv there (and Grad-CAM PNGs with --save-cam).
Exit status: 0 when at least one input was classified, 1 when every input was refused, 2 for a usage error
(such as a path that does not exist)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``predict`` subcommand."""
    parser = subparsers.add_parser(
        "predict",
        help="classify chest radiographs (files or folders) with the shipped model",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER",
                        help="DICOM, PNG, JPEG or NIfTI files, or folders searched recursively for them")
    add_bundle_argument(parser)
    parser.add_argument("--ckpt-dir", type=Path, default=None, help="folder holding model.pt (default: <bundle>/models)")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="where predictions.csv, errors.csv and overlays go (default: none, results on stdout only)")
    parser.add_argument("--save-cam", action="store_true",
                        help="also write Grad-CAM overlay PNGs to <output-dir>/cam (needs --output-dir)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default: the bundle's)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: the bundle's choice)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON per-film record a line (monai_pneumonia.results; input for `monitor`) "
                             "instead of a table")
    parser.add_argument("--site", type=Path, default=None, metavar="SITE_JSON",
                        help="decide by this site profile (monai-pneumonia site fit); it must be bound to the model")
    parser.set_defaults(func=run)


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[str]:
    """Files in the order given, each folder replaced by its radiographs (searched recursively, sorted).

    Args:
        inputs: files and folders; a file given explicitly is kept even if it is no image, so that it is
            reported as refused rather than silently skipped.

    Returns:
        Absolute paths.

    Raises:
        NoInputError: an input that does not exist (a usage error, named before any model is loaded), or no file
            to classify (empty folders, or folders holding no image file); files in folders that are no image by
            content or name are counted in one warning.
    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.data.discovery import find_images

    paths: list[str] = []
    skipped: list[str] = []
    inputs = list(inputs)
    missing = [os.fspath(item) for item in inputs if not os.path.lexists(item)]
    if missing:
        raise NoInputError(f"no such file or folder: {', '.join(missing)}")
    for item in inputs:
        item = Path(item).absolute()
        paths.extend(find_images([item], skipped=skipped) if item.is_dir() else [os.fspath(item)])
    if skipped:
        logging.getLogger(__name__).warning(
            "%d file(s) in the input folders skipped: not DICOM, PNG, JPEG or NIfTI by content or name (e.g. %s)",
            len(skipped), skipped[0])
    if not paths:
        raise NoInputError(f"no images found in {', '.join(map(os.fspath, inputs)) or '(no input paths)'}"
                           + (f" ({len(skipped)} other files skipped)" if skipped else ""))
    return paths


def run_inference(
    inputs: list[str | os.PathLike],
    output_dir: str | os.PathLike,
    bundle_root: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    save_cam: bool = False,
    batch_size: int | None = None,
    device: str | None = None,
    num_workers: int = 0,
    records: list[dict] | None = None,
    site_profile: str | os.PathLike | None = None,
) -> tuple[list[dict], list[dict]]:
    """Classify files and folders with the bundle's classifier and write ``predictions.csv`` and ``errors.csv``.

    Args:
        inputs: files and folders.
        output_dir: where ``predictions.csv``, ``errors.csv`` and, with ``save_cam``, ``cam/*.png`` go.
        bundle_root: the bundle (default: :func:`~monai_pneumonia.bundle.default_bundle_root`).
        ckpt_dir: the folder holding ``model.pt`` (default: the bundle's ``models/``).
        save_cam: also write a Grad-CAM overlay per classified image.
        batch_size: images per forward pass (default: the bundle's).
        device: e.g. ``"cpu"`` (default: the bundle's choice).
        num_workers: DataLoader workers for decoding.
        records: when given, one per-film record (:mod:`monai_pneumonia.results`) per input is appended, in input
            order, with the input's ``"image"`` path first.
        site_profile: a ``site.json`` whose rule decides (:mod:`monai_pneumonia.site_profile`).

    Returns:
        ``(predictions, refusals)``: one ``{"image", "prob_pneumonia", "prediction", "threshold", "cam", "flags",
        "model_sha256", "site_profile_sha256"}`` per classified input and
        one ``{"image", "error"}`` per refused input, each in input order, taken from the results in memory.

    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.inference import BundleClassifier
    from monai_pneumonia.results import Refusal, film_record, format_flags, refusal_record, write_predictions

    classifier = BundleClassifier.from_bundle(
        bundle_root, ckpt_path=Path(ckpt_dir) / "model.pt" if ckpt_dir else None, device=device,
        batch_size=batch_size, site_profile=os.fspath(site_profile) if site_profile else None)
    identity = classifier.identity
    identity_fields = {key: identity[key] for key in ("model_sha256", "site_profile_sha256")}
    predictions, refused = [], []
    for result in classifier.iterate(expand_inputs(inputs), num_workers=num_workers):
        if isinstance(result, Refusal):
            refused.append(result)
            if records is not None:
                records.append({"image": result.image, **refusal_record(result.error, **identity_fields)})
            continue
        if records is not None:
            records.append({"image": result.image, **film_record(result.prob_pneumonia, result.prediction,
                                                                 result.threshold, result.meta,
                                                                 **identity_fields)})
        cam = os.fspath(classifier.save_cam_overlay(result, Path(output_dir) / "cam")) if save_cam else ""
        predictions.append({"image": result.image, "prob_pneumonia": round(result.prob_pneumonia, 6),
                            "prediction": result.prediction, "threshold": result.threshold, "cam": cam,
                            "flags": format_flags(result.meta), "model_sha256": identity["model_sha256"],
                            "site_profile_sha256": identity["site_profile_sha256"]})
    write_predictions(output_dir, predictions, refused)
    return predictions, [{"image": r.image, "error": r.error} for r in refused]


def print_table(predictions: list[dict], refusals: list[dict]) -> None:
    """Print predictions as an aligned table, then the refused inputs with their reasons.

    A ``flags`` column (``atypical``, ``age_outside_intended_use``, ...) follows when any film has flags, so a
    caution is seen where the answer is.
    """
    if predictions:
        width = max(len("image"), *(len(row["image"]) for row in predictions))
        flagged = any(row.get("flags") for row in predictions)
        print(f"{'image':<{width}}  {'prob_pneumonia':>14}  prediction" + ("  flags" if flagged else ""))
        for row in predictions:
            flags = f"  {row.get('flags') or ''}" if flagged else ""
            print(f"{row['image']:<{width}}  {row['prob_pneumonia']:>14.4f}  {row['prediction']:<10}{flags}".rstrip())
    if refusals:
        print(f"\nrefused ({len(refusals)}):")
        for row in refusals:
            print(f"  {row['image']}: {row['error']}")


def run(args: argparse.Namespace) -> int:
    """Run ``predict`` from parsed arguments; exit status 0 when at least one input was classified."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    if args.save_cam and args.output_dir is None:
        raise NoInputError("--save-cam needs --output-dir (the overlays are files)")
    expand_inputs(args.inputs)  # a missing input is a usage error: one line, before the model loads
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="monai-pneumonia-") as scratch:  # removed however the run ends
        output_dir = args.output_dir or Path(scratch)
        output_dir.mkdir(parents=True, exist_ok=True)
        predictions, refusals = run_inference(args.inputs, output_dir, bundle_root=args.bundle,
                                              ckpt_dir=args.ckpt_dir, save_cam=args.save_cam,
                                              batch_size=args.batch_size, device=args.device, records=records,
                                              site_profile=args.site)
    kept = args.output_dir is not None
    status = 0 if predictions else 1
    if not predictions:
        print(f"monai-pneumonia predict: no input could be read: {len(refusals)} refused"
              + (f", see {output_dir / 'errors.csv'}" if kept else ""), file=sys.stderr)
    if args.json:
        for record in records:  # JSON lines: one per-film record per input, in input order
            print(json.dumps(record))
        if kept:
            print(f"results in {output_dir}", file=sys.stderr)
    else:
        print_table(predictions, refusals)
        if kept:
            print(f"\nresults in {output_dir}", file=sys.stderr)
    return status
