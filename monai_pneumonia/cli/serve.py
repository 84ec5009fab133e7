"""``monai-pneumonia serve``: a DICOM listener that classifies every chest radiograph it receives.

Point a PACS or a modality at it (C-STORE of CR, DX for presentation or Secondary Capture images, any common
transfer syntax). Each instance is written to the spool before Success is answered, classified with the bundle,
and a Comprehensive SR (TID 1500: pneumonia present/absent, probability, threshold, algorithm, a reference to the
image) is stored back in the same study, new series - by C-STORE to --destination and/or STOW-RS to --stow-url,
and/or kept as files in --keep-results DIR. With --cam a Grad-CAM Secondary Capture goes with it. Without any of
the three, results are only recorded in the results log (start-up says so).

Policies: instances that are not chest radiographs (other SOP Classes, CT, multi-frame, lateral views, other body
parts, undecodable) are never classified and are logged with the reason; a SOP Instance UID already received is
acknowledged and not reported again; whatever was acknowledged survives a crash or restart (the spool and
journal are processed at the next start). SIGTERM/SIGINT stop gracefully. See docs/pacs.md.

Exit status: 0 after SIGTERM/SIGINT; 2 for a configuration error (bad option, missing model, a journal or results
log that cannot be used: restarting cannot fix it); 1 when the worker or a deliverer cannot go on (e.g. a full
disk under the journal), so that systemd restarts it - while unhealthy it answers every C-STORE with 0xA700.

Options can also come from a JSON file (--config) whose keys are the long option names (e.g. "aet", "port",
"destination": ["PACS@10.0.0.5:104"], "max-associations"); options given on the command line win.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
from pathlib import Path

from monai_pneumonia.cli import add_bundle_argument

__all__ = ["add_parser", "build_config", "resolve_options", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``serve`` subcommand.

    Options not on the command line stay out of the parsed namespace (their defaults show in ``--help`` only), so
    that :func:`resolve_options` can take them from ``--config`` before falling back to the defaults.
    """
    parser = subparsers.add_parser("serve", help="DICOM listener: classify received radiographs, store SRs back",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file of options (keys: long option names); flags win")
    _add_options(parser, given_only=True)
    parser.set_defaults(func=run)


class _OptionGroup:
    """An argument group of ``parser`` whose options, with ``given_only``, are set in the namespace only when given.

    Their default is then written into their help text (where argparse would show ``==SUPPRESS==``).
    """

    def __init__(self, parser: argparse.ArgumentParser, title: str, given_only: bool) -> None:
        self.group, self.given_only = parser.add_argument_group(title), given_only

    def add_argument(self, *flags: str, default: object = None, **kwargs) -> None:
        if self.given_only:
            kwargs["help"] = kwargs["help"].replace("%(default)s", str(default))
            default = argparse.SUPPRESS
        self.group.add_argument(*flags, default=default, **kwargs)


def _add_options(parser: argparse.ArgumentParser, given_only: bool) -> None:
    """Add every ``serve`` option but ``--config`` to ``parser``.

    Args:
        parser: the parser to extend.
        given_only: leave an option that is not on the command line out of the namespace.
    """
    net = _OptionGroup(parser, "listener", given_only)
    net.add_argument("--aet", default="PNEUMO", help="our AE title (default: %(default)s)")
    net.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s, loopback only)")
    net.add_argument("--port", type=int, default=11112, help="listen port (default: %(default)s)")
    net.add_argument("--allow", nargs="+", action="extend", default=[], metavar="AET",
                     help="calling AE titles accepted (default: any, which start-up warns about)")
    net.add_argument("--max-associations", type=int, default=10, help="concurrent associations (default: %(default)s)")
    net.add_argument("--max-pdu", type=int, default=65536,
                     help="largest PDU we receive in bytes, 0 = unlimited (default: %(default)s)")
    net.add_argument("--acse-timeout", type=float, default=30.0, help="association set-up/release timeout, s (default: %(default)s)")
    net.add_argument("--dimse-timeout", type=float, default=60.0, help="wait for a DIMSE message, s (default: %(default)s)")
    net.add_argument("--network-timeout", type=float, default=60.0, help="idle connection timeout, s (default: %(default)s)")
    net.add_argument("--establish-timeout", type=float, default=10.0,
                     help="a connection must be associated within this many s, else it is cut (default: %(default)s)")
    net.add_argument("--max-per-peer", type=int, default=4,
                     help="concurrent connections from one peer address (default: %(default)s)")
    tls = _OptionGroup(parser, "DICOM TLS (PS3.15 B.1; without these options the listener speaks plain TCP)",
                       given_only)
    tls.add_argument("--tls-cert", type=Path, default=None, metavar="PEM",
                     help="certificate (chain) the listener presents; turns TLS on, plain associations then fail")
    tls.add_argument("--tls-key", type=Path, default=None, metavar="PEM",
                     help="private key of --tls-cert (default: the --tls-cert file itself)")
    tls.add_argument("--tls-ca", type=Path, default=None, metavar="PEM",
                     help="require a client certificate signed by this CA (mutual TLS); needs --tls-cert")
    out = _OptionGroup(parser, "results", given_only)
    out.add_argument("--destination", action="append", default=[], metavar="AET@HOST:PORT",
                     help="C-STORE results to this AE (repeatable), e.g. ORTHANC@127.0.0.1:4242")
    out.add_argument("--stow-url", action="append", default=[], metavar="URL",
                     help="STOW-RS results to this DICOMweb base URL (repeatable), e.g. http://pacs:8042/dicom-web")
    out.add_argument("--keep-results", type=Path, default=None, metavar="DIR",
                     help="keep every result instance as DIR/<UID>.dcm (a trial without a PACS; never cleaned up)")
    out.add_argument("--cam", action="store_true", default=False, help="also send a Grad-CAM overlay as a Secondary Capture")
    out.add_argument("--retry-initial", type=float, default=1.0, help="first retry delay after a failed delivery, s (default: %(default)s)")
    out.add_argument("--retry-max", type=float, default=60.0, help="longest retry delay, s (default: %(default)s)")
    out.add_argument("--max-refusals", type=int, default=5,
                     help="a result a destination refused this many times is dead-lettered, kept in "
                          "SPOOL/dead-letter/ and no longer retried (default: %(default)s)")
    out.add_argument("--results-log", type=Path, default=None, help="JSON-lines results log (default: SPOOL/results.jsonl)")
    state = _OptionGroup(parser, "state and model", given_only)
    state.add_argument("--spool", type=Path, default=None,
                       help="state folder: received instances, outbox, journal (required; created 0700)")
    add_bundle_argument(state)
    state.add_argument("--ckpt", type=Path, default=None, help="checkpoint (default: <bundle>/models/model.pt)")
    state.add_argument("--site", type=Path, default=None, metavar="SITE_JSON",
                       help="decide by this site profile (monai-pneumonia site fit); it must be bound to the model")
    state.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: the bundle's choice)")
    state.add_argument("--batch-size", type=int, default=16, help="instances per classification batch (default: %(default)s)")
    state.add_argument("--report-processes", type=int, default=2,
                       help="processes that build the SR/SC instances, 0 = in the classification thread (default: %(default)s)")
    state.add_argument("--lenient", action="store_true", default=False,
                       help="classify lateral views, other body parts and FOR PROCESSING images (flagged) instead of refusing them")
    state.add_argument("--stats-interval", type=float, default=300.0,
                       help="seconds between the counters lines in the log, 0 = none (default: %(default)s)")
    watch = _OptionGroup(parser, "monitoring (docs/monitoring.md)", given_only)
    watch.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                       help="serve Prometheus /metrics and /healthz on 127.0.0.1:PORT (default: no endpoint)")
    watch.add_argument("--drift-reference", type=Path, default=None, metavar="FILE",
                       help="live drift monitor's reference: a reference or records file (default: with --site, "
                            "the site's reference.json beside it; else <bundle>/models/model.reference.json)")
    watch.add_argument("--drift-window", type=int, default=300, metavar="N",
                       help="films in the drift monitor's rolling window (default: %(default)s)")
    watch.add_argument("--drift-min-window", type=int, default=100, metavar="N",
                       help="fewest films the drift monitor tests (default: %(default)s)")
    state.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                       help="log level on stderr (default: %(default)s)")


