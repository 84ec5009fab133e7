"""Make the demo samples in ``samples/``: a few validation films of the shipped model and DICOM encodings of them.

Run once from the repository root (the output is committed): ``.venv/bin/python scripts/make_samples.py``.
The JPEGs are files of the public training folder (CC BY 4.0, see ``bundle/docs/data_license.txt``) whose patients
the shipped model's split (``train.json`` defaults: ``val_fraction`` 0.1, seed 0) holds out for validation, so the
demo never scores films the model trained on (the script checks it); each DICOM is the same picture as a DX image
with a different encoding, so the demo shows that every way in gives the same answer. ``samples/.manifest.json``
(hidden: the image finders skip it) says where the films come from; ``monai-pneumonia demo`` prints it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from monai_pneumonia.data import load_datalist  # noqa: E402
from tests.factories import transcode_with_dcmtk, write_dicom  # noqa: E402

#: The public training folder (``$CHEST_XRAY_TRAIN`` overrides, e.g. from a git worktree).
TRAIN = Path(os.environ.get("CHEST_XRAY_TRAIN", REPO.parent / "shared" / "data" / "chest_xray" / "train"))
SAMPLES = REPO / "samples"

#: (class folder, training file, DICOM encoding of it or None)
CHOSEN = (
    ("NORMAL", "IM-0128-0001.jpeg", {"bits_stored": 12, "photometric": "MONOCHROME1", "window": "auto"}),
    ("NORMAL", "NORMAL2-IM-0390-0001.jpeg", {"bits_stored": 8, "transfer_syntax": JPEG2000Lossless}),
    ("NORMAL", "IM-0162-0001.jpeg", None),
    ("PNEUMONIA", "person1010_bacteria_2941.jpeg", {"bits_stored": 16, "rescale": (0.5, -1024.0), "window": "auto",
                                                    "transfer_syntax": RLELossless}),
    ("PNEUMONIA", "person1010_virus_1695.jpeg", {"bits_stored": 12, "dcmtk": JPEGLosslessSV1}),
    ("PNEUMONIA", "person1017_bacteria_2948.jpeg", None),
)
#: The shipped model's split (``train.json`` defaults).
SPLIT = {"val_fraction": 0.1, "seed": 0}
NOTE = ("These films are validation films of the shipped model: their patients are held out by its training split "
        "(train.json defaults: val_fraction 0.1, seed 0), so it never trained on them; its operating threshold was "
        "chosen on that validation set, so this is a demonstration, not a measurement of accuracy.")


def main() -> None:
    split = load_datalist(dataset_dir=TRAIN, **SPLIT)
    validation = {Path(item["image"]).name for item in split["validation"]}
    training = {Path(item["image"]).name for item in split["training"]}
    for _, name, _ in CHOSEN:
        assert name in validation and name not in training, f"{name} is not a validation film of the shipped model"
    manifest = {"note": NOTE, "split": {**SPLIT, "dataset": "chest_xray/train", "subset": "validation"}, "files": []}
    for label, name, encoding in CHOSEN:
        manifest["files"].append(f"{label}/{name}")
        folder = SAMPLES / label
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(TRAIN / label / name, folder / name)
        if encoding is None:
            continue
        encoding = dict(encoding)
        dcmtk_syntax = encoding.pop("dcmtk", None)
        picture = np.asarray(Image.open(TRAIN / label / name).convert("L"))
        target = folder / f"{Path(name).stem}.dcm"
        write_dicom(target, picture, **encoding)
        if dcmtk_syntax is not None:
            transcode_with_dcmtk(target, target.with_suffix(".tmp"), dcmtk_syntax).replace(target)
        print(target.relative_to(REPO), encoding, dcmtk_syntax or "")
        manifest["files"].append(f"{label}/{target.name}")
    (SAMPLES / ".manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
