"""``monai-pneumonia train``: the bundle's ``train.json``, run in a new run folder, with a final summary."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from monai_pneumonia.cli import add_bundle_argument
from monai_pneumonia.cli.overrides import add_common_options, common_overrides, logs_to_stderr

__all__ = ["add_parser", "run"]

_DESCRIPTION = """\
Train with the bundle's configs/train.json, exactly as

    python -m monai.bundle run --config_file bundle/configs/train.json --dataset_dir D [--KEY VALUE ...]

would (every option below is one override of that command). Checkpoints, TensorBoard events and the last epoch
go to a new run folder (default: <bundle>/runs/<date>-<time>-<pid>/, best model in models/model.pt); the shipped
model <bundle>/models/model.pt is never touched. Make a run's model the shipped one deliberately with
`monai-pneumonia promote RUN/models/model.pt`.

Every epoch also writes the full training state (network, EMA weights, optimizer, learning-rate schedule, trainer,
best validation score) to RUN/state_checkpoint_epoch=N.pt, keeping the latest; `--resume` continues a stopped run
from it, in the same folder. Give the same data, epochs and --set options as the first time.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``train`` subcommand.

    Args:
        subparsers: the top-level parser's sub-parsers.

    Returns:
        The sub-parser.
    """
    parser = subparsers.add_parser("train", help="train with the bundle's train.json into a new run folder",
                                   description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--dataset-dir", type=Path, help="folder with NORMAL/ and PNEUMONIA/ sub-folders")
    data.add_argument("--datalist", type=Path, help="datalist JSON with training and validation lists")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="run folder (default: a new <bundle>/runs/<date>-<time>-<pid>/)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the bundle's max_epochs)")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="STATE_CHECKPOINT",
                        help="continue a stopped run: from this state_checkpoint_epoch=N.pt (the run folder is its "
                             "folder), or, alone, from the latest one in --output-dir")
    add_bundle_argument(parser)
    add_common_options(parser)
    parser.set_defaults(func=run)
    return parser


def _resume_paths(resume: str | None, output_dir: Path | None) -> tuple[Path | None, Path | None]:
    """The state checkpoint to resume from and the run folder, from ``--resume`` and ``--output-dir``.

    Raises:
        FileNotFoundError: the checkpoint, or any checkpoint in ``--output-dir``, is missing.
        ValueError: ``--resume`` alone without ``--output-dir``, or a checkpoint outside ``--output-dir``.
    """
    from monai_pneumonia.workflows.resume import latest_state_checkpoint

    if resume is None:
        return None, output_dir
    if resume == "latest":
        if output_dir is None:
            raise ValueError("--resume without a checkpoint needs --output-dir: the run folder to continue")
        return latest_state_checkpoint(output_dir), output_dir
    checkpoint = Path(resume)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no such training-state checkpoint")
    if output_dir is not None and output_dir.resolve() != checkpoint.parent.resolve():
        raise ValueError(f"{checkpoint} belongs to the run folder {checkpoint.parent}, not --output-dir {output_dir}")
    return checkpoint, checkpoint.parent


def _record_run(run_dir: Path, config_files: list[Path], overrides: dict) -> None:
    """Keep what a run was made of in its folder: copies of its configs and its overrides (the datalist it used is
    written by ``train.json`` itself, as ``datalist.json``)."""
    (run_dir / "configs").mkdir(parents=True, exist_ok=True)
    for path in config_files:
        shutil.copyfile(path, run_dir / "configs" / path.name)
    record = {"configs": [path.name for path in config_files], "overrides": overrides}
    (run_dir / "overrides.json").write_text(json.dumps(record, indent=2, default=str) + "\n")


def run(args: argparse.Namespace) -> int:
    """Run the training; print a summary (JSON on stdout) with the promote command to ship the model.

    Args:
        args: the parsed arguments.

    Returns:
        0, or 2 when ``--resume`` finds nothing to resume.
    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.bundle import bundle_file, default_bundle_root, run_workflow
    from monai_pneumonia.networks.checkpoint import THRESHOLD_KEY, load_checkpoint
    from monai_pneumonia.registry import run_name
    from monai_pneumonia.results import file_sha256

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    bundle_root = (args.bundle or default_bundle_root()).resolve()
    try:
        resume, output_dir = _resume_paths(args.resume, args.output_dir)
    except (FileNotFoundError, ValueError) as error:
        print(f"monai-pneumonia train: error: {error}", file=sys.stderr)
        return 2
    output_dir = output_dir or bundle_root / "runs" / run_name()  # train.json's own default, named here to record it
    overrides = common_overrides(args)
    overrides.update(
        dataset_dir=os.fspath(args.dataset_dir.resolve()) if args.dataset_dir else None,
        datalist=os.fspath(args.datalist.resolve()) if args.datalist else None,
        output_dir=os.fspath(output_dir.resolve()),
        max_epochs=args.epochs,
    )
    if resume is not None:
        overrides["resume"] = os.fspath(resume.resolve())
    _record_run(output_dir, [bundle_file(bundle_root, "train.json")], overrides)
    with logs_to_stderr():
        workflow = run_workflow("train.json", bundle_root=bundle_root, **overrides)
    parser = workflow.parser
    validator = parser.get_parsed_content("validate#evaluator").state
    trainer = parser.get_parsed_content("train#trainer").state
    checkpoint = Path(parser.get_parsed_content("ckpt_dir")) / "model.pt"
    summary = {
        "run_dir": os.fspath(Path(parser.get_parsed_content("output_dir")).resolve()),
        "epochs": trainer.epoch,
        "best_val_auc": float(validator.best_metric) if validator.best_metric_epoch > 0 else None,  # may be numpy
        "best_epoch": validator.best_metric_epoch if validator.best_metric_epoch > 0 else None,
        "checkpoint": os.fspath(checkpoint.resolve()) if checkpoint.is_file() else None,
    }
    if checkpoint.is_file():
        summary["threshold"] = float(load_checkpoint(checkpoint)[THRESHOLD_KEY])
        summary["sha256"] = file_sha256(checkpoint)
    json.dump(summary, sys.stdout, indent=2)
    print()
    if checkpoint.is_file():
        print(f"trained model: {checkpoint.resolve()} (val AUC {summary['best_val_auc']:.4f}, epoch "
              f"{summary['best_epoch']}); to ship it: monai-pneumonia promote {checkpoint.resolve()}", file=sys.stderr)
    else:
        print(f"no checkpoint was saved in {checkpoint.parent} (no validation pass completed)", file=sys.stderr)
    return 0