def _defaults() -> dict[str, object]:
    """The default of every option (but ``--config``): what a parser of them reads from an empty command line."""
    parser = argparse.ArgumentParser(add_help=False)
    _add_options(parser, given_only=False)
    return vars(parser.parse_args([]))


def resolve_options(args: argparse.Namespace) -> argparse.Namespace:
    """Complete parsed ``serve`` arguments: command line first, then the ``--config`` JSON file, then defaults.

    Raises:
        SystemExit: the file names an unknown option.
    """
    defaults = _defaults()
    values = {}
    if getattr(args, "config", None) is not None:
        for key, value in json.loads(Path(args.config).read_text(encoding="utf-8")).items():
            dest = key.lstrip("-").replace("-", "_")
            if dest not in defaults:
                raise SystemExit(f"monai-pneumonia serve: unknown option {key!r} in {args.config}")
            if dest in ("spool", "bundle", "ckpt", "site", "results_log", "tls_cert", "tls_key", "tls_ca", "keep_results",
                        "drift_reference") and value is not None:
                value = Path(value)
            if dest in ("allow", "destination", "stow_url") and isinstance(value, str):
                value = [value]
            values[dest] = value
    for dest, default in defaults.items():
        if not hasattr(args, dest):
            setattr(args, dest, values.get(dest, default))
    return args


