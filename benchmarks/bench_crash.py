"""Crash safety: SIGKILL ``monai-pneumonia serve`` in the middle of a dcmsend burst, restart it, count SRs.

Runs in a private network namespace (root, ``ip netns``) with Orthanc as the PACS (the results' destination) and
``dcmsend`` as the modality, like ``bench_pacs.py``. Sends ``--count`` distinct DX files in one association,
SIGKILLs the listener once dcmsend has seen ``--kill-after`` Success responses, restarts it on the same spool, and
waits for one Comprehensive SR per acknowledged instance. With ``--pacs-down S`` Orthanc is also stopped during
the burst and started S seconds after the restart (results queue, then deliver).

Reports (JSON): sent, acknowledged (Success responses seen by dcmsend, parsed from ``dcmsend -d``), srs
(acknowledged instances with their SR in Orthanc), lost (acknowledged without SR: must be empty), duplicates
(SRs beyond one per source), and timings. Exit status 1 when anything was lost or duplicated.

Usage::

    sudo .venv/bin/python benchmarks/bench_crash.py [--count 140] [--kill-after 60] [--bundle DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, versions, write_report  # noqa: E402


def make_inputs(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` DX files (Explicit VR LE, ``size`` pixels square) with distinct SOP Instance UIDs."""
    from tests.factories import gradient_picture, write_dicom

    return [write_dicom(folder / f"in{index:04d}.dcm", gradient_picture(size, size, seed=index), modality="DX")
            for index in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=140, help="files in the burst (default: %(default)s)")
    parser.add_argument("--kill-after", type=int, default=60,
                        help="SIGKILL after this many acknowledged C-STOREs (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--pacs-down", type=float, default=None, metavar="S",
                        help="also stop Orthanc during the burst, start it S seconds after the restart")
    parser.add_argument("--bundle", type=Path, default=REPO / "bundle", help="bundle folder (default: bundle/)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the SRs")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON output (default: benchmarks/results/crash.json, crash-pacs-down.json)")
    args = parser.parse_args(argv)

    from tests.reliability.crash import crash_burst
    from tests.service.harness import NetNS, Orthanc, missing_tools

    reason = missing_tools()
    if reason:
        print(f"bench_crash: cannot run: {reason}", file=sys.stderr)
        return 2
    if not (args.bundle / "models" / "model.pt").is_file():
        print(f"bench_crash: no checkpoint {args.bundle / 'models' / 'model.pt'}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-crash-") as tmp:
        work = Path(tmp)
        (work / "inputs").mkdir()
        files = make_inputs(work / "inputs", args.count, args.size)
        ns = NetNS()
        orthanc = Orthanc(ns, work / "orthanc")
        try:
            orthanc.start()
            counts = crash_burst(ns, orthanc, args.bundle.resolve(), files, args.kill_after, work / "run",
                                 pacs_down_s=args.pacs_down, timeout=args.timeout)
        finally:
            orthanc.stop()
            ns.delete()
    report = {"benchmark": "crash", "count": args.count, "kill_after": args.kill_after, "image_size": args.size,
              "bundle": str(args.bundle), **counts, "lost_count": len(counts["lost"]),
              "machine": machine(), "versions": versions(["pydicom", "pynetdicom", "torch", "monai"])}
    name = "crash.json" if args.pacs_down is None else "crash-pacs-down.json"
    write_report(args.output or RESULTS / name, report)
    return 0 if not counts["lost"] and counts["duplicates"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
