"""Inference speed: the whole bundle inference command vs a plain fp32 ResNet-50 doing model-only compute.

Baseline: MONAI ``resnet50(spatial_dims=2, n_input_channels=1, num_classes=2, conv1_t_stride=2)``, fp32, eager,
``torch.no_grad``, batches of ``--batch-size`` random 1x224x224 inputs already in memory — no start-up, no decoding,
no preprocessing, no output. Candidate: ``python -m monai.bundle run --config_file bundle/configs/inference.json``
on the same number of JPEG files, timed as a whole process (interpreter start, imports, config parsing, checkpoint
loading, decoding, preprocessing, forward passes with the config's default ``backend``, CSV writing), twice: with an
empty ONNX export cache (a first run, paying the export) and with the cache the first run left (every later run).
The same command with ``--backend eager`` (bf16 + channels-last PyTorch) is timed too. All run in the same
invocation, one after the other, so a busy machine hurts them alike. Also recorded: the candidate's network alone
under the bundle's inferer, to show where the time goes, and with ``--compile`` that network under
``torch.compile`` (inductor with weight freezing): its first batch (the compile) timed apart, its throughput after,
and the largest difference of its pneumonia probabilities from eager's on one batch (random inputs: an indication,
not the acceptance check on validation images).

With ``--acceptance`` the default backend is checked against fp32 eager on the validation split of the training
folder (``load_datalist(val_fraction=0.1, seed=0)``, the split the shipped model was selected on): decisions at the
stored threshold and the largest probability difference. ``--int8`` adds ONNX Runtime static int8 quantisation
(QDQ, per-channel weights) calibrated on training images, with the same acceptance figures and its throughput.

The weights do not change the timing: without ``bundle/models/model.pt`` a randomly initialised checkpoint of the
configured network is written to a temporary folder.

Usage::

    python benchmarks/bench_inference.py [--images DIR] [--count 624] [--compile] [--acceptance] [--int8]
        [--output benchmarks/results/inference.json]
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


def bundle_command_throughput(images: list[Path], ckpt_dir: Path, batch_size: int, cache_dir: Path,
                              backend: str | None = None) -> dict:
    """Time the bundle's inference command as a separate process on ``images`` (linked into one folder).

    ``cache_dir`` is its ONNX export cache (``MONAI_PNEUMONIA_CACHE``); ``backend`` overrides the config's.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for index, image in enumerate(images):
            os.symlink(image, folder / f"{index:05d}_{image.name}")
        command = [sys.executable, "-m", "monai.bundle", "run", "--config_file",
                   str(REPO / "bundle" / "configs" / "inference.json"), "--dataset_dir", str(folder),
                   "--ckpt_dir", str(ckpt_dir), "--output_dir", str(Path(tmp) / "out"), "--progress_bar", "False",
                   "--batch_size", str(batch_size)] + (["--backend", backend] if backend else [])
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True,
                       env={**os.environ, "MONAI_PNEUMONIA_CACHE": os.fspath(cache_dir)})
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


