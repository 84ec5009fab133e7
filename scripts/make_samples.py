"""Make the demo samples in ``samples/``: a few training-split JPEGs and DICOM encodings of them.

Run once from the repository root (the output is committed): ``.venv/bin/python scripts/make_samples.py``.
The JPEGs are files of the public training split (CC BY 4.0, see ``bundle/docs/data_license.txt``); each DICOM is
the same picture as a DX image with a different encoding, so the demo shows that every way in gives the same answer.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.factories import transcode_with_dcmtk, write_dicom  # noqa: E402

TRAIN = REPO.parent / "shared" / "data" / "chest_xray" / "train"
SAMPLES = REPO / "samples"

#: (class folder, training file, DICOM encoding of it or None)
CHOSEN = (
    ("NORMAL", "IM-0115-0001.jpeg", {"bits_stored": 12, "photometric": "MONOCHROME1", "window": "auto"}),
    ("NORMAL", "NORMAL2-IM-0383-0001.jpeg", {"bits_stored": 8, "transfer_syntax": JPEG2000Lossless}),
    ("NORMAL", "IM-0117-0001.jpeg", None),
    ("PNEUMONIA", "person1000_bacteria_2931.jpeg", {"bits_stored": 16, "rescale": (0.5, -1024.0), "window": "auto",
                                                    "transfer_syntax": RLELossless}),
    ("PNEUMONIA", "person1000_virus_1681.jpeg", {"bits_stored": 12, "dcmtk": JPEGLosslessSV1}),
    ("PNEUMONIA", "person1001_bacteria_2932.jpeg", None),
)


def main() -> None:
    for label, name, encoding in CHOSEN:
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


if __name__ == "__main__":
    main()