def build_config(args: argparse.Namespace):
    """The :class:`~monai_pneumonia.service.ServiceConfig` of parsed arguments."""
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.service import AssociationLimits, ServiceConfig, StowDestination, parse_destination
    from monai_pneumonia.service.folder import FolderDestination

    args = resolve_options(args)
    if args.spool is None:
        raise SystemExit("monai-pneumonia serve: --spool DIR is required")
    tls = _tls_config(args)
    destinations = [parse_destination(d, calling_aet=args.aet) for d in args.destination]
    destinations += [StowDestination(url) for url in args.stow_url]
    if args.keep_results is not None:
        destinations.append(FolderDestination(args.keep_results))
    limits = AssociationLimits(args.max_associations, args.max_pdu, args.acse_timeout, args.dimse_timeout,
                               args.network_timeout, establish_timeout=args.establish_timeout,
                               max_per_peer=args.max_per_peer)
    return ServiceConfig(aet=args.aet, host=args.host, port=args.port, spool=args.spool, destinations=destinations,
                         allow=args.allow, cam=args.cam, lenient=args.lenient, batch_size=args.batch_size,
                         limits=limits, retry_initial=args.retry_initial, retry_max=args.retry_max,
                         results_log=args.results_log, report_processes=args.report_processes, tls=tls,
                         stats_interval=args.stats_interval, metrics_port=args.metrics_port,
                         drift_reference=args.drift_reference or _default_reference(args),
                         drift_window=args.drift_window, drift_min_window=args.drift_min_window,
                         max_refusals=args.max_refusals)


def _check_reference_binding(service, model_sha256: str) -> None:
    """Warn when the drift reference was made with another checkpoint than the one loaded (its alarms may be false)."""
    monitor = service.drift_monitor
    if monitor is not None and monitor.reference.model_sha256 and monitor.reference.model_sha256 != model_sha256:
        logging.getLogger(__name__).warning(
            "the drift reference %s was made with another model (SHA-256 %s...): re-make it for this checkpoint "
            "(docs/monitoring.md)", service.config.drift_reference, monitor.reference.model_sha256[:12])


