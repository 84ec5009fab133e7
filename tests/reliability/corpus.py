"""A corpus of bad (and a few good) radiograph inputs, generated into a folder: nothing binary is committed.

:func:`build_corpus` writes every case and returns what the loader must do with it: refuse it with an
:class:`~monai_pneumonia.errors.XrayInputError` whose message contains some words, or load it. Cases cover
truncated and corrupt DICOM, wrong VRs and value lengths, missing pixel data, huge declared dimensions,
decompression bombs (PNG, JPEG, JPEG 2000 in DICOM), corrupt compressed frames (pydicom's ``JPEG-lossy.dcm``,
damaged JPEG 2000 and RLE), 0-byte and random files, colour, signed and odd bit depths, multi-frame, CT/MR/SR,
a DICOMDIR, NIfTI volumes and bombs, and a symbolic-link loop inside the folder.

Run as a script to write the corpus for the fuzzer's seeds::

    python -m tests.reliability.corpus OUTPUT_DIR
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from tests.factories import dicom_dataset, gradient_picture, write_dicom, write_png

__all__ = ["GDCM_HANG_FRAME", "GDCM_POISON", "HIDDEN_BOMB", "LOAD", "REFUSE", "SURVIVE", "Case", "build_corpus", "j2k_codestream", "main"]

#: ``SURVIVE``: a typed refusal or a load are both right (a corrupt stream another decoder tolerates); no crash.
REFUSE, LOAD, SURVIVE = "refuse", "load", "survive"
#: A JPEG 2000 frame whose codestream declares 60000 x 60000 inside a DICOM header of 64 x 64 (see test_corpus).
HIDDEN_BOMB = "j2k_bomb_hidden.dcm"
PIC = gradient_picture(48, 40, seed=9)
#: A JPEG Baseline frame on which python-gdcm 3.2 never returns (SOI, then an APP3 marker whose length runs past
#: the end); found by ``scripts/fuzz_loader.py``.
GDCM_HANG_FRAME = bytes.fromhex("ffd8ffe336d9")
#: Frames on which python-gdcm 3.2 itself aborts (SIGABRT) or segfaults, found with a mutation loop over the
#: clean streams of :func:`_poison_frame` (``test_corpus`` checks that gdcm still dies on them in a child).
GDCM_POISON = {
    # JPEG Baseline (Pillow, quality 90) with corrupt entropy-coded data (and one APP0 byte): SIGABRT in gdcm
    "gdcm_poison_baseline.dcm": ("1.2.840.10008.1.2.4.50", ((11, 19), (455, 143), (482, 79), (696, 252),
                                 (810, 206), (852, 48), (1400, 89), (1442, 57), (1524, 247), (1629, 184), (1680, 174))),
    # JPEG Lossless SV1 (gdcm's encoder) with two damaged frame/scan header bytes: SIGSEGV in gdcm
    "gdcm_poison_sv1_segv.dcm": ("1.2.840.10008.1.2.4.70", ((6, 92), (38, 212))),
    # the same with three damaged bytes: an uncaught gdcm::Exception, SIGABRT
    "gdcm_poison_sv1_abort.dcm": ("1.2.840.10008.1.2.4.70", ((15, 109), (41, 197), (56, 20))),
}


@dataclass
class Case:
    """One corpus file and what the loader must do with it.

    Attributes:
        name: file name inside the corpus folder.
        path: where it was written.
        expect: :data:`REFUSE` (an ``XrayInputError`` naming the file) or :data:`LOAD`.
        words: words the refusal message must contain (case-insensitive).
        dicom: a DICOM file a modality could send (used for the listener test).
        check: for loaded cases, ``check(image, meta)`` asserts the content.
        sniffed: recognised as an image by content (so a folder scan picks it up).
    """

    name: str
    path: Path
    expect: str
    words: tuple[str, ...] = ()
    dicom: bool = False
    check: Callable | None = None
    sniffed: bool = True
    notes: str = field(default="")


def _testdata(name: str) -> Path | None:
    from pydicom.data import get_testdata_file

    try:
        found = get_testdata_file(name)
    except Exception:  # noqa: BLE001 - pydicom-data not installed: the case is left out
        return None
    return Path(found) if found else None


def _patch(path: Path, find: bytes, at: int, value: bytes) -> Path:
    """Overwrite bytes ``at`` positions after the first occurrence of ``find``."""
    data = bytearray(path.read_bytes())
    start = data.index(find) + at
    data[start:start + len(value)] = value
    path.write_bytes(bytes(data))
    return path


def j2k_codestream(width: int, height: int, tile: int | None = None) -> bytes:
    """A JPEG 2000 codestream of a small picture whose SIZ marker then declares ``width`` x ``height``.

    The codestream is encoded by pylibjpeg-openjpeg (through pydicom) from a 32 x 32 image; only the image and
    tile sizes of the SIZ segment (ISO 15444-1 A.5.1) are rewritten, so the stream stays a few hundred bytes.
    """
    ds = dicom_dataset("DX")
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    arr = (np.arange(32 * 32) % 251).astype(np.uint8).reshape(32, 32)
    ds.PixelData = arr.tobytes()
    ds.compress(JPEG2000Lossless, arr, encoding_plugin="pylibjpeg")
    stream = bytearray(get_frame(ds.PixelData, 0, number_of_frames=1))
    siz = stream.index(b"\xff\x51")
    tile = tile or max(width, height)
    # FF51, Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz
    stream[siz + 6:siz + 14] = struct.pack(">II", width, height)
    stream[siz + 22:siz + 30] = struct.pack(">II", tile, tile)
    return bytes(stream)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes, bit_depth: int = 8, colour: int = 0) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _jpeg(folder: Path, name: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(PIC).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _sof_resized(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG with its SOF0 frame header declaring another size (ITU T.81 B.2.2)."""
    data = bytearray(jpeg)
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _poison_frame(syntax: str, patches) -> bytes:
    """The clean 64 x 64 frame of ``syntax`` (Pillow's JPEG Baseline or gdcm's SV1) with bytes overwritten."""
    picture = gradient_picture(64, 64)
    if syntax == "1.2.840.10008.1.2.4.50":
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(picture).save(buffer, format="JPEG", quality=90)
        frame = bytearray(buffer.getvalue())
    else:  # JPEG Lossless SV1: only gdcm encodes it
        import tempfile

        import gdcm

        with tempfile.TemporaryDirectory() as folder:
            source, target = os.path.join(folder, "in.dcm"), os.path.join(folder, "out.dcm")
            write_dicom(source, picture)
            reader = gdcm.ImageReader()
            reader.SetFileName(source)
            change = gdcm.ImageChangeTransferSyntax()
            change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
            if not reader.Read() or (change.SetInput(reader.GetImage()) or not change.Change()):
                raise RuntimeError("gdcm could not encode JPEG Lossless SV1")
            writer = gdcm.ImageWriter()
            writer.SetFileName(target)
            writer.SetFile(reader.GetFile())
            writer.SetImage(change.GetOutput())
            writer.Write()
            frame = bytearray(get_frame(pydicom.dcmread(target).PixelData, 0, number_of_frames=1))
    for at, value in patches:
        frame[at] = value
    return bytes(frame)


