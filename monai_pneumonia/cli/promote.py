"""``monai-pneumonia promote``: make a trained checkpoint the shipped model, deliberately, gated and on the record."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from monai_pneumonia.cli import add_bundle_argument

__all__ = ["add_parser", "run"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """\
Replace the bundle's shipped model (<bundle>/models/model.pt, the one predict, serve and the MONAI Label app
load) with CKPT, typically RUN/models/model.pt of `monai-pneumonia train`.

Checks, in order; any failure is one line on stderr, exit status 2, and the shipped model is left as it is:
  1. CKPT is usable: readable (not truncated), weights all finite, a stored threshold in [0, 1], and it loads
     into the network of the bundle's inference.json.
  2. The gate: both CKPT and the shipped model classify the labelled films of --datalist (a datalist JSON, its
     --split list; or a folder with NORMAL/ and PNEUMONIA/). CKPT is refused when the upper 95% bound of
     AUC(CKPT) - AUC(shipped) (paired bootstrap) is below 0, or when its balanced accuracy at its own threshold
     is more than 0.02 below the shipped model's. Use films neither model was trained or tuned on.
     --force --note WHY installs a candidate the gate refused, or one without --datalist; the record says so.

The replaced file is kept in models/replaced/, the new one is swapped in atomically, and one JSON line (date,
package version, source, SHA-256 and threshold of the new model, SHA-256 of the replaced one, the gate's figures)
is appended to models/promotions.jsonl and printed. A refused candidate is logged there too.

  monai-pneumonia promote --rollback [--note WHY]
puts back the model the last promotion (or rollback) replaced, from models/replaced/, and logs it.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``promote`` subcommand.

    Args:
        subparsers: the top-level parser's sub-parsers.

    Returns:
        The sub-parser.
    """
    parser = subparsers.add_parser("promote", help="make a trained checkpoint the shipped model (gated, recorded)",
                                   description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, metavar="CKPT", nargs="?", help="the checkpoint to ship")
    add_bundle_argument(parser)
    parser.add_argument("--datalist", type=Path, metavar="D",
                        help="labelled films the two models are compared on: a datalist JSON or a class folder")
    parser.add_argument("--split", default="test", help="which list of the datalist JSON (default: test)")
    parser.add_argument("--force", action="store_true",
                        help="install although the gate refused the candidate or was not run (needs --note)")
    parser.add_argument("--rollback", action="store_true",
                        help="put back the model the last promotion replaced (no CKPT)")
    parser.add_argument("--note", default="", help="why (stored in the record; required with --force)")
    parser.add_argument("--device", default=None, help="torch device for the gate's scoring (default: the bundle's)")
    parser.add_argument("--n-bootstrap", type=int, default=2000, help="replicates of the gate's paired bootstrap")
    parser.set_defaults(func=run)
    return parser


def _usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the combination of options, or ``None``."""
    if args.rollback:
        if args.checkpoint is not None or args.datalist is not None or args.force:
            return "--rollback takes no CKPT, --datalist or --force"
        return None
    if args.checkpoint is None:
        return "give CKPT (the checkpoint to ship), or --rollback"
    if args.force and not args.note.strip():
        return "--force needs --note WHY (stored in models/promotions.jsonl)"
    if args.datalist is None and not args.force:
        return ("the gate needs --datalist D (labelled films to compare the candidate with the shipped model on); "
                "or --force --note WHY to install without it")
    return None


def _scores(bundle_root: Path, checkpoint: Path, images: list[str], device: str | None) -> dict[str, float]:
    """``image -> pneumonia probability`` of the films one model classifies (refused films are left out)."""
    from monai_pneumonia.inference import BundleClassifier, Classification

    classifier = BundleClassifier.from_bundle(bundle_root, ckpt_path=checkpoint, device=device)
    logger.info("scoring %d film(s) with %s", len(images), checkpoint)
    return {r.image: r.prob_pneumonia for r in classifier.iterate(images) if isinstance(r, Classification)}


def _gate(args: argparse.Namespace, bundle_root: Path, candidate_threshold: float) -> dict:
    """Score both models on the named films and apply :func:`~monai_pneumonia.evaluation.promotion.promotion_verdict`."""
    from monai_pneumonia.bundle import bundle_file
    from monai_pneumonia.data import evaluation_items
    from monai_pneumonia.evaluation.promotion import promotion_verdict
    from monai_pneumonia.registry import validate_checkpoint

    if args.datalist.is_dir():
        items = evaluation_items(dataset_dir=args.datalist)
    else:
        items = evaluation_items(datalist=args.datalist, split=args.split)
    labels = {item["image"]: int(item["label"]) for item in items}
    candidate = _scores(bundle_root, args.checkpoint, list(labels), args.device)
    shipped = bundle_file(bundle_root, "model.pt")
    current, current_threshold, unusable = None, None, None
    if shipped.is_file():
        try:
            current_threshold = validate_checkpoint(shipped, bundle_root)
        except ValueError as error:  # a broken shipped model is no reference: compare with nothing, say so
            unusable = str(error)
        else:
            current = _scores(bundle_root, shipped, list(labels), args.device)
    reference = current if current is not None else candidate
    lost = [image for image in reference if image not in candidate]
    if lost:
        raise ValueError(f"the candidate gives no answer for {len(lost)} film(s) the shipped model classifies, "
                         f"e.g. {lost[0]}")
    films = [image for image in labels if image in candidate and (current is None or image in current)]
    if not films:
        raise ValueError(f"{args.datalist}: no film could be classified")
    verdict = promotion_verdict(
        [labels[f] for f in films], [candidate[f] for f in films], candidate_threshold,
        [current[f] for f in films] if current is not None else None, current_threshold,
        n_bootstrap=args.n_bootstrap)
    verdict.update(films=str(args.datalist), split=None if args.datalist.is_dir() else args.split,
                   refused_films=len(labels) - len(films))
    if unusable:
        verdict["note"] = f"the shipped model is unusable ({unusable}): the rule was not applied"
    return verdict


def run(args: argparse.Namespace) -> int:
    """Promote (or roll back); print the record (JSON on stdout); exit 2 with one line on stderr when refused.

    Args:
        args: the parsed arguments.

    Returns:
        The exit status.
    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.bundle import default_bundle_root
    from monai_pneumonia.registry import promote, record_refusal, rollback, validate_checkpoint

    problem = _usage_error(args)
    if problem:
        print(f"monai-pneumonia promote: error: {problem}", file=sys.stderr)
        return 2
    bundle_root = Path(args.bundle or default_bundle_root())
    try:
        if args.rollback:
            record = rollback(bundle_root, note=args.note)
        else:
            threshold = validate_checkpoint(args.checkpoint, bundle_root)
            verdict = _gate(args, bundle_root, threshold) if args.datalist is not None else None
            if verdict is not None and not verdict["passed"] and not args.force:
                record_refusal(args.checkpoint, bundle_root, verdict, note=args.note)
                print(f"monai-pneumonia promote: refused: {args.checkpoint} is worse than the shipped model on "
                      f"{args.datalist}: {'; '.join(verdict['reasons'])} (--force --note WHY to install anyway)",
                      file=sys.stderr)
                return 2
            overridden = verdict is None or not verdict["passed"]  # what --force overrode: no gate, or its refusal
            record = promote(args.checkpoint, bundle_root, note=args.note, evaluation=verdict, forced=overridden)
    except (FileNotFoundError, ValueError) as error:  # CheckpointError, DatalistError, a refused rollback
        print(f"monai-pneumonia promote: error: {error}", file=sys.stderr)
        return 2
    json.dump(record, sys.stdout, indent=2)
    print()
    return 0
