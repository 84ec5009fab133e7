"""The Storage SCP (PS3.4 Annex B) and Verification SCP (PS3.4 Annex A): small pynetdicom event handlers.

Presentation contexts: Verification, CR Image Storage, Digital X-Ray Image Storage - For Presentation and
Secondary Capture Image Storage. Any other SOP Class (CT, MR, SR, multi-frame SC, ...) is rejected at
association negotiation ("abstract syntax not supported"), which is logged with the calling AE.

Transfer syntaxes are the loader's (:data:`~monai_pneumonia.io.codec.DECODABLE_TRANSFER_SYNTAXES`) that this
installation can decode, in its order: Explicit VR Little Endian first, then the compressed ones, Implicit VR Little
Endian last: pynetdicom accepts the first of *its own* list that the requestor offers, so a JPEG 2000 or RLE image
arrives as it was sent rather than decompressed by the sender.

C-STORE statuses (PS3.4 B.2.3): ``0x0000`` Success only after the instance is on disk
(:meth:`~monai_pneumonia.service.spool.Spool.write`) or is a duplicate of one already received;
``0xA700`` Out of Resources when it could not be written; ``0xC000`` Cannot Understand for a SOP Instance UID that
violates the UID grammar (in the request or in the data set); ``0xA900`` Data Set Does Not Match SOP Class when
the data set's SOP Instance UID or SOP Class UID differs from the request's Affected SOP Instance/Class UID (as
DCMTK's storescp answers), so two data sets can never share one spool file and result.

Hostile peers (:class:`GuardedAssociationServer`): a peer that connects and stays silent, or trickles a byte now
and then, would hold an association slot as long as it likes (pynetdicom reads a PDU with blocking ``recv`` calls,
each allowed ``network_timeout``). Every connection must therefore have its association accepted or rejected
within :attr:`AssociationLimits.establish_timeout` seconds of connecting, else the listener shuts the socket down;
and one peer address may hold at most :attr:`AssociationLimits.max_per_peer` connections, so a single host
cannot take every slot of ``max_associations``. pynetdicom keeps a data set being received in memory, without a
limit: the bytes an association sends are counted (``EVT_DATA_RECV``) and past
:attr:`AssociationLimits.max_dataset_bytes` before its C-STORE completes the connection is cut, so no peer can
make the listener allocate more than that per association.

PDU size before the body is read (:class:`PDULimitedSocket`): pynetdicom reads a PDU as its 6-byte header and then
the whole declared length (up to 4 GiB) into memory before anything else can look at it, and the calling AE title
is inside the first PDU, so neither the allow-list nor the byte count above can help. The socket of every
connection therefore refuses a declared length over :meth:`AssociationLimits.pdu_limit` (a P-DATA-TF over the
maximum PDU length we announce, any other PDU over 1 MiB): the connection is closed without reading the body, with
one warning naming the peer address and the two lengths.

Connect-and-close churn: a peer that closes its connection before its A-ASSOCIATE-RQ would leave pynetdicom's
acceptor thread waiting ``acse_timeout`` for a request that cannot come, holding a slot of ``max_associations``
and of its address's ``max_per_peer``; the socket ends that wait at once, so the slot is free when the peer closes
(and at :attr:`AssociationLimits.establish_timeout` at the latest, for a peer that stays connected and silent).

DICOM TLS (PS3.15 B.1, the Basic TLS Secure Transport Connection Profile): with a :class:`TLSConfig` the listener
accepts only TLS connections (TLS 1.2 or newer) presenting its certificate, and with a CA file it also requires
and verifies a client certificate (mutual TLS), which is how a PACS proves who it is beyond its AE title.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import ssl
import struct
import threading
import weakref
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydicom import uid as uids
from pydicom.filereader import read_dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer

from monai_pneumonia.io.codec import DECODABLE_TRANSFER_SYNTAXES, is_decodable
from monai_pneumonia.redaction import escape_controls
from monai_pneumonia.service.activity import pseudonym
from monai_pneumonia.service.delivery import disable_nagle
from monai_pneumonia.service.uids import is_valid_uid

__all__ = ["ACCEPTED_SOP_CLASSES", "AssociationLimits", "GuardedAssociationServer", "PDULimitedSocket",
           "StorageSCP", "TLSAssociationServer", "TLSConfig", "transfer_syntaxes"]

logger = logging.getLogger(__name__)

#: CR Image Storage, Digital X-Ray Image Storage - For Presentation, Secondary Capture Image Storage (PS3.4 B.5).
ACCEPTED_SOP_CLASSES = (uids.ComputedRadiographyImageStorage, uids.DigitalXRayImageStorageForPresentation,
                        uids.SecondaryCaptureImageStorage)

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND, DATA_SET_MISMATCH = 0x0000, 0xA700, 0xC000, 0xA900
#: How many bytes of a deflated data set are inflated to read its SOP Class/Instance UIDs.
_HEADER_INFLATE_LIMIT = 1 << 20


def transfer_syntaxes() -> list[str]:
    """The loader's transfer syntaxes that this installation decodes, in its order (see the module docstring).

    Retired ones (Explicit VR Big Endian, PS3.5 A.3) are read from files but not negotiated.
    """
    return [s for s in DECODABLE_TRANSFER_SYNTAXES if not s.is_retired and is_decodable(s)]


@dataclass(frozen=True)
class AssociationLimits:
    """Association limits (seconds for timeouts).

    Attributes:
        max_associations: concurrent associations.
        max_pdu: largest P-DATA PDU we receive (bytes; 0 = unlimited).
        acse_timeout: association request/release timeout.
        dimse_timeout: wait for a DIMSE message.
        network_timeout: idle connection timeout.
        establish_timeout: seconds from connection to an accepted or rejected association; a peer still
            negotiating (silent, or trickling bytes) is disconnected then.
        max_per_peer: concurrent connections from one peer address.
        max_dataset_bytes: most bytes received for one data set (4 bytes per pixel of the loader's 40-Mpx limit,
            plus 16 MiB of header); the connection is cut beyond it.
    """

    max_associations: int = 10
    max_pdu: int = 65536
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    establish_timeout: float = 10.0
    max_per_peer: int = 4
    max_dataset_bytes: int = 4 * 40_000_000 + 16 * 1024 * 1024

    #: Largest association-control PDU (A-ASSOCIATE-RQ with every storage class offered is ~30 KiB).
    MAX_CONTROL_PDU = 1 << 20

    def pdu_limit(self, pdu_type: int) -> int:
        """Largest declared length accepted for a PDU of this type (PS3.8 9.3); longer ones close the connection.

        A P-DATA-TF may be as long as the maximum length we announce (PS3.8 D.1; ``max_dataset_bytes`` when it
        is unlimited), plus its 6-byte header for senders that count it in; any other PDU 1 MiB.
        """
        if pdu_type == 0x04:
            return (self.max_pdu or self.max_dataset_bytes) + 6
        return self.MAX_CONTROL_PDU


@dataclass(frozen=True)
class TLSConfig:
    """DICOM TLS settings of the listener.

    Attributes:
        cert: PEM certificate (chain) the listener presents.
        key: PEM private key of ``cert`` (may be the same file).
        ca: PEM CA certificate(s); when given, every peer must present a client certificate signed by one of
            them (mutual TLS), else the TLS handshake fails before any DICOM is exchanged.
    """

    cert: os.PathLike | str
    key: os.PathLike | str
    ca: os.PathLike | str | None = None

    def server_context(self) -> ssl.SSLContext:
        """The ``ssl.SSLContext`` handed to pynetdicom's ``start_server``.

        Raises:
            ValueError: a certificate, key or CA file that cannot be loaded (the message names the file).
        """
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(certfile=os.fspath(self.cert), keyfile=os.fspath(self.key))
        except (OSError, ssl.SSLError) as error:
            raise ValueError(f"cannot load the TLS certificate {self.cert} / key {self.key}: {error}") from error
        if self.ca is not None:
            try:
                context.load_verify_locations(cafile=os.fspath(self.ca))
            except (OSError, ssl.SSLError) as error:
                raise ValueError(f"cannot load the TLS CA file {self.ca}: {error}") from error
            context.verify_mode = ssl.CERT_REQUIRED
        return context


class GuardedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with a per-peer-address connection cap (see the module docstring).

    A peer's connections are its live associations plus those accepted and not yet started (the accept loop runs
    ahead of the threads that start associations). The deadline for establishing the association is kept by
    :meth:`StorageSCP.handle_conn_open`.
    """

    #: Most concurrent connections from one peer address.
    max_per_peer: int = 4

    def __init__(self, *args, **kwargs) -> None:
        self._starting: dict[str, int] = {}
        self._starting_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def verify_request(self, request, client_address) -> bool:
        """Refuse a connection from an address that already holds :attr:`max_per_peer` connections."""
        address = client_address[0]
        with self._starting_lock:
            held = self._starting.get(address, 0) + sum(
                1 for assoc in self.ae.active_associations
                if assoc.is_acceptor and getattr(assoc.requestor, "address", None) == address)
            if held >= self.max_per_peer:
                logger.warning("refused a connection from %s: it already holds %d connections (limit per peer %d)",
                               address, held, self.max_per_peer)
                return False
            self._starting[address] = self._starting.get(address, 0) + 1
        return True

    def process_request_thread(self, request, client_address) -> None:
        """Start the association (:meth:`serve_connection`); from then on it counts as a live association."""
        try:
            self.serve_connection(request, client_address)
        finally:
            with self._starting_lock:
                left = self._starting.get(client_address[0], 1) - 1
                if left > 0:
                    self._starting[client_address[0]] = left
                else:
                    self._starting.pop(client_address[0], None)

    def serve_connection(self, request, client_address) -> None:
        """What pynetdicom does with an accepted connection: start its association thread."""
        super().process_request_thread(request, client_address)


