"""Every input that is not a usable chest radiograph raises XrayInputError naming the file and the reason."""

from __future__ import annotations

import logging
import shutil
import struct

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import JPEG2000Lossless

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io import XrayPolicy, load_xray
from tests.factories import dicom_dataset, gradient_picture, write_dicom, write_png

PIC = gradient_picture(32, 24, seed=5)


def _refused(path, *words, policy=None) -> XrayInputError:
    with pytest.raises(XrayInputError) as info:
        load_xray(path, policy)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word.lower() in message.lower(), message
    return info.value


def _testdata(name):
    data = pytest.importorskip("pydicom.data")
    try:
        return data.get_testdata_file(name)
    except Exception:  # pragma: no cover
        pytest.skip(f"{name} not available")


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "NM", "PT", "SEG", "RTSTRUCT"])
def test_non_projection_modality(tmp_path, modality):
    _refused(write_dicom(tmp_path / f"{modality}.dcm", PIC, modality=modality), "modality", modality)


def test_real_ct_slice():
    _refused(_testdata("CT_small.dcm"), "modality 'CT'")


def test_multi_frame(tmp_path):
    path = shutil.copy(_testdata("emri_small.dcm"), tmp_path / "emri_small.dcm")
    _refused(path, "modality 'MR'")  # refused as MR first; the frame rule is tested with a DX below
    ds = pydicom.dcmread(path)
    ds.Modality = "DX"
    ds.save_as(path)
    _refused(path, "multi-frame", "10 frames")


def test_text_sr(tmp_path):
    _refused(_testdata("test-SR.dcm"), "modality 'SR'")
    ds = dicom_dataset("DX")
    ds.ValueType = "CONTAINER"
    path = tmp_path / "sr-as-dx.dcm"
    ds.save_as(path, enforce_file_format=True)
    _refused(path, "no pixel data")


def test_truncated_dicom(tmp_path):
    path = write_dicom(tmp_path / "t.dcm", PIC, bits_stored=12)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 300])
    _refused(path)


