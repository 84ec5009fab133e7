"""Decode pixel data with a native plugin that can end the process, in a helper process that may die instead.

python-gdcm aborts (an uncaught C++ exception: SIGABRT) or segfaults on some corrupt JPEG Baseline and JPEG
Lossless SV1 streams, and it is the only installed decoder of JPEG Lossless (Process 14 and SV1). A crash inside
the loader would take ``predict``, a training run or the DICOM listener down with it, so plugins listed in
:data:`UNSAFE_PLUGINS` never run in the calling process: :func:`decode_isolated` sends the file's path to one
long-lived helper process per calling process, which reads the file with pydicom, decodes it with the named
plugin and sends the stored values back. A helper that dies (any signal), hangs past the timeout or answers with
an exception becomes an :class:`~monai_pneumonia.errors.XrayInputError` naming the file and the decoder; the next
call starts a fresh helper.

The helper runs ``_decode_child.py`` as a script (``python -I``), so it imports pydicom, numpy and the plugin but
not MONAI or torch: it starts in well under a second, once per process. It ends when its parent ends however the
parent ends (SIGKILL included): it exits on end-of-file of the socket to its parent and also polls its parent's
PID, and on Linux the kernel kills it when the parent goes (``PR_SET_PDEATHSIG``), which also covers a decoder
looping forever with the GIL held; so it is never left behind as an orphan. (The death signal follows the *thread*
that started the helper: if that thread ends first, the helper goes with it and the next call, which checks that
the helper is alive before using it, starts a new one.)
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from monai_pneumonia.errors import XrayInputError

__all__ = ["DECODE_TIMEOUT", "UNSAFE_PLUGINS", "DecoderCrashError", "IsolatedDecoder", "decode_isolated"]

logger = logging.getLogger(__name__)

#: pydicom decoding plugins that are run only in the helper process (they can terminate the process).
UNSAFE_PLUGINS = frozenset({"gdcm"})
#: Seconds one decode may take in the helper before it is killed and the file refused (gdcm loops forever on some
#: corrupt streams; a 40-Mpx JPEG Lossless film decodes in about 4 s).
DECODE_TIMEOUT = 60.0

_PLUGIN_NAMES = {"gdcm": "python-gdcm"}
_CHILD = Path(__file__).with_name("_decode_child.py")


class DecoderCrashError(XrayInputError):
    """The helper process died or timed out decoding a file: the file is refused, no other plugin is tried."""


def _signal_name(returncode: int | None) -> str:
    if returncode is None or returncode >= 0:
        return f"exit status {returncode}"
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class IsolatedDecoder:
    """A helper process decoding one file at a time with an unsafe plugin (see the module docstring).

    Args:
        timeout: seconds a decode may take before the helper is killed.
    """

    def __init__(self, timeout: float = DECODE_TIMEOUT) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._conn: Connection | None = None

    def _start(self) -> None:
        parent, child = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", os.fspath(_CHILD), str(child.fileno()), str(os.getpid())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            )
        finally:
            child.close()
        self._conn = Connection(parent.detach())

    def _discard(self) -> int | None:
        """Stop the helper (if still alive) and forget it; returns its exit status."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
            return None

    def close(self) -> None:
        """End the helper process."""
        with self._lock:
            self._discard()

    def decode(self, path: str | os.PathLike, plugin: str, transfer_syntax: str = "") -> np.ndarray:
        """The stored values of the single frame of ``path`` decoded by ``plugin`` in the helper process.

        Args:
            path: a DICOM file whose header the caller has already checked (size, frames, photometric).
            plugin: a pydicom decoding plugin name, e.g. ``"gdcm"``.
            transfer_syntax: for messages.

        Returns:
            ``ds.pixel_array`` as the helper computed it.

        Raises:
            DecoderCrashError: the helper died (e.g. SIGABRT, SIGSEGV) or timed out.
            XrayInputError: the plugin raised an exception.
        """
        name = _PLUGIN_NAMES.get(plugin, plugin)
        where = f"{name} (decoding in a separate process){f', transfer syntax {transfer_syntax}' if transfer_syntax else ''}"
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._discard()
                self._start()
            try:
                self._conn.send((os.fspath(path), plugin))
                if not self._conn.poll(self.timeout):
                    self._discard()
                    raise DecoderCrashError(path, f"cannot decode the pixel data: {where} did not finish within "
                                               f"{self.timeout:g} s; refused")
                status, value = self._conn.recv()
            except (EOFError, OSError):
                code = self._discard()
                logger.warning("%s: the %s decoder process ended with %s", path, name, _signal_name(code))
                raise DecoderCrashError(path, f"cannot decode the pixel data: {where} crashed ({_signal_name(code)}); "
                                           "the corrupt stream was contained and the file refused") from None
        if status != "ok":
            raise XrayInputError(path, f"cannot decode the pixel data: {where} failed ({value})")
        return value


_DECODER: IsolatedDecoder | None = None
_DECODER_LOCK = threading.Lock()
_DECODER_PID = 0


def decode_isolated(path: str | os.PathLike, plugin: str, transfer_syntax: str = "") -> np.ndarray:
    """:meth:`IsolatedDecoder.decode` with this process's shared helper (a forked child gets its own)."""
    global _DECODER, _DECODER_PID
    with _DECODER_LOCK:
        if _DECODER is None or _DECODER_PID != os.getpid():  # after fork(), the parent's helper is not ours
            _DECODER, _DECODER_PID = IsolatedDecoder(), os.getpid()
        decoder = _DECODER
    return decoder.decode(path, plugin, transfer_syntax)
