"""The decodable transfer syntaxes and the decoder plugins per syntax (:mod:`monai_pneumonia.io.codec`)."""

from __future__ import annotations

import pytest
from pydicom.uid import (
    JPEG2000,
    JPEG2000MC,
    MPEG2MPML,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    RLELossless,
)

from monai_pneumonia.io import codec
from monai_pneumonia.io.codec import (
    DECODABLE_TRANSFER_SYNTAXES,
    J2K_SYNTAXES,
    JPEG_LS_SYNTAXES,
    JPEG_SYNTAXES,
    NATIVE_TRANSFER_SYNTAXES,
    decoder_hint,
    is_decodable,
)


def test_one_list_holds_every_syntax_the_module_knows():
    listed = set(DECODABLE_TRANSFER_SYNTAXES)
    assert len(listed) == len(DECODABLE_TRANSFER_SYNTAXES) == 16
    assert NATIVE_TRANSFER_SYNTAXES | JPEG_SYNTAXES | JPEG_LS_SYNTAXES | J2K_SYNTAXES | {RLELossless} == listed
    assert set(codec._PREFERRED_PLUGINS) <= listed
    assert JPEGLossless == "1.2.840.10008.1.2.4.57"  # Process 14 (pydicom 2.4's JPEGLossless is SV1's .70)
    # the listener's order of preference: Explicit VR LE first, Implicit VR LE after every compressed syntax
    assert DECODABLE_TRANSFER_SYNTAXES[:2] == (ExplicitVRLittleEndian, JPEG2000Lossless)
    assert DECODABLE_TRANSFER_SYNTAXES[-2:] == (ImplicitVRLittleEndian, ExplicitVRBigEndian)


@pytest.mark.parametrize(
    ("syntax", "decodable"),
    [(ExplicitVRBigEndian, True), (DeflatedExplicitVRLittleEndian, True), (JPEG2000, True), (JPEGBaseline8Bit, True),
     (JPEG2000MC, False), (MPEG2MPML, False), ("1.2.3.4", False)],
)
def test_is_decodable(syntax, decodable):
    assert is_decodable(syntax) is decodable


@pytest.mark.parametrize(
    ("syntax", "words"),
    [(JPEG2000Lossless, "pylibjpeg-openjpeg"), (ImplicitVRLittleEndian, "pydicom itself"),
     (JPEGLossless, "python-gdcm"), (MPEG2MPML, "no known plugin"), ("", "(missing) (no UID)")],
)
def test_decoder_hint_names_the_syntax_and_its_decoder(syntax, words):
    assert words in decoder_hint(syntax)

