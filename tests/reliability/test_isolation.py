"""python-gdcm's crashes are contained (:mod:`monai_pneumonia.io.isolation`): the loading process survives them.

The poison frames of :data:`tests.reliability.corpus.GDCM_POISON` first prove themselves: decoded by gdcm in a
plain child process, that child dies by a signal. Through the loader, in this very test process, they become a
typed refusal naming the file and the decoder, and the next file still decodes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.io import load_xray
from monai_pneumonia.io.isolation import DecoderCrashError, IsolatedDecoder, decode_isolated
from tests.reliability.corpus import GDCM_POISON, build_corpus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def poison(tmp_path_factory):
    folder = tmp_path_factory.mktemp("poison")
    return {c.name: c.path for c in build_corpus(folder)}


@pytest.fixture(scope="module")
def clean_sv1(poison, tmp_path_factory):
    """The SV1 poison file with its frame undamaged: JPEG Lossless SV1 has no decoder but gdcm."""
    import pydicom
    from pydicom.encaps import encapsulate

    from tests.reliability.corpus import _poison_frame

    ds = pydicom.dcmread(poison["gdcm_poison_sv1_abort.dcm"])
    ds.PixelData = encapsulate([_poison_frame("1.2.840.10008.1.2.4.70", ())])
    path = tmp_path_factory.mktemp("clean") / "clean_sv1.dcm"
    ds.save_as(path)
    return path


_GDCM_DIRECTLY = """
import sys, pydicom
ds = pydicom.dcmread(sys.argv[1])
ds.pixel_array_options(decoding_plugin="gdcm")
try:
    ds.pixel_array
except Exception:
    pass
"""


@pytest.mark.parametrize("name", sorted(GDCM_POISON))
def test_the_poison_frames_really_kill_a_process_decoding_them_with_gdcm(poison, name):
    result = subprocess.run([sys.executable, "-c", _GDCM_DIRECTLY, str(poison[name])], capture_output=True,
                            timeout=120)
    assert result.returncode < 0, f"gdcm no longer crashes on {name}: regenerate GDCM_POISON ({result.returncode})"
    assert -result.returncode in (signal.SIGABRT, signal.SIGSEGV)


@pytest.mark.parametrize("name", sorted(GDCM_POISON))
def test_gdcm_crash_is_a_typed_refusal_naming_the_file_and_the_decoder(poison, name):
    path = poison[name]
    with pytest.raises(DecoderCrashError) as caught:
        decode_isolated(path, "gdcm", "test")
    assert str(path) in str(caught.value) and "python-gdcm" in caught.value.reason
    assert "SIGABRT" in caught.value.reason or "SIGSEGV" in caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_loader_survives_sv1_poison_and_decodes_the_next_file(poison, clean_sv1):
    with pytest.raises(XrayInputError, match="python-gdcm.*crashed"):
        load_xray(poison["gdcm_poison_sv1_abort.dcm"])
    image, meta = load_xray(clean_sv1)  # through a fresh helper
    assert image.shape == (64, 64) and meta["TransferSyntaxUID"] == "1.2.840.10008.1.2.4.70"
    assert float(image.std()) > 0.05


def test_baseline_poison_never_reaches_gdcm_in_process(poison):
    """Pillow decodes JPEG Baseline first; whatever it does with the corrupt stream, this process lives on."""
    path = poison["gdcm_poison_baseline.dcm"]
    try:
        image, _ = load_xray(path)
    except XrayInputError as error:
        assert str(path) in str(error)
    else:
        assert image.shape == (64, 64)


def test_a_hung_decoder_is_killed_and_the_file_refused(poison, monkeypatch):
    decoder = IsolatedDecoder(timeout=0.5)
    import monai_pneumonia.io.isolation as isolation

    monkeypatch.setattr(isolation, "_CHILD", Path(__file__).with_name("_sleeping_child.py"))
    try:
        started = time.monotonic()
        with pytest.raises(DecoderCrashError, match="did not finish"):
            decoder.decode(poison["gdcm_poison_sv1_abort.dcm"], "gdcm")
        assert time.monotonic() - started < 30
    finally:
        decoder.close()


def test_gdcm_looping_forever_is_killed_at_the_timeout_and_the_file_refused(poison):
    """A real gdcm hang (the fuzzer's find): the helper is killed after the timeout, the next decode works."""
    decoder = IsolatedDecoder(timeout=3)
    try:
        with pytest.raises(DecoderCrashError, match="did not finish within 3 s"):
            decoder.decode(poison["gdcm_hang_baseline.dcm"], "gdcm")
        with pytest.raises(DecoderCrashError, match="crashed"):  # a fresh helper: this one aborts, as it should
            decoder.decode(poison["gdcm_poison_sv1_abort.dcm"], "gdcm")
    finally:
        decoder.close()
    started = time.monotonic()
    with pytest.raises(XrayInputError, match="cannot decode"):  # through the loader Pillow refuses it at once
        load_xray(poison["gdcm_hang_baseline.dcm"])
    assert time.monotonic() - started < 30


_HANG_HELPER = """
import sys, time
from monai_pneumonia.io.isolation import IsolatedDecoder
decoder = IsolatedDecoder(timeout=600)
decoder._start()
print(decoder._process.pid, flush=True)
decoder._conn.send((sys.argv[1], "gdcm"))  # gdcm loops forever on it, holding the GIL
time.sleep(600)
"""


def _helper_outlives_killed_parent(script: str, path, settle: float = 0.0) -> bool:
    """Run ``script`` (it prints its decoding helper's pid), SIGKILL it, and say whether the helper survived 10 s.

    ``settle``: seconds to wait before the kill (the helper then is inside its decoder). A survivor is killed.
    """
    parent = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        helper = int(parent.stdout.readline())
        time.sleep(settle)
        assert _alive(helper)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _alive(helper)
    if alive:
        os.kill(helper, signal.SIGKILL)
    return alive


@pytest.mark.slow
def test_a_helper_stuck_in_gdcm_dies_with_its_sigkilled_parent(poison):
    """The parent watch thread cannot run while gdcm loops with the GIL held: the kernel's death signal must act."""
    alive = _helper_outlives_killed_parent(_HANG_HELPER, poison["gdcm_hang_baseline.dcm"], settle=2)  # looping
    assert not alive, "a helper stuck in gdcm outlived its SIGKILLed parent"


_KEEP_HELPER = """
import os, sys, time
from monai_pneumonia.io import load_xray
import monai_pneumonia.io.isolation as isolation
load_xray(sys.argv[1])
print(isolation._DECODER._process.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_the_decoder_helper_dies_with_its_parent_even_on_sigkill(clean_sv1):
    assert not _helper_outlives_killed_parent(_KEEP_HELPER, clean_sv1), "the decoding helper outlived its SIGKILLed parent"
