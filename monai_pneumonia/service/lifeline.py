"""Processes the service starts end when the service ends, however it ends (SIGKILL included).

A ``ProcessPoolExecutor`` worker blocks in a queue read, so when its parent is SIGKILLed it does not notice: it
lives on under PID 1 (with the ``multiprocessing`` resource tracker, which waits for the workers' end of its
pipe), and a restart loop piles such orphans up. Each report process therefore runs :func:`init_child`, which
starts a daemon thread that polls the parent's PID and ends the process as soon as the parent is gone (the
parent PID of an orphan changes). Polling, rather than ``prctl(PR_SET_PDEATHSIG)``, because the death signal
fires when the *thread* that forked the child exits, and the executor starts its workers from whichever thread
submits work. Once the workers have exited, the resource tracker sees end-of-file and exits too.

The decoding helper of :mod:`monai_pneumonia.io.isolation` watches its parent the same way.
"""

from __future__ import annotations

import importlib
import os
import threading
import time

from monai_pneumonia.redaction import install_log_hygiene

__all__ = ["POLL_SECONDS", "init_child", "watch_parent"]

#: How often a child checks that its parent is still alive.
POLL_SECONDS = 0.5


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_SECONDS)
    os._exit(0)  # the parent is gone: no clean-up can be owed to it


def watch_parent(parent_pid: int) -> None:
    """End this process (``os._exit``) within :data:`POLL_SECONDS` of ``parent_pid`` ceasing to be its parent."""
    threading.Thread(target=_watch, args=(parent_pid,), name="parent-watch", daemon=True).start()


def init_child(parent_pid: int, module: str = "") -> None:
    """A process-pool initializer: :func:`watch_parent`, log hygiene, then import ``module`` (a quick first task)."""
    watch_parent(parent_pid)
    install_log_hygiene()  # highdicom warns with patient names while building reports here
    if module:
        importlib.import_module(module)
