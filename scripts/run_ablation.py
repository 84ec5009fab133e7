"""Architecture ablation with the bundle's own recipe: plain ResNet-50, + attention, + fusion, both.

Every arm trains with ``bundle/configs/train.json`` unchanged except the two switches of ``network_def``
(``attention``: ``cbam`` or ``None``; ``fusion``: ``true`` or ``false``), on the same datalist (so the validation
patients are the same for every arm and seed), then runs the stress validation of
:func:`monai_pneumonia.studies.stress_test` on its best-AUC checkpoint: the clean row gives the validation
metrics with 95% intervals at the arm's own stored threshold, the pooled rows the robustness under synthetic
acquisition shifts. ``--image-size`` and ``--max-epochs`` shrink the recipe for every arm alike when the full one
does not fit the compute at hand; the report records them.

Each training is the exact ``python -m monai.bundle run`` command printed and stored in the report, with its wall
time. Usage (from the repository root)::

    python scripts/run_ablation.py --dataset-dir ../shared/data/chest_xray/train --output runs/ablation \\
        [--seeds 0 1] [--arms plain attention fusion both] [--image-size 128] [--max-epochs 3] [--dry-run]

Writes ``<output>/ablation.json`` (updated after every arm, so an interrupted run keeps what finished) and
prints a Markdown table for the model card.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: arm -> (attention, fusion)
ARMS: dict[str, tuple[str | None, bool]] = {
    "plain": (None, False),
    "attention": ("cbam", False),
    "fusion": (None, True),
    "both": ("cbam", True),
}


def network_def(bundle: Path, arm: str) -> dict:
    """``train.json``'s ``network_def`` with the arm's attention and fusion switches."""
    config = json.loads((bundle / "configs" / "train.json").read_text())
    attention, fusion = ARMS[arm]
    return config["network_def"] | {"attention": attention, "fusion": fusion}


def train_command(args: argparse.Namespace, arm: str, seed: int, run_dir: Path) -> list[str]:
    """The ``python -m monai.bundle run`` command that trains one arm."""
    attention, fusion = ARMS[arm]
    bundle = args.bundle
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(bundle / "configs" / "train.json"),
        "--meta_file", str(bundle / "configs" / "metadata.json"),
        "--logging_file", str(bundle / "configs" / "logging.conf"),
        "--bundle_root", str(bundle),
        "--dataset_dir", str(args.dataset_dir),
        "--datalist", str(args.datalist),
        "--seed", str(seed),
        "--ckpt_dir", str(run_dir / "models"),
        "--output_dir", str(run_dir),
        "--progress_bar", "False",
        # monai.bundle drops None overrides and python-fire reads "false" as a string: use "$None" and "False"
        "--network_def#attention", "$None" if attention is None else attention,
        "--network_def#fusion", str(fusion),
    ]  # fmt: skip
    if args.image_size is not None:
        command += ["--image_size", str(args.image_size)]
    if args.max_epochs is not None:
        command += ["--max_epochs", str(args.max_epochs)]
    return command


def ensure_datalist(args: argparse.Namespace) -> None:
    """Write the datalist with ``monai-pneumonia datalist`` (seed 0, 10% validation) unless it exists."""
    if args.datalist.exists():
        return
    args.datalist.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "monai_pneumonia", "datalist", str(args.dataset_dir), "--output", str(args.datalist)]
    print("+", shlex.join(command), flush=True)
    subprocess.run(command, check=True)


def run_arm(args: argparse.Namespace, arm: str, seed: int) -> dict:
    """Train one arm with one seed, stress-validate its checkpoint, return its report entry."""
    from monai_pneumonia.studies import stress_test

    run_dir = args.output / f"{arm}-seed{seed}"
    command = train_command(args, arm, seed, run_dir)
    print("+", shlex.join(command), flush=True)
    entry: dict = {"arm": arm, "seed": seed, "command": shlex.join(command), "network_def": network_def(args.bundle, arm)}
    if args.dry_run:
        return entry
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(run_dir / "train.log", "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    entry["train_wall_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    overrides = {"network_def": entry["network_def"]}
    if args.image_size is not None:
        overrides["image_size"] = args.image_size
    report = stress_test(
        args.datalist, run_dir / "stress", bundle_root=args.bundle, ckpt_dir=run_dir / "models", **overrides
    )
    entry["stress_wall_s"] = round(time.perf_counter() - start, 1)
    entry["validation"] = report["shifts"]["none"]["at_stored"]
    entry["stressed_pooled"] = report["pooled"]["at_stored"]
    entry["worst_shift_auc"] = min(
        (shift["at_stored"]["auc"], name) for name, shift in report["shifts"].items()
    )
    return entry


def _ci(metric: dict, key: str, scale: float = 100.0, digits: int = 1) -> str:
    low, high = metric[f"{key}_ci95"]
    return f"{metric[key] * scale:.{digits}f} ({low * scale:.{digits}f}–{high * scale:.{digits}f})"


def format_table(entries: list[dict]) -> str:
    """Markdown rows: validation metrics with 95% CIs, pooled stressed AUC and specificity (at the arm's stored
    threshold), the worst shift, the training wall time."""
    lines = [
        "| arm | seed | AUC | accuracy % | sensitivity % | specificity % | F1 % | stressed AUC | stressed spec. % "
        "| worst shift (AUC) | train min |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in sorted(entries, key=lambda entry: (entry["seed"], list(ARMS).index(entry["arm"]))):
        if "validation" not in entry:
            continue
        val = entry["validation"]
        auc, worst = entry["worst_shift_auc"]
        lines.append(
            f"| {entry['arm']} | {entry['seed']} | {_ci(val, 'auc', 1.0, 4)} | {_ci(val, 'accuracy')} "
            f"| {_ci(val, 'sensitivity')} | {_ci(val, 'specificity')} | {_ci(val, 'f1')} "
            f"| {entry['stressed_pooled']['auc']:.4f} | {entry['stressed_pooled']['specificity'] * 100:.1f} "
            f"| {worst} ({auc:.4f}) | {entry['train_wall_s'] / 60:.1f} |"
        )
    return "\n".join(lines)


def _validation_predictions(output: Path, arm: str, seed: int) -> dict[str, tuple[int, float]]:
    """``image -> (label, pneumonia probability)`` of an arm's clean validation evaluation."""
    from monai_pneumonia.studies import read_predictions

    images, labels, probs = read_predictions(output / f"{arm}-seed{seed}" / "stress" / "none" / "predictions.csv")
    return {image: (int(label), float(prob)) for image, label, prob in zip(images, labels, probs, strict=True)}


