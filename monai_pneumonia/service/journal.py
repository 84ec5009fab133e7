"""The durable state of the service: what became of each SOP Instance UID, and the results still to deliver.

An SQLite database (WAL, ``synchronous=FULL``) with three tables:

``instances``
    one row per source SOP Instance UID once it has been decided: ``classified`` (results written to the
    outbox, not all delivered yet), ``delivered`` (every result acknowledged by every destination) or
    ``refused`` (not a chest radiograph; never classified), ``undeliverable`` (classified, and a result
    dead-lettered for some destination), ``quarantined`` (the process died on it, see
    ``attempts``; never classified). ``detail`` holds the JSON of the results-log line.
``outbox``
    one row per (result instance, destination) still to deliver, with the attempt count, the time of the
    next attempt (exponential backoff) and how many times the destination answered and refused it.
``dead_letters``
    one row per (result instance, destination) given up on, with the reason: refused too often, a damaged file,
    a destination no longer configured. Never retried; the file is kept in ``dead-letter/`` by the service. A
    source whose last result left the outbox this way is ``undeliverable`` rather than ``delivered``.
``attempts``
    the poison-pill counter: per undecided SOP Instance UID, how many times the process ended while it was
    being processed. :meth:`Journal.begin_attempt` adds one (durably) before the worker touches the instance
    and :meth:`Journal.end_attempt` takes it back when the attempt returns, whatever its outcome, so only an
    attempt the process did not survive (SIGKILL, SIGABRT, SIGSEGV, the OOM killer) stays counted. The worker
    moves an instance whose count reaches its limit to a quarantine folder and records it ``quarantined``:
    decided, never retried, so no input can put the service in a crash loop.

The journal is what makes the service idempotent by SOP Instance UID: an instance whose UID has a row is never
classified or reported again, whether it comes back from the spool after a restart or from a sender.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CLASSIFIED", "DELIVERED", "QUARANTINED", "REFUSED", "TRANSIENT_ERRNOS", "UNDELIVERABLE", "Journal",
           "PendingResult", "StateFileError"]

CLASSIFIED, DELIVERED, REFUSED, QUARANTINED = "classified", "delivered", "refused", "quarantined"
UNDELIVERABLE = "undeliverable"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_uid TEXT PRIMARY KEY, state TEXT NOT NULL, updated REAL NOT NULL, detail TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS outbox (
    result_uid TEXT NOT NULL, target TEXT NOT NULL, source_uid TEXT NOT NULL, path TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, PRIMARY KEY (result_uid, target));
CREATE INDEX IF NOT EXISTS outbox_source ON outbox (source_uid);
CREATE TABLE IF NOT EXISTS attempts (sop_uid TEXT PRIMARY KEY, interrupted INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS dead_letters (
    result_uid TEXT NOT NULL, target TEXT NOT NULL, source_uid TEXT NOT NULL, path TEXT NOT NULL,
    attempts INTEGER NOT NULL, reason TEXT NOT NULL, time REAL NOT NULL, PRIMARY KEY (result_uid, target));
"""


#: OSError numbers of a state file that say nothing about the configuration (a full disk, an I/O error).
TRANSIENT_ERRNOS = (errno.ENOSPC, errno.EIO, errno.EDQUOT)


class StateFileError(ValueError):
    """A state file of the service (journal, results log) that cannot be used; the message names it.

    A configuration error: restarting cannot fix it (``serve`` exits with status 2).
    """


@dataclass(frozen=True)
class PendingResult:
    """A result instance waiting for one destination."""

    result_uid: str
    target: str
    source_uid: str
    path: str
    attempts: int
    refusals: int = 0


