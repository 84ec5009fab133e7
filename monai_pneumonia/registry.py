"""Where trained checkpoints go, and how one of them deliberately becomes the shipped model.

``train.json`` writes every run into its own folder (``<bundle>/runs/<run name>/``, checkpoints under
``models/``), so a training run never replaces ``<bundle>/models/model.pt``, which ``predict``, ``serve`` and the
MONAI Label app all load. Replacing it is :func:`promote` (``monai-pneumonia promote CKPT``): it checks that the
candidate is usable (:func:`validate_checkpoint`: readable, this bundle's network, finite weights, a threshold in
[0, 1]), keeps the replaced file, swaps the new one in atomically and appends what it did (SHA-256 of the old and
the new file, paths, date, package version, the gate's evaluation) to ``models/promotions.jsonl`` as strict JSON.
:func:`rollback` undoes the last swap from the kept copy, and is logged the same way; :func:`record_refusal` logs a
candidate the gate refused. Whether a candidate is good enough is the caller's (the command line's gate,
:mod:`monai_pneumonia.evaluation.promotion`); this module only installs, keeps and records.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from monai_pneumonia import __version__
from monai_pneumonia.bundle import bundle_file
from monai_pneumonia.errors import CheckpointError
from monai_pneumonia.networks.checkpoint import THRESHOLD_KEY, load_checkpoint
from monai_pneumonia.results import atomic_write, file_sha256

__all__ = ["PROMOTION_LOG", "REPLACED_DIR", "promote", "read_promotions", "record_refusal", "rollback", "run_name",
           "validate_checkpoint"]

#: File (in the bundle's ``models/``) that records every promotion as one JSON line.
PROMOTION_LOG = "promotions.jsonl"
#: Folder (in the bundle's ``models/``) that keeps each replaced model as ``model-<sha256 prefix>.pt``.
REPLACED_DIR = "replaced"


def run_name() -> str:
    """The name of a new training run's folder.

    Under ``torchrun`` every rank evaluates the config, so the name must be the same on every rank: the
    rendezvous id (``TORCHELASTIC_RUN_ID``, a fresh id with ``--standalone``) is used when set. Otherwise the
    local start time and the process id (``20261129-191500-4242``).

    Returns:
        A folder name without separators.
    """
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "")
    if run_id and run_id != "none":
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"



def validate_checkpoint(checkpoint: str | os.PathLike, bundle_root: str | os.PathLike) -> float:
    """Check that a file can be the bundle's model: readable, finite, a threshold in [0, 1], this bundle's network.

    Args:
        checkpoint: the candidate ``model.pt``.
        bundle_root: the bundle whose ``inference.json`` defines the network.

    Returns:
        The stored operating threshold.

    Raises:
        FileNotFoundError: no file at ``checkpoint``.
        CheckpointError: (a ``ValueError``, one line naming the file) unreadable or truncated, not a checkpoint of
            this bundle, a NaN or out-of-range threshold, NaN or infinite weights, or a network that does not fit.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
    state = load_checkpoint(path)
    parser = ConfigParser()
    parser.read_config(str(bundle_file(Path(bundle_root), "inference.json")))
    network = parser.get_parsed_content("network_def")
    try:
        network.load_state_dict(state)
    except RuntimeError as error:  # torch lists every key: name the first problem only
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        first = (lines[1] if len(lines) > 1 else lines[0])[:300]
        raise CheckpointError(
            f"{checkpoint}: does not fit the network of {bundle_root}/configs/inference.json ({first})") from None
    return float(state[THRESHOLD_KEY])


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _append(log: Path, line: str) -> None:
    with open(log, "a", encoding="utf-8") as stream:
        stream.write(line + "\n")


def read_promotions(bundle_root: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of ``models/promotions.jsonl``, oldest first (an empty list when there is none).

    Raises:
        ValueError: a line that is not strict JSON (the file and line are named).
    """
    log = bundle_file(Path(bundle_root).resolve(), "model.pt").parent / PROMOTION_LOG
    if not log.is_file():
        return []
    records = []
    with open(log, encoding="utf-8") as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line, parse_constant=_refuse_constant))
            except ValueError as error:
                raise ValueError(f"{log}: line {number} is not strict JSON ({error})") from None
    return records


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _install(source: Path, target: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Keep the file at ``target`` in ``replaced/``, swap ``source`` in atomically, log ``fields`` and the SHAs."""
    new_sha = file_sha256(source)
    old_sha = file_sha256(target) if target.is_file() else None
    if old_sha == new_sha:
        raise ValueError(f"{source}: already the shipped model ({target}, sha256 {new_sha})")
    kept = target.parent / REPLACED_DIR / f"model-{old_sha[:12]}.pt" if old_sha is not None else None
    record = {"date": _now(), "version": __version__, **fields, "source": os.fspath(source), "sha256": new_sha,
              "replaced_sha256": old_sha, "replaced_kept_as": os.fspath(kept) if kept is not None else None}
    line = json.dumps(record, allow_nan=False)  # strict JSON, checked before anything changes
    if kept is not None and not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target, kept)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, source.read_bytes(), mode=0o644)
    _append(target.parent / PROMOTION_LOG, line)
    return record