def _deflate_bomb(path: Path, zeros: int) -> Path:
    """Rewrite a deflated DICOM file with a private OB element of ``zeros`` zero bytes inside its deflate stream.

    The file stays a few hundred KB (deflate packs zeros about 1000:1); pydicom alone would inflate all of it.
    """
    data = path.read_bytes()
    body = 144 + struct.unpack("<I", data[140:144])[0]  # after the file meta (its group length)
    raw = zlib.decompress(data[body:], -zlib.MAX_WBITS)
    at = raw.index(b"\x10\x00\x10\x00PN")  # (0010,0010): private group 0009 goes just before it
    private = b"\x09\x00\x10\x00LO\x04\x00TEST" + b"\x09\x00\x00\x10OB\x00\x00" + struct.pack("<I", zeros)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [packer.compress(raw[:at] + private)]
    block = b"\0" * (1 << 20)
    for _ in range(zeros >> 20):
        out.append(packer.compress(block))
    out += [packer.compress(b"\0" * (zeros & ((1 << 20) - 1)) + raw[at:]), packer.flush()]
    path.write_bytes(data[:body] + b"".join(out))
    return path


def _fill_before_sof(jpeg: bytes, width: int, height: int) -> bytes:
    """The JPEG declaring ``width`` x ``height``, with 0xFF fill bytes before its SOF0 marker (T.81 B.1.1.2)."""
    data = _sof_resized(jpeg, width, height)
    sof = data.index(b"\xff\xc0")
    return data[:sof] + b"\xff\xff\xff" + data[sof:]


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def _jp2(codestream: bytes, rows: int, columns: int, padding: int) -> bytes:
    """A JP2 file (ISO 15444-1 I.5) around ``codestream`` with a ``padding``-byte XML box before the header box."""
    ihdr = _box(b"ihdr", struct.pack(">IIHBBBB", rows, columns, 1, 7, 7, 0, 0))
    colr = _box(b"colr", struct.pack(">BBBI", 1, 0, 0, 17))
    return (_box(b"jP  ", b"\r\n\x87\n") + _box(b"ftyp", b"jp2 \0\0\0\0jp2 ") + _box(b"xml ", b" " * padding)
            + _box(b"jp2h", ihdr + colr) + _box(b"jp2c", codestream))