class PDULimitedSocket(AssociationSocket):
    """pynetdicom's association socket, refusing an over-long PDU before its body is read (module docstring).

    pynetdicom's DUL reads each PDU with two calls, ``recv(6)`` for the type and declared length and then
    ``recv(length)``; this class looks at the first and answers the second with nothing when the length is over
    the limit (pynetdicom then treats the connection as closed: Evt17). Installed on each accepted connection by
    :meth:`StorageSCP.handle_conn_open` (pynetdicom has no public hook to choose the socket class).
    """

    limits: AssociationLimits
    _declared: tuple[int, int] | None

    @classmethod
    def install(cls, sock: AssociationSocket, limits: AssociationLimits) -> None:
        """Give an accepted connection's socket the PDU limits (before its association thread reads anything)."""
        sock.__class__ = cls
        sock.limits, sock._declared = limits, None

    def recv(self, nr_bytes: int) -> bytearray:
        declared, self._declared = self._declared, None
        if declared is not None and nr_bytes == declared[1]:  # the body of the PDU whose header was just read
            if nr_bytes > self.limits.pdu_limit(declared[0]):
                logger.warning("peer %s declared a PDU (type 0x%02X) of %d bytes, over the limit of %d: connection "
                               "closed without reading it", self._peer(), declared[0], nr_bytes,
                               self.limits.pdu_limit(declared[0]))
                self._close_now()
                return bytearray()
            return super().recv(nr_bytes)
        data = super().recv(nr_bytes)
        if nr_bytes == 6 and len(data) == 6:
            pdu_type, _, length = struct.unpack(">BBL", bytes(data))
            self._declared = (pdu_type, length)
        elif len(data) < nr_bytes:  # the peer closed the connection
            self._close_now()
        return data

    def _peer(self) -> str:
        return str(getattr(self.assoc.requestor, "address", "?"))

    def _close_now(self) -> None:
        """Shut the connection down; an acceptor still waiting for its A-ASSOCIATE-RQ stops waiting now."""
        if self.socket is not None:
            try:
                self.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        assoc = self.assoc
        if assoc.is_acceptor and assoc.requestor.primitive is None:
            # pynetdicom's acceptor waits for the request with receive_pdu(timeout=acse_timeout); nothing is
            # its "timed out" answer, after which it shuts the connection down and ends (Association.run_reactor)
            assoc.dul.to_user_queue.put(None)


