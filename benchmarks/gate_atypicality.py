"""Fit and measure the intended-use gate's atypicality score on the shipped model (real sizes; not a test).

Steps, each resumable (features are cached per chunk under ``WORK/features``), all run under ``nice``:

    python benchmarks/gate_atypicality.py unfit     --work WORK --datalist D.json  # build the unfit sets (PNG)
    python benchmarks/gate_atypicality.py synthetic --work WORK --datalist D.json  # the detector's training films
    python benchmarks/gate_atypicality.py features  --work WORK --datalist D.json  # pooled features, every set
    python benchmarks/gate_atypicality.py fit       --work WORK --datalist D.json  # reference + limits -> sidecar
    python benchmarks/gate_atypicality.py measure   --work WORK                     # the table of gate-limits.md

Version 2 (``docs/research/gate-limits.md``): ``fit --combine max`` scales each stage by its median over the
limit-choosing validation films and takes the maximum; ``measure`` splits the validation films cached beyond
``--validation-films`` off as held out, and ``unfit --held-out --unfit-seed 2 --exclude-sources OLD/manifest.json``
builds fresh unfit sets from held-out films only. Version 3: ``synthetic`` writes the unfit detector's training
films (:data:`UNFIT_FAMILIES` applied to training films, and mildly augmented fit films), ``fit --detector`` trains
it beside the version-2 distance (``--keep-distance OLD.npz`` keeps that distance's arrays and limits unchanged).
Version 4 (shipped): ``synthetic`` also writes benign variants (:func:`benign_variant`) of training and validation
films, ``fit --detector --benign`` fits the distance with them and sets its limits on validation films and their
variants, and ``unfit --further`` adds :data:`FURTHER_UNFIT` kinds and :data:`BENIGN` changes to the measurement.

``D.json``: ``monai-pneumonia datalist /work/shared/data/chest_xray/train --output D.json --val-fraction 0.1
--seed 0``. The reference is fitted on a random subsample of the training films (``--train-films``, seed 0);
the limits on the validation films by the rule of ``docs/research/gate-limits.md``; the unfit sets are made from
*validation* films (never the reference's), pydicom-data's other modalities and the photographs bundled with
matplotlib (and scikit-image when installed).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps
from scipy.stats import binomtest

from monai_pneumonia.inference import BundleClassifier
from monai_pneumonia.networks.atypicality import (
    DEFAULT_LAYERS,
    AtypicalityReference,
    pooled_features,
    sidecar_path,
)
from monai_pneumonia.networks.atypicality_fit import fit_detector, fit_reference, scale_stages
from monai_pneumonia.networks.unfit_detector import grid_key
from monai_pneumonia.results import file_sha256
from monai_pneumonia.workflows.datasets import REFUSED_KEY

logger = logging.getLogger("gate_atypicality")
CHUNK = 32
def _turn(im: Image.Image, angle: float) -> Image.Image:
    return im.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=0)


def _crop(im: Image.Image, width: float, height: float, r: random.Random) -> Image.Image:
    """A window of ``width`` x ``height`` (fractions of the film) at a random place."""
    cw, ch = int(im.width * width), int(im.height * height)
    x, y = r.randint(0, im.width - cw), r.randint(0, im.height - ch)
    return im.crop((x, y, x + cw, y + ch))


def _canvas(im: Image.Image, scale: float, r: random.Random | None = None) -> Image.Image:
    """The film shrunk to ``scale`` in a black frame of its own size: in the middle, or at a random place with ``r``."""
    small = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))))
    canvas = Image.new("L", im.size, 0)
    free = (im.width - small.width, im.height - small.height)
    canvas.paste(small, (free[0] // 2, free[1] // 2) if r is None else (r.randint(0, free[0]), r.randint(0, free[1])))
    return canvas


def _jpeg(im: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def _gamma(im: Image.Image, g: float) -> Image.Image:
    return Image.fromarray((255 * (np.asarray(im, np.float32) / 255) ** g).astype(np.uint8))


def _contrast(im: Image.Image, factor: float) -> Image.Image:
    return Image.fromarray(np.clip(128 + factor * (np.asarray(im, np.float32) - 128), 0, 255).astype(np.uint8))


def _noisy(im: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    a = np.asarray(im, np.float32)
    noise = np.random.default_rng(seed).normal(0, sigma, a.shape)
    return Image.fromarray(np.clip(a + noise, 0, 255).astype(np.uint8))


#: Transforms of validation films: what a hospital could send that is a chest film no longer fit to read.
FILM_TRANSFORMS = {
    "rotated_90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rotated_180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
    "flipped_vertical": lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    "grey_inverted": lambda im: ImageOps.invert(im),
    "cropped_quarter": lambda im: im.crop((0, 0, im.width // 2, im.height // 2)),
    "cropped_centre": lambda im: im.crop((im.width // 4, im.height // 3, 3 * im.width // 4, 2 * im.height // 3)),
    "heavy_noise": lambda im: _noisy(im, 80),
    "heavy_blur": lambda im: im.filter(ImageFilter.GaussianBlur(8)),
    "lateral_like": lambda im: im.crop((0, 0, im.width // 2, im.height)).resize((im.width // 2, im.height)),
    "flipped_horizontal": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "rotated_270": lambda im: im.transpose(Image.Transpose.ROTATE_270),
    "rotated_45": lambda im: _turn(im, 45),
}


def _unfit_turned(im, r):
    if r.random() < 0.5:
        return im.transpose(r.choice([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270]))
    return _turn(im, r.uniform(35, 325))


def _unfit_noisy(im, r):
    seed = r.randint(0, 2**31)  # drawn before the sigma, as the cached films were made
    return _noisy(im, r.uniform(40, 100), seed)


def _unfit_lateral(im, r):
    w, h = im.size
    f = r.uniform(0.35, 0.6)
    return im.crop((0, 0, int(w * f), h) if r.random() < 0.5 else (int(w * (1 - f)), 0, w, h))


#: Version 3: the families of synthetic unfit films the detector is trained on, each with random parameters.
UNFIT_FAMILIES = {
    "blur": lambda im, r: im.filter(ImageFilter.GaussianBlur(r.uniform(4, 12))),
    "crop": lambda im, r: _crop(im, r.uniform(0.25, 0.6), r.uniform(0.25, 0.6), r),
    "invert": lambda im, r: ImageOps.invert(im),
    "lateral": _unfit_lateral,
    "noise": _unfit_noisy,
    "turn": _unfit_turned,
    "vflip": lambda im, r: _turn(im.transpose(Image.Transpose.FLIP_TOP_BOTTOM), r.uniform(-15, 15)),
}


def benign_variant(im: Image.Image, r: random.Random) -> Image.Image:
    """Version 4: a fit film as another machine or site might make it (framing, contrast, sharpening, noise, codec).

    Framing as the model's own training augmentation (zoom out to 75% with a black border, or crop to 80%; a turn
    within 15 degrees; gamma 0.6-1.6), then, each at random, edge enhancement, detector noise, JPEG, slight blur
    and a lower resolution.
    """
    w, h = im.size
    if r.random() < 0.5:
        im = _canvas(im, r.uniform(0.75, 1.0), r)
    else:
        s = r.uniform(0.8, 1.0)
        im = _crop(im, s, s, r).resize((w, h))
    im = _gamma(_turn(im, r.uniform(-15, 15)), r.uniform(0.6, 1.6))
    if r.random() < 0.3:
        im = im.filter(ImageFilter.UnsharpMask(radius=r.uniform(1, 3), percent=int(r.uniform(50, 200)), threshold=2))
    if r.random() < 0.3:
        seed = r.randint(0, 2**31)
        im = _noisy(im, r.uniform(2, 10), seed)
    if r.random() < 0.3:
        im = _jpeg(im, r.randint(20, 90))
    if r.random() < 0.2:
        im = im.filter(ImageFilter.GaussianBlur(r.uniform(0, 1.5)))
    if r.random() < 0.2:
        f = r.uniform(0.4, 1.0)
        im = im.resize((max(8, int(w * f)), max(8, int(h * f)))).resize((w, h))
    return im


def mildly_augmented(im: Image.Image, r: random.Random) -> Image.Image:
    """A fit film still: within the model's own training augmentation (crop, small turn, gamma, slight blur)."""
    s = r.uniform(0.85, 1.0)
    im = _gamma(_turn(_crop(im, s, s, r), r.uniform(-12, 12)), r.uniform(0.7, 1.4))
    return im.filter(ImageFilter.GaussianBlur(r.uniform(0, 1.5)))


