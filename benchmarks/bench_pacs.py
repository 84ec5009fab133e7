"""Benchmark the DICOM service end to end: a burst of instances through dcmsend -> SRs stored in Orthanc.

Runs in a private network namespace (root, ``ip netns``): Orthanc (the PACS), ``monai-pneumonia serve`` with
``--destination ORTHANC@127.0.0.1:4242`` and ``dcmsend`` (the modality). Sends distinct DX images (``--size``
pixels square, cycling through Explicit VR LE, JPEG 2000 lossless, RLE and JPEG Lossless SV1) and waits until every
SR is in Orthanc, in two modes, each with a fresh Orthanc and service (``--mode both``, the default, runs both and
reports both in one JSON): **burst**, ``--count`` instances in one association; **paced**, ``--rate`` instances/s
for ``--duration`` seconds (``dcmsend`` of small groups every 0.25 s).

Latency per instance = time Orthanc acknowledged its SR - time the service received it (both from the service's
results log, ``delivered`` and ``received``). Throughput = instances / (last SR stored - first received).
Lost = instances without an SR in Orthanc that references them.

Usage::

    sudo python benchmarks/bench_pacs.py [--mode both|burst|paced] [--count 200] [--rate 10 --duration 60]
        [--bundle DIR] [--output benchmarks/results/pacs.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "pacs.json"


def make_inputs(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` DX files with distinct SOP Instance UIDs in four encodings."""
    from factories import gradient_picture, transcode_with_dcmtk, write_dicom
    from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless

    files = []
    for index in range(count):
        kind = index % 4
        path = folder / f"in{index:04d}.dcm"
        picture = gradient_picture(size, size, seed=index)
        if kind == 3:
            plain = write_dicom(folder / f"plain{index:04d}.dcm", picture, modality="DX")
            files.append(transcode_with_dcmtk(plain, path, JPEGLosslessSV1))
            plain.unlink()
        else:
            syntax = {1: JPEG2000Lossless, 2: RLELossless}.get(kind)
            files.append(write_dicom(path, picture, modality="DX", **({"transfer_syntax": syntax} if syntax else {})))
    return files


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def run_once(files: list[Path], work: Path, bundle: Path, rate: float, timeout: float) -> dict:
    """Send ``files`` (in one burst, or paced at ``rate``/s) to a fresh service and Orthanc; the figures."""
    import pydicom
    from service.harness import NetNS, Orthanc, Service, dcmsend, wait_for

    from monai_pneumonia.service.reports import result_uids

    count = len(files)
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    ns = NetNS()
    orthanc = Orthanc(ns, work / "orthanc")
    service = Service(ns, work / "spool", bundle, "--destination", "ORTHANC@127.0.0.1:4242")
    try:
        orthanc.start()
        service.start()
        started = time.time()
        if rate > 0:
            group = max(1, round(rate / 4))
            for index in range(0, count, group):
                sent = dcmsend(ns, files[index:index + group])
                time.sleep(max(0.0, started + (index + group) / rate - time.time()))
        else:
            sent = dcmsend(ns, files)
        send_s = time.time() - started
        delivered = wait_for(
            lambda: [r for r in service.results() if r["event"] == "delivered"]
            if sum(r["event"] == "delivered" for r in service.results()) >= count else [],
            timeout=timeout, interval=0.5) or [r for r in service.results() if r["event"] == "delivered"]
        sr_uids = {inst["MainDicomTags"]["SOPInstanceUID"] for inst in orthanc.instances("SR")}
        loaded = [line for line in service.log.read_text().splitlines() if "model loaded:" in line]
    finally:
        service.stop()
        orthanc.stop()
        ns.delete()
    expected = {result_uids(h, "sr")[1] for h in headers}
    latencies = [r["delivered"] - r["received"] for r in delivered]
    span = max(r["delivered"] for r in delivered) - min(r["received"] for r in delivered) if delivered else float("nan")
    return {
        "service_model": loaded[0].split("model loaded:", 1)[1].strip() if loaded else None,
        "count": count,
        "mode": f"paced at {rate:g}/s" if rate > 0 else "burst (one dcmsend association)",
        "dcmsend_exit": sent.returncode,
        "dcmsend_seconds": round(send_s, 3),
        "delivered": len(delivered),
        "srs_in_orthanc": len(expected & sr_uids),
        "lost": count - len(expected & sr_uids),
        "latency_s": {q: round(percentile(latencies, int(q[1:])), 4) for q in ("p50", "p90", "p95", "p99")}
        if latencies else {},
        "latency_mean_s": round(statistics.fmean(latencies), 4) if latencies else None,
        "stage_p50_s": {
            "received_to_classified": round(statistics.median(r["classified"] - r["received"] for r in delivered), 4),
            "classified_to_sr_stored": round(statistics.median(r["delivered"] - r["classified"] for r in delivered), 4),
        } if delivered else {},
        "receive_span_s": round(max(r["received"] for r in delivered) - min(r["received"] for r in delivered), 3)
        if delivered else None,
        "throughput_per_s": round(len(delivered) / span, 2) if delivered else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("both", "burst", "paced"), default="both",
                        help="burst, paced or both, each with a fresh service (default: %(default)s)")
    parser.add_argument("--count", type=int, default=200, help="instances in the burst (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=10.0, help="paced mode: instances/s (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=60.0, help="paced mode: seconds (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--bundle", type=Path, default=None, help="bundle folder (default: the shipped bundle/)")
    parser.add_argument("--timeout", type=float, default=300, help="give up after this many seconds per mode")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON output (default: %(default)s)")
    args = parser.parse_args(argv)

    from service.harness import missing_tools

    reason = missing_tools()
    if reason:
        print(f"bench_pacs: cannot run: {reason}", file=sys.stderr)
        return 2
    bundle = args.bundle or REPO / "bundle"
    result = {
        "benchmark": "pacs",
        "image_size": args.size,
        "bundle": str(bundle),
        "platform": {"python": platform.python_version(), "machine": platform.machine(),
                     "cpus": os.cpu_count(), "load_average": os.getloadavg()},
    }
    modes = [("burst", 0.0, args.count), ("paced", args.rate, round(args.rate * args.duration))]
    for name, rate, count in modes:
        if args.mode not in ("both", name):
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-pacs-{name}-") as tmp:
            work = Path(tmp)
            (work / "inputs").mkdir()
            result[name] = run_once(make_inputs(work / "inputs", count, args.size), work, bundle, rate, args.timeout)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if all(result[name]["lost"] == 0 for name, _, _ in modes if name in result) else 1


if __name__ == "__main__":
    sys.exit(main())
