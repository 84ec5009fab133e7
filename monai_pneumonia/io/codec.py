"""Which decoder plugin decodes which transfer syntax, and decoding one frame with them.

pydicom decodes compressed pixel data through plugins (pylibjpeg-openjpeg, pyjpegls, pylibjpeg-rle, Pillow,
python-gdcm); this module chooses the order in which they are tried for each transfer syntax
(:func:`decode_pixel_array`) and names them in error messages (:func:`decoder_hint`). python-gdcm, which can abort
the process on a corrupt stream, decodes only in a helper process (:mod:`monai_pneumonia.io.isolation`).

:data:`DECODABLE_TRANSFER_SYNTAXES` is the one list of the transfer syntaxes the loader reads: the DICOM listener
(:mod:`monai_pneumonia.service.scp`) accepts those of them that :func:`is_decodable` finds a decoder for here.
"""

from __future__ import annotations

import os

import numpy as np
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.isolation import UNSAFE_PLUGINS, DecoderCrashError, decode_isolated

try:  # pydicom >= 3
    from pydicom.pixels import get_decoder
    from pydicom.uid import HTJ2K, HTJ2KLossless, HTJ2KLosslessRPCL, JPEGLossless
except ImportError:  # pydicom 2.4 (the MONAI Label environment): no HTJ2K names, and its JPEGLossless is SV1's UID
    get_decoder = None
    HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K = (UID(f"1.2.840.10008.1.2.4.{n}") for n in (201, 202, 203))
    JPEGLossless = UID("1.2.840.10008.1.2.4.57")

__all__ = [
    "DECODABLE_TRANSFER_SYNTAXES",
    "J2K_SYNTAXES",
    "JPEG_LS_SYNTAXES",
    "JPEG_SYNTAXES",
    "NATIVE_TRANSFER_SYNTAXES",
    "decode_pixel_array",
    "decoder_hint",
    "is_decodable",
]

#: The library that decodes each transfer syntax the loader reads, named in error messages. The order is the DICOM
#: listener's preference: Explicit VR Little Endian, then the compressed syntaxes (so that an image arrives as it
#: was encoded rather than decompressed by the sender), Implicit VR Little Endian last.
_DECODERS = {
    ExplicitVRLittleEndian: "pydicom itself",
    JPEG2000Lossless: "pylibjpeg-openjpeg (or Pillow with OpenJPEG)",
    JPEG2000: "pylibjpeg-openjpeg (or Pillow with OpenJPEG)",
    HTJ2KLossless: "pylibjpeg-openjpeg",
    HTJ2KLosslessRPCL: "pylibjpeg-openjpeg",
    HTJ2K: "pylibjpeg-openjpeg",
    JPEGLosslessSV1: "python-gdcm or pylibjpeg-libjpeg (GPL-3.0)",
    JPEGLossless: "python-gdcm or pylibjpeg-libjpeg (GPL-3.0)",
    JPEGLSLossless: "pyjpegls or python-gdcm",
    JPEGLSNearLossless: "pyjpegls or python-gdcm",
    RLELossless: "pydicom itself or pylibjpeg-rle",
    JPEGBaseline8Bit: "pylibjpeg-libjpeg, python-gdcm or Pillow",
    JPEGExtended12Bit: "pylibjpeg-libjpeg (GPL-3.0, deliberately not installed) for 12-bit JPEG Extended",
    DeflatedExplicitVRLittleEndian: "pydicom itself",
    ImplicitVRLittleEndian: "pydicom itself",
    ExplicitVRBigEndian: "pydicom itself",
}
#: Every transfer syntax the loader reads, in the DICOM listener's order of preference (see :data:`_DECODERS`).
DECODABLE_TRANSFER_SYNTAXES: tuple[UID, ...] = tuple(_DECODERS)
#: Transfer syntaxes of native (uncompressed) pixel data, which pydicom decodes itself (a deflated data set is
#: inflated first, up to a limit: :mod:`monai_pneumonia.io.deflate`).
NATIVE_TRANSFER_SYNTAXES = frozenset(
    (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian)
)
#: Decoder plugins used first per transfer syntax, in the calling process. python-gdcm terminates the whole process
#: (an uncaught C++ exception, or a segfault) on some corrupt JPEG Baseline, JPEG Lossless and JPEG 2000 streams, so
#: it runs only in a helper process (:mod:`monai_pneumonia.io.isolation`), after every other plugin.
_PREFERRED_PLUGINS = {
    JPEGBaseline8Bit: ("pillow", "pylibjpeg"),
    JPEGLSLossless: ("pyjpegls", "pylibjpeg"),
    JPEGLSNearLossless: ("pyjpegls", "pylibjpeg"),
    JPEG2000Lossless: ("pylibjpeg", "pillow"),
    JPEG2000: ("pylibjpeg", "pillow"),
    HTJ2KLossless: ("pylibjpeg", "pillow"),
    HTJ2KLosslessRPCL: ("pylibjpeg", "pillow"),
    HTJ2K: ("pylibjpeg", "pillow"),
    RLELossless: ("pylibjpeg", "pydicom"),
}
#: JPEG (ITU-T T.81), JPEG 2000 and HTJ2K, and JPEG-LS transfer syntaxes.
JPEG_SYNTAXES = frozenset((JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1))
J2K_SYNTAXES = frozenset((JPEG2000Lossless, JPEG2000, HTJ2KLossless, HTJ2KLosslessRPCL, HTJ2K))
JPEG_LS_SYNTAXES = frozenset((JPEGLSLossless, JPEGLSNearLossless))
#: Syntaxes whose corrupt streams never go on to python-gdcm once the in-process plugins refused them.
_NO_UNSAFE_FALLBACK = J2K_SYNTAXES | {JPEGBaseline8Bit}