def promote(
    checkpoint: str | os.PathLike,
    bundle_root: str | os.PathLike,
    note: str = "",
    evaluation: dict[str, Any] | None = None,
    forced: bool = False,
) -> dict[str, Any]:
    """Make ``checkpoint`` the bundle's shipped model (``<bundle>/models/model.pt``), recording what it replaced.

    The candidate must pass :func:`validate_checkpoint`. The replaced file is kept as
    ``models/replaced/model-<sha12>.pt``; the new one is copied to a temporary file next to ``model.pt`` and
    renamed over it, so readers never see a half-written model. One strict-JSON line is appended to
    ``models/promotions.jsonl``. Nothing changes when any check fails.

    Args:
        checkpoint: the candidate, e.g. ``bundle/runs/<run>/models/model.pt``.
        bundle_root: the bundle whose model is replaced.
        note: free text stored in the record (why).
        evaluation: the gate's verdict (:func:`~monai_pneumonia.evaluation.promotion.promotion_verdict`), stored.
        forced: the candidate is installed although the gate refused it or was not run (``--force``).

    Returns:
        The record: ``action`` (``"promote"``), ``date``, ``version``, ``source``, ``sha256`` and ``threshold``
        of the new model, ``replaced_sha256`` and ``replaced_kept_as`` (``None`` when there was no model),
        ``note``, ``forced``, ``evaluation``.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: it is not a usable checkpoint of this bundle (:class:`CheckpointError`), it already is the
            shipped model, or the record is not strict JSON (a NaN in ``evaluation``).
    """
    source = Path(checkpoint).resolve()
    root = Path(bundle_root).resolve()
    threshold = validate_checkpoint(source, root)
    fields = {"action": "promote", "threshold": threshold, "note": note, "forced": bool(forced),
              "evaluation": evaluation}
    return _install(source, bundle_file(root, "model.pt"), fields)


def record_refusal(
    checkpoint: str | os.PathLike, bundle_root: str | os.PathLike, evaluation: dict[str, Any], note: str = ""
) -> dict[str, Any]:
    """Log a candidate the gate refused (``action: "refused"``); the shipped model is not touched.

    Returns:
        The record: ``action``, ``date``, ``version``, ``source``, ``sha256``, ``note``, ``evaluation``.
    """
    source = Path(checkpoint).resolve()
    target = bundle_file(Path(bundle_root).resolve(), "model.pt")
    record = {"action": "refused", "date": _now(), "version": __version__, "source": os.fspath(source),
              "sha256": file_sha256(source), "note": note, "evaluation": evaluation}
    line = json.dumps(record, allow_nan=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    _append(target.parent / PROMOTION_LOG, line)
    return record


def rollback(bundle_root: str | os.PathLike, note: str = "") -> dict[str, Any]:
    """Undo the last swap (a promotion or a rollback): put back the model it replaced, from ``models/replaced/``.

    The kept copy must still have the SHA-256 the record names and pass :func:`validate_checkpoint`, and the
    shipped file must be the one the last swap installed (not changed by hand since). The model taken out is kept
    in ``replaced/`` like any replaced model, so a second rollback restores it again. Logged as
    ``action: "rollback"``.

    Args:
        bundle_root: the bundle.
        note: free text stored in the record (why).

    Returns:
        The record (as :func:`promote`'s, with ``action`` ``"rollback"`` and ``rolled_back`` = the date of the
        undone record).

    Raises:
        ValueError: nothing to roll back, the kept copy is missing or altered, or the shipped file was changed
            outside ``promote``.
    """
    root = Path(bundle_root).resolve()
    target = bundle_file(root, "model.pt")
    swaps = [record for record in read_promotions(root) if record.get("action", "promote") in ("promote", "rollback")]
    if not swaps:
        raise ValueError(f"{target.parent / PROMOTION_LOG}: no promotion recorded; nothing to roll back")
    last = swaps[-1]
    if not last.get("replaced_kept_as"):
        raise ValueError(f"the last promotion ({last.get('date')}) replaced no model; nothing to roll back to")
    kept = Path(last["replaced_kept_as"])
    if not kept.is_file() or file_sha256(kept) != last["replaced_sha256"]:
        raise ValueError(f"{kept}: the kept model is missing or no longer has sha256 {last['replaced_sha256']}")
    current = file_sha256(target) if target.is_file() else None
    if current != last["sha256"]:
        raise ValueError(f"{target}: sha256 {current} is not the model the last promotion installed "
                         f"({last['sha256']}); changed outside promote, not rolled back")
    threshold = validate_checkpoint(kept, root)
    fields = {"action": "rollback", "threshold": threshold, "note": note, "rolled_back": last.get("date")}
    return _install(kept, target, fields)
