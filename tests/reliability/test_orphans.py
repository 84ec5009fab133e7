"""No orphans: the processes the service starts end when it is SIGKILLed (:mod:`monai_pneumonia.service.lifeline`).

A parent process builds the report process pool exactly as :class:`~monai_pneumonia.service.PneumoniaService`
does (spawn context, :func:`~monai_pneumonia.service.lifeline.init_child`), lets its workers start, and is killed
with SIGKILL; every descendant (report workers, the multiprocessing resource tracker) must be gone in seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

_PARENT = """
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from monai_pneumonia.service.lifeline import init_child

if __name__ == "__main__":
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=init_child,
                               initargs=(os.getpid(), "monai_pneumonia.service.reports"))
    list(pool.map(abs, range(8)))  # start the workers
    print("ready", flush=True)
    time.sleep(600)
"""


def _children(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        try:
            with open(f"/proc/{current}/task/{current}/children") as stream:
                kids = {int(k) for k in stream.read().split()}
        except FileNotFoundError:
            continue
        todo.extend(kids - found)
        found |= kids
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_report_processes_and_the_resource_tracker_end_with_a_sigkilled_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        descendants = _children(parent.pid)
        assert len(descendants) >= 3, descendants  # two workers and the resource tracker
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in descendants) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in descendants if _alive(pid)], "orphans left behind"
