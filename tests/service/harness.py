"""Real parts on loopback for the PACS tests and benchmark: a private network namespace, Orthanc, the service.

Orthanc 1.10 binds every address, so everything (Orthanc, ``monai-pneumonia serve``, dcmtk clients, REST calls
through ``curl``) runs inside a fresh network namespace that only has ``lo``: nothing is reachable from outside.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pydicom
from pydicom.uid import DigitalXRayImageStorageForPresentation
from pynetdicom import AE

REPO = Path(__file__).resolve().parents[2]
#: The deployment's Orthanc configuration and auto-routing script (deploy/, docs/deploy.md): the tests start
#: Orthanc with these files, changing only paths, authentication (curl without credentials) and timings.
DEPLOY_ORTHANC = REPO / "deploy" / "orthanc" / "orthanc.json"
ROUTE_LUA = REPO / "deploy" / "orthanc" / "route-to-pneumo.lua"
ORTHANC_PLUGINS = Path("/usr/share/orthanc/plugins")
ORTHANC_PORTS = {"dicom": 4242, "http": 8042}
SERVICE_PORT = 11112

__all__ = ["DEPLOY_ORTHANC", "ROUTE_LUA", "NetNS", "Orthanc", "Service", "dcmsend", "missing_tools", "wait_for"]


def missing_tools() -> str | None:
    """Why the integration tests cannot run here (``None`` when they can)."""
    for tool in ("Orthanc", "dcmsend", "echoscu", "dsrdump", "curl", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (scripts/install-system-deps.sh installs it)"
    if not (ORTHANC_PLUGINS / "libOrthancDicomWeb.so").is_file():
        return "orthanc-dicomweb not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns)"
    probe = f"pneumo-probe-{uuid.uuid4().hex[:6]}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        return "ip netns add failed (no CAP_SYS_ADMIN?)"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True)
    return None


class NetNS:
    """A private network namespace with loopback up; ``run``/``popen`` execute inside it."""

    def __init__(self) -> None:
        self.name = f"pneumo-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"], check=True)

    def command(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *map(os.fspath, args)]

    def run(self, args: list, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(args), capture_output=True, text=True, timeout=timeout, check=check)

    def popen(self, args: list, log: Path) -> subprocess.Popen:
        stream = open(log, "ab")  # noqa: SIM115 - the child owns it
        return subprocess.Popen(self.command(args), stdout=stream, stderr=subprocess.STDOUT, cwd=REPO,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


class Orthanc:
    """Orthanc configured with ``deploy/orthanc/orthanc.json`` in ``ns``; with ``lua``, that routing script.

    Args:
        ns: the network namespace.
        workdir: storage, configuration and log.
        lua: a Lua script file (normally :data:`ROUTE_LUA`, the deployment's); ``None``: no routing.
    """

    def __init__(self, ns: NetNS, workdir: Path, lua: Path | None = None) -> None:
        self.ns, self.workdir = ns, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        config = json.loads(DEPLOY_ORTHANC.read_text())
        assert config["DicomPort"] == ORTHANC_PORTS["dicom"] and config["HttpPort"] == ORTHANC_PORTS["http"]
        assert config["DicomModalities"]["PNEUMO"] == ["PNEUMO", "127.0.0.1", SERVICE_PORT]
        config.update({
            "Name": "test-pacs", "AuthenticationEnabled": False,
            "StorageDirectory": os.fspath(workdir / "db"), "IndexDirectory": os.fspath(workdir / "db"),
            "Plugins": [os.fspath(ORTHANC_PLUGINS / Path(p).name) for p in config["Plugins"]],
            "LuaScripts": [os.fspath(lua)] if lua is not None else [],
            "StableAge": 1, "ConcurrentJobs": 2, "SyncStorageArea": False, "SaveJobs": False, "HttpThreadsCount": 8, "LogExportedResources": False,
        })
        (workdir / "orthanc.json").write_text(json.dumps(config, indent=2))
        self.process: subprocess.Popen | None = None

    def start(self) -> Orthanc:
        self.process = self.ns.popen(["Orthanc", self.workdir / "orthanc.json"], self.workdir / "orthanc.log")
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.ns.run(["curl", "-sf", self.url("/system")], timeout=5).returncode == 0:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not start:\n{(self.workdir / 'orthanc.log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    @staticmethod
    def url(path: str) -> str:
        return f"http://127.0.0.1:{ORTHANC_PORTS['http']}{path}"

    def get(self, path: str):
        result = self.ns.run(["curl", "-sf", self.url(path)], timeout=30, check=True)
        return json.loads(result.stdout)

    def post(self, path: str, body) -> object:
        result = self.ns.run(["curl", "-sf", "-X", "POST", "-d", json.dumps(body), self.url(path)], timeout=60,
                             check=True)
        return json.loads(result.stdout) if result.stdout.strip() else None

    def delete_all(self) -> None:
        for patient in self.get("/patients"):
            self.ns.run(["curl", "-sf", "-X", "DELETE", self.url(f"/patients/{patient}")])

    def instances(self, modality: str) -> list[dict]:
        """Instances of the given modality with their main tags (``MainDicomTags``)."""
        series = self.post("/tools/find", {"Level": "Series", "Query": {"Modality": modality}})
        ids = [i for s in series for i in self.get(f"/series/{s}")["Instances"]]
        return [self.get(f"/instances/{i}") | {"ID": i} for i in ids]

    def referenced_sop_uids(self, instance_id: str) -> set[str]:
        """Every ReferencedSOPInstanceUID in an instance (e.g. an SR's source-image reference)."""
        found: set[str] = set()

        def walk(node):
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "ReferencedSOPInstanceUID" and isinstance(value, str):
                        found.add(value)
                    walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(self.get(f"/instances/{instance_id}/simplified-tags"))
        return found


class Service:
    """``monai-pneumonia serve`` as a subprocess in ``ns``."""

    def __init__(self, ns: NetNS, spool: Path, bundle: Path, *extra: str, port: int = SERVICE_PORT,
                 log: Path | None = None) -> None:
        self.ns, self.spool, self.port = ns, spool, port
        self.log = log or spool.parent / f"{spool.name}.log"
        self.args = [sys.executable, "-m", "monai_pneumonia", "serve", "--aet", "PNEUMO", "--host", "127.0.0.1",
                     "--port", str(port), "--spool", spool, "--bundle", bundle, "--device", "cpu", *extra]
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> Service:
        self.process = self.ns.popen(self.args, self.log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            if "ready: classifying and delivering" in self.log.read_text() and self.ns.run(
                    ["echoscu", "-aet", "PROBE", "-aec", "PNEUMO", "127.0.0.1", str(self.port)],
                    timeout=10).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"serve did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code, self.process = self.process.returncode, None
        return code

    def events(self, event: str) -> list[dict]:
        """Records of one kind from the results log."""
        return [r for r in self.results() if r["event"] == event]

    def results(self) -> list[dict]:
        path = self.spool / "results.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def dcmsend(ns: NetNS, files: list[Path], port: int = SERVICE_PORT, aec: str = "PNEUMO") -> subprocess.CompletedProcess:
    """``dcmsend -aet MODALITY -aec PNEUMO`` of the files, as a modality would."""
    return ns.run(["dcmsend", "-aet", "MODALITY", "-aec", aec, "127.0.0.1", str(port), *files], timeout=300)


def wait_for(predicate, timeout: float = 60, interval: float = 0.25):
    """Poll ``predicate`` until it returns a truthy value; returns it (or the last falsy value on timeout)."""
    deadline = time.time() + timeout
    value = predicate()
    while not value and time.time() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def c_store(port: int, path: Path, host: str = "127.0.0.1") -> int | None:
    """C-STORE one file to the listener over a real association; the status the sender sees (``None``: no response)."""
    peer = AE(ae_title="MODALITY")
    peer.add_requested_context(DigitalXRayImageStorageForPresentation, pydicom.uid.ExplicitVRLittleEndian)
    peer.acse_timeout = peer.dimse_timeout = peer.network_timeout = 10
    assoc = peer.associate(host, port, ae_title="PNEUMO")
    assert assoc.is_established
    try:
        return getattr(assoc.send_c_store(pydicom.dcmread(path)), "Status", None)
    finally:
        assoc.release()
