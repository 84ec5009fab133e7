"""Training throughput of the bundle's network: naive fp32 eager vs the bundle's configured fast path.

Both arms train the network of ``bundle/configs/train.json`` (its ``network_def``, built with MONAI's
``ConfigParser`` so the benchmark follows the config) from the same random initialisation, on random
``(batch, 1, image_size, image_size)`` inputs already in memory, with the config's optimizer settings (AdamW,
learning rate, weight decay) and loss (cross-entropy with its label smoothing):

* **baseline**, "naive fp32 eager": contiguous (NCHW) network and inputs, no autocast;
* **candidate**, "bundle configured path": the network converted to ``channels_last`` as ``train.json``'s
  ``network`` does, forward passes through the config's ``train#inferer`` (:class:`AutocastInferer`: bfloat16
  autocast + channels-last inputs, on CPU and CUDA alike; ``--dtype float16`` on CUDA adds a gradient scaler,
  as MONAI's ``amp=True`` would);
* **compiled** (``--compile`` only): the candidate under ``torch.compile``; its compile time (the first
  warm-up step) is recorded separately.

The arms alternate step by step after their warm-up steps, so a machine whose load changes hurts them alike.
Reported per arm: median and mean step time, images/s, and the projected epoch time for the training split
(``--train-images``, 4,691 images, ``drop_last`` batches as the bundle's data loader).

Data side (skipped with ``--no-data``): the time to produce one augmented batch from cached decoded images with
the config's ``train#preprocessing`` — the part after ``CacheDataset``'s cache (the augmentations, then the
intensity normalisation) plus collation, in one process. The bundle's data loader runs it in ``num_workers``
processes alongside the training steps.

Usage::

    python benchmarks/bench_training.py [--iterations 20] [--warmup 3] [--batch-size 32] [--compile]
        [--output benchmarks/results/training.json]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, versions, write_report  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "bundle" / "configs" / "train.json"
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "chest_xray" / "train"
SAMPLES = REPO / "samples"
#: Images in the training split of the public data set (5,216 minus the validation patients).
TRAIN_IMAGES = 4691
PACKAGES = ("monai", "torch", "numpy", "pytorch-ignite", "pillow")


def load_config(device: torch.device, depth: int | None = None, image_size: int | None = None):
    """``train.json`` as a ``ConfigParser``, with ``device`` (and optionally depth and image size) overridden."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(CONFIG)
    parser["bundle_root"] = str(REPO / "bundle")
    parser["device"] = device
    if depth is not None:
        parser["network_def#depth"] = depth
    if image_size is not None:
        parser["image_size"] = image_size
    return parser


