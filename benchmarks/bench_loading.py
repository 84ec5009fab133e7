"""Benchmark LoadXray on the NEMA WG04 RG1 chest radiograph (1955 x 1841, 15 bits) in every encoding.

Encodings: those shipped by pydicom-data (uncompressed, JPEG 2000 lossless and lossy) plus ones made in a
temporary folder: JPEG Lossless SV1, JPEG-LS lossless and RLE with dcmtk (``dcmcjpeg``, ``dcmcjpls``,
``dcmcrle``; skipped when absent), RLE with pydicom's encoder, deflate with pydicom.

For each: median (and min) of ``--repeats`` runs of ``LoadXray`` and of ``LoadXray`` + ``Resize((224, 224))``.
For the JPEG 2000 encodings also ``LoadXray(target_size=224)`` + ``Resize((224, 224))`` — decoding at the
reduced wavelet resolution level the bundle's preprocessing uses (1/8 for RG1) — side by side with the full
decode, with the speed-up and the mean/max absolute difference of the two 224 x 224 results ([0, 1] scale).

For the syntaxes only python-gdcm decodes (JPEG Lossless, SV1) also the cost of decoding in the isolated helper
process (``io/isolation.py``): the same frame decoded by gdcm in process and through the helper, interleaved
run by run so that a busy machine weighs on both alike (``isolation``: medians and their difference).

``first_load_s`` is the first load of each file in the process (imports, plugin discovery, and for the
python-gdcm syntaxes the start of the isolated decoding helper of ``io/isolation.py``).

Baseline and candidate side by side: run the benchmark on the baseline tree, then on the candidate with
``--compare BASELINE.json``; the report then holds both medians and their ratio per encoding.

Usage::

    python benchmarks/bench_loading.py [--repeats 5] [--output benchmarks/results/loading.json] [--compare OLD.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.factories: the encoders the tests use
from _common import RESULTS, machine, versions, write_report  # noqa: E402

DEFAULT_OUTPUT = RESULTS / "loading.json"
#: JPEG 2000 Lossless and JPEG 2000: decoded a second time at a reduced resolution.
J2K_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
PACKAGES = (
    "monai",
    "torch",
    "numpy",
    "pydicom",
    "pillow",
    "pylibjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-rle",
    "python-gdcm",
    "pyjpegls",
    "nibabel",
)


def make_encodings(folder: Path) -> dict[str, Path]:
    """RG1 in every available encoding: name -> file."""
    import pydicom.data

    from tests.factories import write_encodings

    files = {}
    for name in ("UNCR", "J2KR", "J2KI"):
        try:
            files[f"RG1_{name}"] = Path(pydicom.data.get_testdata_file(f"RG1_{name}.dcm"))
        except Exception:
            pass
    src = files.get("RG1_UNCR")
    if src is None:
        raise SystemExit("pydicom-data (RG1_UNCR.dcm) is not installed")
    for name, path in write_encodings(src, folder, prefix="RG1_").items():
        if name != "uncompressed":
            files[f"RG1_{name}"] = path
    return files


def _time(fn, repeats: int) -> dict[str, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4)}


def _reduced(path: Path, load, load_reduced, resize, repeats: int) -> dict:
    """Time reduced-resolution decoding + resize and compare its 224 x 224 result with the full decode's."""
    load_reduced(path)  # warm-up
    decoded = load_reduced(path)
    full, reduced = resize(load(path)), resize(decoded)
    difference = (full - reduced).abs()
    return {
        "decoded_shape": list(decoded.shape[1:]),
        "load_resize_224": _time(lambda: resize(load_reduced(path)), repeats),
        "mean_abs_difference": round(float(difference.mean()), 5),
        "max_abs_difference": round(float(difference.max()), 4),
    }


#: Transfer syntaxes decoded by python-gdcm only, in the isolated helper process.
GDCM_ONLY_SYNTAXES = ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70")


