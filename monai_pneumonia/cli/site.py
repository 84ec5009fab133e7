"""``monai-pneumonia site fit``: measure the model on a site's labelled films and fit the site's decision rule."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from monai_pneumonia.cli import add_bundle_argument
from monai_pneumonia.site_profile import SITE_RULES

__all__ = ["add_parser", "run_fit"]

_DESCRIPTION = """\
Classify a labelled sample of your own films once with the shipped model (or --ckpt-dir), fit the site's
decision rule and write, under --output:
  site.json        the site profile: bound to the model's SHA-256; deploy it with predict/evaluate/serve --site
                   or the bundle's site_profile knob (the model itself is never changed);
  acceptance.json  and acceptance.html: metrics at the shipped threshold and at the site rule (cross-validated
                   on the sample, never scored on the films it was fitted on), 95% intervals, the model card's
                   figures, ROC and reliability plots, and the verdict PASS / FAIL / INSUFFICIENT.

LABELLED is a folder with NORMAL/ and PNEUMONIA/, a datalist JSON, a CSV "path,label", or a DICOM folder with
--labels CSV "sop_instance_uid,label". See docs/site-validation.md.
"""


def _unit(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1)")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``site`` subcommand (``site fit``)."""
    parser = subparsers.add_parser("site", help="validate the model on your own labelled films and fit a site profile")
    actions = parser.add_subparsers(title="site commands", metavar="ACTION")
    fit = actions.add_parser("fit", help="classify a labelled sample, fit the site rule, write the acceptance report",
                             description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    fit.add_argument("labelled", metavar="LABELLED", type=Path, help="NORMAL/PNEUMONIA folder, datalist JSON, CSV or "
                     "DICOM folder (with --labels)")
    fit.add_argument("--output", "-o", type=Path, required=True, help="folder for site.json and the acceptance report")
    fit.add_argument("--labels", type=Path, default=None, metavar="CSV", help="labels of a DICOM folder")
    fit.add_argument("--split", default=None, help="list of a datalist JSON to use (default: all its lists)")
    add_bundle_argument(fit)
    fit.add_argument("--ckpt-dir", type=Path, default=None, help="folder of model.pt (default: <bundle>/models)")
    fit.add_argument("--device", default=None, help="torch device (default: the bundle's choice)")
    fit.add_argument("--rule", default="auto", choices=("auto", *SITE_RULES),
                     help="adaptation rule (default auto: lowest cross-validated expected cost)")
    fit.add_argument("--prevalence", type=_unit, default=None,
                     help="the site's share of pneumonia films (default: the sample's own)")
    fit.add_argument("--cost-ratio", type=_positive, default=1.0,
                     help="cost of a missed pneumonia / cost of a false alarm (default 1: accuracy)")
    fit.add_argument("--min-sensitivity", type=_unit, default=0.90, help="acceptance: lower 95%% bound (0.90)")
    fit.add_argument("--min-specificity", type=_unit, default=0.80, help="acceptance: lower 95%% bound (0.80)")
    fit.add_argument("--min-per-class", type=int, default=20, help="fewer films in a class: INSUFFICIENT (20)")
    fit.add_argument("--target-ci-width", type=_unit, default=0.10,
                     help="interval width the report sizes the sample for (0.10)")
    fit.add_argument("--folds", type=int, default=5, help="folds of the cross-validation (5)")
    fit.add_argument("--no-progress", action="store_true", help="no progress bar")
    fit.set_defaults(func=run_fit)
    parser.set_defaults(func=lambda args: parser.print_help(sys.stderr) or 2)
    return parser


def run_fit(args: argparse.Namespace) -> int:
    """Run ``site fit``; prints the verdict and the profile's path (stdout). Exit status 0 whatever the verdict."""
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.errors import DatalistError
    from monai_pneumonia.site import AcceptanceCriteria, run_site_fit

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        criteria = AcceptanceCriteria(args.min_sensitivity, args.min_specificity, args.min_per_class,
                                      args.target_ci_width)
        profile, acceptance = run_site_fit(
            args.labelled, args.output, bundle_root=args.bundle, ckpt_dir=args.ckpt_dir, labels_csv=args.labels,
            split=args.split, device=args.device, progress=not args.no_progress, rule=args.rule,
            prevalence=args.prevalence, cost_ratio=args.cost_ratio, criteria=criteria, k=args.folds)
    except (DatalistError, FileNotFoundError, ValueError) as error:
        print(f"monai-pneumonia site fit: error: {error}", file=sys.stderr)
        return 2
    site = acceptance["site_rule_cross_validated"]
    print(f"verdict {acceptance['verdict']}: rule {profile.rule}, threshold {profile.threshold:.4f} "
          f"(shipped {acceptance['shipped_threshold']:.4f})")
    for name in ("accuracy", "sensitivity", "specificity"):
        ci = site.get(f"{name}_ci95") or [float("nan")] * 2
        print(f"  {name:<12} {site[name]:.3f}  95% CI [{ci[0]:.3f}, {ci[1]:.3f}]  (cross-validated)")
    for reason in acceptance["reasons"]:
        print(f"  {reason}")
    print(f"profile: {args.output / 'site.json'}\nreport: {args.output / 'acceptance.html'}")
    return 0
