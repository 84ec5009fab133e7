"""The listener towards its peers: DICOM TLS, association limits and a spool that cannot be written.

Everything runs in this process on loopback with pynetdicom as the peer; the certificates are made with the
``openssl`` command line in ``tmp_path``.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification

from monai_pneumonia.cli import serve
from monai_pneumonia.service import PneumoniaService, ServiceConfig
from monai_pneumonia.service.scp import OUT_OF_RESOURCES, SUCCESS, AssociationLimits, StorageSCP, TLSConfig
from tests.conftest import free_port
from tests.factories import gradient_picture, write_dicom
from tests.service.harness import c_store, wait_for

# -- certificates ------------------------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _issue(folder: Path, name: str, ca: Path | None, extensions: str) -> tuple[Path, Path]:
    """An EC P-256 key and certificate: self-signed when ``ca`` is None, else signed by ``ca``/``ca.key``."""
    key, cert, ext = folder / f"{name}.key", folder / f"{name}.pem", folder / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key))
    if ca is None:
        added = [a for line in extensions.splitlines()[1:] for a in ("-addext", line)]
        _openssl("req", "-x509", "-new", "-key", str(key), "-subj", f"/CN={name}", "-days", "2", "-out", str(cert),
                 *added)
    else:
        csr = folder / f"{name}.csr"
        _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca.with_suffix(".key")),
                 "-CAcreateserial", "-days", "2", "-out", str(cert), "-extfile", str(ext), "-extensions", "v3")
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for localhost/127.0.0.1, a client certificate it signed, and a stranger's."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    folder = tmp_path_factory.mktemp("pki")
    ca, _ = _issue(folder, "ca", None, "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign\n")
    server, server_key = _issue(folder, "server", ca,
                                "[v3]\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    client, client_key = _issue(folder, "client", ca, "[v3]\nextendedKeyUsage=clientAuth\n")
    rogue_ca, _ = _issue(folder, "rogue", None, "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign\n")
    rogue, rogue_key = _issue(folder, "intruder", rogue_ca, "[v3]\nextendedKeyUsage=clientAuth\n")
    return {"ca": ca, "server": server, "server_key": server_key, "client": client, "client_key": client_key,
            "rogue": rogue, "rogue_key": rogue_key}


def _client_context(pki: dict[str, Path], identity: str | None = "client") -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"]))
    if identity is not None:
        context.load_cert_chain(str(pki[identity]), str(pki[f"{identity}_key"]))
    return context


def _echo(port: int, tls: ssl.SSLContext | None = None, calling: str = "MODALITY") -> bool:
    """True when an association (TLS when ``tls`` is given) is accepted and C-ECHO answers Success."""
    peer = AE(ae_title=calling)
    peer.add_requested_context(Verification)
    peer.acse_timeout = peer.network_timeout = peer.dimse_timeout = 5
    assoc = peer.associate("127.0.0.1", port, ae_title="PNEUMO",
                           tls_args=(tls, "localhost") if tls is not None else None)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return getattr(status, "Status", None) == SUCCESS


def _listener(tls: TLSConfig | None = None, limits: AssociationLimits | None = None):
    scp = StorageSCP("PNEUMO", store=lambda *args: SUCCESS, allowed=["MODALITY"], limits=limits or AssociationLimits(),
                     tls=tls)
    port = free_port()
    scp.start("127.0.0.1", port)
    return scp, port


# -- DICOM TLS ---------------------------------------------------------------------------------------------------


def test_mutual_tls_echo_succeeds_and_plain_or_unknown_peers_fail(pki):
    scp, port = _listener(TLSConfig(pki["server"], pki["server_key"], ca=pki["ca"]))
    try:
        assert _echo(port, _client_context(pki))
        assert not _echo(port)  # plain TCP association: no TLS handshake, refused
        assert not _echo(port, _client_context(pki, identity=None))  # TLS without a client certificate
        assert not _echo(port, _client_context(pki, identity="rogue"))  # certificate of another CA
        assert not _echo(port, _client_context(pki), calling="INTRUDER")  # TLS does not replace the allow-list
        assert _echo(port, _client_context(pki))  # and the listener still works after all of that
    finally:
        scp.stop()


def test_server_only_tls_accepts_clients_without_certificates(pki):
    scp, port = _listener(TLSConfig(pki["server"], pki["server_key"]))
    try:
        assert _echo(port, _client_context(pki, identity=None))
        assert not _echo(port)
    finally:
        scp.stop()


def test_a_silent_peer_does_not_block_tls_handshakes(pki, monkeypatch):
    """pynetdicom does the handshake in its accept loop; a peer that never speaks must not stall the others."""
    from monai_pneumonia.service.scp import TLSAssociationServer

    monkeypatch.setattr(TLSAssociationServer, "handshake_timeout", 8.0)
    scp, port = _listener(TLSConfig(pki["server"], pki["server_key"], ca=pki["ca"]))
    silent = socket.create_connection(("127.0.0.1", port))
    try:
        time.sleep(0.3)  # accepted, waiting for a ClientHello that never comes
        assert _echo(port, _client_context(pki))
        silent.setblocking(False)
        with pytest.raises(BlockingIOError):  # still connected: the echo did not wait for its timeout
            silent.recv(1)
        silent.settimeout(30)
        assert silent.recv(1) == b""  # closed by the listener after handshake_timeout
    finally:
        silent.close()
        scp.stop()


def test_serve_tls_options_build_the_config_and_unloadable_files_stop_start_up(pki, tmp_path):
    parse = _serve_parser()
    args = parse(["--spool", str(tmp_path), "--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"]),
                  "--tls-ca", str(pki["ca"])])
    config = serve.build_config(args)
    assert config.tls == TLSConfig(pki["server"], pki["server_key"], pki["ca"])
    assert config.tls.server_context().verify_mode == ssl.CERT_REQUIRED
    assert serve.build_config(parse(["--spool", str(tmp_path)])).tls is None
    with pytest.raises(SystemExit, match="need --tls-cert"):
        serve.build_config(parse(["--spool", str(tmp_path), "--tls-ca", str(pki["ca"])]))
    with pytest.raises(SystemExit, match="cannot load the TLS certificate"):
        serve.build_config(parse(["--spool", str(tmp_path), "--tls-cert", str(pki["ca"])]))  # no key in it
    (tmp_path / "options.json").write_text(f'{{"tls-cert": "{pki["server"]}", "tls-key": "{pki["server_key"]}"}}')
    assert serve.build_config(parse(["--spool", str(tmp_path), "--config", str(tmp_path / "options.json")])).tls


# -- association limits and defaults -----------------------------------------------------------------------------


def _serve_parser():
    import argparse

    parser = argparse.ArgumentParser()
    serve.add_parser(parser.add_subparsers())
    return lambda argv: parser.parse_args(["serve", *argv])


def test_serve_defaults_are_safe():
    config = serve.build_config(_serve_parser()(["--spool", "unused"]))
    assert config.host == "127.0.0.1" and config.tls is None and not config.allow
    limits = config.limits
    assert limits.max_associations == 10 and limits.max_pdu == 65536
    assert 0 < limits.acse_timeout <= 60 and 0 < limits.dimse_timeout <= 120 and 0 < limits.network_timeout <= 120
    assert 0 < limits.establish_timeout <= 30 and 0 < limits.max_per_peer < limits.max_associations
    assert limits.max_dataset_bytes <= 256 * 1024 * 1024


def test_limits_reach_pynetdicom():
    limits = AssociationLimits(max_associations=1, max_pdu=16384, acse_timeout=5, dimse_timeout=6,
                               network_timeout=7)
    scp, port = _listener(limits=limits)
    try:
        ae = scp.ae
        assert (ae.maximum_associations, ae.maximum_pdu_size) == (1, 16384)
        assert (ae.acse_timeout, ae.dimse_timeout, ae.network_timeout) == (5, 6, 7)
        peer = AE(ae_title="MODALITY")
        peer.add_requested_context(Verification)
        first = peer.associate("127.0.0.1", port, ae_title="PNEUMO")
        assert first.is_established
        assert first.acceptor.maximum_length == 16384  # the PDU size we announced
        assert not _echo(port)  # a second concurrent association is rejected (local limit exceeded)
        first.release()
        assert wait_for(lambda: _echo(port), timeout=10)  # once its thread has ended, the slot is free again
    finally:
        scp.stop()


# -- a spool that cannot be written --------------------------------------------------------------------------------


class _NoClassifier:
    """Stands in for the model: these tests never classify."""

    threshold = 0.5


@pytest.fixture()
def receiving_service(tmp_path):
    """A service whose listener runs (no worker, no model): what the C-STORE handler answers is under test."""
    service = PneumoniaService(ServiceConfig(spool=tmp_path / "spool", port=free_port(), report_processes=0),
                               _NoClassifier())
    service.scp.start("127.0.0.1", service.config.port)
    yield service
    service.scp.stop()
    service.journal.close()
    service.results_log.close()


def _radiograph(folder: Path, seed: int) -> Path:
    return write_dicom(folder / f"x{seed}.dcm", gradient_picture(48, 40, seed=seed))


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"mount {' '.join(args)} not permitted here: {result.stderr.strip()}")


@pytest.fixture()
def mounted(receiving_service):
    """Mount points made over the spool's ``incoming/`` folder; unmounted afterwards."""
    points: list[Path] = []
    yield points
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _failure_injected(service, monkeypatch, mounted) -> None:
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)  # atomic_write's fsync: the data did not reach the disk


