"""Command-line values are data: the bundle parser never evaluates them (``$``), resolves them (``@``) or reads a
macro (``%``) from them (:func:`monai_pneumonia.bundle.config_literal`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from monai_pneumonia.bundle import config_literal
from tests.factories import gradient_picture, write_png

REPO = Path(__file__).resolve().parents[2]
HOSTILE = '$print(42) or "/tmp/o"'


@pytest.mark.parametrize("value", [HOSTILE, "@network_def", "%configs/x.json#a", "$__import__('os').getpid()",
                                   "$a@b#c", "plain/path", "/abs/$x", "caf\udce9"])
def test_config_literal_keeps_the_text(value, capsys):
    parser = ConfigParser({"network_def": {"depth": 18}, "value": config_literal(value),
                           "values": config_literal([value, 3])})
    assert parser.get_parsed_content("value") == value
    assert parser.get_parsed_content("values") == [value, 3]
    assert "42" not in capsys.readouterr().out


@pytest.mark.slow
def test_predict_output_dir_with_an_expression_is_a_folder_name(tiny_bundle, tmp_path):
    image = write_png(tmp_path / "x.png", gradient_picture(64, 64))
    result = subprocess.run([sys.executable, "-m", "monai_pneumonia", "predict", str(image), "--bundle",
                             str(tiny_bundle), "--output-dir", HOSTILE, "--device", "cpu", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600, env={"PYTHONPATH": str(REPO),
                                                                               "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert not result.stdout.startswith("42") and "\n42\n" not in result.stdout
    assert (tmp_path / HOSTILE / "predictions.csv").is_file()
