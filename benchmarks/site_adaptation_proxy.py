"""The site-adaptation proxy study of docs/research/site-adaptation.md (real data; not a test).

Step 1 (``scores``): a proxy classifier trained without the ``NORMAL2-`` series scores the films of the new site
(the ``NORMAL2-`` normals and the held-out pneumonia patients of the datalist's validation list).
Step 2 (``draws``): random site samples of n films; every rule, and ``auto``, is fitted on the sample and scored on
the rest of the site's films; mean and standard deviation over draws.

    python benchmarks/site_adaptation_proxy.py scores runs/proxy/datalist.json runs/proxy/scores.csv
    python benchmarks/site_adaptation_proxy.py draws runs/proxy/scores.csv runs/proxy/draws.json
    python benchmarks/site_adaptation_proxy.py table runs/proxy/draws.json
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from monai_pneumonia.site import AUTO, fit_rule, select_rule
from monai_pneumonia.site_profile import SITE_RULES

HELD_OUT = re.compile(r"^NORMAL2-")
SIZE = 32


def _features(path: str) -> np.ndarray:
    with Image.open(path) as image:
        image.draft("L", (SIZE * 4, SIZE * 4))  # JPEG: decode at reduced size
        picture = ImageOps.equalize(image.convert("L").resize((SIZE, SIZE), Image.BILINEAR))
    return np.asarray(picture, dtype=np.float32).reshape(-1) / 255.0


def scores(datalist: Path, output: Path) -> None:
    """Train the proxy on the training list (no NORMAL2- film), score the site pool, write image,label,prob."""
    lists = json.loads(datalist.read_text())
    root = datalist.parent
    train = lists["training"]
    pool = [item for item in lists["validation"] if item["label"] == 1 or HELD_OUT.search(item["patient"])]
    assert not any(HELD_OUT.search(item["patient"]) for item in train)

    def load(items):
        return np.stack([_features(str((root / item["image"]) if not Path(item["image"]).is_absolute()
                                       else item["image"])) for item in items])

    x_train, y_train = load(train), np.array([item["label"] for item in train])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, class_weight="balanced", max_iter=2000))
    model.fit(x_train, y_train)
    probs = model.predict_proba(load(pool))[:, 1]
    # the proxy's own "shipped" threshold: Youden on its training films' out-of-fold scores would need more fits;
    # the stored-threshold analogue here is the balanced-prior Bayes point 0.5 of a class-weighted model
    with output.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(("image", "label", "prob_pneumonia"))
        writer.writerows((item["image"], item["label"], f"{p:.6f}") for item, p in zip(pool, probs, strict=True))
    print(f"{len(train)} training films, {len(pool)} site films -> {output}", file=sys.stderr)


def _rates(y: np.ndarray, decisions: np.ndarray) -> tuple[float, float, float]:
    return (float(np.mean(decisions == y)), float(np.mean(decisions[y == 1])), float(np.mean(1 - decisions[y == 0])))


def draws(scores_csv: Path, output: Path, shipped_threshold: float, n_draws: int, sizes: list[int]) -> None:
    """Fit every rule on random site samples, score on the rest; mean and SD per rule, size and prevalence."""
    with scores_csv.open() as stream:
        rows = list(csv.DictReader(stream))
    y_all = np.array([int(r["label"]) for r in rows])
    p_all = np.array([float(r["prob_pneumonia"]) for r in rows])
    results: dict = {"shipped_threshold": shipped_threshold, "n_site": int(y_all.size),
                     "n_pneumonia": int(y_all.sum()), "draws": n_draws, "settings": {}}
    rng = np.random.default_rng(0)
    positives, negatives = np.flatnonzero(y_all == 1), np.flatnonzero(y_all == 0)
    for prevalence_name, prevalence in (("pool", float(y_all.mean())), ("0.625", 0.625)):
        # at 0.625 the site is every pneumonia film and normals sub-sampled to 62.5% prevalence, once per draw
        for n in sizes:
            table = {rule: [] for rule in (*SITE_RULES, AUTO)}
            chosen = {rule: 0 for rule in SITE_RULES}
            for _ in range(n_draws):
                if prevalence_name == "pool":
                    site = np.arange(y_all.size)
                else:
                    keep = int(round(positives.size * (1 - prevalence) / prevalence))
                    site = np.r_[positives, rng.choice(negatives, size=min(keep, negatives.size), replace=False)]
                y_site = y_all[site]
                n_pos = int(round(n * y_site.mean()))
                pick = np.r_[rng.choice(np.flatnonzero(y_site == 1), n_pos, replace=False),
                             rng.choice(np.flatnonzero(y_site == 0), n - n_pos, replace=False)]
                rest = np.setdiff1d(np.arange(site.size), pick)
                ys, ps = y_site[pick], p_all[site][pick]
                yr, pr = y_site[rest], p_all[site][rest]
                auto_rule, _ = select_rule(ys, ps, shipped_threshold)
                chosen[auto_rule] += 1
                for rule in (*SITE_RULES, AUTO):
                    name = auto_rule if rule == AUTO else rule
                    fit = fit_rule(name, ys, ps, shipped_threshold)
                    table[rule].append(_rates(yr, (pr >= fit.threshold).astype(int)))
            summary = {}
            for rule, values in table.items():
                values = np.array(values)
                summary[rule] = {metric: {"mean": float(values[:, i].mean()), "sd": float(values[:, i].std())}
                                 for i, metric in enumerate(("accuracy", "sensitivity", "specificity"))}
            results["settings"][f"prevalence {prevalence_name}, n {n}"] = {"rules": summary, "auto_chose": chosen}
            print(f"prevalence {prevalence_name} n {n}: " + ", ".join(
                f"{rule} acc {summary[rule]['accuracy']['mean']:.3f}±{summary[rule]['accuracy']['sd']:.3f} "
                f"sens {summary[rule]['sensitivity']['mean']:.3f} spec {summary[rule]['specificity']['mean']:.3f}"
                for rule in summary) + f"; auto chose {chosen}", file=sys.stderr, flush=True)
    output.write_text(json.dumps(results, indent=2) + "\n")


def table(draws_json: Path) -> None:
    """The draws as a Markdown table (mean ± SD over draws, on the rest of the site's films), to stdout."""
    results = json.loads(draws_json.read_text())
    print(f"shipped threshold {results['shipped_threshold']}, {results['draws']} draws per row\n")
    print("| setting | rule | accuracy | sensitivity | specificity | auto chose |")
    print("|---|---|---|---|---|---|")
    for setting, entry in results["settings"].items():
        for rule, figures in entry["rules"].items():
            cells = " | ".join(f"{100 * figures[m]['mean']:.1f} ± {100 * figures[m]['sd']:.1f}"
                               for m in ("accuracy", "sensitivity", "specificity"))
            chose = ", ".join(f"{k} {v}" for k, v in entry["auto_chose"].items()) if rule == AUTO else ""
            print(f"| {setting} | {rule} | {cells} | {chose} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    first = steps.add_parser("scores")
    first.add_argument("datalist", type=Path)
    first.add_argument("output", type=Path)
    second = steps.add_parser("draws")
    second.add_argument("scores", type=Path)
    second.add_argument("output", type=Path)
    second.add_argument("--shipped-threshold", type=float, default=0.5)
    second.add_argument("--draws", type=int, default=200)
    second.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 200])
    third = steps.add_parser("table")
    third.add_argument("draws", type=Path)
    args = parser.parse_args()
    if args.step == "table":
        table(args.draws)
    elif args.step == "scores":
        scores(args.datalist, args.output)
    else:
        draws(args.scores, args.output, args.shipped_threshold, args.draws, args.sizes)


if __name__ == "__main__":
    main()
