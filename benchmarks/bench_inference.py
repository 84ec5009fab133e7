"""Inference speed: the whole bundle inference command vs a plain fp32 ResNet-50 doing model-only compute.

Baseline: MONAI ``resnet50(spatial_dims=2, n_input_channels=1, num_classes=2, conv1_t_stride=2)``, fp32, eager,
``torch.no_grad``, batches of ``--batch-size`` random 1x224x224 inputs already in memory — no start-up, no decoding,
no preprocessing, no output. Candidate: ``python -m monai.bundle run --config_file bundle/configs/inference.json``
on the same number of JPEG files, timed as a whole process (interpreter start, imports, config parsing, checkpoint
loading, decoding, preprocessing, bf16 + channels-last forward passes, CSV writing). Both run in the same
invocation, one after the other, so a busy machine hurts both alike. Also recorded: the candidate's network alone
under the bundle's inferer, to show where the time goes, and with ``--compile`` that network under
``torch.compile`` (inductor with weight freezing): its first batch (the compile) timed apart, its throughput after,
and the largest difference of its pneumonia probabilities from eager's on one batch (random inputs: an indication,
not the acceptance check on validation images).

The weights do not change the timing: without ``bundle/models/model.pt`` a randomly initialised checkpoint of the
configured network is written to a temporary folder.

Usage::

    python benchmarks/bench_inference.py [--images DIR] [--count 624] [--output benchmarks/results/inference.json]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, versions, write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "chest_xray" / "train"


def model_only_throughput(network: torch.nn.Module, count: int, batch_size: int, inferer=None) -> dict:
    """Time forward passes over ``count`` random 1x224x224 inputs (after one warm-up batch)."""
    network.eval()
    batch = torch.randn(batch_size, 1, 224, 224)
    run = (lambda x: inferer(x, network)) if inferer is not None else network
    with torch.no_grad():
        run(batch)
        start = time.perf_counter()
        done = 0
        while done < count:
            size = min(batch_size, count - done)
            run(batch[:size])
            done += size
        seconds = time.perf_counter() - start
    return {"images": count, "seconds": seconds, "images_per_s": count / seconds}


def bundle_command_throughput(images: list[Path], ckpt_dir: Path, batch_size: int) -> dict:
    """Time the bundle's inference command as a separate process on ``images`` (copied into one folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for index, image in enumerate(images):
            os.symlink(image, folder / f"{index:05d}_{image.name}")
        command = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
                   str(REPO / "bundle" / "configs" / "inference.json"), "--dataset_dir", str(folder),
                   "--ckpt_dir", str(ckpt_dir), "--output_dir", str(Path(tmp) / "out"), "--progress_bar", "False",
                   "--batch_size", str(batch_size)]
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        rows = (Path(tmp) / "out" / "predictions.csv").read_text().splitlines()[1:]
    if len(rows) != len(images):
        raise RuntimeError(f"the bundle classified {len(rows)} of {len(images)} images")
    return {"images": len(images), "seconds": seconds, "images_per_s": len(images) / seconds}


def bundle_components(ckpt_dir: Path | None):
    """The bundle's network (with weights when ``ckpt_dir`` has them) and inferer, from ``inference.json``."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(REPO / "bundle" / "configs" / "inference.json")
    parser["bundle_root"] = str(REPO / "bundle")
    parser["device"] = torch.device("cpu")
    network = parser.get_parsed_content("network")
    if ckpt_dir is not None:
        network.load_state_dict(torch.load(ckpt_dir / "model.pt", weights_only=True))
    return network, parser.get_parsed_content("inferer")


def compiled_network_throughput(network: torch.nn.Module, inferer, count: int, batch_size: int) -> dict:
    """The network under ``torch.compile`` (inductor, freezing): compile time, throughput, probability difference."""
    network.eval()
    batch = torch.randn(batch_size, 1, 224, 224)
    compiled = torch.compile(network, options={"freezing": True})
    with torch.no_grad():
        reference = torch.softmax(inferer(batch, network).float(), dim=1)[:, 1]
        start = time.perf_counter()
        first = torch.softmax(inferer(batch, compiled).float(), dim=1)[:, 1]
        compile_seconds = time.perf_counter() - start
    timing = model_only_throughput(compiled, count, batch_size, inferer)
    return timing | {"compile_seconds": compile_seconds,
                     "max_prob_difference_random_batch": float((first - reference).abs().max())}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder searched for *.jpeg / *.jpg")
    parser.add_argument("--count", type=int, default=624, help="number of images (default: the test split's 624)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--output", type=Path, default=RESULTS / "inference.json")
    parser.add_argument("--compile", action="store_true", help="also time the network under torch.compile")
    args = parser.parse_args(argv)

    from monai.networks.nets import resnet50

    images = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg"))[: args.count]
    if len(images) < args.count:
        raise SystemExit(f"only {len(images)} JPEGs under {args.images}")
    shipped = REPO / "bundle" / "models"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_dir = shipped if (shipped / "model.pt").is_file() else Path(tmp)
        if ckpt_dir != shipped:
            network, _ = bundle_components(None)
            torch.save(network.state_dict(), ckpt_dir / "model.pt")
        baseline_net = resnet50(spatial_dims=2, n_input_channels=1, num_classes=2, conv1_t_stride=2)
        baseline = model_only_throughput(baseline_net, args.count, args.batch_size)
        candidate = bundle_command_throughput(images, ckpt_dir, args.batch_size)
        network, inferer = bundle_components(ckpt_dir)
        candidate_model_only = model_only_throughput(network, args.count, args.batch_size, inferer)
        compiled = compiled_network_throughput(network, inferer, args.count, args.batch_size) if args.compile else None
    report = {
        "benchmark": "bundle inference command vs plain fp32 MONAI ResNet-50 model-only compute",
        "count": args.count,
        "batch_size": args.batch_size,
        "checkpoint": "shipped" if ckpt_dir == shipped else "random initialisation (timing only)",
        "machine": machine(),
        "versions": versions(("monai", "torch", "numpy", "pydicom", "pillow", "pytorch-ignite")),
        "baseline_resnet50_fp32_model_only": baseline,
        "candidate_bundle_inference_command": candidate,
        "candidate_network_under_bundle_inferer": candidate_model_only,
        "speedup_whole_command_vs_baseline": baseline["seconds"] / candidate["seconds"],
    }
    if compiled is not None:
        report["candidate_network_compiled"] = compiled
    write_report(args.output, report)
    return report


if __name__ == "__main__":
    main()