class TLSAssociationServer(GuardedAssociationServer):
    """pynetdicom's threaded server, with the TLS handshake moved out of the accept loop.

    pynetdicom wraps each accepted socket in ``get_request``, i.e. in the one thread that accepts connections, and
    the accepted socket has no timeout: a single peer that opens a TCP connection and never sends a TLS
    ClientHello blocks every later association. Here the handshake runs in the association's own thread with
    :attr:`handshake_timeout`; a failed or silent handshake closes that connection only.
    """

    #: Seconds a peer has to complete the TLS handshake.
    handshake_timeout: float = 10.0

    def get_request(self):
        """Accept a connection without touching TLS (see the class docstring)."""
        return self.socket.accept()

    def serve_connection(self, request, client_address) -> None:
        """Complete the TLS handshake (bounded in time), then run the association."""
        timeout = request.gettimeout()
        try:
            request.settimeout(self.handshake_timeout)
            request = self.ssl_context.wrap_socket(request, server_side=True)
            request.settimeout(timeout)
        except (OSError, ValueError) as error:  # ssl.SSLError, a timeout, a reset: this peer only
            logger.warning("TLS handshake with %s failed (%s): connection closed", client_address[0], error)
            self.shutdown_request(request)
            return
        super().serve_connection(request, client_address)