class Journal:
    """Thread-safe access to the state database.

    Args:
        path: the SQLite file (created ``0600``).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.touch(mode=0o600, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(outbox)")}
            if "refusals" not in columns:  # a journal written before refusals were counted
                self._db.execute("ALTER TABLE outbox ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0")
        except OSError as error:
            if error.errno in TRANSIENT_ERRNOS:  # the disk, not the configuration: a restart may succeed
                raise
            raise StateFileError(f"journal {self.path}: cannot be opened ({error.strerror or error})") from error
        except sqlite3.OperationalError:  # "database or disk is full", "disk I/O error", locked: not configuration
            raise
        except sqlite3.DatabaseError as error:
            raise StateFileError(f"journal {self.path}: not a usable SQLite database ({error}); move it away to "
                                 "start with an empty journal") from error

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # -- instances --------------------------------------------------------------------------------------------

    def state(self, sop_uid: str) -> str | None:
        """``classified``, ``delivered``, ``undeliverable``, ``refused``, ``quarantined`` or ``None`` (undecided)."""
        with self._lock:
            row = self._db.execute("SELECT state FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone()
        return row[0] if row else None

    def detail(self, sop_uid: str) -> dict:
        """The stored results-log record of an instance (``{}`` if none)."""
        with self._lock:
            row = self._db.execute("SELECT detail FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone()
        return json.loads(row[0]) if row else {}

    def record_refused(self, sop_uid: str, detail: dict) -> bool:
        """Record a refusal; returns False if the UID was already decided (nothing changes then)."""
        with self._lock, self._db:
            cursor = self._db.execute("INSERT OR IGNORE INTO instances VALUES (?, ?, ?, ?)",
                                      (sop_uid, REFUSED, time.time(), json.dumps(detail)))
        return cursor.rowcount == 1

    def record_quarantined(self, sop_uid: str, detail: dict) -> bool:
        """Record a quarantined instance (decided, never retried); False if the UID was already decided."""
        with self._lock, self._db:
            cursor = self._db.execute("INSERT OR IGNORE INTO instances VALUES (?, ?, ?, ?)",
                                      (sop_uid, QUARANTINED, time.time(), json.dumps(detail)))
            self._db.execute("DELETE FROM attempts WHERE sop_uid = ?", (sop_uid,))
        return cursor.rowcount == 1

    # -- poison-pill counter ----------------------------------------------------------------------------------

    def interrupted(self, sop_uids: Iterable[str]) -> dict[str, int]:
        """How many attempts at each instance the process did not survive (0 when never)."""
        sop_uids = list(sop_uids)
        with self._lock:
            rows = self._db.execute(
                f"SELECT sop_uid, interrupted FROM attempts WHERE sop_uid IN ({','.join('?' * len(sop_uids))})",
                sop_uids).fetchall()
        found = dict(rows)
        return {uid: int(found.get(uid, 0)) for uid in sop_uids}

    def begin_attempt(self, sop_uids: Iterable[str]) -> None:
        """Count an attempt at each instance as interrupted until :meth:`end_attempt` (durable at return)."""
        with self._lock, self._db:
            self._db.executemany("INSERT INTO attempts VALUES (?, 1) ON CONFLICT(sop_uid) DO UPDATE SET "
                                 "interrupted = interrupted + 1", [(uid,) for uid in sop_uids])

    def end_attempt(self, sop_uids: Iterable[str]) -> None:
        """The attempts at these instances returned (the process survived them): take the count back."""
        with self._lock, self._db:
            self._db.executemany("UPDATE attempts SET interrupted = interrupted - 1 WHERE sop_uid = ?",
                                 [(uid,) for uid in sop_uids])
            self._db.execute("DELETE FROM attempts WHERE interrupted <= 0")

    def record_classified(self, sop_uid: str, detail: dict, results: Iterable[tuple[str, str]],
                          targets: Iterable[str]) -> bool:
        """Record a classification and queue its result files for every target, in one transaction.

        Args:
            sop_uid: the source instance.
            detail: its results-log record.
            results: ``(result SOP Instance UID, file)`` pairs already written to the outbox.
            targets: destination names.

        Returns:
            False if the UID was already decided (nothing is queued then).
        """
        targets = list(targets)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            cursor = self._db.execute("INSERT OR IGNORE INTO instances VALUES (?, ?, ?, ?)",
                                      (sop_uid, CLASSIFIED, time.time(), json.dumps(detail)))
            if cursor.rowcount != 1:
                return False
            self._db.executemany(
                "INSERT OR IGNORE INTO outbox (result_uid, target, source_uid, path) VALUES (?, ?, ?, ?)",
                [(uid, target, sop_uid, os.fspath(path)) for uid, path in results for target in targets])
            if not targets:
                self._db.execute("UPDATE instances SET state = ? WHERE sop_uid = ?", (DELIVERED, sop_uid))
        return True

    # -- outbox -----------------------------------------------------------------------------------------------

    def due(self, now: float | None = None, limit: int = 256, target: str | None = None) -> list[PendingResult]:
        """Results whose next attempt is due (of ``target`` only, when given), oldest source first.

        ``limit`` -1: all of them.
        """
        now = time.time() if now is None else now
        where, args = ("next_try <= ?", [now]) if target is None else ("next_try <= ? AND target = ?", [now, target])
        with self._lock:
            rows = self._db.execute(
                f"SELECT result_uid, target, source_uid, path, attempts, refusals FROM outbox WHERE {where} "
                "ORDER BY rowid LIMIT ?", (*args, limit)).fetchall()
        return [PendingResult(*row) for row in rows]

    def targets(self) -> set[str]:
        """The destinations something is queued for."""
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT DISTINCT target FROM outbox")}

    def pending_count(self) -> int:
        """How many (result, destination) deliveries are still queued."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def dead_letter_count(self) -> int:
        """How many (result, destination) deliveries were given up on (dead letters)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]

    def next_attempt(self, target: str | None = None) -> float | None:
        """The earliest ``next_try`` in the outbox (of ``target``), or ``None`` when there is nothing queued."""
        with self._lock:
            if target is None:
                return self._db.execute("SELECT MIN(next_try) FROM outbox").fetchone()[0]
            return self._db.execute("SELECT MIN(next_try) FROM outbox WHERE target = ?", (target,)).fetchone()[0]

    def postpone(self, items: Iterable[PendingResult], delay_for, refused: Iterable[str] = ()) -> None:
        """Count a failed attempt; ``delay_for(attempts)`` gives the backoff in seconds.

        Args:
            items: the results whose attempt failed.
            delay_for: ``attempts -> seconds``.
            refused: result UIDs among them that the destination answered and refused (counted as refusals).
        """
        now, refused = time.time(), set(refused)
        with self._lock, self._db:
            self._db.executemany(
                "UPDATE outbox SET attempts = ?, next_try = ?, refusals = refusals + ? WHERE result_uid = ? AND "
                "target = ?", [(i.attempts + 1, now + delay_for(i.attempts + 1), int(i.result_uid in refused),
                                i.result_uid, i.target) for i in items])

    def delivered(self, items: Iterable[PendingResult]) -> list[tuple[str, str, dict, list[str]]]:
        """Remove delivered results from the outbox.

        Returns:
            ``(source UID, state, detail, files no longer needed)`` for each source whose last result left the
            outbox; ``state`` is ``delivered``, or ``undeliverable`` when one of its results was dead-lettered.
        """
        items = list(items)
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE result_uid = ? AND target = ?",
                                 [(i.result_uid, i.target) for i in items])
            return self._finish(items)

    def dead_letter(self, items: Iterable[PendingResult], reason: str) -> list[tuple[str, str, dict, list[str]]]:
        """Move results from the outbox to the dead letters (never retried); returns as :meth:`delivered`."""
        items, now = list(items), time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE result_uid = ? AND target = ?",
                                 [(i.result_uid, i.target) for i in items])
            self._db.executemany("INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 [(i.result_uid, i.target, i.source_uid, i.path, i.attempts + 1, reason, now)
                                  for i in items])
            return self._finish(items)

    def _finish(self, items: list[PendingResult]) -> list[tuple[str, str, dict, list[str]]]:
        """Inside a transaction: decide the sources of ``items`` that have nothing left in the outbox."""
        finished = []
        now = time.time()
        for source in dict.fromkeys(i.source_uid for i in items):
            if self._db.execute("SELECT 1 FROM outbox WHERE source_uid = ? LIMIT 1", (source,)).fetchone():
                continue
            dead = self._db.execute("SELECT 1 FROM dead_letters WHERE source_uid = ? LIMIT 1", (source,)).fetchone()
            state = UNDELIVERABLE if dead else DELIVERED
            row = self._db.execute("SELECT detail FROM instances WHERE sop_uid = ?", (source,)).fetchone()
            detail = json.loads(row[0]) if row else {}
            detail[state] = now
            self._db.execute("UPDATE instances SET state = ?, updated = ?, detail = ? WHERE sop_uid = ?",
                             (state, now, json.dumps(detail), source))
            files = sorted({i.path for i in items if i.source_uid == source})
            finished.append((source, state, detail, files))
        return finished

    def referenced_files(self) -> set[str]:
        """Files the outbox still needs."""
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT DISTINCT path FROM outbox")}
