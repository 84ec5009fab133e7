"""The storage SCP's association policy, with pynetdicom as the peer on loopback."""

from __future__ import annotations

import inspect
import logging
import socket

import pytest
from pydicom.uid import (
    HTJ2K,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from monai_pneumonia.io.codec import DECODABLE_TRANSFER_SYNTAXES, is_decodable
from monai_pneumonia.service.scp import GuardedAssociationServer, StorageSCP, transfer_syntaxes
from tests.conftest import free_port


@pytest.fixture()
def scp_port():
    scp = StorageSCP("PNEUMO", store=lambda *args: 0x0000, allowed=["MODALITY"])
    port = free_port()
    scp.start("127.0.0.1", port)
    yield port
    scp.stop()


def _echo(port: int, calling: str, called: str) -> bool:
    """True when an association from ``calling`` to ``called`` is accepted and C-ECHO succeeds."""
    peer = AE(ae_title=calling)
    peer.add_requested_context(Verification)
    peer.acse_timeout = 5
    assoc = peer.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return status.Status == 0x0000


def test_allowed_calling_ae_to_our_ae_title_is_accepted(scp_port):
    assert _echo(scp_port, "MODALITY", "PNEUMO")


def test_unknown_calling_ae_is_rejected(scp_port):
    assert not _echo(scp_port, "INTRUDER", "PNEUMO")


def test_association_addressed_to_another_ae_title_is_rejected(scp_port):
    assert not _echo(scp_port, "MODALITY", "OTHER")


def test_the_listener_accepts_the_loaders_decodable_syntaxes_in_its_order():
    accepted = transfer_syntaxes()
    assert accepted == [s for s in DECODABLE_TRANSFER_SYNTAXES if s in accepted]  # the loader's order
    # everything this environment decodes, except the retired big-endian syntax (PS3.5 A.3)
    assert set(accepted) == {s for s in DECODABLE_TRANSFER_SYNTAXES if is_decodable(s)} - {ExplicitVRBigEndian}
    assert {JPEG2000Lossless, HTJ2K, JPEGLSLossless, RLELossless, DeflatedExplicitVRLittleEndian} <= set(accepted)


@pytest.mark.parametrize("stop", [StorageSCP.stop, lambda scp: scp.ae.shutdown()], ids=["scp.stop", "ae.shutdown"])
def test_our_server_class_listens_and_both_stop_and_ae_shutdown_close_it(stop):
    """StorageSCP registers its own server with the AE as AE.start_server does (pynetdicom's private ``_servers``:
    start_server takes no server class); this fails if pynetdicom changes how servers are registered or stopped."""
    assert "server_class" not in inspect.signature(AE.start_server).parameters, (
        "pynetdicom's start_server now takes a server class: use it in StorageSCP.start instead of AE._servers")
    scp = StorageSCP("PNEUMO", store=lambda *args: 0x0000, allowed=["MODALITY"])
    port = free_port()
    scp.start("127.0.0.1", port)
    assert isinstance(scp.server, GuardedAssociationServer) and _echo(port, "MODALITY", "PNEUMO")
    stop(scp)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_rejected_calling_ae_title_is_logged(scp_port, caplog):
    caplog.set_level(logging.DEBUG, logger="monai_pneumonia.service.scp")
    assert not _echo(scp_port, "INTRUDER", "PNEUMO")
    assert not _echo(scp_port, "MODALITY", "OTHER")
    lines = [r.getMessage() for r in caplog.records if "rejected an association" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "calling AE title 'INTRUDER': calling AE title not allowed" in lines[0]
    assert "'MODALITY': addressed to AE title 'OTHER'" in lines[1]