class StorageSCP:
    """The listener: stores each received instance through ``store`` and answers with its status.

    An association must be addressed to ``ae_title`` (Called AE Title) and, when ``allowed`` is given, come from
    one of those AE titles (Calling AE Title); others are rejected at association (PS3.8 9.3.4).

    Args:
        ae_title: our AE title.
        store: ``(sop_instance_uid, encoded_file_bytes) -> status``; must not return Success before the
            instance is durable.
        allowed: calling AE titles accepted; ``None`` accepts any.
        limits: association limits.
        tls: accept only DICOM TLS connections with these settings (``None``: plain TCP).
    """

    def __init__(self, ae_title: str, store: Callable[[str, bytes, str], int],
                 allowed: Sequence[str] | None = None, limits: AssociationLimits = AssociationLimits(),
                 tls: TLSConfig | None = None) -> None:
        self.store = store
        self.ssl_context = tls.server_context() if tls is not None else None
        self.ae = AE(ae_title=ae_title)
        syntaxes = transfer_syntaxes()
        self.ae.add_supported_context(Verification)
        for sop_class in ACCEPTED_SOP_CLASSES:
            self.ae.add_supported_context(sop_class, syntaxes)
        self.ae.maximum_associations = limits.max_associations
        self.ae.maximum_pdu_size = limits.max_pdu
        self.ae.acse_timeout = limits.acse_timeout
        self.ae.dimse_timeout = limits.dimse_timeout
        self.ae.network_timeout = limits.network_timeout
        self.ae.require_called_aet = True  # associations addressed to another AE title are rejected
        if allowed:
            self.ae.require_calling_aet = list(allowed)
        self.limits = limits
        self.server = None
        self._received: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # association -> bytes this message
        self._received_lock = threading.Lock()

    def handle_echo(self, event: evt.Event) -> int:
        """C-ECHO: always Success (PS3.7 9.3.5)."""
        return SUCCESS

    def handle_accepted(self, event: evt.Event) -> None:
        """Log any presentation context refused (a SOP Class we do not read); set TCP_NODELAY."""
        assoc = event.assoc
        disable_nagle(assoc)
        calling = assoc.requestor.ae_title
        refused = sorted({str(context.abstract_syntax.name) for context in assoc.rejected_contexts})
        if refused:  # one line per association: a store SCU offering every storage class would flood the log
            shown = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
            # routine when the sender also offers what we read (Orthanc, storescu offer every class: DEBUG, else
            # every association logs it); a warning when nothing it offered is readable (a misrouted CT)
            level = logging.DEBUG if assoc.accepted_contexts else logging.WARNING
            logger.log(level, "association from %s: refused %d presentation context(s) of %d SOP Class(es) that are "
                           "not chest radiographs (abstract syntax not supported): %s", calling,
                           len(assoc.rejected_contexts), len(refused), shown)

    def handle_rejected(self, event: evt.Event) -> None:
        """Log a rejected association with its calling AE title (escaped: the peer chose it) and the reason."""
        assoc = event.assoc
        calling, called = assoc.requestor.ae_title, assoc.acceptor.ae_title
        if self.ae.require_calling_aet and calling.strip() not in [t.strip() for t in self.ae.require_calling_aet]:
            reason = "calling AE title not allowed (--allow)"
        elif self.ae.require_called_aet and str(assoc.requestor.primitive.called_ae_title).strip() != called.strip():
            reason = f"addressed to AE title {escape_controls(repr(assoc.requestor.primitive.called_ae_title))}"
        else:
            reason = f"limit of {self.ae.maximum_associations} associations reached"
        logger.warning("rejected an association from %s, calling AE title %s: %s",
                       getattr(assoc.requestor, "address", "?"), escape_controls(repr(calling)), reason)

    def handle_conn_open(self, event: evt.Event) -> None:
        """Limit the PDU size of a new connection and start its establishment deadline (the module docstring)."""
        PDULimitedSocket.install(event.assoc.dul.socket, self.limits)
        timer = threading.Timer(self.limits.establish_timeout, self._cut_if_not_established, (event.assoc,))
        timer.daemon = True
        timer.start()

    def _cut_if_not_established(self, assoc) -> None:
        if assoc.is_established or assoc.is_rejected or assoc.is_aborted or assoc.is_released:
            return
        logger.warning("peer %s did not complete the association within %g s: disconnected",
                       getattr(assoc.requestor, "address", "?"), self.limits.establish_timeout)
        _disconnect(assoc)

    def handle_data_recv(self, event: evt.Event) -> None:
        """Count the bytes received since the last C-STORE; cut the connection past ``max_dataset_bytes``."""
        with self._received_lock:
            received = self._received.get(event.assoc, 0) + len(event.data)
            self._received[event.assoc] = received
        if received > self.limits.max_dataset_bytes:
            logger.error("peer %s sent more than %d bytes for one data set: disconnected",
                         getattr(event.assoc.requestor, "address", "?"), self.limits.max_dataset_bytes)
            _disconnect(event.assoc)

    def handle_store(self, event: evt.Event) -> int:
        """C-STORE: validate the SOP Instance UID and hand the encoded file to ``store``."""
        with self._received_lock:  # the data set is complete: the next one is counted from zero
            self._received[event.assoc] = 0
        sop_uid = str(event.request.AffectedSOPInstanceUID or "")
        calling = event.assoc.requestor.ae_title
        if not is_valid_uid(sop_uid):
            logger.error("C-STORE from %s with an invalid Affected SOP Instance UID: refused (0xC000)", calling)
            return CANNOT_UNDERSTAND
        try:
            data_class, data_uid = _data_set_uids(event)
        except Exception as error:  # noqa: BLE001 - a data set whose header cannot be read is not understood
            logger.error("C-STORE %s from %s: data set header unreadable (%s): refused (0xC000)",
                         pseudonym(sop_uid), calling, type(error).__name__)
            return CANNOT_UNDERSTAND
        if not is_valid_uid(data_uid):
            logger.error("C-STORE %s from %s: the data set's SOP Instance UID is not a valid UID: refused (0xC000)",
                         pseudonym(sop_uid), calling)
            return CANNOT_UNDERSTAND
        affected_class = str(event.request.AffectedSOPClassUID or "")
        if data_uid != sop_uid or data_class != affected_class:
            logger.error("C-STORE %s from %s: the data set's SOP %s UID differs from the request's Affected SOP %s "
                         "UID: refused (0xA900)", pseudonym(sop_uid), calling,
                         *(("Instance",) * 2 if data_uid != sop_uid else ("Class",) * 2))
            return DATA_SET_MISMATCH
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as error:  # noqa: BLE001 - a data set we cannot re-encode is not understood
            logger.error("C-STORE %s from %s: cannot encode (%s)", pseudonym(sop_uid), calling,
                         type(error).__name__)
            return CANNOT_UNDERSTAND
        return self.store(sop_uid, data, calling)

    def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` in background threads."""
        handlers = [(evt.EVT_C_ECHO, self.handle_echo), (evt.EVT_C_STORE, self.handle_store),
                    (evt.EVT_ACCEPTED, self.handle_accepted), (evt.EVT_REJECTED, self.handle_rejected),
                    (evt.EVT_CONN_OPEN, self.handle_conn_open),
                    (evt.EVT_DATA_RECV, self.handle_data_recv)]
        server_class = GuardedAssociationServer if self.ssl_context is None else TLSAssociationServer
        server = self.ae.make_server((host, port), ssl_context=self.ssl_context, evt_handlers=handlers,
                                     server_class=server_class)
        server.max_per_peer = self.limits.max_per_peer
        threading.Thread(target=server.serve_forever, name="AssociationAcceptor", daemon=True).start()
        # No public API for this: AE.start_server(block=False) cannot take a server class, and AE.make_server does
        # not register the server with its AE, whose list AssociationServer.shutdown() removes it from (it raises
        # otherwise) and AE.shutdown() stops. So do what start_server does; tests/service/test_scp.py pins it.
        self.ae._servers.append(server)
        self.server = server

    def stop(self) -> None:
        """Stop listening and close the associations."""
        if self.server is not None:
            self.server.shutdown()
            self.server = None


def _disconnect(assoc) -> None:
    """Shut an association's socket down: a blocked ``recv`` returns and pynetdicom ends the association."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _data_set_uids(event: evt.Event) -> tuple[str, str]:
    """``(SOPClassUID, SOPInstanceUID)`` of the received data set, read from its first elements only.

    A deflated data set (PS3.5 A.5) is inflated up to :data:`_HEADER_INFLATE_LIMIT` bytes: the two UIDs are in
    group 0008, at its start.
    """
    syntax = uids.UID(str(event.context.transfer_syntax))
    raw = event.request.DataSet
    raw = raw.getvalue() if hasattr(raw, "getvalue") else bytes(raw)
    if syntax == uids.DeflatedExplicitVRLittleEndian:
        raw = zlib.decompressobj(-zlib.MAX_WBITS).decompress(raw, _HEADER_INFLATE_LIMIT)
    header = read_dataset(io.BytesIO(raw), syntax.is_implicit_VR, syntax.is_little_endian,
                          stop_when=lambda tag, vr, length: tag > 0x00080018)
    return str(header.get("SOPClassUID", "") or ""), str(header.get("SOPInstanceUID", "") or "")