def _nested_sequences(depth: int) -> bytes:
    """Explicit VR LE bytes of ``depth`` nested undefined-length sequences (a recursion bomb)."""
    body = b""
    for _ in range(depth):
        item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + body + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
        body = (b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + item + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    return body


def _expect_signed(image: np.ndarray, meta: dict) -> None:
    expected = PIC.astype(np.float32) / 255.0
    assert image.shape == PIC.shape, image.shape
    assert float(np.abs(image - expected).max()) < 1e-3, "signed 16-bit image does not load as the picture"
    assert meta["bits_stored"] == 16


def _expect_fallback_window(image: np.ndarray, meta: dict) -> None:
    assert np.isfinite(image).all() and "voi_invalid" in meta["xray_flags"], meta["xray_flags"]
    assert meta["intensity_rule"] in ("full_range", "percentile")
    _expect_picture(image, meta)


def _expect_picture(image: np.ndarray, meta: dict) -> None:
    assert image.shape == PIC.shape and float(np.abs(image - PIC / 255.0).max()) < 0.02


def build_corpus(folder: str | os.PathLike) -> list[Case]:
    """Write the corpus into ``folder`` (created); returns its cases."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, expect: str, *words: str, dicom: bool = False, check=None, sniffed: bool = True) -> Path:
        path = root / name
        cases.append(Case(name, path, expect, tuple(words), dicom, check, sniffed))
        return path

    def dx(name: str, expect: str, *words: str, picture=PIC, **kwargs) -> Path:
        path = add(name, expect, *words, dicom=True)
        return write_dicom(path, picture, **kwargs)

    # -- valid controls ---------------------------------------------------------------------------------------
    dx("ok_dx.dcm", LOAD)
    cases[-1].check = _expect_picture
    write_png(add("ok.png", LOAD, check=_expect_picture), PIC)
    dx("ok_signed16.dcm", LOAD, bits_stored=16, signed=True)  # PixelRepresentation 1, full 16-bit range
    cases[-1].check = _expect_signed

    # -- truncated, corrupt, wrong VR / lengths ---------------------------------------------------------------
    path = dx("truncated_pixels.dcm", REFUSE, bits_stored=12)
    path.write_bytes(path.read_bytes()[:-300])
    path = dx("truncated_header.dcm", REFUSE)
    path.write_bytes(path.read_bytes()[:200])
    add("preamble_then_noise.dcm", REFUSE).write_bytes(b"\0" * 128 + b"DICM" + np.random.default_rng(1).bytes(3000))
    _patch(dx("wrong_vr_rows.dcm", REFUSE), struct.pack("<HH", 0x0028, 0x0010) + b"US", 4, b"DS")
    _patch(dx("wrong_length_rows.dcm", REFUSE), struct.pack("<HH", 0x0028, 0x0010) + b"US", 6, struct.pack("<H", 3))
    # Pixel Data declaring 2 GiB in a 4 KB file: read up to the end of the file, which holds the whole image
    _patch(dx("pixel_length_past_eof.dcm", LOAD), b"\xe0\x7f\x10\x00O", 8, struct.pack("<I", 0x7FFFFFF0))
    cases[-1].check = _expect_picture
    dx("pixel_data_too_short.dcm", REFUSE, extra={"Rows": 96, "Columns": 80})  # 48 x 40 bytes of pixels
    raw = root / "nested_sequences.dcm"
    meta_ds = dicom_dataset("DX")
    meta_ds.save_as(raw, enforce_file_format=True)
    raw.write_bytes(raw.read_bytes() + _nested_sequences(20000))
    add("nested_sequences.dcm", REFUSE, dicom=False)
    path = dx("deflate_garbage.dcm", REFUSE, transfer_syntax=DeflatedExplicitVRLittleEndian)
    data = path.read_bytes()
    body = 144 + struct.unpack("<I", data[140:144])[0]  # after the file meta (its group length) comes the data set
    path.write_bytes(data[:body] + np.random.default_rng(3).bytes(len(data) - body))
    cases[-1].dicom = False  # not a data set any sender could encode
    # 250 MB of zeros in 250 KB: inflated in bounded chunks and refused past the limit (4 bytes x 40 Mpx + 16 MiB)
    _deflate_bomb(dx("deflate_bomb_250mb.dcm", REFUSE, "deflate", transfer_syntax=DeflatedExplicitVRLittleEndian),
                  250 << 20)
    _deflate_bomb(dx("deflate_padded_ok.dcm", LOAD, transfer_syntax=DeflatedExplicitVRLittleEndian), 1 << 20)
    cases[-1].check = _expect_picture

    # -- missing pixel data, sizes, depths, colour ---------------------------------------------------------------
    dx("no_pixel_data.dcm", REFUSE, "no pixel data", picture=None)
    dx("huge_declared_60000.dcm", REFUSE, "too large", extra={"Rows": 60000, "Columns": 60000})
    dx("zero_rows.dcm", REFUSE, "no pixels", extra={"Rows": 0})
    dx("bits_allocated_12.dcm", REFUSE, extra={"BitsAllocated": 12, "BitsStored": 12, "HighBit": 11})
    dx("bits_allocated_1.dcm", REFUSE, extra={"BitsAllocated": 1, "BitsStored": 1, "HighBit": 0})
    dx("bits_stored_0.dcm", REFUSE, extra={"BitsStored": 0})
    dx("rgb.dcm", REFUSE, "photometric", "RGB", picture=np.stack([PIC] * 3, axis=-1))
    dx("palette.dcm", REFUSE, "PALETTE COLOR", extra={"PhotometricInterpretation": "PALETTE COLOR"})
    dx("multiframe_dx.dcm", REFUSE, "multi-frame", extra={"NumberOfFrames": 2})

    # -- no picture: blank, constant, near-constant, NaN/inf LUT attributes ------------------------------------
    dx("blank_constant.dcm", REFUSE, "no picture", picture=np.full(PIC.shape, 100, np.uint8))
    label = np.zeros(PIC.shape, np.uint8)
    label[2:4, 2:4] = 255  # a burned-in mark on an empty film: under 0.5 % of the pixels
    dx("blank_with_label.dcm", REFUSE, "no picture", picture=label)
    noise = (1000 + np.random.default_rng(6).integers(0, 3, PIC.shape)).astype(np.uint16)
    dx("near_constant_16bit.dcm", REFUSE, "no picture", picture=noise, bits_stored=16)  # no VOI: stretched noise
    dx("rescale_slope_0.dcm", REFUSE, "RescaleSlope", extra={"RescaleSlope": 0, "RescaleIntercept": 0})
    path = dx("rescale_slope_nan.dcm", REFUSE, "RescaleSlope", extra={"RescaleSlope": "7777", "RescaleIntercept": 0})
    _patch(path, b"7777", 0, b"NaN ")
    path = dx("rescale_intercept_inf.dcm", REFUSE, "RescaleIntercept", extra={"RescaleSlope": 1,
                                                                              "RescaleIntercept": "7777"})
    _patch(path, b"7777", 0, b"inf ")
    for name, find, value in (("window_center_nan.dcm", b"1111", b"NaN "), ("window_width_inf.dcm", b"2222", b"inf "),
                              ("window_width_zero.dcm", b"2222", b"0   ")):
        _patch(dx(name, LOAD, window=(1111, 2222)), find, 0, value)  # the documented fallback window applies
        cases[-1].check = _expect_fallback_window

    # -- compressed: bombs and corrupt frames -----------------------------------------------------------------
    for name, declared, words in (("j2k_bomb_declared.dcm", 60000, ("too large",)),
                                  ("j2k_bomb_hidden.dcm", 64, ())):
        ds = pydicom.dcmread(write_dicom(root / name, PIC))
        ds.Rows = ds.Columns = declared
        ds.PixelData = encapsulate([j2k_codestream(60000, 60000)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.save_as(root / name)
        add(name, REFUSE, *words, dicom=True)
    # the frame header check reads headers with the codec libraries: fill bytes before SOF, boxes before a JP2 header
    for name, syntax, frame in (
            ("jpeg_fill_bytes_bomb.dcm", "1.2.840.10008.1.2.4.50", _fill_before_sof(_jpeg(root, ""), 12000, 12000)),
            ("jp2_boxed_bomb.dcm", JPEG2000Lossless, _jp2(j2k_codestream(60000, 60000), 60000, 60000, 8192))):
        ds = pydicom.dcmread(write_dicom(root / name, gradient_picture(64, 64)))
        ds.PixelData = encapsulate([frame + b"\0" * (len(frame) % 2)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(root / name)
        add(name, REFUSE, "refused before decoding", "12000" if "jpeg" in name else "60000", dicom=True)
    add("jpeg_fill_bytes_bomb.jpg", REFUSE, "too large").write_bytes(_fill_before_sof(_jpeg(root, ""), 12000, 12000))
    for damage in ("noise", "truncate"):
        path = dx(f"j2k_{damage}.dcm", REFUSE, "JPEG 2000", picture=gradient_picture(64, 64), bits_stored=12,
                  transfer_syntax=JPEG2000Lossless)
        ds = pydicom.dcmread(path)
        frame = get_frame(ds.PixelData, 0, number_of_frames=1)
        frame = frame[:20] + np.random.default_rng(2).bytes(len(frame) - 20) if damage == "noise" else frame[:len(frame) // 4]
        ds.PixelData = encapsulate([frame + b"\0" * (len(frame) % 2)])
        ds.save_as(path)
    path = dx("rle_bad_offsets.dcm", REFUSE, "RLE", transfer_syntax=RLELossless)
    ds = pydicom.dcmread(path)
    frame = bytearray(get_frame(ds.PixelData, 0, number_of_frames=1))
    frame[4:8] = struct.pack("<I", 0x7FFFFFF0)  # first segment offset far past the frame
    ds.PixelData = encapsulate([bytes(frame)])
    ds.save_as(path)
    for name, (syntax, patches) in GDCM_POISON.items():  # crash python-gdcm: contained, never the process
        path = dx(name, SURVIVE if syntax.endswith(".50") else REFUSE, *(() if syntax.endswith(".50") else
                                                                          ("python-gdcm", "crashed")),
                  picture=gradient_picture(64, 64))
        ds = pydicom.dcmread(path)
        ds.PixelData = encapsulate([_poison_frame(syntax, patches)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path)
    # found by scripts/fuzz_loader.py: python-gdcm loops forever on this 6-byte JPEG Baseline frame; Pillow refuses it
    path = dx("gdcm_hang_baseline.dcm", REFUSE, "cannot decode", picture=gradient_picture(64, 64))
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([GDCM_HANG_FRAME])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.save_as(path)
    lossy = _testdata("JPEG-lossy.dcm")
    if lossy is not None:
        shutil.copy(lossy, add("jpeg_lossy_nm.dcm", REFUSE, "modality 'NM'", dicom=True))
        ds = pydicom.dcmread(lossy)
        ds.Modality, ds.BodyPartExamined = "DX", "CHEST"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
        ds.save_as(add("jpeg_lossy_as_dx.dcm", REFUSE, "cannot decode", "1.2.840.10008.1.2.4.51", dicom=True))

    # -- other modalities and objects -----------------------------------------------------------------------------
    for name, source, words in (("ct_small.dcm", "CT_small.dcm", ("modality 'CT'",)),
                                ("mr_small.dcm", "MR_small.dcm", ("modality 'MR'",)),
                                ("mr_multiframe.dcm", "emri_small.dcm", ("modality 'MR'",)),
                                ("sr.dcm", "test-SR.dcm", ("modality 'SR'",)),
                                ("rtplan.dcm", "rtplan.dcm", ("modality 'RTPLAN'",)),
                                ("sc_rgb.dcm", "SC_rgb.dcm", ("photometric",))):
        found = _testdata(source)
        if found is not None:
            shutil.copy(found, add(name, REFUSE, *words, dicom=True))
    dicomdir = _testdata("DICOMDIR")
    if dicomdir is not None:
        shutil.copy(dicomdir, add("dicomdir.dcm", REFUSE, "DICOMDIR"))

    # -- pictures -----------------------------------------------------------------------------------------------------
    add("png_bomb_header.png", REFUSE, "too large").write_bytes(_png(30000, 30000, zlib.compress(b"\0" * 100)))
    # 4096 x 4096 zeros deflate to 16 KB (1000:1): a bomb under the 40 Mpx limit loads, in bounded memory
    rows = (b"\0" + b"\0" * 4096) * 4096  # decoded (bounded memory), then refused: all black is no picture
    add("png_inflates_16mpx.png", REFUSE, "no picture").write_bytes(_png(4096, 4096, zlib.compress(rows, 9)))
    path = write_png(add("png_truncated.png", REFUSE, "PNG"), gradient_picture(64, 64))
    path.write_bytes(path.read_bytes()[:-200])
    add("png_bad_crc.png", REFUSE, "PNG").write_bytes(
        _png(40, 48, zlib.compress(b"\0" * 41 * 48))[:-20] + b"\0\0\0\0" + _png(1, 1, b"")[-16:])
    write_png(add("png_all_zero.png", REFUSE, "no picture"), np.zeros(PIC.shape, np.uint8))
    from PIL import Image

    frames = [Image.fromarray(gradient_picture(48, 40, seed=k)) for k in range(3)]
    frames[0].save(add("apng_animated.png", REFUSE, "animated"), format="PNG", save_all=True, append_images=frames[1:])
    add("png_16bit_zero_width.png", REFUSE).write_bytes(_png(0, 48, zlib.compress(b"\0" * 48), bit_depth=16))
    jpeg = _jpeg(root, "ok.jpg")
    add("jpeg_bomb.jpg", REFUSE, "too large").write_bytes(_sof_resized(jpeg, 65000, 65000))
    add("jpeg_truncated.jpg", REFUSE, "JPEG").write_bytes(jpeg[: len(jpeg) // 3])
    add("jpeg_noise.jpg", REFUSE, "JPEG").write_bytes(jpeg[:200] + np.random.default_rng(4).bytes(len(jpeg) - 200))
    add("j2k_bomb.j2k", REFUSE, "not a recognised image", sniffed=False).write_bytes(j2k_codestream(60000, 60000))

    # -- NIfTI ---------------------------------------------------------------------------------------------------------
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), np.eye(4)), str(add("nifti_volume.nii.gz", REFUSE,
                                                                                   "not 2D")))
    huge = root / "nifti_huge.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.uint8), np.eye(4)), str(huge))
    header = bytearray(huge.read_bytes())
    header[42:46] = struct.pack("<hh", 30000, 30000)  # dim[1], dim[2]: 900 Mpx declared, 16 bytes present
    huge.write_bytes(bytes(header))
    add("nifti_huge.nii", REFUSE, "too large")
    nib.save(nib.Nifti1Image(np.full((32, 32), np.nan, np.float32), np.eye(4)), str(add("nifti_all_nan.nii",
                                                                                        REFUSE, "NaN")))
    nib.save(nib.Nifti1Image(np.full((32, 32), 7, np.int16), np.eye(4)), str(add("nifti_constant.nii", REFUSE,
                                                                                 "no picture")))
    rgb = np.zeros((32, 32), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(add("nifti_rgb24.nii", REFUSE, "colour")))
    path = add("nifti_truncated.nii", REFUSE)
    nib.save(nib.Nifti1Image(np.zeros((64, 64), np.uint16), np.eye(4)), str(path))
    path.write_bytes(path.read_bytes()[:1000])

    # found by scripts/fuzz_loader.py: a gzip member whose deflate stream is corrupt raised zlib.error in sniffing
    add("fuzz_corrupt_gzip.nii.gz", REFUSE, "not a recognised image", sniffed=False).write_bytes(base64.b64decode(
        "H4sIAAAAAAAE/4thZCAKMDNwACELAyMUompiAsqBQIM9fkgAGSKPqnvgeEx4rAb5BR0QK8bAkKdtiK55RPIBhVFjq2ACxQAA"))

    # -- not images at all -----------------------------------------------------------------------------------------
    add("empty.dcm", REFUSE, "empty", sniffed=False).write_bytes(b"")
    add("random.bin", REFUSE, "not a recognised image", sniffed=False).write_bytes(np.random.default_rng(5).bytes(4096))
    add("notes.jpg", REFUSE, "not a recognised image", sniffed=False).write_text("not an image\n" * 40)

    # -- a symbolic-link loop in the folder ---------------------------------------------------------------------------
    loop = root / "loop"
    loop.mkdir(exist_ok=True)
    (loop / "back").symlink_to("..", target_is_directory=True)  # a folder that contains its parent
    (root / "self.dcm").symlink_to("self.dcm")  # a link to itself: ELOOP on open
    cases.append(Case("self.dcm", root / "self.dcm", REFUSE, ("not found",), sniffed=False))

    # -- what a folder scan meets besides files: a FIFO, an undecodable file name, a folder named like a file ------
    os.mkfifo(root / "fifo.dcm")  # open() would block forever
    cases.append(Case("fifo.dcm", root / "fifo.dcm", REFUSE, ("not a regular file",), sniffed=False))
    undecodable = os.fsdecode(b"caf\xe9_\xff.dcm")  # not UTF-8: held as surrogates by Python
    shutil.copy(root / "ok_dx.dcm", add(undecodable, LOAD, check=_expect_picture))
    (root / "x.dcm").mkdir()
    write_png(add("x.dcm/inner.png", LOAD, check=_expect_picture), PIC)
    return cases


def main(argv: list[str] | None = None) -> int:
    """Write the corpus into the folder given as the only argument."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tests.reliability.corpus OUTPUT_DIR", file=sys.stderr)
        return 2
    cases = build_corpus(argv[0])
    print(f"{len(cases)} files written to {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
