"""``monai-pneumonia monitor``: test a stream of per-film records for drift against the model's reference.

RECORDS is the DICOM listener's results log or the output of ``predict --json`` (one JSON record a line). The
reference is the bundle's ``models/model.reference.json`` (validation films of the shipped model) unless
``--reference`` names another: a reference file, or a records file such as a site's accepted sample. Writes
``DIR/monitor.json`` (top-level ``"drift"``, per-signal statistics per window) and ``DIR/monitor.html``. The rule:
docs/research/drift-rule.md; what to do on an alert: docs/monitoring.md.

``--save-reference FILE`` instead builds a reference from RECORDS (e.g. the validation films) and writes it,
bound to the SHA-256 of ``--model``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from monai_pneumonia.cli import add_bundle_argument

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``monitor`` subcommand."""
    parser = subparsers.add_parser("monitor", help="test per-film records (results log, predict --json) for drift",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", type=Path, metavar="RECORDS", help="results log or `predict --json` output")
    parser.add_argument("--output", type=Path, default=None, metavar="DIR", help="where monitor.json and monitor.html go")
    parser.add_argument("--reference", type=Path, default=None, metavar="FILE",
                        help="reference file or records file (default: <bundle>/models/model.reference.json)")
    parser.add_argument("--window", type=int, default=300, metavar="N", help="films per window (default 300)")
    parser.add_argument("--min-window", type=int, default=100, metavar="N",
                        help="fewest films a window or signal is tested with (default 100)")
    add_bundle_argument(parser)
    parser.add_argument("--save-reference", type=Path, default=None, metavar="FILE",
                        help="build a reference from RECORDS and write it to FILE instead of monitoring")
    parser.add_argument("--model", type=Path, default=None,
                        help="with --save-reference: the checkpoint it is bound to (default: <bundle>/models/model.pt)")
    parser.set_defaults(func=run)


def _fail(message: str) -> int:
    print(f"monai-pneumonia monitor: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    """Run ``monitor``; exit status 0 whether or not there is drift (read ``monitor.json``), 2 on a user error."""
    # lazy: SciPy and Matplotlib load only when the command runs
    from monai_pneumonia.bundle import bundle_file, default_bundle_root
    from monai_pneumonia.monitoring import (
        DriftReferenceError,
        DriftRule,
        Reference,
        load_reference,
        monitor_records,
        reference_path,
    )
    from monai_pneumonia.monitoring.dashboard import write_dashboard
    from monai_pneumonia.results import atomic_write, file_sha256, read_records

    bundle = args.bundle if args.bundle is not None else default_bundle_root()
    try:
        records = sorted(read_records(args.records), key=lambda r: float(r.get("time") or 0.0))
    except (OSError, ValueError) as error:
        return _fail(str(error) if isinstance(error, ValueError) else f"{args.records}: {error.strerror}")
    if args.save_reference is not None:
        model = args.model or bundle_file(bundle, "model.pt")
        if not model.is_file():
            return _fail(f"{model}: no checkpoint to bind the reference to")
        reference = Reference.from_records(records, file_sha256(model),
                                           f"records of {args.records.name} ({len(records)} films)")
        reference.save(args.save_reference)
        print(json.dumps(reference.summary()))
        return 0
    if args.output is None:
        return _fail("--output DIR is required (or --save-reference FILE)")
    try:
        rule = DriftRule(window=args.window, min_window=args.min_window)
        reference = load_reference(args.reference or reference_path(bundle_file(bundle, "model.pt")))
    except (DriftReferenceError, ValueError) as error:
        return _fail(str(error))
    report = monitor_records(reference, records, rule)
    named = {r.get("model_sha256") for r in records if r.get("model_sha256")}
    report["warnings"] = [f"records come from model(s) {', '.join(sorted(s[:12] for s in named))}, the reference "
                          f"from {reference.model_sha256[:12]}"] if reference.model_sha256 and named - {
        reference.model_sha256} else []
    for warning in report["warnings"]:
        print(f"monai-pneumonia monitor: warning: {warning}", file=sys.stderr)
    args.output.mkdir(parents=True, exist_ok=True)
    atomic_write(args.output / "monitor.json", json.dumps(report, indent=1) + "\n", mode=0o644)
    write_dashboard(args.output / "monitor.html", report, reference, records)
    alarms = sorted({s for w in report["windows"] for s in w["alarms"]})
    print(json.dumps({"drift": report["drift"], "status": report["status"], "films": report["films"],
                      "windows": len(report["windows"]), "alarms": alarms}))
    print(f"monitor: {report['status']}; {args.output / 'monitor.html'}", file=sys.stderr)
    return 0