def validation_tensors(dataset_dir: Path, count: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation split's images after the bundle's preprocessing, and ``count`` training images (calibration)."""
    import numpy as np

    from monai_pneumonia.data import load_datalist
    from monai_pneumonia.inference import BundleClassifier

    split = load_datalist(dataset_dir, val_fraction=0.1, seed=0)
    classifier = BundleClassifier.from_bundle(REPO / "bundle", device="cpu", backend="eager")

    def stack(paths: list[str]) -> torch.Tensor:
        return torch.cat([batch["image"].as_tensor().float() for batch in classifier.batches(paths, 32)])

    training = [item["image"] for item in split["training"]]
    chosen = np.random.default_rng(0).choice(len(training), count or 0, replace=False)
    return stack([item["image"] for item in split["validation"]]), stack([training[i] for i in chosen])


def acceptance(candidate, reference: torch.Tensor, images: torch.Tensor, threshold: float) -> dict:
    """Decisions and pneumonia probabilities of ``candidate`` (a callable on a batch) against ``reference``."""
    with torch.no_grad():
        probs = torch.cat([torch.softmax(candidate(images[i:i + 32]).float(), 1)[:, 1] for i in range(0, len(images), 32)])
    difference = (probs - reference).abs()
    changed = int(((probs >= threshold) != (reference >= threshold)).sum())
    return {"images": len(images), "decisions_changed": changed, "max_prob_difference": float(difference.max()),
            "p99_prob_difference": float(difference.quantile(0.99)),
            "accepted": changed == 0 and float(difference.max()) <= 0.01}


def int8_candidates(network: torch.nn.Module, calibration: torch.Tensor, folder: Path) -> dict[str, Path]:
    """ONNX Runtime static int8 models (QDQ, per-channel int8 weights, uint8 activations), two calibrations."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from monai_pneumonia.networks import export_onnx

    plain = export_onnx(network, folder / "fp32.onnx")
    prepared = folder / "prepared.onnx"
    quant_pre_process(os.fspath(plain), os.fspath(prepared))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": calibration[i:i + 16].numpy()} for i in range(0, len(calibration), 16)])

        def get_next(self):
            return next(self.batches, None)

    models = {}
    for name, method in (("minmax", CalibrationMethod.MinMax), ("entropy", CalibrationMethod.Entropy)):
        models[name] = folder / f"int8_{name}.onnx"
        quantize_static(os.fspath(prepared), os.fspath(models[name]), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=method)
    return models


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
    parser.add_argument("--acceptance", action="store_true",
                        help="check the default backend against fp32 eager on the validation split of --images")
    parser.add_argument("--int8", action="store_true",
                        help="also ONNX Runtime int8 (calibrated on training images of --images): speed, acceptance")
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
        cache = Path(tmp) / "cache"
        cold = bundle_command_throughput(images, ckpt_dir, args.batch_size, cache)
        candidate = bundle_command_throughput(images, ckpt_dir, args.batch_size, cache)
        eager_command = bundle_command_throughput(images, ckpt_dir, args.batch_size, cache, backend="eager")
        network, inferer = bundle_components(ckpt_dir)
        candidate_model_only = model_only_throughput(network, args.count, args.batch_size, inferer)
        from monai_pneumonia.networks import OnnxRuntimeNetwork, runtime_network

        fast = runtime_network(network, "onnxruntime", ckpt_dir / "model.pt", cache_dir=cache)
        runtime_only = model_only_throughput(fast, args.count, args.batch_size, inferer)
        compiled = compiled_network_throughput(network, inferer, args.count, args.batch_size) if args.compile else None
        checks = {}
        if args.acceptance or args.int8:
            validation, calibration = validation_tensors(args.images, 128 if args.int8 else 0)
            threshold = float(network.operating_threshold)
            with torch.no_grad():
                reference = torch.cat([torch.softmax(network.float()(validation[i:i + 32]), 1)[:, 1]
                                       for i in range(0, len(validation), 32)])
            checks["onnxruntime_fp32_vs_fp32_eager"] = acceptance(fast, reference, validation, threshold)
            checks["bf16_inferer_vs_fp32_eager"] = acceptance(lambda x: inferer(x, network), reference, validation,
                                                              threshold)
            if args.int8:
                for name, path in int8_candidates(network, calibration, Path(tmp)).items():
                    quantized = OnnxRuntimeNetwork(path, threshold)
                    checks[f"onnxruntime_int8_{name}_vs_fp32_eager"] = acceptance(quantized, reference, validation,
                                                                                   threshold)
                    checks[f"onnxruntime_int8_{name}_vs_fp32_eager"]["throughput"] = model_only_throughput(
                        quantized, args.count, args.batch_size)
    report = {
        "benchmark": "bundle inference command vs plain fp32 MONAI ResNet-50 model-only compute",
        "count": args.count,
        "batch_size": args.batch_size,
        "checkpoint": "shipped" if ckpt_dir == shipped else "random initialisation (timing only)",
        "machine": machine(),
        "versions": versions(("monai", "torch", "numpy", "pydicom", "pillow", "pytorch-ignite", "onnxruntime")),
        "baseline_resnet50_fp32_model_only": baseline,
        "candidate_bundle_inference_command": candidate,
        "candidate_bundle_inference_command_empty_export_cache": cold,
        "bundle_inference_command_backend_eager": eager_command,
        "candidate_network_under_bundle_inferer": candidate_model_only,
        "network_under_onnxruntime": runtime_only,
        "speedup_whole_command_vs_baseline": baseline["seconds"] / candidate["seconds"],
        "speedup_whole_command_empty_cache_vs_baseline": baseline["seconds"] / cold["seconds"],
        "speedup_whole_command_backend_eager_vs_baseline": baseline["seconds"] / eager_command["seconds"],
    }
    if checks:
        report["acceptance_on_validation_split"] = checks
    if compiled is not None:
        report["candidate_network_compiled"] = compiled
    write_report(args.output, report)
    return report


if __name__ == "__main__":
    main()