def _isolation_cost(path: Path, repeats: int) -> dict:
    """gdcm decoding in this process versus in the helper process, interleaved (see the module docstring)."""
    import pydicom

    from monai_pneumonia.io.isolation import decode_isolated

    def in_process():
        ds = pydicom.dcmread(path)
        ds.pixel_array_options(decoding_plugin="gdcm")
        return ds.pixel_array

    decode_isolated(path, "gdcm")  # the helper is started once per process (in first_load_s)
    local, isolated = [], []
    for _ in range(repeats):
        for fn, times in ((in_process, local), (lambda: decode_isolated(path, "gdcm"), isolated)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    a, b = statistics.median(local), statistics.median(isolated)
    return {"in_process_median_s": round(a, 4), "isolated_median_s": round(b, 4), "overhead_s": round(b - a, 4),
            "ratio": round(b / a, 3)}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement (median reported)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON report path")
    parser.add_argument("--compare", type=Path, default=None, help="a baseline report to put side by side")
    args = parser.parse_args(argv)

    from monai.transforms import Resize

    from monai_pneumonia.transforms import LoadXray

    load = LoadXray()
    load_reduced = LoadXray(target_size=224)
    resize = Resize((224, 224))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in make_encodings(Path(tmp)).items():
            start = time.perf_counter()
            load(path)  # warm-up (imports, plugin discovery, the gdcm helper process)
            first = round(time.perf_counter() - start, 4)
            import pydicom

            syntax = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
            results[name] = {
                "transfer_syntax": syntax,
                "file_bytes": path.stat().st_size,
                "first_load_s": first,
                "load": _time(lambda p=path: load(p), args.repeats),
                "load_resize_224": _time(lambda p=path: resize(load(p)), args.repeats),
            }
            line = (
                f"{name:28s} {syntax:24s} load {results[name]['load']['median_s']:.3f} s   "
                f"+resize {results[name]['load_resize_224']['median_s']:.3f} s"
            )
            if syntax in GDCM_ONLY_SYNTAXES:
                results[name]["isolation"] = _isolation_cost(path, args.repeats)
                line += f"   gdcm isolated/in-process x{results[name]['isolation']['ratio']:.2f}"
            if syntax in J2K_SYNTAXES:
                results[name]["reduced_resolution"] = _reduced(path, load, load_reduced, resize, args.repeats)
                results[name]["reduced_resolution"]["speedup_vs_load_resize_224"] = round(
                    results[name]["load_resize_224"]["median_s"]
                    / results[name]["reduced_resolution"]["load_resize_224"]["median_s"],
                    2,
                )
                line += (
                    f"   reduced+resize {results[name]['reduced_resolution']['load_resize_224']['median_s']:.3f} s"
                )
            print(line, flush=True)
    report = {
        "benchmark": "LoadXray on RG1 (1955 x 1841 CR, 15 bits stored, MONOCHROME1)",
        "repeats": args.repeats,
        "machine": machine(),
        "versions": versions(PACKAGES),
        "results": results,
    }
    if args.compare is not None:
        report["side_by_side"] = _side_by_side(json.loads(args.compare.read_text()), report, args.compare)
        for name, row in report["side_by_side"]["encodings"].items():
            print(f"{name:28s} load baseline {row['baseline_s']:.3f} s  candidate {row['candidate_s']:.3f} s  "
                  f"x{row['ratio']:.2f}", flush=True)
    write_report(args.output, report)
    return report


def _side_by_side(baseline: dict, candidate: dict, source: Path) -> dict:
    """Median ``load`` time per encoding of a baseline report next to this run's, with candidate/baseline."""
    rows = {}
    for name, result in candidate["results"].items():
        old = baseline.get("results", {}).get(name)
        if old is None:
            continue
        rows[name] = {"baseline_s": old["load"]["median_s"], "candidate_s": result["load"]["median_s"],
                      "ratio": round(result["load"]["median_s"] / old["load"]["median_s"], 3)}
    return {"baseline_report": str(source), "measure": "load median_s", "encodings": rows}


if __name__ == "__main__":
    main()
