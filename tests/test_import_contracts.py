"""The import contracts of ``.importlinter`` (layers, studies apart) hold, and would catch a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root`` (first on the path, so the copy there is the one analysed)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    command = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", command, str(CONFIG), "--no-cache", "--no-logo"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.slow
def test_import_contracts_are_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("decision.py", "import monai_pneumonia.inference\n", "Layers"),  # an import up the layers
        ("service/__init__.py", "import monai_pneumonia.studies.planted\n", "never imports the model-development"),
    ],
)
def test_a_planted_breach_is_reported(tmp_path, module, line, broken):
    shutil.copytree(ROOT / "monai_pneumonia", tmp_path / "monai_pneumonia",
                    ignore=shutil.ignore_patterns("__pycache__"))
    studies = tmp_path / "monai_pneumonia" / "studies"
    studies.mkdir(exist_ok=True)
    (studies / "__init__.py").touch()
    (studies / "planted.py").write_text('"""A planted study module."""\n')
    with open(tmp_path / "monai_pneumonia" / module, "a", encoding="utf-8") as stream:
        stream.write(line)
    result = _lint(tmp_path)
    assert result.returncode != 0
    report = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in report and line.split()[-1] in report
