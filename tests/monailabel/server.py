"""Start a real MONAI Label server on loopback with the app, and talk to it with the standard library.

The server writes into its app folder (``model/``, ``logs/``, ``bin/``) and its studies folder
(``datastore_v2.json``, ``labels/``), so :func:`start_server` copies the app; callers pass a studies folder of
their own in a temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "monai_pneumonia" / "monailabel_app"
#: The MONAI Label environment made by ``make setup``.
MONAILABEL_PYTHON = REPO / ".venv-monailabel" / "bin" / "python"
#: Only inference: no training, active learning, scoring, batch inference, folder watching or sessions.
QUIET_ENV = {
    "MONAI_LABEL_TASKS_TRAIN": "false",
    "MONAI_LABEL_TASKS_STRATEGY": "false",
    "MONAI_LABEL_TASKS_SCORING": "false",
    "MONAI_LABEL_TASKS_BATCH_INFER": "false",
    "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false",
    "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
    "MONAI_LABEL_SESSIONS": "false",
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class Reply:
    """An HTTP answer: status, headers and body."""

    status: int
    headers: dict
    body: bytes

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Server:
    """A running server: its base URL and its log file."""

    url: str
    log: Path

    def request(self, method: str, path: str, query: dict | None = None, form: dict | None = None,
                timeout: float = 120) -> Reply:
        """Send a request; HTTP errors come back as a :class:`Reply` too.

        Args:
            method: ``GET`` or ``POST``.
            path: e.g. ``/info/``.
            query: query parameters.
            form: url-encoded form fields (e.g. ``{"params": "{...}"}``).
            timeout: seconds.
        """
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = urllib.parse.urlencode(form).encode() if form is not None else (b"" if method == "POST" else None)
        request = urllib.request.Request(url, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return Reply(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())

    def infer(self, image: str, output: str = "json", **params) -> Reply:
        """``POST /infer/pneumonia?image=...&output=...`` with ``params`` as the request's JSON parameters."""
        return self.request("POST", "/infer/pneumonia", {"image": image, "output": output},
                            form={"params": json.dumps(params)} if params else None)

    def log_tail(self, chars: int = 6000) -> str:
        """The end of the server's output, for failure messages."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"


@contextmanager
def start_server(workdir: Path, studies: Path, conf: dict[str, str], timeout: float = 180,
                 env: dict[str, str] | None = None) -> Iterator[Server]:
    """Run ``monailabel.main start_server`` with a copy of the app until the block exits.

    Args:
        workdir: a temporary folder for the app copy and the log.
        studies: the studies folder (written into by the server).
        conf: ``--conf`` options of the app.
        timeout: seconds to wait for ``/info/``.
        env: further environment variables of the server.

    Yields:
        The running server.
    """
    app = workdir / "app"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("model", "logs", "bin", "__pycache__"))
    port = free_port()
    command = [os.fspath(MONAILABEL_PYTHON), "-m", "monailabel.main", "start_server", "--app", os.fspath(app),
               "--studies", os.fspath(studies), "--host", "127.0.0.1", "--port", str(port)]
    for key, value in conf.items():
        command += ["--conf", key, value]
    env = {**os.environ, **QUIET_ENV, "MONAI_LABEL_SESSION_PATH": os.fspath(workdir / "sessions"), **(env or {})}
    server = Server(f"http://127.0.0.1:{port}", workdir / "server.log")
    with server.log.open("wb") as log:
        process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(server, process, timeout)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(server: Server, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"MONAI Label exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if server.request("GET", "/info/", timeout=5).status == 200:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.5)
    raise RuntimeError(f"MONAI Label not ready after {timeout} s:\n{server.log_tail()}")
