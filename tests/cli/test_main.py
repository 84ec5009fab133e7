"""The command line's parser: building it (``--help``, ``--version``) loads none of the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "monai", "pydicom", "pynetdicom", "highdicom", "sklearn", "matplotlib")


def test_building_the_parser_imports_no_heavy_library():
    """Subcommands import torch, MONAI and pydicom when they run, not when they register their options."""
    code = ("import sys; from monai_pneumonia.cli import build_parser; build_parser(); "
            f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
