"""The helper process of :mod:`monai_pneumonia.io.isolation`, run as a script: ``python -I _decode_child.py FD PPID``.

It reads ``(path, plugin)`` requests from the socket ``FD`` and answers ``("ok", stored values)`` or
``("error", "<exception type>: <message>")``. It never outlives the process that started it: on Linux the kernel
kills it when its parent goes (``prctl(PR_SET_PDEATHSIG, SIGKILL)``), which also ends a decoder stuck in an
endless loop that holds the GIL (gdcm does that on some corrupt JPEG streams); elsewhere, and as a second line, it
exits on end-of-file of the socket and when ``os.getppid()`` is no longer ``PPID``. It imports neither MONAI nor
torch.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from multiprocessing.connection import Connection


def _watch_parent(ppid: int) -> None:
    while True:
        if os.getppid() != ppid:
            os._exit(0)
        time.sleep(0.5)


def _die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the parent ends (Linux); a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def main() -> None:
    fd, ppid = int(sys.argv[1]), int(sys.argv[2])
    _die_with_parent()
    if os.getppid() != ppid:  # the parent ended before the death signal was set
        return
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    import pydicom

    conn = Connection(fd)
    while True:
        try:
            path, plugin = conn.recv()
        except (EOFError, OSError):
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, force=True)
                ds.pixel_array_options(decoding_plugin=plugin)
                answer = ("ok", ds.pixel_array)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which refuses the file
            answer = ("error", f"{type(exc).__name__}: {str(exc)[:500]}")
        conn.send(answer)


if __name__ == "__main__":
    main()