def is_decodable(transfer_syntax: str) -> bool:
    """Whether this installation decodes pixel data of ``transfer_syntax``.

    Native syntaxes always (pydicom itself); others when pydicom (3 or later) has a decoder with an installed
    plugin for them. With pydicom 2.4, which cannot say, only the native ones.
    """
    if transfer_syntax in NATIVE_TRANSFER_SYNTAXES:
        return True
    if get_decoder is None:
        return False
    try:
        return get_decoder(transfer_syntax).is_available
    except (NotImplementedError, ValueError):  # no pixel data decoder for this UID
        return False


def _decoding_plugins(transfer_syntax: str) -> list[str]:
    """Decoder plugins to try in order; ``""`` lets pydicom choose (native data, or pydicom < 3).

    The preferred plugins of :data:`_PREFERRED_PLUGINS` come first, then every other installed one; a plugin of
    :data:`~monai_pneumonia.io.isolation.UNSAFE_PLUGINS` (python-gdcm) is tried last and only ever runs in the
    helper process of :mod:`monai_pneumonia.io.isolation`; it is not tried at all for JPEG Baseline and JPEG 2000
    when another plugin is installed: Pillow's libjpeg-turbo decodes every valid 8-bit Baseline stream (gdcm loops
    forever on some it refuses, e.g. ``FFD8 FFE3 36D9``, found by ``scripts/fuzz_loader.py``), and gdcm decodes
    JPEG 2000 with the same OpenJPEG library that already failed.
    """
    if get_decoder is None:  # pydicom < 3: its pixel data handlers choose
        return [""]
    try:
        available = get_decoder(transfer_syntax).available_plugins
    except Exception:  # no decoder for this syntax (native) or unknown UID
        return [""]
    if not available:
        return [""]
    preferred = [p for p in _PREFERRED_PLUGINS.get(str(transfer_syntax), ()) if p in available]
    others = [p for p in available if p not in preferred]
    safe = preferred + [p for p in others if p not in UNSAFE_PLUGINS]
    if safe and str(transfer_syntax) in _NO_UNSAFE_FALLBACK:
        return safe
    return safe + [p for p in others if p in UNSAFE_PLUGINS]


def decode_pixel_array(ds, transfer_syntax: str, path: str | os.PathLike | None = None) -> np.ndarray:
    """Decode the single frame, trying the plugins of :func:`_decoding_plugins` in turn.

    Raises:
        DecoderCrashError: an unsafe plugin crashed or timed out in its helper process (refused at once).
        RuntimeError: every plugin failed (their messages joined).
    """
    if not hasattr(ds, "pixel_array_options"):  # pydicom < 3: no plugin choice
        return ds.pixel_array
    errors = []
    for plugin in _decoding_plugins(transfer_syntax):
        try:
            if plugin in UNSAFE_PLUGINS:  # never in this process; the helper reads the file itself
                if path is None:
                    continue
                return decode_isolated(path, plugin, transfer_syntax)
            ds.pixel_array_options(decoding_plugin=plugin)
            return ds.pixel_array
        except DecoderCrashError as exc:
            raise DecoderCrashError(exc.path, f"{exc.reason}; {decoder_hint(transfer_syntax)}") from None
        except XrayInputError as exc:
            errors.append(f"{plugin}: {exc.reason}")
        except Exception as exc:
            errors.append(f"{plugin or 'any plugin'}: {exc}")
    raise RuntimeError("; ".join(errors))


def decoder_hint(transfer_syntax: str) -> str:
    """Name the transfer syntax and the plugin(s) that decode it, for error messages."""
    uid = UID(transfer_syntax or "")
    name = uid.name if uid else "(missing)"
    plugin = _DECODERS.get(uid, "no known plugin")
    return f"transfer syntax {name} ({uid or 'no UID'}); decoded by {plugin}"
