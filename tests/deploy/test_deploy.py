"""deploy/: the systemd unit passes systemd's own checks and the example serve.json is a valid ``serve`` config.

The Orthanc configuration and routing script are exercised by the PACS integration tests, which start Orthanc
with them (tests/service/harness.py, tests/service/test_pacs.py).
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "systemd" / "monai-pneumonia.service"
INSTALLED_COMMAND = "/opt/monai-pneumonia/.venv/bin/monai-pneumonia"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    return parser


def test_unit_is_hardened_and_restarts_without_crash_looping():
    service = _unit()["Service"]
    assert service["User"] == service["Group"] == "pneumo"
    assert service["StateDirectory"] == "monai-pneumonia" and service["StateDirectoryMode"] == "0700"
    assert service["Restart"] == "on-failure" and service["RestartPreventExitStatus"] == "2"
    assert int(_unit()["Unit"]["StartLimitBurst"]) > 0
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "CapabilityBoundingSet": "", "UMask": "0077"}.items():
        assert service[key] == value, key
    assert service["ExecStart"] == f"{INSTALLED_COMMAND} serve --config /etc/monai-pneumonia/serve.json"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    """systemd's parser accepts every directive (the command is pointed at this interpreter to exist here)."""
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED_COMMAND, f"{sys.executable} -m monai_pneumonia"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 0 and not problems, problems


def test_example_serve_config_is_what_serve_reads(tmp_path):
    """Every key of deploy/serve.json is a serve option, and it names the spool on persistent storage."""
    from monai_pneumonia.cli import build_parser
    from monai_pneumonia.cli.serve import build_config

    options = json.loads((DEPLOY / "serve.json").read_text())
    assert Path(options["spool"]).is_relative_to("/var/lib/monai-pneumonia")
    local = {**options, "spool": str(tmp_path / "spool")}
    (tmp_path / "serve.json").write_text(json.dumps(local))
    config = build_config(build_parser().parse_args(["serve", "--config", str(tmp_path / "serve.json")]))
    assert [d.name for d in config.destinations] == options["destination"]
    assert list(config.allow) == options["allow"] and config.stats_interval == options["stats-interval"]


def test_orthanc_routes_to_the_listener_of_the_example_config():
    orthanc = json.loads((DEPLOY / "orthanc" / "orthanc.json").read_text())
    serve = json.loads((DEPLOY / "serve.json").read_text())
    assert orthanc["DicomModalities"]["PNEUMO"] == [serve["aet"], serve["host"], serve["port"]]
    assert f"{orthanc['DicomAet']}@127.0.0.1:{orthanc['DicomPort']}" in serve["destination"]
    assert orthanc["DicomAet"] in serve["allow"] and orthanc["RemoteAccessAllowed"] is False
    assert orthanc["LuaScripts"] == ["/etc/orthanc/route-to-pneumo.lua"]
    assert "SendToModality(instanceId, 'PNEUMO')" in (DEPLOY / "orthanc" / "route-to-pneumo.lua").read_text()
