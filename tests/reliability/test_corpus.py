"""The bad-input corpus (:mod:`tests.reliability.corpus`) through the loader and the bundle's inference.

Each file must be refused with a typed :class:`~monai_pneumonia.errors.XrayInputError` naming it, or loaded
correctly; nothing crashes, and the loader's memory stays bounded. The listener's side is in ``test_crash.py``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from monai_pneumonia.data.discovery import IMAGE_SUFFIXES
from monai_pneumonia.errors import XrayInputError
from monai_pneumonia.transforms import LoadXray
from tests.reliability.corpus import HIDDEN_BOMB, LOAD, REFUSE, SURVIVE, build_corpus

REPO = Path(__file__).resolve().parents[2]
#: Peak resident memory allowed to the loader over the whole corpus (it holds one image at a time).
MEMORY_BOUND_MB = 1536


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, build_corpus(folder)


def test_the_corpus_is_large_and_varied(corpus):
    _, cases = corpus
    assert len(cases) >= 30
    assert sum(c.expect == REFUSE for c in cases) >= 30 and any(c.expect == LOAD for c in cases)
    assert sum(c.dicom for c in cases) >= 15


def test_every_file_is_refused_with_a_typed_error_naming_it_or_loads_correctly(corpus):
    _, cases = corpus
    loader = LoadXray(image_only=False)
    problems = []
    for case in cases:
        try:
            image, meta = loader(str(case.path))
        except XrayInputError as error:
            message = str(error).lower()
            if case.expect == LOAD:
                problems.append(f"{case.name}: refused ({error}) but should load")
            elif str(case.path).lower() not in message:
                problems.append(f"{case.name}: message does not name the file: {error}")
            elif missing := [w for w in case.words if w.lower() not in message]:
                problems.append(f"{case.name}: message lacks {missing}: {error}")
            continue
        except Exception as error:  # noqa: BLE001 - the finding this test exists for
            problems.append(f"{case.name}: untyped {type(error).__name__}: {error}")
            continue
        if case.expect == REFUSE:
            problems.append(f"{case.name}: loaded {tuple(image.shape)} but should be refused")
        elif case.check is not None:
            try:
                case.check(image[0].numpy().T, meta)  # back to row-major (rows, columns)
            except AssertionError as error:
                problems.append(f"{case.name}: loaded wrongly: {error}")
    assert not problems, "\n".join(problems)


def _in_subprocess(code: str, *args: str, limit_gb: int = 0) -> dict:
    """Run ``code`` (prints one JSON line last) in a fresh interpreter, optionally under an address-space limit."""
    prelude = "import resource, sys\n"
    if limit_gb:
        prelude += f"resource.setrlimit(resource.RLIMIT_AS, ({limit_gb} << 30, {limit_gb} << 30))\n"
    result = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


_LOAD_ALL = """
    import json, sys
    from monai_pneumonia.errors import XrayInputError
    from monai_pneumonia.io import load_xray
    outcomes = {}
    for path in sys.argv[1:]:
        try:
            load_xray(path)
            outcomes[path] = "loaded"
        except XrayInputError as error:
            outcomes[path] = "refused: " + error.reason
    # VmHWM: this process's own peak RSS (ru_maxrss would include the forking parent's RSS, carried over exec)
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({"peak_mb": peak_kb / 1024, "outcomes": outcomes}))
"""


def test_loader_memory_stays_bounded_over_the_corpus(corpus):
    _, cases = corpus
    paths = [str(c.path) for c in cases]
    report = _in_subprocess(_LOAD_ALL, *paths)
    assert len(report["outcomes"]) == len(paths)
    assert report["peak_mb"] < MEMORY_BOUND_MB, report["peak_mb"]


def test_hidden_jpeg2000_bomb_is_refused_before_decoding(corpus):
    _, cases = corpus
    path = next(str(c.path) for c in cases if c.name == HIDDEN_BOMB)
    report = _in_subprocess(_LOAD_ALL, path, limit_gb=3)  # the limit keeps a failure from taking the machine down
    assert report["outcomes"][path].startswith("refused")
    # refused for the 60000 x 60000 its codestream declares, not after a failed 3.6 GB allocation (whose message
    # says 3600000000 pixels)
    assert re.search(r"\b60000\b", report["outcomes"][path]), report["outcomes"][path]
    assert report["peak_mb"] < MEMORY_BOUND_MB


def test_bundle_inference_on_the_whole_corpus_folder(corpus, tiny_bundle, tmp_path):
    folder, cases = corpus
    # a folder scan skips what is an image neither by content nor by name, and what is not a regular file (a link
    # loop, a FIFO): name those explicitly, so that each is refused with a reason
    unsniffed = [str(c.path) for c in cases if not c.sniffed
                 and (not c.name.lower().endswith(tuple(IMAGE_SUFFIXES)) or not os.path.isfile(c.path))]
    command = [sys.executable, "-m", "monai_pneumonia", "predict", str(folder), *unsniffed, "--bundle",
               str(tiny_bundle), "--output-dir", str(tmp_path / "out"), "--device", "cpu", "--json"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(tmp_path / "out" / "errors.csv", newline="", encoding="utf-8") as stream:
        error_rows = list(csv.DictReader(stream))
    with open(tmp_path / "out" / "predictions.csv", newline="", encoding="utf-8") as stream:
        prediction_rows = list(csv.DictReader(stream))
    errors = {os.path.basename(row["image"]): row["error"] for row in error_rows}
    predicted = {os.path.basename(row["image"]) for row in prediction_rows}
    # every input exactly once, in one file or the other (names that are not UTF-8 are written escaped)
    written = [os.path.basename(row["image"]) for row in error_rows + prediction_rows]
    assert len(written) == len(set(written)), sorted(n for n in written if written.count(n) > 1)
    assert not list((tmp_path / "out").glob(".*.partial"))  # written atomically: no temporary file left
    for case in cases:
        name = os.path.basename(case.name).encode("utf-8", "backslashreplace").decode("utf-8")
        if case.expect == REFUSE:
            assert name in errors, f"{name} is not in errors.csv"
            assert errors[name].strip(), f"{name} has no reason"
            assert name not in predicted
        elif case.expect == SURVIVE:  # a corrupt stream another decoder tolerates: one row, either file
            assert (name in errors) != (name in predicted), name
        else:
            assert name in predicted, f"{name} was not classified: {errors.get(name)}"


def test_folder_scan_skips_and_reports_what_is_not_a_regular_file(corpus, caplog):
    from monai_pneumonia.data.discovery import find_images

    folder, cases = corpus
    with caplog.at_level("WARNING", logger="monai_pneumonia.data.discovery"):
        found = {os.path.relpath(p, folder) for p in find_images(folder)}  # ends: no FIFO opened, no loop followed
    assert "fifo.dcm" not in found and "self.dcm" not in found
    assert os.path.join("x.dcm", "inner.png") in found  # a folder named like a file is searched as a folder
    assert "fifo.dcm: skipped, not a regular file" in caplog.text
    assert "self.dcm: skipped" in caplog.text
