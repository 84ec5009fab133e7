"""Fuzz the radiograph loader (DICOM, PNG, JPEG, NIfTI and every compressed transfer syntax) with atheris.

Not part of the test suite. Each input is loaded with :func:`monai_pneumonia.io.load_xray` in one of two ways,
chosen by its first byte:

* **file** (even first byte): the remaining bytes are written as a file, whatever they are;
* **frame** (odd first byte): the next byte picks a transfer syntax of :data:`SYNTAXES` (JPEG Baseline, Extended,
  Lossless, SV1, JPEG-LS, JPEG 2000, HTJ2K, RLE, Deflated) and the rest becomes the encapsulated frame of a
  valid 64 x 64 DX header in that syntax (for Deflated, the deflated data set), so mutations reach the decoders
  instead of dying in the DICOM parser. python-gdcm runs in its helper process (``io/isolation.py``).

Accepted outcomes: a finite, non-constant image in [0, 1], or :class:`~monai_pneumonia.errors.XrayInputError`
(a typed refusal) whose reason is not "unexpected" (the loader's catch-all for a reader's unforeseen exception
is a finding too). Anything else propagates and atheris writes the input as ``crash-*``; memory is capped by
``-rss_limit_mb``, so a decompression bomb is a finding, and a hang by ``-timeout``. Seeds: the reliability
corpus, plus its compressed frames in frame mode::

    pip install -e ".[fuzz]"
    python scripts/fuzz_loader.py --seeds /tmp/fuzz-seeds      # corpus files and frames as seeds
    python scripts/fuzz_loader.py /tmp/fuzz-corpus /tmp/fuzz-seeds -max_total_time=300 -rss_limit_mb=3072 -timeout=60

Other arguments are libFuzzer's (``-max_total_time``, ``-runs``, corpus folders, a crash file to reproduce).
"""

from __future__ import annotations

import io
import os
import re
import sys
import tempfile
import warnings

import numpy as np

#: Transfer syntaxes reached in frame mode, in the order the second input byte selects them.
SYNTAXES = (
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
)
_DEFLATED = "1.2.840.10008.1.2.1.99"
#: The reason :func:`~monai_pneumonia.io.load_xray` gives when a reader raised something other than a refusal.
_UNFORESEEN = re.compile(r"cannot read the \w+ file \(unexpected \w+\)$")


def _header(syntax: str):
    """A 64 x 64 8-bit DX header in ``syntax`` without pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = "1.2.3.4"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.5", "1.2.3.6"
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition = "DX", "CHEST", "PA"
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    return ds


def frame_file(syntax: str, frame: bytes) -> bytes:
    """A DICOM file: the header of :func:`_header` with ``frame`` as its encapsulated frame (or deflated data set)."""
    from pydicom.encaps import encapsulate

    ds = _header(syntax)
    buffer = io.BytesIO()
    if syntax == _DEFLATED:  # the fuzzed bytes are the deflate stream after the file meta
        from pydicom.filewriter import write_file_meta_info

        buffer.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(buffer, ds.file_meta, enforce_standard=True)
        buffer.write(frame)
        return buffer.getvalue()
    ds.PixelData = encapsulate([frame + b"\0" * (len(frame) % 2)])
    ds["PixelData"].VR = "OB"
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_seeds(folder: str) -> int:
    """Write the reliability corpus (file mode) and its compressed frames (frame mode) as seeds; returns how many."""
    import pydicom
    from pydicom.encaps import get_frame

    from tests.reliability.corpus import build_corpus

    os.makedirs(folder, exist_ok=True)
    count = 0
    with tempfile.TemporaryDirectory() as scratch:
        for case in build_corpus(scratch):
            if not os.path.isfile(case.path) or os.path.islink(case.path):
                continue
            data = open(case.path, "rb").read()
            with open(os.path.join(folder, f"file-{count:04d}"), "wb") as stream:
                stream.write(b"\0" + data)
            count += 1
            try:
                ds = pydicom.dcmread(case.path)
                syntax = str(ds.file_meta.TransferSyntaxUID)
                if syntax in SYNTAXES and syntax != _DEFLATED:
                    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
                    with open(os.path.join(folder, f"frame-{count:04d}"), "wb") as stream:
                        stream.write(bytes([1, SYNTAXES.index(syntax)]) + frame)
                    count += 1
            except Exception:  # noqa: BLE001 - not a DICOM with a frame: the file seed is enough
                pass
    return count


def main() -> None:
    """Write seeds (``--seeds FOLDER``) or run libFuzzer with the command-line arguments."""
    if sys.argv[1:2] == ["--seeds"]:
        print(f"{write_seeds(sys.argv[2])} seeds written to {sys.argv[2]}")
        return
    import logging

    import atheris
    import monai.data  # noqa: F401 - imported (not instrumented) first: coverage of torch/MONAI is not wanted

    with atheris.instrument_imports(include=["monai_pneumonia", "pydicom", "PIL", "nibabel"]):
        from monai_pneumonia.errors import XrayInputError
        from monai_pneumonia.io import XrayPolicy, load_xray

    folder = tempfile.mkdtemp(prefix="fuzz-loader-")
    path = os.path.join(folder, "input")
    policy = XrayPolicy(max_pixels=4_000_000)  # smaller than the default keeps each run fast; same checks

    def test_one_input(data: bytes) -> None:
        if len(data) < 4:  # frame mode needs a frame of at least two bytes
            return
        if data[0] % 2:
            payload = frame_file(SYNTAXES[data[1] % len(SYNTAXES)], data[2:])
        else:
            payload = data[1:]
        with open(path, "wb") as stream:
            stream.write(payload)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                image, _ = load_xray(path, policy)
            except XrayInputError as refusal:
                if _UNFORESEEN.match(refusal.reason):  # load_xray's catch-all for a reader's failure: a finding
                    raise
                return
        if not np.isfinite(image).all() or float(image.min()) < 0 or float(image.max()) > 1:
            raise AssertionError("the loader returned values outside [0, 1] or not finite")
        if float(np.ptp(image)) == 0:
            raise AssertionError("the loader returned a constant image")

    logging.disable(logging.WARNING)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
