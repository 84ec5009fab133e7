"""Which decoder plugin decodes which transfer syntax, and decoding one frame with them.

pydicom decodes compressed pixel data through plugins (pylibjpeg-openjpeg, pyjpegls, pylibjpeg-rle, Pillow,
python-gdcm); this module chooses the order in which they are tried for each transfer syntax
(:func:`decode_pixel_array`) and names them in error messages (:func:`decoder_hint`). python-gdcm, which can abort
the process on a corrupt stream, decodes only in a helper process (:mod:`monai_pneumonia.io.isolation`).
"""

from __future__ import annotations

import os

import numpy as np

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io.isolation import UNSAFE_PLUGINS, DecoderCrashError, decode_isolated

__all__ = ["J2K_SYNTAXES", "JPEG_LS_SYNTAXES", "decode_pixel_array", "decoder_hint"]

_DECODERS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg, python-gdcm or Pillow",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg (GPL-3.0, deliberately not installed) for 12-bit JPEG Extended",
    "1.2.840.10008.1.2.4.57": "python-gdcm or pylibjpeg-libjpeg (GPL-3.0)",
    "1.2.840.10008.1.2.4.70": "python-gdcm or pylibjpeg-libjpeg (GPL-3.0)",
    "1.2.840.10008.1.2.4.80": "pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.81": "pyjpegls or python-gdcm",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg (or Pillow with OpenJPEG)",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg (or Pillow with OpenJPEG)",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pydicom itself or pylibjpeg-rle",
}
#: Decoder plugins used first per transfer syntax, in the calling process. python-gdcm terminates the whole process
#: (an uncaught C++ exception, or a segfault) on some corrupt JPEG Baseline, JPEG Lossless and JPEG 2000 streams, so
#: it runs only in a helper process (:mod:`monai_pneumonia.io.isolation`), after every other plugin.
_PREFERRED_PLUGINS = {
    "1.2.840.10008.1.2.4.50": ("pillow", "pylibjpeg"),
    "1.2.840.10008.1.2.4.80": ("pyjpegls", "pylibjpeg"),
    "1.2.840.10008.1.2.4.81": ("pyjpegls", "pylibjpeg"),
    "1.2.840.10008.1.2.4.90": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.4.91": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.4.201": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.4.202": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.4.203": ("pylibjpeg", "pillow"),
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pydicom"),
}
#: JPEG 2000 and HTJ2K transfer syntaxes; JPEG-LS ones.
J2K_SYNTAXES = frozenset(("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                           "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"))
JPEG_LS_SYNTAXES = frozenset(("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"))
#: Syntaxes whose corrupt streams never go on to python-gdcm once the in-process plugins refused them.
_NO_UNSAFE_FALLBACK = J2K_SYNTAXES | {"1.2.840.10008.1.2.4.50"}


def _decoding_plugins(transfer_syntax: str) -> list[str]:
    """Decoder plugins to try in order; ``""`` lets pydicom choose (native data, or pydicom < 3).

    The preferred plugins of :data:`_PREFERRED_PLUGINS` come first, then every other installed one; a plugin of
    :data:`~monai_pneumonia.io.isolation.UNSAFE_PLUGINS` (python-gdcm) is tried last and only ever runs in the
    helper process of :mod:`monai_pneumonia.io.isolation`; it is not tried at all for JPEG Baseline and JPEG 2000
    when another plugin is installed: Pillow's libjpeg-turbo decodes every valid 8-bit Baseline stream (gdcm loops
    forever on some it refuses, e.g. ``FFD8 FFE3 36D9``, found by ``scripts/fuzz_loader.py``), and gdcm decodes
    JPEG 2000 with the same OpenJPEG library that already failed.
    """
    try:
        from pydicom.pixels import get_decoder
    except ImportError:  # pydicom < 3: its pixel data handlers choose
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
    from pydicom.uid import UID

    uid = UID(transfer_syntax or "")
    name = uid.name if uid else "(missing)"
    plugin = _DECODERS.get(
        str(uid),
        "pydicom itself"
        if uid in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
        else "no known plugin",
    )
    return f"transfer syntax {name} ({uid or 'no UID'}); decoded by {plugin}"
