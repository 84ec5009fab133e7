"""Keep attribute values that pydicom quotes out of logs and warnings (they can be names, IDs, birth dates).

pydicom reports a value that breaks its VR (``Invalid value for VR DA: '01/02/1970'``, ``... VR PN: 'Doe^Jane'``)
both as a log record of the ``pydicom`` logger and as a ``UserWarning``. Radiographs from a PACS carry such values
routinely, and a service or a ``predict`` run would copy them to its log. :func:`install` (called when the DICOM
reader is imported) rewrites those log records to name the VR only and ignores the matching warnings.
"""

from __future__ import annotations

import logging
import re
import warnings

__all__ = ["RedactQuotedValues", "install"]

_QUOTED_VALUE = re.compile(r"(Invalid value for VR [A-Z]{2}).*", re.DOTALL)


class RedactQuotedValues(logging.Filter):
    """Rewrite pydicom's ``Invalid value for VR XX: '<value>'`` records to ``... VR XX (value withheld)``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Invalid value for VR" in message:
            record.msg, record.args = _QUOTED_VALUE.sub(r"\1 (value withheld)", message), None
        return True


def install() -> None:
    """Install the filter on the ``pydicom`` logger and ignore pydicom's value warnings (idempotent)."""
    logger = logging.getLogger("pydicom")
    if not any(isinstance(f, RedactQuotedValues) for f in logger.filters):
        logger.addFilter(RedactQuotedValues())
        warnings.filterwarnings("ignore", message="Invalid value for VR ", category=UserWarning)