class Arm:
    """One way of running training steps: a network, its optimizer, and how inputs reach the network.

    Args:
        name: the arm's name in the report.
        network: the model (already on the device, in train mode).
        forward: ``forward(inputs, network) -> logits``.
        optimizer_kwargs: AdamW arguments (``lr``, ``weight_decay``).
        loss: the loss function.
        scaler: a gradient scaler (float16 autocast on CUDA), or ``None``.
    """

    def __init__(
        self,
        name: str,
        network: torch.nn.Module,
        forward: Callable[[torch.Tensor, torch.nn.Module], torch.Tensor],
        optimizer_kwargs: dict,
        loss: torch.nn.Module,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        self.name, self.network, self.forward, self.loss, self.scaler = name, network, forward, loss, scaler
        self.optimizer = torch.optim.AdamW(network.parameters(), **optimizer_kwargs)
        self.times: list[float] = []
        self.warmup_times: list[float] = []
        self.losses: list[float] = []

    def step(self, inputs: torch.Tensor, labels: torch.Tensor) -> float:
        """One optimisation step; returns its wall time in seconds (device work included)."""
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(self.forward(inputs, self.network), labels)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        value = float(loss.detach())  # waits for the device
        if inputs.device.type == "cuda":
            torch.cuda.synchronize()
        self.losses.append(value)
        return time.perf_counter() - start

    def summary(self, batch_size: int, train_images: int) -> dict:
        """Median/mean step time, images/s and the projected epoch time (``drop_last`` batches)."""
        median = statistics.median(self.times)
        steps = max(train_images // batch_size, 1)
        return {
            "steps_timed": len(self.times),
            "median_step_s": round(median, 4),
            "mean_step_s": round(statistics.fmean(self.times), 4),
            "min_step_s": round(min(self.times), 4),
            "images_per_s": round(batch_size / median, 2),
            "projected_epoch_s": round(steps * median, 1),
            "warmup_steps_s": [round(t, 3) for t in self.warmup_times],
            "losses_finite": all(math.isfinite(v) for v in self.losses),
        }


def make_arms(parser, device: torch.device, dtype: str | None, compile_network: bool, seed: int) -> list[Arm]:
    """The baseline, the candidate and (optionally) the compiled candidate, from one initialisation."""
    from monai_pneumonia.inferers import AutocastInferer

    torch.manual_seed(seed)
    network = parser.get_parsed_content("network_def").to(device).train()
    optimizer_kwargs = {"lr": parser["learning_rate"], "weight_decay": parser["weight_decay"]}
    loss = torch.nn.CrossEntropyLoss(label_smoothing=parser["label_smoothing"])
    inferer = parser.get_parsed_content("train#inferer")
    if dtype is not None:
        inferer = AutocastInferer(dtype=dtype, channels_last=True)
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and inferer.dtype == torch.float16 else None

    def eager(inputs, net):
        return net(inputs)

    def configured(inputs, net):
        return inferer(inputs, net)

    arms = [
        Arm("baseline_fp32_eager", copy.deepcopy(network), eager, optimizer_kwargs, loss),
        Arm("candidate_bundle_path", copy.deepcopy(network).to(memory_format=torch.channels_last), configured,
            optimizer_kwargs, loss, scaler),
    ]
    if compile_network:
        compiled = torch.compile(copy.deepcopy(network).to(memory_format=torch.channels_last))
        scaler = torch.amp.GradScaler("cuda") if scaler is not None else None
        arms.append(Arm("candidate_compiled", compiled, configured, optimizer_kwargs, loss, scaler))
    return arms


def benchmark_training(arms: list[Arm], inputs: torch.Tensor, labels: torch.Tensor, iterations: int,
                       warmup: int) -> dict[str, float]:
    """Warm every arm up, then alternate timed steps; returns each arm's first-step time (compilation)."""
    first_step = {}
    for arm in arms:
        for index in range(max(warmup, 1)):
            seconds = arm.step(inputs, labels)
            arm.warmup_times.append(seconds)
            if index == 0:
                first_step[arm.name] = seconds
            print(f"warm-up {arm.name}: {seconds:.3f} s", flush=True)
    for index in range(iterations):
        for arm in arms if index % 2 == 0 else arms[::-1]:
            arm.times.append(arm.step(inputs, labels))
        print(f"step {index + 1}/{iterations}: " + "  ".join(f"{a.name} {a.times[-1]:.3f} s" for a in arms), flush=True)
    return first_step


def source_images(folder: Path, count: int) -> list[Path]:
    """Up to ``count`` JPEGs from ``folder`` (both classes), else the repository's ``samples/``, repeated."""
    found = []
    for root in (folder, SAMPLES):
        for cls in ("NORMAL", "PNEUMONIA"):
            found += sorted(p for p in (root / cls).glob("*") if p.suffix.lower() in (".jpeg", ".jpg"))[: count // 2 + 1]
        if found:
            break
    if not found:
        raise SystemExit(f"no JPEG images under {folder} or {SAMPLES}")
    return [found[i % len(found)] for i in range(count)]


def benchmark_data(parser, images: list[Path], repeats: int) -> dict:
    """Time the random part of ``train#preprocessing`` (and collation) on one batch of cached images."""
    from monai.data import list_data_collate
    from monai.transforms import RandomizableTrait, Transform

    preprocessing = parser.get_parsed_content("train#preprocessing")
    first_random = preprocessing.get_index_of_first(  # where CacheDataset stops caching
        lambda t: isinstance(t, RandomizableTrait) or not isinstance(t, Transform)
    )
    start = time.perf_counter()
    cached = [preprocessing({"image": str(p), "label": 0}, end=first_random) for p in images]  # what CacheDataset holds
    cache_seconds = time.perf_counter() - start
    preprocessing.set_random_state(seed=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        batch = list_data_collate(
            [preprocessing(copy.deepcopy(item), start=first_random, threading=True) for item in cached]
        )
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    workers = int(parser["num_workers"])
    return {
        "batch_size": len(images),
        "batch_shape": list(batch["image"].shape),
        "cached_transforms": [type(t).__name__ for t in preprocessing.transforms[:first_random]],
        "timed_transforms": [type(t).__name__ for t in preprocessing.transforms[first_random:]],
        "cache_fill_s_per_image": round(cache_seconds / len(images), 4),
        "median_batch_s": round(median, 4),
        "min_batch_s": round(min(times), 4),
        "images_per_s_one_process": round(len(images) / median, 1),
        "config_num_workers": workers,
        "images_per_s_config_workers_ideal": round(max(workers, 1) * len(images) / median, 1),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=20, help="timed steps per arm (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per arm first")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's batch_size")
    parser.add_argument("--image-size", type=int, default=None, help="default: the config's image_size")
    parser.add_argument("--depth", type=int, default=None, help="override network_def#depth (quick trials only)")
    parser.add_argument("--dtype", choices=("bfloat16", "float16"), default=None,
                        help="override the config's autocast dtype (float16 adds a gradient scaler on CUDA)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile of the candidate")
    parser.add_argument("--no-data", action="store_true", help="skip the augmented-batch timing")
    parser.add_argument("--data-repeats", type=int, default=5, help="augmented batches timed")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="JPEG folder for the data-side timing")
    parser.add_argument("--train-images", type=int, default=TRAIN_IMAGES, help="training split size for epochs")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS / "training.json", help="JSON report path")
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    config = load_config(device, args.depth, args.image_size)
    batch_size = args.batch_size or int(config["batch_size"])
    image_size = args.image_size or int(config["image_size"])
    torch.manual_seed(args.seed)
    inputs = torch.randn(batch_size, 1, image_size, image_size, device=device)
    labels = torch.randint(0, 2, (batch_size,), device=device)

    arms = make_arms(config, device, args.dtype, args.compile, args.seed)
    first_step = benchmark_training(arms, inputs, labels, args.iterations, args.warmup)
    results = {arm.name: arm.summary(batch_size, args.train_images) for arm in arms}
    baseline = results["baseline_fp32_eager"]["median_step_s"]
    for result in results.values():
        result["speedup_vs_baseline"] = round(baseline / result["median_step_s"], 3)
    if args.compile:
        results["candidate_compiled"]["compile_s"] = round(
            first_step["candidate_compiled"] - results["candidate_compiled"]["median_step_s"], 2
        )

    data = None
    if not args.no_data:
        data = benchmark_data(config, source_images(args.images, batch_size), args.data_repeats)
        data["training_step_s_candidate"] = results["candidate_bundle_path"]["median_step_s"]

    network_def = {k: v for k, v in config["network_def"].items() if k != "_target_"}
    candidate_dtype = args.dtype or config["autocast_dtype"]
    report = {
        "benchmark": "training step throughput: naive fp32 eager vs the bundle's configured path",
        "config": str(CONFIG.relative_to(REPO)),
        "network": {"target": config["network_def"]["_target_"], **network_def},
        "parameters": sum(p.numel() for p in arms[0].network.parameters()),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "batch_size": batch_size,
        "image_size": image_size,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "train_images": args.train_images,
        "optimizer": {"name": "AdamW", "lr": config["learning_rate"], "weight_decay": config["weight_decay"]},
        "loss": {"name": "CrossEntropyLoss", "label_smoothing": config["label_smoothing"]},
        "arms": {
            "baseline_fp32_eager": "fp32, NCHW, eager",
            "candidate_bundle_path": f"{candidate_dtype} autocast + channels_last (train#inferer), eager",
            **({"candidate_compiled": "candidate under torch.compile"} if args.compile else {}),
        },
        "machine": machine(),
        "versions": versions(PACKAGES),
        "results": results,
        "data_side": data,
    }
    write_report(args.output, report)
    return report


if __name__ == "__main__":
    main()
