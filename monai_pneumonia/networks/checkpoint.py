"""The bundle's checkpoint file: a plain state dict with the ``operating_threshold`` entry, loaded with ``weights_only``.

Two edits happen after training, both on the file, never on a live network: storing a threshold chosen on
validation data (:func:`store_threshold`, e.g. the stressed one of ``monai-pneumonia study stress``) and writing the
release copy with half-precision weights (:func:`half_precision_checkpoint`), which halves the file. Loading a
half-precision file into the float32 network (``load_state_dict`` copies with a cast) is all the consumers do.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from pathlib import Path

import torch

from monai_pneumonia.errors import CheckpointError
from monai_pneumonia.results import atomic_write, file_sha256
from monai_pneumonia.site_profile import load_site_profile

__all__ = ["THRESHOLD_KEY", "CheckpointError", "half_precision_checkpoint", "load_checkpoint", "load_weights",
           "model_identity", "operating_threshold",
           "store_threshold"]

#: The state-dict entry holding the decision threshold (the network's buffer of that name); always float32.
THRESHOLD_KEY = "operating_threshold"


def _check_usable(state: dict, path: str | os.PathLike) -> None:
    """Refuse a threshold that is not a number in [0, 1] and weights holding NaN or infinite values."""
    try:
        threshold = float(state[THRESHOLD_KEY])
    except (TypeError, ValueError, RuntimeError):
        raise CheckpointError(f"{path}: the stored {THRESHOLD_KEY} is not a single number") from None
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise CheckpointError(f"{path}: the stored {THRESHOLD_KEY} {threshold} is not a number in [0, 1]")
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
            raise CheckpointError(f"{path}: the weights hold NaN or infinite values (first in {key})")


def load_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A bundle checkpoint as a state dict (``torch.load(..., weights_only=True)`` on CPU), checked before use.

    Args:
        path: the ``model.pt`` file.

    Returns:
        The state dict.

    Raises:
        CheckpointError: (a ``ValueError``) the file is unreadable or truncated, holds no ``operating_threshold``
            entry (not a checkpoint of this bundle's network), a threshold that is not a number in [0, 1], or
            weights with NaN or infinite values.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as error:  # truncated, not torch
        first = str(error).strip().split(". ")[0].splitlines()[0][:120] if str(error).strip() else ""
        reason = first or type(error).__name__
        raise CheckpointError(f"{path}: unreadable or truncated checkpoint ({reason})") from None
    if not isinstance(state, dict) or THRESHOLD_KEY not in state:
        raise CheckpointError(f"{path}: no {THRESHOLD_KEY!r} entry; not a checkpoint of this bundle's network")
    _check_usable(state, path)
    return state


def load_weights(network: torch.nn.Module, path: str | os.PathLike,
                 site_profile: str | os.PathLike | None = None) -> torch.nn.Module:
    """Load a bundle checkpoint into ``network`` (the one way every entry point loads ``model.pt``).

    The bundle's ``inference.json`` builds its ``network`` with this, so ``python -m monai.bundle run``, the
    in-process classifier and everything built on them load the weights and the threshold alike.

    Args:
        network: the configured network (``network_def``).
        path: the ``model.pt`` file.
        site_profile: a ``site.json`` (:mod:`monai_pneumonia.site_profile`) bound to this file: its threshold
            replaces the stored one in the live network (the file is never changed), so every writer, the SR and
            the classifier decide by the site's rule.

    Returns:
        ``network``, with the weights and its ``operating_threshold`` loaded, and its identity attached
        (:func:`model_identity`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a checkpoint of this bundle's network.
        SiteProfileError: a missing or malformed profile, or one bound to another model.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no model checkpoint (train one with bundle/configs/train.json)")
    sha256 = file_sha256(path)
    profile = load_site_profile(site_profile, sha256, path) if site_profile else None
    network.load_state_dict(load_checkpoint(path))
    network.model_sha256 = sha256
    network.shipped_threshold = float(network.operating_threshold)
    network.site_profile = profile
    if profile is not None:
        network.operating_threshold.fill_(profile.threshold)
    return network


def model_identity(network: torch.nn.Module) -> dict[str, str]:
    """``{"model_sha256", "site_profile_sha256", "site_rule"}`` of a network loaded by :func:`load_weights`.

    The profile's entries are ``""`` when no site profile is applied; every entry is ``""`` for a network that
    did not come from :func:`load_weights` (e.g. a test's bare network).
    """
    network = getattr(network, "module", network)  # DataParallel / DistributedDataParallel
    profile = getattr(network, "site_profile", None)
    return {"model_sha256": getattr(network, "model_sha256", ""),
            "site_profile_sha256": profile.sha256 if profile is not None else "",
            "site_rule": profile.rule if profile is not None else ""}


def _save(state: dict[str, torch.Tensor], source: str | os.PathLike, output: str | os.PathLike | None) -> Path:
    target = Path(output) if output is not None else Path(source)
    buffer = io.BytesIO()  # written atomically: a crash leaves the old checkpoint, never half of one
    torch.save(state, buffer)
    return atomic_write(target, buffer.getvalue(), mode=0o644)


def operating_threshold(network: torch.nn.Module) -> float:
    """The decision threshold a live network holds (its ``operating_threshold`` buffer; a DDP wrapper is unwrapped).

    The buffer travels in the state dict (:data:`THRESHOLD_KEY`): the threshold is stored with the model, never
    passed on the side.
    """
    return float(getattr(getattr(network, "module", network), THRESHOLD_KEY))


def store_threshold(checkpoint: str | os.PathLike, threshold: float, output: str | os.PathLike | None = None) -> Path:
    """Write an operating threshold into a checkpoint.

    Args:
        checkpoint: a ``model.pt`` saved by the bundle.
        threshold: the new threshold, in (0, 1).
        output: where to save (default: overwrite ``checkpoint``).

    Returns:
        The path written.

    Raises:
        ValueError: a threshold outside (0, 1), or not a checkpoint of this bundle's network.
    """
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    state = load_checkpoint(checkpoint)
    state[THRESHOLD_KEY] = torch.tensor(float(threshold), dtype=torch.float32)
    return _save(state, checkpoint, output)


def half_precision_checkpoint(checkpoint: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Store a checkpoint's floating-point weights and statistics as float16 (the threshold stays float32).

    Args:
        checkpoint: a ``model.pt`` saved by the bundle.
        output: where to save (default: overwrite ``checkpoint``).

    Returns:
        The path written.

    Raises:
        ValueError: not a checkpoint of this bundle's network, or a value that float16 cannot hold.
    """
    state = load_checkpoint(checkpoint)
    half = {}
    for key, value in state.items():
        if key == THRESHOLD_KEY or not value.is_floating_point():
            half[key] = value
            continue
        converted = value.to(torch.float16)
        if not torch.isfinite(converted).all() and torch.isfinite(value).all():
            raise ValueError(f"{checkpoint}: {key} overflows float16")
        half[key] = converted
    return _save(half, checkpoint, output)