def _read_only_spool(service, monkeypatch, mounted) -> None:
    incoming = service.spool.root
    _mount("--bind", str(incoming), str(incoming))  # read-only for root too (EROFS), unlike chmod
    mounted.append(incoming)
    _mount("-o", "remount,ro,bind", str(incoming))


def _full_disk(service, monkeypatch, mounted) -> None:
    incoming = service.spool.root
    _mount("-t", "tmpfs", "-o", "size=64k,mode=0700", f"spool-{uuid.uuid4().hex[:6]}", str(incoming))
    mounted.append(incoming)
    fd = os.open(incoming / "filler.bin", os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # fill it: the next write fails with ENOSPC
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.mark.parametrize("breakage", [_failure_injected, _read_only_spool, _full_disk],
                         ids=["fsync-fails", "read-only-mount", "full-tmpfs"])
def test_an_unwritable_spool_answers_an_error_status_never_success(receiving_service, tmp_path, monkeypatch,
                                                                   mounted, breakage, caplog):
    service = receiving_service
    image = _radiograph(tmp_path, 1)
    uid = str(pydicom.dcmread(image, stop_before_pixels=True).SOPInstanceUID)
    breakage(service, monkeypatch, mounted)
    status = c_store(service.config.port, image)
    assert status == OUT_OF_RESOURCES, f"status 0x{status or 0:04X}"
    assert uid not in service.spool  # nothing half-written is taken for the instance
    assert not list(service.spool.root.glob(".*"))  # no temporary file of atomic_write left
    assert service.worker.queue.empty()
    assert "answered 0xA700" in caplog.text
    monkeypatch.undo()
    for point in reversed(mounted):
        subprocess.run(["umount", "-l", str(point)], check=True)
    mounted.clear()
    assert c_store(service.config.port, image) == SUCCESS  # the sender's retry succeeds once there is room
    assert uid in service.spool


# -- hostile peers: stalled and trickling connections, mismatched UIDs ---------------------------------------------


def _stall(port: int, source: str, trickle: bool = False) -> socket.socket:
    """A TCP connection from ``source`` that never completes an association (optionally sending a byte)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    if trickle:
        sock.sendall(b"\x01")  # the first byte of an A-ASSOCIATE-RQ PDU, and no more
    return sock


def test_stalled_and_trickling_peers_cannot_hold_the_listener(tmp_path):
    """Twelve connections from one host that never associate: a legitimate store from another still succeeds."""
    limits = AssociationLimits(max_associations=10, max_per_peer=2, establish_timeout=3, network_timeout=60)
    scp = StorageSCP("PNEUMO", store=lambda *args: SUCCESS, allowed=["MODALITY"], limits=limits)
    port = free_port()
    scp.start("127.0.0.1", port)
    stalled = [_stall(port, "127.0.0.2", trickle=bool(i % 2)) for i in range(12)]
    try:
        time.sleep(0.5)  # all accepted or refused by now
        started = time.monotonic()
        assert c_store(port, _radiograph(tmp_path, 3)) == SUCCESS
        assert time.monotonic() - started < 3, "the store waited for the stalled peers"
        assert len(scp.ae.active_associations) <= 2 + 1
    finally:
        for sock in stalled:
            sock.close()
        scp.stop()


def test_a_peer_that_does_not_associate_in_time_is_disconnected():
    limits = AssociationLimits(establish_timeout=1.5, network_timeout=60, acse_timeout=60)
    scp, port = _listener(limits=limits)
    try:
        trickler = _stall(port, "127.0.0.1", trickle=True)
        trickler.settimeout(20)
        started = time.monotonic()
        assert trickler.recv(1) == b""  # closed by the listener, long before any pynetdicom timeout
        assert time.monotonic() - started < 10
        trickler.close()
        assert _echo(port)  # and the listener still works
    finally:
        scp.stop()


def test_one_peer_address_cannot_take_every_slot():
    scp, port = _listener(limits=AssociationLimits(max_associations=10, max_per_peer=2, establish_timeout=30))
    peers = []
    try:
        for _ in range(2):
            peer = AE(ae_title="MODALITY")
            peer.add_requested_context(Verification)
            peers.append(peer.associate("127.0.0.1", port, ae_title="PNEUMO"))
            assert peers[-1].is_established
        assert not _echo(port)  # a third association from 127.0.0.1 is refused at connection
    finally:
        for assoc in peers:
            assoc.release()
        scp.stop()


def test_a_data_set_whose_uid_differs_from_the_affected_sop_instance_uid_is_refused(receiving_service, tmp_path):
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    from monai_pneumonia.service.scp import DATA_SET_MISMATCH

    other = generate_uid()

    class Lying(Dataset):
        """pynetdicom takes the Affected SOP Instance UID from this attribute and encodes the real element."""

        @property
        def SOPInstanceUID(self):  # noqa: N802 - the DICOM keyword
            return other

    image = _radiograph(tmp_path, 4)
    source = pydicom.dcmread(image)
    lying = Lying(source)
    lying.file_meta = source.file_meta
    peer = AE(ae_title="MODALITY")
    peer.add_requested_context(DigitalXRayImageStorageForPresentation, pydicom.uid.ExplicitVRLittleEndian)
    assoc = peer.associate("127.0.0.1", receiving_service.config.port, ae_title="PNEUMO")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(lying)
    finally:
        assoc.release()
    assert status.Status == DATA_SET_MISMATCH
    assert not list(receiving_service.spool.pending())
    assert c_store(receiving_service.config.port, image) == SUCCESS  # the consistent one is stored


def test_a_data_set_larger_than_the_limit_cuts_the_connection_and_the_listener_goes_on(tmp_path):
    limits = AssociationLimits(max_dataset_bytes=40_000)
    stored = []
    scp = StorageSCP("PNEUMO", store=lambda uid, data, calling: stored.append(uid) or SUCCESS, limits=limits)
    port = free_port()
    scp.start("127.0.0.1", port)
    try:
        big = write_dicom(tmp_path / "big.dcm", gradient_picture(200, 200), bits_stored=16)  # 80 KB of pixels
        peer = AE(ae_title="MODALITY")
        peer.add_requested_context(DigitalXRayImageStorageForPresentation, pydicom.uid.ExplicitVRLittleEndian)
        peer.acse_timeout = peer.dimse_timeout = peer.network_timeout = 10
        assoc = peer.associate("127.0.0.1", port, ae_title="PNEUMO")
        assert assoc.is_established
        status = assoc.send_c_store(pydicom.dcmread(big))
        assert not getattr(status, "Status", None) == SUCCESS  # no response: the connection was cut
        assert wait_for(lambda: not assoc.is_alive(), timeout=10)
        assert not stored
        for seed in range(3):  # small ones, several on one association, still pass
            assert c_store(port, _radiograph(tmp_path, seed)) == SUCCESS
        assert len(stored) == 3
    finally:
        scp.stop()


# -- resource limits before authentication: the PDU length, connect-and-close churn ----------------------------------


def _rss() -> int:
    """This process's resident memory in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _flood(sock: socket.socket, total: int) -> None:
    """Send up to ``total`` bytes, stopping when the listener closes the connection."""
    chunk = b"\0" * (1 << 20)
    try:
        for _ in range(total // len(chunk)):
            sock.sendall(chunk)
    except OSError:
        pass


@pytest.mark.parametrize("when", ["before-association", "after-association"])
def test_a_pdu_longer_than_the_limit_is_refused_before_its_body_is_read(when, caplog):
    import struct
    import threading

    limits = AssociationLimits(max_pdu=16384, establish_timeout=60, network_timeout=60, acse_timeout=60)
    scp, port = _listener(limits=limits)
    try:
        if when == "before-association":  # an A-ASSOCIATE-RQ of 1.5 GB: the calling AE title is inside it
            sock = socket.create_connection(("127.0.0.1", port))
            header = struct.pack(">BBL", 0x01, 0, 1_500_000_000)
        else:  # a P-DATA-TF of 1.5 GB on an accepted association
            peer = AE(ae_title="MODALITY")
            peer.add_requested_context(Verification)
            assoc = peer.associate("127.0.0.1", port, ae_title="PNEUMO")
            assert assoc.is_established
            sock = assoc.dul.socket.socket
            header = struct.pack(">BBL", 0x04, 0, 1_500_000_000)
        before = _rss()
        with caplog.at_level(logging.WARNING, logger="monai_pneumonia.service.scp"):
            sock.sendall(header)
            flood = threading.Thread(target=_flood, args=(sock, 300 << 20), daemon=True)
            flood.start()  # what pynetdicom would keep in memory while reading the declared length
            flood.join(20)
        assert not flood.is_alive(), "the listener kept reading the over-long PDU"
        assert _rss() - before < 64 << 20
        cut = [r.getMessage() for r in caplog.records if "over the limit" in r.getMessage()]
        assert len(cut) == 1 and "1500000000" in cut[0] and "127.0.0.1" in cut[0]
        sock.close()
        assert wait_for(lambda: not [a for a in scp.ae.active_associations if a.is_acceptor], timeout=10)
        assert _echo(port)  # the listener goes on
    finally:
        scp.stop()


def test_pdus_within_the_limit_still_pass():
    scp, port = _listener(limits=AssociationLimits(max_pdu=16384))
    try:
        peer = AE(ae_title="MODALITY")
        peer.add_requested_context(DigitalXRayImageStorageForPresentation, pydicom.uid.ExplicitVRLittleEndian)
        peer.maximum_pdu_size = 16384
        assoc = peer.associate("127.0.0.1", port, ae_title="PNEUMO")
        assert assoc.is_established
        path = write_dicom(Path(tempfile.mkdtemp()) / "big.dcm", gradient_picture(300, 300), bits_stored=16)
        assert assoc.send_c_store(pydicom.dcmread(path)).Status == SUCCESS  # ~180 KB in PDUs of 16 KiB
        assoc.release()
    finally:
        scp.stop()


def test_connections_the_peer_closed_free_their_slots_at_once():
    """Four addresses connecting and closing in a loop: a fifth still associates, every time."""
    import threading

    limits = AssociationLimits(max_associations=10, max_per_peer=4, establish_timeout=10, acse_timeout=30)
    scp, port = _listener(limits=limits)
    stop = threading.Event()

    def churn(source: str) -> None:
        while not stop.is_set():
            try:
                _stall(port, source).close()
            except OSError:
                pass

    churners = [threading.Thread(target=churn, args=(f"127.0.0.{i}",), daemon=True) for i in range(2, 6)]
    try:
        for thread in churners:
            thread.start()
        time.sleep(1.0)
        results = []
        for _ in range(8):
            results.append(_echo(port, calling="MODALITY"))
            time.sleep(0.2)
        assert results == [True] * 8
    finally:
        stop.set()
        for thread in churners:
            thread.join(5)
        try:
            assert wait_for(lambda: not scp.ae.active_associations, timeout=2)  # well before acse_timeout
        finally:
            scp.stop()
