"""``monai-pneumonia serve`` options: the command line wins over the ``--config`` file, which wins over defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_pneumonia.cli import build_parser
from monai_pneumonia.cli.serve import resolve_options


def _parse(*argv: str):
    return build_parser().parse_args(["serve", *argv])


def test_command_line_then_config_file_then_defaults(tmp_path):
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"aet": "FROMFILE", "port": 104, "cam": True, "batch-size": 4, "spool": "s",
                                  "allow": "PACS"}))
    # --port given with its default value still wins over the file's 104
    args = resolve_options(_parse("--config", str(config), "--port", "11112", "--batch-size", "8"))
    assert (args.port, args.batch_size) == (11112, 8)  # command line
    assert (args.aet, args.cam, args.spool, args.allow) == ("FROMFILE", True, Path("s"), ["PACS"])  # file
    assert (args.host, args.max_associations, args.lenient, args.ckpt) == ("127.0.0.1", 10, False, None)  # defaults
    assert vars(resolve_options(args)) == vars(args)  # resolving again changes nothing


def test_without_config_file_every_option_has_its_default():
    args = resolve_options(_parse())
    assert (args.aet, args.port, args.allow, args.destination, args.cam, args.log_level) == (
        "PNEUMO", 11112, [], [], False, "INFO")
    assert args.bundle is None and args.spool is None and args.config is None


def test_unknown_option_in_config_file_is_refused_by_name(tmp_path):
    config = tmp_path / "serve.json"
    config.write_text(json.dumps({"aet": "FROMFILE", "prot": 104}))
    with pytest.raises(SystemExit, match="unknown option 'prot'"):
        resolve_options(_parse("--config", str(config)))


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        _parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert "listen port (default: 11112)" in text and "our AE title (default: PNEUMO)" in text
    assert "SUPPRESS" not in text
