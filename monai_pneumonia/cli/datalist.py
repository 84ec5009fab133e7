"""``monai-pneumonia datalist``: build a patient-level split datalist JSON from images on disk."""

from __future__ import annotations

import argparse
import json
import sys

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Build a MONAI datalist {"training", "validation", "test"} with items {"image", "label", "patient"}
(normal = 0, pneumonia = 1), split BY PATIENT and stratified by class, deterministic for a seed.

SOURCE is one of:
  * a folder with class sub-folders NORMAL and PNEUMONIA (any case), images found recursively by content
    (DICOM with or without extension, PNG, JPEG, NIfTI);
  * a CSV with a header "path,label[,patient]" (label 0/1 or NORMAL/PNEUMONIA; relative paths are resolved
    against the CSV's folder);
  * a DICOM folder, with --labels giving a CSV "sop_instance_uid,label"; patients are SHA-256 pseudonyms of
    PatientID (never the real id), and DICOM files without a label are reported and left out.

Patient ids come from the public data set's file names (personN_bacteria_M, IM-XXXX-YYYY,
NORMAL2-IM-XXXX-YYYY), the CSV's patient column, or --patient-pattern; a file matching none is its own
patient (a warning says how many). The JSON goes to stdout or --output, the class-count summary to stderr.
"""


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1)")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``datalist`` subcommand.

    Args:
        subparsers: the top-level parser's sub-parsers.

    Returns:
        The sub-parser.
    """
    parser = subparsers.add_parser(
        "datalist",
        help="build a patient-level split datalist JSON",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="SOURCE", help="class-folder folder, CSV, or DICOM folder (with --labels)")
    parser.add_argument(
        "--labels", metavar="CSV", help="CSV 'sop_instance_uid,label' labelling the DICOM files of SOURCE"
    )
    parser.add_argument("--output", "-o", metavar="JSON", help="write the datalist here (default: stdout)")
    parser.add_argument(
        "--val-fraction", type=_fraction, default=0.1, help="fraction of each class's patients for validation (0.1)"
    )
    parser.add_argument(
        "--test-fraction", type=_fraction, default=0.0, help="fraction of each class's patients for test (0)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split; same input and seed, same JSON (0)")
    parser.add_argument(
        "--patient-pattern",
        metavar="REGEX",
        help="regex with one group, searched in each image path ('/' separators); the group is the patient id",
    )
    parser.add_argument(
        "--validation-patients",
        metavar="REGEX",
        help="patients whose id matches (re.search) go to validation, e.g. '^NORMAL2-' to hold out a series",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the datalist, write it, and print the summary to stderr.

    Args:
        args: the parsed arguments.

    Returns:
        0 on success, 1 when the source cannot be used (the reason is printed).
    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.data import build_datalist, write_datalist

    try:
        datalist, summary = build_datalist(
            args.source,
            labels=args.labels,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            patient_pattern=args.patient_pattern,
            validation_patients=args.validation_patients,
        )
    except ValueError as error:  # DatalistError, bad fractions or regexes
        print(f"monai-pneumonia datalist: error: {error}", file=sys.stderr)
        return 1
    if args.output:
        write_datalist(datalist, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        json.dump(datalist, sys.stdout, indent=2)
        sys.stdout.write("\n")
    print(summary, file=sys.stderr)
    return 0