def test_truncated_header(tmp_path):
    path = write_dicom(tmp_path / "t.dcm", PIC)
    path.write_bytes(path.read_bytes()[:200])
    _refused(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.dcm"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    _refused(path, "not a recognised image")


def test_random_bytes_after_dicom_preamble(tmp_path):
    path = tmp_path / "fake.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(1).bytes(2048))
    _refused(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _refused(path, "empty", "0 bytes")


def test_missing_file(tmp_path):
    _refused(tmp_path / "absent.dcm", "not found")


def test_text_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image\n" * 50)
    _refused(path, "not a recognised image")


def test_rgb_dicom(tmp_path):
    rgb = np.stack([PIC, PIC, PIC], axis=-1)
    _refused(write_dicom(tmp_path / "rgb.dcm", rgb), "photometric", "RGB")


def test_real_rgb_secondary_capture():
    _refused(_testdata("SC_rgb.dcm"), "photometric")


def test_palette_color_dicom(tmp_path):
    _refused(
        write_dicom(tmp_path / "pal.dcm", PIC, extra={"PhotometricInterpretation": "PALETTE COLOR"}), "PALETTE COLOR"
    )


def test_no_pixel_data(tmp_path):
    _refused(write_dicom(tmp_path / "nopix.dcm", None), "no pixel data")


def test_huge_declared_dimensions(tmp_path):
    path = write_dicom(tmp_path / "huge.dcm", PIC, extra={"Rows": 60000, "Columns": 60000})
    _refused(path, "too large", "3600000000")


def test_zero_dimensions(tmp_path):
    _refused(write_dicom(tmp_path / "zero.dcm", PIC, extra={"Rows": 0}), "no pixels")


def test_custom_pixel_limit(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", PIC)
    _refused(path, "too large", policy=XrayPolicy(max_pixels=100))


def test_undecodable_12bit_jpeg_extended(tmp_path):
    path = shutil.copy(_testdata("JPEG-lossy.dcm"), tmp_path / "JPEG-lossy.dcm")
    _refused(path, "modality 'NM'")
    ds = pydicom.dcmread(path)
    ds.Modality, ds.BodyPartExamined = "DX", "CHEST"
    ds.save_as(path)
    _refused(path, "cannot decode", "JPEG Extended", "1.2.840.10008.1.2.4.51", "pylibjpeg-libjpeg")


@pytest.mark.parametrize("damage", ["noise", "truncate"])
def test_corrupt_jpeg2000(tmp_path, damage):
    path = write_dicom(tmp_path / "j2k.dcm", gradient_picture(64, 64), bits_stored=12, transfer_syntax=JPEG2000Lossless)
    ds = pydicom.dcmread(path)
    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    if damage == "noise":
        frame = frame[:20] + np.random.default_rng(2).bytes(len(frame) - 20)
    else:
        frame = frame[: len(frame) // 4]
    ds.PixelData = encapsulate([frame + b"\0" * (len(frame) % 2)])
    ds.save_as(path)
    _refused(path, "JPEG 2000", "1.2.840.10008.1.2.4.90")


def test_dicomdir():
    _refused(_testdata("DICOMDIR"), "DICOMDIR")


def test_wrong_value_length(tmp_path):
    path = write_dicom(tmp_path / "badlen.dcm", PIC)
    data = bytearray(path.read_bytes())
    tag = struct.pack("<HH", 0x0028, 0x0010) + b"US"  # Rows, explicit VR: 2-byte length follows
    at = data.index(tag)
    data[at + 6 : at + 8] = struct.pack("<H", 3)  # US with length 3
    path.write_bytes(bytes(data))
    _refused(path)


def test_wrong_vr(tmp_path):
    path = write_dicom(tmp_path / "badvr.dcm", PIC)
    data = bytearray(path.read_bytes())
    at = data.index(struct.pack("<HH", 0x0028, 0x0010) + b"US")
    data[at + 4 : at + 6] = b"DS"  # Rows encoded as a decimal string of binary bytes
    path.write_bytes(bytes(data))
    _refused(path)


def test_lateral_view_is_flagged_then_refused_when_strict(tmp_path, caplog):
    path = write_dicom(tmp_path / "lat.dcm", PIC, view="LL")
    with caplog.at_level(logging.WARNING):
        _, meta = load_xray(path)
    assert "view:LL" in meta["xray_flags"] and "LL" in caplog.text
    _refused(path, "view position", "strict", policy=XrayPolicy(strict=True))


def test_other_body_part_strict(tmp_path):
    path = write_dicom(tmp_path / "knee.dcm", PIC, body_part="KNEE")
    assert load_xray(path)[1]["xray_flags"] == "body_part:KNEE"
    _refused(path, "KNEE", policy=XrayPolicy(strict=True))


def test_missing_body_part_and_view_only_flagged(tmp_path):
    path = write_dicom(tmp_path / "bare.dcm", PIC, body_part=None, view=None)
    _, meta = load_xray(path, XrayPolicy(strict=True))
    assert meta["xray_flags"] == "body_part_missing;view_missing"


def test_secondary_capture_flagged_then_refused_when_strict(tmp_path):
    path = write_dicom(tmp_path / "sc.dcm", PIC, modality="OT")
    assert "secondary_capture" in load_xray(path)[1]["xray_flags"]
    _refused(path, "secondary capture", policy=XrayPolicy(strict=True))


def test_for_processing_flagged(tmp_path):
    path = write_dicom(tmp_path / "raw.dcm", PIC, extra={"PresentationIntentType": "FOR PROCESSING"})
    assert "for_processing" in load_xray(path)[1]["xray_flags"]


def test_truncated_png(tmp_path):
    path = write_png(tmp_path / "t.png", gradient_picture(64, 64))
    path.write_bytes(path.read_bytes()[:-200])
    _refused(path, "PNG")


def test_png_declaring_huge_size_refused_before_decoding(tmp_path):
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)  # 900 Mpx grey, a few bytes of data
    path = tmp_path / "bomb.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )
    _refused(path, "too large")
    _refused(path, "too large", policy=XrayPolicy(max_pixels=10**10))  # Pillow's own bomb guard, wrapped


def test_nifti_volume_refused(tmp_path):
    nib = pytest.importorskip("nibabel")
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), np.eye(4)), str(path))
    _refused(path, "not 2D")


def test_error_is_a_value_error_and_picklable(tmp_path):
    import pickle

    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(ValueError) as info:
        load_xray(path)
    again = pickle.loads(pickle.dumps(info.value))
    assert again.path == str(path) and again.reason == info.value.reason