def _default_reference(args: argparse.Namespace) -> Path | None:
    """The drift reference when none is named: with ``--site``, the site's accepted sample (``reference.json``
    beside the profile, written by ``site fit``); else the one beside the checkpoint (``model.reference.json``);
    ``None`` when there is none."""
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.bundle import bundle_file, default_bundle_root
    from monai_pneumonia.monitoring import reference_path
    from monai_pneumonia.site.fit import SITE_REFERENCE

    if args.site is not None and (site := Path(args.site).with_name(SITE_REFERENCE)).is_file():
        return site
    reference = reference_path(args.ckpt or bundle_file(args.bundle or default_bundle_root(), "model.pt"))
    return reference if reference.is_file() else None


def _tls_config(args: argparse.Namespace):
    """The :class:`~monai_pneumonia.service.scp.TLSConfig` of ``--tls-*`` (``None`` without ``--tls-cert``).

    Raises:
        SystemExit: ``--tls-key``/``--tls-ca`` without ``--tls-cert``, or a file that cannot be loaded.
    """
    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.service.scp import TLSConfig

    if args.tls_cert is None:
        if args.tls_key is not None or args.tls_ca is not None:
            raise SystemExit("monai-pneumonia serve: --tls-key and --tls-ca need --tls-cert")
        return None
    config = TLSConfig(args.tls_cert, args.tls_key or args.tls_cert, args.tls_ca)
    try:
        config.server_context()  # fail at start-up, naming the file, rather than at the first association
    except ValueError as error:
        raise SystemExit(f"monai-pneumonia serve: {error}") from error
    return config


def run(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM or SIGINT."""
    args = resolve_options(args)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("pynetdicom", "highdicom"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(args.log_level)))
    config = build_config(args)

    # lazy: torch, MONAI and pydicom load only when a command runs, so that --help stays fast
    from monai_pneumonia.bundle import available_device
    from monai_pneumonia.inference import BundleClassifier
    from monai_pneumonia.monitoring import DriftReferenceError
    from monai_pneumonia.service import PneumoniaService
    from monai_pneumonia.service.journal import StateFileError

    if args.device is not None:
        available_device(args.device)  # DeviceUnavailableError: one line from the command line, exit 2

    try:
        classifier = BundleClassifier.from_bundle(args.bundle, ckpt_path=args.ckpt, device=args.device,
                                                  batch_size=args.batch_size, num_workers=0, progress_bar=False,
                                                  site_profile=os.fspath(args.site) if args.site else None)
    except FileNotFoundError as error:
        print(f"monai-pneumonia serve: {error}", file=sys.stderr)
        return 2
    identity = classifier.identity
    logging.getLogger(__name__).info("model loaded: %r; model SHA-256 %s; site profile %s", classifier,
                                     identity["model_sha256"],
                                     f"SHA-256 {identity['site_profile_sha256']} (rule {identity['site_rule']})"
                                     if identity["site_profile_sha256"] else "none")
    try:
        service = PneumoniaService(config, classifier)
    except StateFileError as error:  # a configuration error: exit 2, which the systemd unit does not restart
        print(f"monai-pneumonia serve: {error}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.OperationalError) as error:  # the disk (full, I/O error): exit 1, restarted later
        print(f"monai-pneumonia serve: cannot open the state in {config.spool}: {error}", file=sys.stderr)
        return 1
    except (DriftReferenceError, ValueError) as error:  # the drift reference or window: one line
        print(f"monai-pneumonia serve: {error}", file=sys.stderr)
        return 2
    _check_reference_binding(service, identity["model_sha256"])
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    service.start()
    while not stop.wait(1.0) and not service.failed.is_set():
        pass
    ok, reason = service.health()
    service.stop()
    if not ok:  # exit non-zero: systemd's Restart=on-failure starts a fresh process (the spool is kept)
        logging.getLogger(__name__).critical("exiting with status 1 so that the service is restarted: %s", reason)
        return 1
    return 0
