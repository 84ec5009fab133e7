"""``monai-pneumonia study``: the model-development studies (:mod:`monai_pneumonia.studies`) that judged candidates."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from monai_pneumonia.cli import add_bundle_argument
from monai_pneumonia.decision import THRESHOLD_RULES

__all__ = ["add_parser", "run_rescore", "run_stress"]

_DESCRIPTION = """\
Studies for developing a model, not for using one: `study stress` validates a model under synthetic acquisition
shifts and chooses the threshold that survives them; `study rescore` re-chooses it from a stress run's outputs
without running the model.
"""

_STRESS = """\
Run the bundle's evaluation (inference.json with the evaluate.json overlay) on the "validation" list of a datalist
once per synthetic acquisition shift (gamma, contrast, blur, sharpening, noise, low resolution, zoom), print a table
of AUC, accuracy, sensitivity and specificity per shift, and choose the operating threshold on the pooled
predictions of every shift, by Youden's J (the rule the shipped threshold was chosen by) or another rule:
"bayes-guarded" is 0.5 (the Bayes decision for the balanced prior and equal costs the loss trains for), raised if
needed until the pooled shifted specificity is at least 95%. With --store-threshold that threshold is written into
the checkpoint, where the bundle, the CLI, the DICOM listener and the MONAI Label app read it. --shortcut adds where
the model looks (share of Grad-CAM energy in the central thorax versus the border and corners); --compare-with
applies the shipping rule (pooled AUC and balanced accuracy not lower) against another model's stress output on the
same datalist; --held-out-source REGEX reads the predictions of a model trained without the files matching REGEX
(a second source of normal films, e.g. '^NORMAL2-'): each threshold rule is chosen on the other files and its
specificity is read off on that source.

The threshold is chosen on the validation list only: a threshold chosen on the test list makes its figures
meaningless.
"""

_RESCORE = """\
Rebuild OUTPUT/stress.json of a `study stress` run from the per-shift evaluations already there, by
--threshold-method: no model runs, so two models can be compared at one rule without evaluating them again.
--compare-with, --held-out-source and --store-threshold work as for `study stress`.
"""


def _add_decision_options(parser: argparse.ArgumentParser) -> None:
    """The options both studies share: the threshold rule, what to compare, where to store."""
    add_bundle_argument(parser)
    parser.add_argument("--ckpt-dir", type=Path, default=None, help="folder of model.pt (default: <bundle>/models)")
    parser.add_argument("--threshold-method", default="youden", choices=THRESHOLD_RULES,
                        help="rule for the pooled threshold (default: %(default)s)")
    parser.add_argument("--threshold-target", type=float, default=None, metavar="X",
                        help="the rule's target: sensitivity or specificity to keep, or bayes-guarded's specificity "
                             "guard (default: the rule's own, 0.97 / 0.95)")
    parser.add_argument("--compare-with", type=Path, default=None, metavar="DIR",
                        help="another model's stress output folder on the same datalist: print the shipping decision")
    parser.add_argument("--held-out-source", default=None, metavar="REGEX",
                        help="file-name regex of a source the model was trained without: compare threshold rules on it")
    parser.add_argument("--store-threshold", action="store_true",
                        help="write the pooled threshold into <ckpt-dir>/model.pt")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``study`` command and its ``stress`` and ``rescore`` subcommands.

    Args:
        subparsers: the top-level parser's sub-parsers.

    Returns:
        The ``study`` sub-parser.
    """
    parser = subparsers.add_parser("study", help="model-development studies: stress validation, threshold rules",
                                   description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    studies = parser.add_subparsers(title="studies", metavar="STUDY", required=True)
    stress = studies.add_parser("stress", help="validation under synthetic acquisition shifts; pooled threshold",
                                description=_STRESS, formatter_class=argparse.RawDescriptionHelpFormatter)
    stress.add_argument("datalist", type=Path, help="datalist JSON with a labelled validation list "
                        "(monai-pneumonia datalist)")
    stress.add_argument("--output", type=Path, required=True, help="folder for the per-shift evaluations and stress.json")
    stress.add_argument("--shifts", nargs="+", default=None, metavar="NAME", help="shifts to run (default: all)")
    stress.add_argument("--shortcut", action="store_true",
                        help="measure the share of Grad-CAM energy in the thorax, border and corners on the clean split")
    _add_decision_options(stress)
    stress.set_defaults(func=run_stress)
    rescore = studies.add_parser("rescore", help="re-choose a stress run's threshold by another rule (no model run)",
                                 description=_RESCORE, formatter_class=argparse.RawDescriptionHelpFormatter)
    rescore.add_argument("output", type=Path, help="a `study stress` output folder")
    _add_decision_options(rescore)
    rescore.set_defaults(func=run_rescore)
    return parser


def _conclude(args: argparse.Namespace, report: dict) -> int:
    """Print the table and what the options ask for; store the threshold."""
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.bundle import bundle_file, default_bundle_root
    from monai_pneumonia.networks import store_threshold
    from monai_pneumonia.studies import format_table, format_transfer, shipping_decision, source_transfer

    print(format_table(report))
    if args.held_out_source is not None:
        print(format_transfer(source_transfer(args.output, args.held_out_source)))
    if args.compare_with is not None:
        print(json.dumps({"shipping_decision": shipping_decision(args.output, args.compare_with)}, indent=2))
    if args.store_threshold:
        checkpoint = (args.ckpt_dir / "model.pt") if args.ckpt_dir else bundle_file(
            args.bundle or default_bundle_root(), "model.pt")
        store_threshold(checkpoint, report["stressed_threshold"])
        print(f"stored threshold {report['stressed_threshold']:.4f} in {checkpoint}")
    return 0


def run_stress(args: argparse.Namespace) -> int:
    """Run the stress validation on the datalist's validation list; print the table; optionally store the threshold.

    Args:
        args: the parsed arguments.

    Returns:
        0.
    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.bundle import default_bundle_root
    from monai_pneumonia.studies import stress_test

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    report = stress_test(args.datalist, args.output, split="validation", shifts=args.shifts,
                         bundle_root=args.bundle or default_bundle_root(), ckpt_dir=args.ckpt_dir,
                         threshold_method=args.threshold_method, shortcut=args.shortcut,
                         threshold_target=args.threshold_target)
    return _conclude(args, report)


def run_rescore(args: argparse.Namespace) -> int:
    """Rebuild a stress run's report by another threshold rule; print the table; optionally store the threshold.

    Args:
        args: the parsed arguments.

    Returns:
        0.
    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.studies import rescore_stress

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    report = rescore_stress(args.output, threshold_method=args.threshold_method,
                            threshold_target=args.threshold_target)
    return _conclude(args, report)