def format_paired_table(entries: list[dict], output: Path, n_bootstrap: int = 2000) -> str:
    """Markdown rows: each arm's validation AUC minus the plain arm's of the same seed, paired bootstrap 95% CI."""
    from monai_pneumonia.evaluation import paired_auc_difference

    finished = {(entry["arm"], entry["seed"]) for entry in entries if "validation" in entry}
    lines = ["| arm | seed | AUC − plain AUC (95% CI) | p |", "|---|---|---|---|"]
    for arm, seed in sorted(finished, key=lambda key: (key[1], list(ARMS).index(key[0]))):
        if arm == "plain" or ("plain", seed) not in finished:
            continue
        plain, other = _validation_predictions(output, "plain", seed), _validation_predictions(output, arm, seed)
        images = sorted(plain)
        if sorted(other) != images:
            raise ValueError(f"{arm} seed {seed} and plain seed {seed} were validated on different images")
        result = paired_auc_difference(
            [plain[image][0] for image in images],
            [other[image][1] for image in images],
            [plain[image][1] for image in images],
            n_bootstrap=n_bootstrap,
        )
        low, high = result["difference_ci95"]
        lines.append(f"| {arm} | {seed} | {result['difference']:+.4f} ({low:+.4f} to {high:+.4f}) "
                     f"| {result['p_two_sided']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset-dir", type=Path, required=True, help="class-folder training data")
    parser.add_argument("--output", type=Path, required=True, help="folder for the runs and ablation.json")
    parser.add_argument("--datalist", type=Path, help="fixed datalist (default: <output>/datalist.json, made once)")
    parser.add_argument("--bundle", type=Path, default=REPO / "bundle")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--image-size", type=int, help="override train.json's image_size for every arm")
    parser.add_argument("--max-epochs", type=int, help="override train.json's max_epochs for every arm")
    parser.add_argument("--dry-run", action="store_true", help="print the training commands only")
    parser.add_argument("--table", action="store_true", help="print the table of <output>/ablation.json and stop")
    args = parser.parse_args(argv)
    args.datalist = args.datalist or args.output / "datalist.json"
    report_path = args.output / "ablation.json"
    if args.table:
        runs = json.loads(report_path.read_text())["runs"]
        print(format_table(runs), format_paired_table(runs, args.output), sep="\n\n")
        return 0
    if not args.dry_run:
        ensure_datalist(args)
    previous = json.loads(report_path.read_text()) if report_path.exists() else {"runs": []}
    done = {(entry["arm"], entry["seed"]) for entry in previous["runs"] if "validation" in entry}
    report = {
        "recipe": "bundle/configs/train.json",
        "image_size": args.image_size,
        "max_epochs": args.max_epochs,
        "datalist": str(args.datalist),
        "runs": [entry for entry in previous["runs"] if "validation" in entry],
    }
    for seed in args.seeds:
        for arm in args.arms:
            if (arm, seed) in done:
                print(f"{arm} seed {seed}: already in {report_path}", flush=True)
                continue
            entry = run_arm(args, arm, seed)
            if args.dry_run:
                continue
            report["runs"].append(entry)
            report_path.parent.mkdir(parents=True, exist_ok=True)
            report_path.write_text(json.dumps(report, indent=2) + "\n")
            print(format_table(report["runs"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
