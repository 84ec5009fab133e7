"""Keep attribute values out of logs: third-party texts withheld, every logged message escaped.

pydicom reports a value that breaks its VR (``Invalid value for VR DA: '01/02/1970'``, ``... VR PN: 'Doe^Jane'``)
both as a log record of the ``pydicom`` logger and as a ``UserWarning``; highdicom warns with the Patient's or
Referring Physician's Name (``The string "DOE JANE" is unlikely to represent the intended person name``) and logs
full UIDs. Radiographs from a PACS carry such values routinely, and a service or a ``predict`` run would copy them
to its log. Two layers:

* :func:`install` (called when the DICOM reader is imported) rewrites pydicom's value records to name the VR only
  and ignores pydicom's value warnings.
* :func:`install_log_hygiene` (called by the command line, the service and its child processes) routes warnings to
  logging with the text of any warning raised outside this package replaced by its category and origin
  (:func:`describe_warning`), withholds the texts of highdicom's loggers, and makes every log record's message
  escape control characters (:func:`escape_controls`, :class:`SafeLogRecord`), so that a crafted value (CR/LF, ESC) can neither forge a log line nor drive a
  terminal.

Standard library only, so the command line installs it before any heavy import.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

__all__ = ["RedactQuotedValues", "SafeLogRecord", "describe_warning", "escape_controls", "install",
           "install_log_hygiene"]

_QUOTED_VALUE = re.compile(r"(Invalid value for VR [A-Z]{2}).*", re.DOTALL)
#: C0 and C1 control characters, DEL, and the Unicode line and paragraph separators.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: This package's folder: warnings raised from files below it are ours and keep their text.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep  # monai_pneumonia/ (not the checkout: .venv/ lives there)
#: Loggers of DICOM libraries whose record texts quote attribute values or full UIDs.
_WITHHELD_LOGGERS = ("highdicom",)


def escape_controls(text: str, keep_newlines: bool = False) -> str:
    r"""``text`` with each control character written as an escape (``\n``, ``\r``, ``\t``, ``\x1b``, ``\u2028``).

    Args:
        text: the text.
        keep_newlines: leave ``\n`` as it is (for a message whose own format spans lines, e.g. a table).
    """
    def _escape(match: re.Match) -> str:
        char = match.group()
        if keep_newlines and char == "\n":
            return char
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (
            f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")

    return _CONTROLS.sub(_escape, text)


def describe_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int) -> str:
    """A one-line text for a warning: its own (escaped) text when raised by this package, else category and origin.

    Third-party warning texts are withheld whole: they may quote attribute values (names, dates, IDs), and no
    pattern list can know every library's wording.
    """
    path = os.path.abspath(filename)
    if path.startswith(_PACKAGE_DIR):
        return f"{category.__name__}: {escape_controls(str(message))}"
    origin = path.split(f"{os.sep}site-packages{os.sep}")[-1] if "site-packages" in path else os.path.basename(path)
    return f"{category.__name__} from {escape_controls(origin)}:{lineno} (text withheld: it may quote attribute values)"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    logging.getLogger("py.warnings").warning("%s", describe_warning(message, category, filename, lineno))


class SafeLogRecord(logging.LogRecord):
    """A log record whose message escapes control characters, and is withheld for highdicom's loggers.

    Line feeds are escaped too, unless the record's own format string holds one (code that logs a table on
    purpose, as the datalist summary does); values from files and peers reach single-line formats.
    """

    def getMessage(self) -> str:  # noqa: N802 - logging's name
        if self.name.split(".", 1)[0] in _WITHHELD_LOGGERS:
            return f"{self.name} {self.levelname} (text withheld: it may quote attribute values)"
        return escape_controls(super().getMessage(), keep_newlines="\n" in str(self.msg))


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


def install_log_hygiene() -> None:
    """Route warnings through :func:`describe_warning` to logging; make every record a :class:`SafeLogRecord`.

    For processes that own their logging (the command line, the service, the service's child processes); the
    library itself does not change global state on import beyond :func:`install`.
    """
    install()
    warnings.showwarning = _show_warning
    factory = logging.getLogRecordFactory()
    if not (isinstance(factory, type) and issubclass(factory, SafeLogRecord)):
        logging.setLogRecordFactory(SafeLogRecord)
