"""The shipped model gives a film the same answer whichever DICOM encoding carries it (issue: train and ship).

Two sample JPEGs (one normal, one pneumonia) are written as DICOM in the encodings a PACS sends: 8- and 12-bit,
MONOCHROME1 and 2, rescale + window, JPEG 2000 lossless, RLE. Each must get the JPEG's decision, with a pneumonia
probability within 0.02, through the bundle's own inference path.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless, RLELossless

from monai_pneumonia.bundle import bundle_file, default_bundle_root
from tests.conftest import REPO
from tests.factories import write_dicom

pytestmark = pytest.mark.skipif(not bundle_file(default_bundle_root(), "model.pt").is_file(),
                                reason="no shipped bundle/models/model.pt")

SAMPLES = [REPO / "samples" / "NORMAL" / "IM-0162-0001.jpeg",
           REPO / "samples" / "PNEUMONIA" / "person1017_bacteria_2948.jpeg"]
ENCODINGS = {
    "8bit_mono2": {},
    "12bit_mono2": {"bits_stored": 12},
    "12bit_mono1": {"bits_stored": 12, "photometric": "MONOCHROME1"},
    "12bit_rescale_window": {"bits_stored": 12, "rescale": (2.0, -100.0), "window": "auto"},
    "12bit_j2k": {"bits_stored": 12, "transfer_syntax": JPEG2000Lossless},
    "8bit_rle": {"transfer_syntax": RLELossless},
}


def test_every_encoding_gets_the_jpeg_answer(tmp_path):
    from monai_pneumonia.inference import BundleClassifier

    files = []
    for sample in SAMPLES:
        picture = np.asarray(Image.open(sample).convert("L"))
        for name, options in ENCODINGS.items():
            files.append(write_dicom(tmp_path / f"{sample.stem}-{name}.dcm", picture, **options))
    results = BundleClassifier.from_bundle(default_bundle_root(), device="cpu").classify([*SAMPLES, *files])
    by_file = {r.image.rsplit("/", 1)[-1]: r for r in results}
    assert len(by_file) == len(SAMPLES) * (1 + len(ENCODINGS)), [getattr(r, "reason", r) for r in results]
    for sample in SAMPLES:
        reference = by_file[sample.name]
        for name in ENCODINGS:
            result = by_file[f"{sample.stem}-{name}.dcm"]
            assert result.prediction == reference.prediction, (sample.name, name)
            assert abs(result.prob_pneumonia - reference.prob_pneumonia) < 0.02, (
                sample.name, name, result.prob_pneumonia, reference.prob_pneumonia)
    assert by_file[SAMPLES[0].name].prediction != by_file[SAMPLES[1].name].prediction