def _grey8(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    low, high = np.percentile(array, [0.5, 99.5])
    return (np.clip((array - low) / max(high - low, 1e-9), 0, 1) * 255).astype(np.uint8)


def other_modalities(folder: Path) -> list[Path]:
    """pydicom-data's (and pydicom's) CT, MR, US, NM, PT images as 8-bit PNG (one frame each), like a PACS export."""
    import pydicom
    from pydicom.data import get_testdata_files
    from pydicom.pixels import apply_voi_lut

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    seen = set()
    for path in sorted(get_testdata_files("*")):
        try:
            ds = pydicom.dcmread(path)
            modality = str(ds.get("Modality", ""))
            if modality not in ("CT", "MR", "US", "NM", "PT", "XA", "MG"):
                continue
            pixels = ds.pixel_array
        except Exception:  # noqa: BLE001 - pydicom's test files include broken ones on purpose
            continue
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        rgb = int(ds.get("SamplesPerPixel", 1)) == 3
        frame = pixels[frames // 2] if frames > 1 else pixels
        if rgb:
            image = Image.fromarray(_grey8(frame) if frame.dtype != np.uint8 else frame, "RGB")
        else:
            try:
                frame = apply_voi_lut(frame, ds) if "WindowCenter" in ds else frame
            except Exception:  # noqa: BLE001
                pass
            if frame.ndim != 2 or min(frame.shape) < 16:
                continue
            image = Image.fromarray(_grey8(frame))
        key = (modality, image.size, hash(image.tobytes()))
        if key in seen:  # the same image in several encodings
            continue
        seen.add(key)
        target = folder / f"{modality}-{Path(path).stem}.png"
        image.save(target)
        written.append(target)
    return written


def photographs(folder: Path, crops: int = 6) -> list[Path]:
    """Photographs and other pictures bundled with matplotlib (and scikit-image if installed), whole and cropped."""
    import matplotlib

    folder.mkdir(parents=True, exist_ok=True)
    sources: dict[str, Image.Image] = {}
    sample = Path(matplotlib.get_data_path()) / "sample_data"
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
        if (sample / name).is_file():
            sources[Path(name).stem] = Image.open(sample / name).convert("RGB")
    for name in ("topobathy.npz", "jacksboro_fault_dem.npz"):
        if (sample / name).is_file():
            with np.load(sample / name) as data:
                sources[Path(name).stem] = Image.fromarray(_grey8(data[data.files[0]]))
    try:
        import skimage.data

        for name in ("astronaut", "coffee", "chelsea", "camera", "rocket", "cat", "hubble_deep_field", "immunohistochemistry",
                     "coins", "moon", "page", "text", "clock", "horse", "grass", "gravel", "brick", "retina", "skin",
                     "colorwheel", "logo", "motorcycle_left"):
            try:
                image = getattr(skimage.data, name)()
            except Exception:  # noqa: BLE001 - some need a download (not allowed)
                continue
            image = np.asarray(image)
            if image.dtype != np.uint8:
                image = _grey8(image)
            sources[name] = Image.fromarray(image[..., :3] if image.ndim == 3 else image)
    except ImportError:
        pass
    rng = random.Random(0)
    written = []
    for name, image in sources.items():
        target = folder / f"{name}.png"
        image.save(target)
        written.append(target)
        for index in range(crops):
            w, h = image.size
            cw, ch = rng.randint(w // 3, w), rng.randint(h // 3, h)
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            target = folder / f"{name}-crop{index}.png"
            image.crop((x, y, x + cw, y + ch)).save(target)
            written.append(target)
    return written


def transformed_films(folder: Path, films: list[str], transforms: dict | None = None) -> dict[str, list[Path]]:
    """Each of ``transforms`` (:data:`FILM_TRANSFORMS`) applied to each film, as PNG under ``folder/<kind>/``."""
    written: dict[str, list[Path]] = {}
    for kind, transform in (transforms or FILM_TRANSFORMS).items():
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for film in films:
            target = folder / kind / (Path(film).stem + ".png")
            if not target.exists():
                transform(Image.open(film).convert("L")).save(target)
            written.setdefault(kind, []).append(target)
    return written


def _occluded(im: Image.Image) -> Image.Image:
    out = im.copy()
    ImageDraw.Draw(out).rectangle((0, 0, int(im.width * 0.63), int(im.height * 0.63)), fill=0)
    return out


def _tiled(im: Image.Image, columns: int, rows: int) -> Image.Image:
    canvas = Image.new("L", im.size, 0)
    tile = im.resize((im.width // columns, im.height // rows))
    for x in range(columns):
        for y in range(rows):
            canvas.paste(tile, (x * tile.width, y * tile.height))
    return canvas


def _marker(im: Image.Image) -> Image.Image:
    out = im.copy()
    draw = ImageDraw.Draw(out)
    draw.rectangle((im.width - 30, 8, im.width - 10, 30), fill=255)
    draw.text((im.width - 26, 10), "R", fill=0)
    return out


#: Version 4: further unfit kinds, reported beside the primary ones (some are not unfit to the model's
#: preprocessing, which equalises contrast: very low contrast, gamma 0.25 or 4).
FURTHER_UNFIT = {
    "shrunk_in_canvas_0.5": lambda im: _canvas(im, 0.5),
    "occluded_40pct": _occluded,
    "very_low_contrast_0.2": lambda im: _contrast(im, 0.2),
    "downscaled_24": lambda im: im.resize((24, 24)).resize(im.size),
    "jpeg_2": lambda im: _jpeg(im, 2),
    "montage_2x2": lambda im: _tiled(im, 2, 2),
    "side_by_side": lambda im: _tiled(im, 2, 1),
    "inverted_upside_down": lambda im: ImageOps.invert(im.transpose(Image.Transpose.FLIP_TOP_BOTTOM)),
    "transposed": lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    "rotated_25": lambda im: _turn(im, 25),
    "overexposed_gamma_4": lambda im: _gamma(im, 4.0),
    "underexposed_gamma_0.25": lambda im: _gamma(im, 0.25),
}
#: Version 4: fit films as another machine might make them; the gate should leave them unflagged.
BENIGN = {
    "sharpened": lambda im: im.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=2)),
    "equalized": ImageOps.equalize,
    "autocontrast": lambda im: ImageOps.autocontrast(im, cutoff=2),
    "low_contrast_0.7": lambda im: _contrast(im, 0.7),
    "gamma_0.7": lambda im: _gamma(im, 0.7),
    "gamma_1.4": lambda im: _gamma(im, 1.4),
    "noise_8": lambda im: _noisy(im, 8),
    "jpeg_30": lambda im: _jpeg(im, 30),
    "downscaled_112": lambda im: im.resize((112, 112)).resize(im.size),
    "border_0.85": lambda im: _canvas(im, 0.85),
    "marker_R": _marker,
    "rotated_8": lambda im: _turn(im, 8),
    "blur_1": lambda im: im.filter(ImageFilter.GaussianBlur(1)),
    "blur_2": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
}


def _prefix(items: list, count: int, seed: int) -> list:
    """The first ``count`` of a seeded permutation (so a larger count extends the same sample: resumable)."""
    return random.Random(seed).sample(items, len(items))[:count]


def _sets(work: Path, datalist: dict, train_films: int, validation_films: int) -> dict[str, list[tuple[str, int]]]:
    training = [(item["image"], int(item["label"])) for item in datalist["training"]]
    validation = [(item["image"], int(item["label"])) for item in datalist["validation"]]
    sets = {"train": _prefix(training, train_films, 0), "validation": _prefix(validation, validation_films, 0)}
    manifest = work / "unfit" / "manifest.json"
    if manifest.is_file():
        for kind, paths in json.loads(manifest.read_text()).items():
            sets[f"unfit:{kind}"] = [(path, -1) for path in paths]
    synthetic = work / "synthetic" / "manifest.json"
    if synthetic.is_file():
        for name, items in json.loads(synthetic.read_text()).items():
            sets[name] = [(path, int(label)) for path, label in items]
    return sets


#: Version 3's detector training films: (set name, first and last training film of the seed-0 permutation, seed).
SYNTHETIC_UNFIT = (("synthetic_unfit", 0, 384, 3), ("synthetic_unfit", 384, 768, 4))
FIT_AUGMENTED = ("fit_augmented", 512, 2048, 5)
#: Version 4: the reference's films 513-2,048, half of them benign variants; and one of each limit-choosing film.
FIT_BENIGN = ("fit_benign", 512, 2048, 6)
VALIDATION_BENIGN_SEED = 7


def _variants(films: list[tuple[str, int]], folder: Path, change, r: random.Random, every: int
              ) -> list[tuple[str, int]]:
    """``change(image, r)`` of every ``every``-th film from the second on (``every=1``: all), the rest as they are.

    Written as PNG under ``folder``; the random draws happen even when a PNG is cached, so a rerun makes the same.
    """
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index, (film, label) in enumerate(films):
        if every > 1 and index % every == 0:
            out.append((film, label))
            continue
        target = folder / f"{Path(film).stem}.png"
        variant = change(Image.open(film).convert("L"), r)
        if not target.exists():
            variant.save(target)
        out.append((str(target), label))
    return out


def cmd_synthetic(args) -> None:
    """The detector's training films: 3 random :data:`UNFIT_FAMILIES` per film, and fit films half augmented."""
    datalist = json.loads(Path(args.datalist).read_text())
    training = [(item["image"], int(item["label"])) for item in datalist["training"]]
    order = _prefix(training, len(training), 0)
    root = args.work / "synthetic"
    sets: dict[str, list] = {}
    for part, (name, first, last, seed) in enumerate(SYNTHETIC_UNFIT, start=1):
        r = random.Random(seed)
        for film, _ in order[first:last]:
            image = Image.open(film).convert("L")
            for index, family in enumerate(r.sample(sorted(UNFIT_FAMILIES), 3)):
                target = root / f"unfit-{part}" / family / f"{Path(film).stem}-{index}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                unfit = UNFIT_FAMILIES[family](image, r)  # drawn even when cached: the same films on a rerun
                if not target.exists():
                    unfit.save(target)
                sets.setdefault(name, []).append((str(target), -1))
    for (name, first, last, seed), folder, change in ((FIT_AUGMENTED, "fit", mildly_augmented),
                                                      (FIT_BENIGN, "benign", benign_variant)):  # version 4
        sets[name] = _variants(order[first:last], root / folder, change, random.Random(seed), every=2)
    validation = [(item["image"], int(item["label"])) for item in datalist["validation"]]
    sets["validation_benign"] = _variants(_prefix(validation, len(validation), 0)[:args.validation_films],
                                          root / "validation-benign", benign_variant,
                                          random.Random(VALIDATION_BENIGN_SEED), every=1)
    (root / "manifest.json").write_text(json.dumps(sets, indent=1))
    for name, items in sets.items():
        logger.info("%s: %d films", name, len(items))


def cmd_unfit(args) -> None:
    datalist = json.loads(Path(args.datalist).read_text())
    validation = [item["image"] for item in datalist["validation"]]
    pool = validation
    if args.held_out:  # only validation films never used for limits, nor as sources of an earlier unfit set
        earlier = set()
        for manifest in args.exclude_sources or ():
            for kind, paths in json.loads(manifest.read_text()).items():
                if kind in FILM_TRANSFORMS:
                    earlier.update(Path(path).stem for path in paths)
        pool = [film for film in _prefix(validation, len(validation), 0)[args.validation_films:]
                if Path(film).stem not in earlier]
    films = _prefix(pool, args.unfit_films, args.unfit_seed)
    root = args.work / "unfit"
    if args.exclude_sources:  # the same non-film images (no other ones offline)
        earlier_kinds = json.loads(args.exclude_sources[0].read_text())
        kinds = {kind: earlier_kinds[kind] for kind in ("other_modality", "photograph")}
    else:
        kinds = {"other_modality": [str(p) for p in other_modalities(root / "other_modality")],
                 "photograph": [str(p) for p in photographs(root / "photograph")]}
    kinds.update({k: [str(p) for p in v] for k, v in transformed_films(root, films).items()})
    if args.further:  # version 4: further unfit kinds on the same films, benign changes on other held-out films
        kinds.update({f"further-{k}": [str(p) for p in v]
                      for k, v in transformed_films(root / "further", films, FURTHER_UNFIT).items()})
        benign_films = _prefix(pool, args.benign_films, args.benign_seed)
        kinds.update({f"benign-{k}": [str(p) for p in v]
                      for k, v in transformed_films(root / "benign", benign_films, BENIGN).items()})
        composite = _variants([(film, -1) for film in benign_films], root / "benign" / "composite", benign_variant,
                              random.Random(args.benign_seed), every=1)
        kinds["benign-composite"] = [path for path, _ in composite]
    (root / "manifest.json").write_text(json.dumps(kinds, indent=1))
    for kind, paths in kinds.items():
        logger.info("unfit %s: %d images", kind, len(paths))


def cmd_features(args) -> None:
    datalist = json.loads(Path(args.datalist).read_text())
    classifier = BundleClassifier.from_bundle(args.bundle, device="cpu", backend="eager", batch_size=CHUNK)
    out = args.work / "features"
    out.mkdir(parents=True, exist_ok=True)
    for name, items in _sets(args.work, datalist, args.train_films, args.validation_films).items():
        for start in range(0, len(items), CHUNK):
            target = out / f"{name.replace(':', '-')}-{start // CHUNK:04d}.npz"
            if target.exists():
                continue
            chunk = items[start:start + CHUNK]
            batch = next(classifier.batches([path for path, _ in chunk], batch_size=len(chunk)))
            refused = {record["index"] for record in batch.pop(REFUSED_KEY)}
            keep = [i for i in range(len(chunk)) if i not in refused]
            arrays = {}
            if "image" in batch:
                arrays = pooled_features(classifier.network, batch["image"], DEFAULT_LAYERS, grid=True)
            np.savez(target, paths=np.array([chunk[i][0] for i in keep]), labels=np.array([chunk[i][1] for i in keep]),
                     **arrays)
            logger.info("%s: %d/%d (%d refused by the loader)", name, start + len(chunk), len(items), len(refused))


def load_features(work: Path, name: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The cached features of one set: ``({stage or grid key: (N, D)}, labels, paths)``."""
    files = sorted((work / "features").glob(f"{name.replace(':', '-')}-[0-9][0-9][0-9][0-9].npz"))
    keys = [*DEFAULT_LAYERS, *(grid_key(layer) for layer in DEFAULT_LAYERS)]
    feats: dict[str, list] = {key: [] for key in keys}
    labels, paths = [], []
    for file in files:
        with np.load(file) as data:
            if len(data["paths"]) == 0:
                continue
            for key in keys:
                if key in data:
                    feats[key].append(data[key])
            labels.append(data["labels"])
            paths.append(data["paths"])
    return ({k: np.concatenate(v) for k, v in feats.items() if v}, np.concatenate(labels) if labels else np.array([]),
            np.concatenate(paths) if paths else np.array([]))


#: The rule of docs/research/gate-limits.md, written before the limits were computed.
RULE = ("flag above the 97.5th percentile of the validation films' scores; refuse above 1.5 x the largest "
        "validation score")


def limits_by_rule(validation_scores: np.ndarray) -> tuple[float, float]:
    """The flag and refusal limits from the validation films' scores (:data:`RULE`)."""
    return float(np.percentile(validation_scores, 97.5)), float(1.5 * np.max(validation_scores))


def _head(feats: dict[str, np.ndarray], count: int, tail: bool = False) -> dict[str, np.ndarray]:
    """The first ``count`` films of a set (cached in permutation order), or the rest with ``tail``."""
    return {k: (v[count:] if tail else v[:count]) for k, v in feats.items()}


#: Version 4's rule for the distance's limits (docs/research/gate-limits.md), written before its result.
BENIGN_RULE = ("flag above the 97.5th percentile of the scores of the validation films and one benign variant of "
               "each; refuse above 1.5 x the largest of them")
#: Version 3's rule for the detector's limit (docs/research/gate-limits.md), written before its result.
DETECTOR_RULE = "flag above the 99th percentile of the validation films' unfit log-odds"
DETECTOR_C = 0.01


def fit_unfit_detector(args, reference: AtypicalityReference) -> AtypicalityReference:
    """Version 3: train the detector on fit films against synthetic unfit ones; its limit on validation films.

    Version 4 (``--benign``): the fit films also include the distance's benign variants (:data:`FIT_BENIGN`).
    """
    train, _, _ = load_features(args.work, "train")
    augmented, _, _ = load_features(args.work, FIT_AUGMENTED[0])
    unfit, _, _ = load_features(args.work, SYNTHETIC_UNFIT[0][0])
    keys = [*DEFAULT_LAYERS, *(grid_key(layer) for layer in DEFAULT_LAYERS)]
    fit_sets = [_head(train, args.train_films), *([load_features(args.work, FIT_BENIGN[0])[0]] if args.benign else []),
                augmented]
    fit = {key: np.concatenate([part[key] for part in fit_sets]) for key in keys}
    detector = fit_detector(fit, unfit, keys, c=DETECTOR_C)
    val, _, _ = load_features(args.work, "validation")
    limit = float(np.percentile(detector.logit(_head(val, args.validation_films)), 99))
    logger.info("detector: %d fit films, %d unfit films, limit %.3f", len(fit[keys[0]]), len(unfit[keys[0]]), limit)
    return reference.with_detector(detector.with_limit(limit, DETECTOR_RULE))


def fit_benign_reference(args) -> AtypicalityReference:
    """Version 4: the distance on plain and benign training films, limits on validation films and their variants."""
    train, labels, _ = load_features(args.work, "train")
    benign, benign_labels, _ = load_features(args.work, FIT_BENIGN[0])
    films = {layer: np.concatenate([train[layer][:args.train_films], benign[layer]]) for layer in DEFAULT_LAYERS}
    reference = fit_reference(films, np.r_[labels[:args.train_films], benign_labels],
                              file_sha256(args.bundle / "models" / "model.pt"), n_components=args.components)
    val, _, _ = load_features(args.work, "validation")
    val = _head(val, args.validation_films)
    reference = scale_stages(reference, val, "max")
    variants, _, _ = load_features(args.work, "validation_benign")
    limit_set = {layer: np.concatenate([val[layer], variants[layer]]) for layer in DEFAULT_LAYERS}
    flag, refuse = limits_by_rule(reference.score(limit_set))
    logger.info("distance on %d films (%d of them alternately plain and benign variants); limits on %d films: "
                "flag %.3f refuse %.3f", len(films[DEFAULT_LAYERS[0]]), len(benign_labels),
                len(limit_set[DEFAULT_LAYERS[0]]), flag, refuse)
    return reference.with_limits(flag, refuse, BENIGN_RULE)


def cmd_fit(args) -> None:
    if args.benign:  # version 4
        reference = fit_unfit_detector(args, fit_benign_reference(args))
    elif args.keep_distance:  # version 3 on top of an adopted distance, unchanged
        reference = fit_unfit_detector(args, AtypicalityReference.load(args.keep_distance))
        logger.info("kept the distance of %s", args.keep_distance)
    else:
        reference = fit_distance(args)
        if args.detector:
            reference = fit_unfit_detector(args, reference)
    target = reference.save(args.output or sidecar_path(args.bundle / "models" / "model.pt"))
    logger.info("-> %s (%d bytes)", target, target.stat().st_size)


def fit_distance(args) -> AtypicalityReference:
    """Versions 1 and 2: the distance on the first ``--train-films`` training films, limits on validation films."""
    train, labels, _ = load_features(args.work, "train")
    train, labels = _head(train, args.train_films), labels[:args.train_films]
    reference = fit_reference(train, labels, file_sha256(args.bundle / "models" / "model.pt"),
                              n_components=args.components)
    val, _, _ = load_features(args.work, "validation")
    val = _head(val, args.validation_films)  # the limit-choosing films only; the rest are held out
    if args.combine == "max":  # version 2: each stage divided by its median over these validation films
        reference = scale_stages(reference, val, "max")
    flag, refuse = limits_by_rule(reference.score(val))
    logger.info("fitted on %d training films (%s components, %s of stages, limits on %d validation films); limits "
                "flag %.3f refuse %.3f", len(labels), args.components, args.combine, len(next(iter(val.values()))),
                flag, refuse)
    return reference.with_limits(flag, refuse, RULE)


def _rate(k: int, n: int) -> str:
    low, high = binomtest(k, n).proportion_ci(method="wilson")
    return f"{100 * k / n:.1f}% [{100 * low:.0f}-{100 * high:.0f}]"


#: Kinds left out of the pooled unfit rate (a mirrored frontal film is arguably still fit).
NOT_POOLED = ("flipped_horizontal", "other_modality", "photograph")


def cmd_measure(args) -> None:
    path = args.output or sidecar_path(args.bundle / "models" / "model.pt")
    reference = AtypicalityReference.load(path)
    manifest = json.loads((args.work / "unfit" / "manifest.json").read_text())
    sets: dict[str, dict[str, np.ndarray]] = {}
    train, _, _ = load_features(args.work, "train")
    sets["train (first --train-films)"] = _head(train, args.train_films)
    val, _, _ = load_features(args.work, "validation")
    sets["validation (chose the limits)"] = _head(val, args.validation_films)
    if len(next(iter(val.values()))) > args.validation_films:
        sets["validation held out"] = _head(val, args.validation_films, tail=True)
    for kind in manifest:
        feats, _, _ = load_features(args.work, f"unfit:{kind}")
        if feats:
            sets[f"unfit:{kind}"] = feats
    rows = []
    for name, feats in sets.items():
        verdicts = reference.gate(feats, [""] * len(next(iter(feats.values()))))
        refused = sum(bool(v.reason) for v in verdicts)
        flagged = sum(not v.reason and bool(v.flags) for v in verdicts)
        rows.append({"set": name, "n": len(verdicts), "refused": refused, "flagged": flagged,
                     "median_score": float(np.median([v.atypicality for v in verdicts]))})
    groups = {"unfit films pooled (without " + ", ".join(NOT_POOLED) + ")":
              lambda kind: kind in FILM_TRANSFORMS and kind not in NOT_POOLED,
              "further unfit kinds pooled": lambda kind: kind.startswith("further-"),
              "benign changes pooled (should stay unflagged)": lambda kind: kind.startswith("benign-")}
    for title, member in groups.items():
        pooled = [r for r in rows if r["set"].startswith("unfit:") and member(r["set"][6:])]
        if pooled:
            rows.append({"set": title, "n": sum(r["n"] for r in pooled), "refused": sum(r["refused"] for r in pooled),
                         "flagged": sum(r["flagged"] for r in pooled), "median_score": float("nan")})
    print(f"{path}: {reference.combine} of stages; limits: flag > {reference.flag_limit:.3f}, refuse > "
          f"{reference.refuse_limit:.3f} ({reference.rule})")
    print("| set | films | refused | flagged | refused or flagged [95% CI] | median atypicality |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        n = r["n"]
        print(f"| {r['set']} | {n} | {r['refused']} ({100 * r['refused'] / n:.1f}%) | {r['flagged']} "
              f"({100 * r['flagged'] / n:.1f}%) | {_rate(r['refused'] + r['flagged'], n)} | "
              f"{r['median_score']:.2f} |")
    (args.work / f"measure-{Path(path).stem}.json").write_text(json.dumps(rows, indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("unfit", "synthetic", "features", "fit", "measure"))
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--datalist", type=Path)
    parser.add_argument("--bundle", type=Path, default=Path(__file__).resolve().parents[1] / "bundle")
    parser.add_argument("--train-films", type=int, default=256)
    parser.add_argument("--validation-films", type=int, default=256)
    parser.add_argument("--unfit-films", type=int, default=10)
    parser.add_argument("--unfit-seed", type=int, default=1, help="which validation films the transforms start from")
    parser.add_argument("--held-out", action="store_true",
                        help="unfit sources only from the validation films after the first --validation-films")
    parser.add_argument("--exclude-sources", type=Path, nargs="+",
                        help="earlier unfit manifests: their source films are not reused, the first's non-film "
                             "images are")
    parser.add_argument("--detector", action="store_true",
                        help="fit: version 3, train the unfit detector (needs the synthetic step's features)")
    parser.add_argument("--benign", action="store_true",
                        help="fit --detector: version 4, reference and limits with benign variants (synthetic step)")
    parser.add_argument("--further", action="store_true",
                        help="unfit: version 4, also the further unfit kinds and the benign changes")
    parser.add_argument("--benign-films", type=int, default=64)
    parser.add_argument("--benign-seed", type=int, default=9)
    parser.add_argument("--keep-distance", type=Path,
                        help="fit --detector: keep this sidecar's distance (arrays, scales, limits) unchanged")
    parser.add_argument("--components", type=int, default=64)
    parser.add_argument("--combine", choices=("mean", "max"), default="max",
                        help="fit: how the stages are combined (mean: version 1; max of median-scaled: version 2)")
    parser.add_argument("--output", type=Path, help="the sidecar (default: next to the bundle's model.pt)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("monai_pneumonia").setLevel(logging.ERROR)
    {"unfit": cmd_unfit, "synthetic": cmd_synthetic, "features": cmd_features, "fit": cmd_fit,
     "measure": cmd_measure}[args.step](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
