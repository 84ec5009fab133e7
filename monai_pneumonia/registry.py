"""Where trained checkpoints go, and how one of them deliberately becomes the shipped model.

``train.json`` writes every run into its own folder (``<bundle>/runs/<run name>/``, checkpoints under
``models/``), so a training run never replaces ``<bundle>/models/model.pt``, which ``predict``, ``serve`` and the
MONAI Label app all load. Replacing it is :func:`promote` (``monai-pneumonia promote CKPT``): it checks that the
candidate loads into the bundle's network, keeps the replaced file, swaps the new one in atomically and appends
what it did (SHA-256 of the old and the new file, paths, date, package version) to ``models/promotions.jsonl``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from monai_pneumonia import __version__
from monai_pneumonia.bundle import bundle_file
from monai_pneumonia.networks.checkpoint import THRESHOLD_KEY, load_checkpoint
from monai_pneumonia.results import atomic_write

__all__ = ["PROMOTION_LOG", "REPLACED_DIR", "promote", "run_name", "sha256_file"]

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


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_loads(checkpoint: Path, bundle_root: Path) -> float:
    """Load ``checkpoint`` into the network of the bundle's ``inference.json``; return its stored threshold."""
    state = load_checkpoint(checkpoint)
    parser = ConfigParser()
    parser.read_config(str(bundle_file(bundle_root, "inference.json")))
    network = parser.get_parsed_content("network_def")
    try:
        network.load_state_dict(state)
    except RuntimeError as error:  # torch lists every key: name the first problem only
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
        first = (lines[1] if len(lines) > 1 else lines[0])[:300]
        raise ValueError(f"{checkpoint}: does not fit the network of {bundle_root}/configs/inference.json ({first})") from None
    return float(state[THRESHOLD_KEY])


def promote(
    checkpoint: str | os.PathLike,
    bundle_root: str | os.PathLike,
    note: str = "",
) -> dict[str, Any]:
    """Make ``checkpoint`` the bundle's shipped model (``<bundle>/models/model.pt``), recording what it replaced.

    The candidate must be a checkpoint of this bundle (a state dict with ``operating_threshold`` that loads into
    ``inference.json``'s ``network_def``). The replaced file is kept as ``models/replaced/model-<sha12>.pt``;
    the new one is copied to a temporary file next to ``model.pt`` and renamed over it, so readers never see a
    half-written model. One JSON line is appended to ``models/promotions.jsonl``.

    Args:
        checkpoint: the candidate, e.g. ``bundle/runs/<run>/models/model.pt``.
        bundle_root: the bundle whose model is replaced.
        note: free text stored in the record (why).

    Returns:
        The record: ``date``, ``version``, ``source``, ``sha256`` and ``threshold`` of the new model,
        ``replaced_sha256`` and ``replaced_kept_as`` (``None`` when there was no model), ``note``.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: it is not a checkpoint of this bundle, or it already is the shipped model.
    """
    source = Path(checkpoint).resolve()
    if not source.is_file():
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint")
    root = Path(bundle_root).resolve()
    target = bundle_file(root, "model.pt")
    threshold = _check_loads(source, root)
    new_sha = sha256_file(source)
    old_sha = sha256_file(target) if target.is_file() else None
    if old_sha == new_sha:
        raise ValueError(f"{checkpoint}: already the shipped model ({target}, sha256 {new_sha})")
    kept_as = None
    if old_sha is not None:
        kept = target.parent / REPLACED_DIR / f"model-{old_sha[:12]}.pt"
        kept.parent.mkdir(parents=True, exist_ok=True)
        if not kept.exists():
            shutil.copy2(target, kept)
        kept_as = os.fspath(kept)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, source.read_bytes(), mode=0o644)
    record = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "source": os.fspath(source),
        "sha256": new_sha,
        "threshold": threshold,
        "replaced_sha256": old_sha,
        "replaced_kept_as": kept_as,
        "note": note,
    }
    with open(target.parent / PROMOTION_LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
    return record
