"""``monai-pneumonia demo``: the main job on the sample radiographs shipped in ``samples/``.

With a trained model in the bundle it runs the bundle's evaluation (metrics, HTML report with Grad-CAM gallery)
and inference (predictions, Grad-CAM overlays) workflows on the samples — validation films of the shipped model
(patients its training split held out, so it never trained on them) and DICOM encodings of them, MONOCHROME1
included — and prints where the results are and where the films come from (``samples/.manifest.json``, written by
``scripts/make_samples.py``). Without a model it loads and describes the samples, which shows what the loader makes
of each format.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from monai_pneumonia.cli import add_bundle_argument
from monai_pneumonia.cli.predict import print_table, run_inference
from monai_pneumonia.errors import XrayInputError

__all__ = ["MANIFEST", "add_parser", "default_samples_dir", "run", "samples_note"]

#: The samples folder's record of where its films come from (hidden: the image finders skip it).
MANIFEST = ".manifest.json"


def default_samples_dir() -> Path:
    """``samples/`` beside the bundle of this source tree."""
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.bundle import default_bundle_root

    return default_bundle_root().parent / "samples"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``demo`` subcommand."""
    parser = subparsers.add_parser("demo", help="run the model on the shipped sample radiographs", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=None,
                        help="folder with NORMAL/ and PNEUMONIA/ subfolders (default: samples/ of the source tree)")
    add_bundle_argument(parser)
    parser.add_argument("--output-dir", type=Path, default=Path("demo-output"),
                        help="where the results go (default: ./demo-output)")
    parser.set_defaults(func=run)


def samples_note(samples: Path) -> str:
    """Where the samples come from, from their manifest (which films, and whether the model trained on them)."""
    try:
        return str(json.loads((samples / MANIFEST).read_text())["note"])
    except (OSError, ValueError, KeyError):
        return f"{samples} has no {MANIFEST}: where these films come from (and whether the model trained on them) is unknown."


def describe_samples(samples: Path) -> list[dict]:
    """Load every sample with :class:`~monai_pneumonia.transforms.LoadXray` and summarise it.

    Args:
        samples: a folder searched recursively.

    Returns:
        One dict per file: path, format, shape, photometric interpretation, value range — and for a DICOM file
        with a JPEG of the same name beside it, the mean absolute difference between the two — or the refusal.
    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.data.discovery import find_images
    from monai_pneumonia.transforms import LoadXray

    loader = LoadXray()
    rows = []
    for path in find_images([samples]):
        try:
            image = loader(path)
        except XrayInputError as error:
            rows.append({"image": path, "refused": error.reason})
            continue
        row = {
            "image": os.path.relpath(path, samples),
            "format": image.meta.get("format"),
            "shape": tuple(image.shape),
            "photometric": image.meta.get("PhotometricInterpretation") or "-",
            "range": (round(float(image.min()), 3), round(float(image.max()), 3)),
        }
        jpeg = Path(path).with_suffix(".jpeg")
        if row["format"] == "dicom" and jpeg.is_file():
            row["mad_vs_jpeg"] = round(float((image - loader(jpeg)).abs().mean()), 4)
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit status 0 on success."""
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.bundle import EVALUATE_CONFIGS, bundle_file, default_bundle_root, run_workflow

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    samples = (args.samples or default_samples_dir()).resolve()
    bundle_root = (args.bundle or default_bundle_root()).resolve()
    if not samples.is_dir():
        print(f"monai-pneumonia demo: no samples folder at {samples}", file=sys.stderr)
        return 2
    model = bundle_file(bundle_root, "model.pt")
    if not model.is_file():
        print(f"No trained model at {model}: describing the samples instead (train one: see README.md).\n")
        for row in describe_samples(samples):
            print("  ".join(f"{key}={value}" for key, value in row.items()))
        return 0
    output = args.output_dir.resolve()
    print(f"Evaluating {samples} with {model} ...", file=sys.stderr)
    run_workflow(EVALUATE_CONFIGS, bundle_root=bundle_root, dataset_dir=os.fspath(samples),
                 output_dir=os.fspath(output / "evaluation"), progress_bar=False, num_workers=0)
    print(f"Classifying {samples} with Grad-CAM overlays ...", file=sys.stderr)
    predictions, refusals = run_inference([samples], output / "inference", bundle_root=bundle_root,
                                          save_cam=True, num_workers=0)
    print_table(predictions, refusals)
    print(f"\n{samples_note(samples)}")
    print(f"\npredictions:       {output / 'inference' / 'predictions.csv'}")
    print(f"Grad-CAM overlays: {output / 'inference' / 'cam'}")
    print(f"metrics:           {output / 'evaluation' / 'metrics.json'}")
    print(f"HTML report:       {output / 'evaluation' / 'report.html'}")
    return 0
