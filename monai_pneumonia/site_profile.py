"""The site profile: a hospital's own decision rule for the shipped model, bound to that model's SHA-256.

``monai-pneumonia site fit`` writes it (``site.json``); every entry point (``predict --site``, ``evaluate --site``,
the bundle's ``site_profile`` knob, ``serve --site``, the MONAI Label app) reads it with :func:`load_site_profile`
and applies it through :func:`~monai_pneumonia.networks.load_weights`, so a film gets the same decision whichever
way it arrives. Every rule of the set is a threshold on the model's own pneumonia probability (logistic
recalibration is monotone), so applying a profile is :func:`~monai_pneumonia.decision.decide` at its threshold.
A profile bound to another model, or a malformed one, is refused with :class:`SiteProfileError`, never applied.
JSON, hashlib and NumPy only: no torch.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from monai_pneumonia.decision import decide
from monai_pneumonia.errors import SiteProfileError
from monai_pneumonia.results import atomic_write

__all__ = ["PROFILE_FORMAT", "SITE_RULES", "SiteProfile", "SiteProfileError", "load_site_profile"]

#: The ``format`` entry of every ``site.json`` (bumped when the schema changes).
PROFILE_FORMAT = "monai-pneumonia-site-profile/1"
#: The adaptation rules a profile can hold (docs/research/site-adaptation.md).
SITE_RULES: tuple[str, ...] = ("shipped", "threshold", "recalibrated")



@dataclass(frozen=True)
class SiteProfile:
    """A site's decision rule for one model.

    Attributes:
        model_sha256: SHA-256 of the ``model.pt`` the rule was fitted for; the profile applies to no other.
        rule: one of :data:`SITE_RULES`.
        threshold: the decision threshold on the model's pneumonia probability, in (0, 1).
        parameters: the rule's fitted parameters and knobs (``prevalence``, ``cost_ratio``, ``a``, ``b`` ...).
        selection: how the rule was chosen (cross-validated cost of each candidate, ``k``).
        sample: the site sample (counts per class, prevalence, file hashes).
        created: ISO date-time of the fit.
        version: the package version that wrote it.
        path: the file it was read from (not stored).
        sha256: SHA-256 of that file's bytes (not stored), named in results beside the model's.
    """

    model_sha256: str
    rule: str
    threshold: float
    parameters: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    sample: dict = field(default_factory=dict)
    created: str = ""
    version: str = ""
    path: str = field(default="", compare=False)
    sha256: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = self.path or "site profile"
        if not (isinstance(self.model_sha256, str) and len(self.model_sha256) == 64
                and all(ch in "0123456789abcdef" for ch in self.model_sha256)):
            raise SiteProfileError(f"{where}: model_sha256 must be 64 lower-case hex digits")
        if self.rule not in SITE_RULES:
            raise SiteProfileError(f"{where}: unknown rule {self.rule!r} (one of {', '.join(SITE_RULES)})")
        if not (isinstance(self.threshold, (int, float)) and not isinstance(self.threshold, bool)
                and math.isfinite(self.threshold) and 0.0 < self.threshold < 1.0):
            raise SiteProfileError(f"{where}: threshold must be a number in (0, 1), got {self.threshold!r}")

    def decide(self, prob_pneumonia: float) -> int:
        """The site's decision (1 pneumonia, 0 normal) for one pneumonia probability."""
        return decide(prob_pneumonia, self.threshold)

    def check_model(self, model_sha256: str, model_path: str | os.PathLike = "") -> None:
        """Refuse a model the profile was not fitted for.

        Raises:
            SiteProfileError: the SHA-256 differs (both files are named, with the first 12 digits of each hash).
        """
        if model_sha256 != self.model_sha256:
            model = f" {os.fspath(model_path)}" if model_path else ""
            raise SiteProfileError(
                f"{self.path or 'site profile'}: bound to model {self.model_sha256[:12]}…, not to the model{model} "
                f"({model_sha256[:12]}…); re-run `monai-pneumonia site fit` with this model")

    def to_json(self) -> dict[str, Any]:
        """The stored form (``format`` first; ``path`` and ``sha256`` are not stored)."""
        stored = {"format": PROFILE_FORMAT, **asdict(self)}
        stored.pop("path")
        stored.pop("sha256")
        return stored

    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile as JSON at ``path``; returns the path."""
        return atomic_write(path, json.dumps(self.to_json(), indent=2) + "\n", mode=0o644)

    def identity(self) -> dict[str, str]:
        """``{"site_profile", "site_profile_sha256", "site_rule"}`` for results records."""
        return {"site_profile": Path(self.path).name if self.path else "", "site_profile_sha256": self.sha256,
                "site_rule": self.rule}


def load_site_profile(path: str | os.PathLike, model_sha256: str | None = None,
                      model_path: str | os.PathLike = "") -> SiteProfile:
    """Read and validate a ``site.json``; with ``model_sha256``, also check that it is bound to that model.

    Args:
        path: the profile file.
        model_sha256: the SHA-256 of the model it is about to be applied to.
        model_path: that model's file, named in the error.

    Returns:
        The profile, with ``path`` and ``sha256`` (of the file's bytes) set.

    Raises:
        SiteProfileError: no such file, not JSON, not a site profile, an invalid field, or another model's profile.
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as error:
        raise SiteProfileError(f"{source}: cannot read the site profile ({error.strerror or error})") from error
    try:
        stored = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SiteProfileError(f"{source}: not a JSON site profile ({error})") from error
    if not isinstance(stored, dict) or stored.get("format") != PROFILE_FORMAT:
        raise SiteProfileError(f"{source}: not a site profile (no \"format\": \"{PROFILE_FORMAT}\")")
    fields = {key: value for key, value in stored.items() if key != "format"}
    try:
        profile = SiteProfile(**fields, path=os.fspath(source), sha256=hashlib.sha256(raw).hexdigest())
    except TypeError as error:  # a missing or unknown field
        raise SiteProfileError(f"{source}: malformed site profile ({error})") from error
    if model_sha256 is not None:
        profile.check_model(model_sha256, model_path)
    return profile
