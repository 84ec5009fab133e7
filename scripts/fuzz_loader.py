"""Fuzz the radiograph loader (DICOM, PNG, JPEG, NIfTI) with atheris; not part of the test suite.

Every input is written to a file and loaded with :func:`monai_pneumonia.io.load_xray`. The only accepted outcomes
are an image or :class:`~monai_pneumonia.errors.XrayInputError`; any other exception is a finding (atheris stops
and writes the input as ``crash-*``). Memory is capped (``-rss_limit_mb``), so a decompression bomb is a finding
too. Seed it with the bad-input corpus of the reliability tests::

    pip install -e ".[fuzz]"
    python -m tests.reliability.corpus /tmp/fuzz-seeds
    python scripts/fuzz_loader.py /tmp/fuzz-corpus /tmp/fuzz-seeds -max_total_time=300 -rss_limit_mb=3072

Arguments after the script name are libFuzzer's (``-max_total_time``, ``-runs``, corpus folders, a crash file to
reproduce).
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings

import atheris
import monai.data  # noqa: F401 - imported (not instrumented) first: coverage of torch/MONAI is not wanted

with atheris.instrument_imports(include=["monai_pneumonia", "pydicom", "PIL", "nibabel"]):
    from monai_pneumonia.errors import XrayInputError
    from monai_pneumonia.io import XrayPolicy, load_xray

_FOLDER = tempfile.mkdtemp(prefix="fuzz-loader-")
_PATH = os.path.join(_FOLDER, "input")
#: A smaller pixel limit than the default keeps each run fast; the size checks are the same code.
_POLICY = XrayPolicy(max_pixels=4_000_000)


def test_one_input(data: bytes) -> None:
    """Load ``data`` as a file; anything but an image or ``XrayInputError`` propagates (a finding)."""
    with open(_PATH, "wb") as stream:
        stream.write(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            load_xray(_PATH, _POLICY)
        except XrayInputError:
            pass


def main() -> None:
    """Run libFuzzer with the command-line arguments."""
    import logging

    logging.disable(logging.WARNING)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
