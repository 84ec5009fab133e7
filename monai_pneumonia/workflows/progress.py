"""A progress bar handler that a bundle config can switch off with a knob."""

from __future__ import annotations

from typing import Any

from ignite.engine import Engine
from ignite.handlers import ProgressBar as IgniteProgressBar
from monai.utils import str2bool

__all__ = ["ProgressBar"]


class ProgressBar:
    """Attach ignite's tqdm ``ProgressBar`` (to stderr) when ``enabled``.

    Args:
        enabled: attach nothing when False (CI logs, services); command-line strings such as ``"false"`` work.
        kwargs: passed to :class:`ignite.handlers.ProgressBar` (e.g. ``persist``, ``desc``).
    """

    def __init__(self, enabled: bool | str = True, **kwargs: Any) -> None:
        self.enabled = str2bool(enabled)
        self.kwargs = kwargs

    def attach(self, engine: Engine) -> None:
        """Register the bar on ``engine``."""
        if self.enabled:
            IgniteProgressBar(**self.kwargs).attach(engine)
