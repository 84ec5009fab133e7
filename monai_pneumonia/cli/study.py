"""``monai-pneumonia stress``: validation under synthetic acquisition shifts, and the threshold that survives them."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from monai_pneumonia.cli import add_bundle_argument
from monai_pneumonia.decision import THRESHOLD_RULES

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Run the bundle's evaluate.json on one labelled split of a datalist (normally "validation") once per synthetic
acquisition shift (gamma, contrast, blur, sharpening, noise, low resolution, zoom), print a table of AUC,
accuracy, sensitivity and specificity per shift, and choose the operating threshold on the pooled predictions
of every shift, by Youden's J (the rule the shipped threshold was chosen by) or another rule: "bayes-guarded"
is 0.5 (the Bayes decision for the balanced prior and equal costs the loss trains for), raised if needed until
the pooled shifted specificity is at least 95%. With --store-threshold that threshold is written into the checkpoint, where the bundle, the CLI,
the DICOM listener and the MONAI Label app read it. --shortcut adds where the model looks (share of Grad-CAM
energy in the central thorax versus the border and corners); --compare-with applies the shipping rule of
docs/model-v2-protocol.md against another model's stress output on the same split. --rescore runs no model: it
rebuilds --output's stress.json from the per-shift evaluations already there, by --threshold-method (to compare
two models at one rule without evaluating them again). --held-out-source REGEX reads the predictions of a model
trained without the files matching REGEX (a second source of normal films, e.g. '^NORMAL2-'): each threshold rule
is chosen on the other files and its specificity is read off on that source (docs/model-v2-protocol.md, addendum 4).

Never run this on the test split: a threshold chosen there makes the test figures meaningless.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``stress`` subcommand.

    Args:
        subparsers: the top-level parser's sub-parsers.

    Returns:
        The sub-parser.
    """
    parser = subparsers.add_parser(
        "stress",
        help="validation under synthetic acquisition shifts; pooled operating threshold",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("datalist", type=Path, help="datalist JSON with the labelled split (monai-pneumonia datalist)")
    parser.add_argument("--split", default="validation", help="which list of the datalist (default: %(default)s)")
    parser.add_argument("--output", type=Path, required=True, help="folder for the per-shift evaluations and stress.json")
    parser.add_argument("--shifts", nargs="+", default=None, metavar="NAME", help="shifts to run (default: all)")
    add_bundle_argument(parser)
    parser.add_argument("--ckpt-dir", type=Path, default=None, help="folder of model.pt (default: <bundle>/models)")
    parser.add_argument("--threshold-method", default="youden", choices=THRESHOLD_RULES,
                        help="rule for the pooled threshold (default: %(default)s)")
    parser.add_argument("--threshold-target", type=float, default=None, metavar="X",
                        help="the rule's target: sensitivity or specificity to keep, or bayes-guarded's specificity "
                             "guard (default: the rule's own, 0.97 / 0.95)")
    parser.add_argument("--shortcut", action="store_true",
                        help="measure the share of Grad-CAM energy in the thorax, border and corners on the clean split")
    parser.add_argument("--compare-with", type=Path, default=None, metavar="DIR",
                        help="another model's stress output folder on the same split: print the shipping decision")
    parser.add_argument("--store-threshold", action="store_true",
                        help="write the pooled threshold into <ckpt-dir>/model.pt")
    parser.add_argument("--rescore", action="store_true",
                        help="no evaluation: rebuild OUTPUT/stress.json from its per-shift predictions by --threshold-method")
    parser.add_argument("--held-out-source", default=None, metavar="REGEX",
                        help="file-name regex of a source the model was trained without: compare threshold rules on it")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the stress validation; print the table; optionally store the threshold.

    Args:
        args: the parsed arguments.

    Returns:
        0.
    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.bundle import bundle_file, default_bundle_root
    from monai_pneumonia.evaluation import (
        format_table,
        format_transfer,
        rescore_stress,
        shipping_decision,
        source_transfer,
        stress_test,
    )
    from monai_pneumonia.networks import store_threshold

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.split == "test":
        raise SystemExit("refusing to choose a threshold on the test split; use the validation split")
    bundle_root = args.bundle or default_bundle_root()
    if args.rescore:
        ignored = [flag for flag, value in (("--shifts", args.shifts), ("--shortcut", args.shortcut)) if value]
        if ignored:
            raise SystemExit(f"--rescore runs no model, so {' and '.join(ignored)} cannot apply; leave them out")
        report = rescore_stress(args.output, threshold_method=args.threshold_method,
                                threshold_target=args.threshold_target)
    else:
        report = stress_test(args.datalist, args.output, split=args.split, shifts=args.shifts,
                             bundle_root=bundle_root, ckpt_dir=args.ckpt_dir, threshold_method=args.threshold_method,
                             shortcut=args.shortcut, threshold_target=args.threshold_target)
    print(format_table(report))
    if args.held_out_source is not None:
        print(format_transfer(source_transfer(args.output, args.held_out_source)))
    if args.compare_with is not None:
        print(json.dumps({"shipping_decision": shipping_decision(args.output, args.compare_with)}, indent=2))
    if args.store_threshold:
        checkpoint = (args.ckpt_dir / "model.pt") if args.ckpt_dir else bundle_file(bundle_root, "model.pt")
        store_threshold(checkpoint, report["stressed_threshold"])
        print(f"stored threshold {report['stressed_threshold']:.4f} in {checkpoint}")
    return 0
