"""Where audit records are stored.

A sink only stores and returns plain JSON records; chaining and signing live in `chain.py`, so a
sink never has to be trusted for integrity, only for durability.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal, Protocol, runtime_checkable

import orjson

__all__ = [
    "MALFORMED_KEY",
    "AuditLogCorrupt",
    "AuditSink",
    "JsonlSink",
    "MemorySink",
    "SqliteSink",
    "open_sink",
    "read_events",
]

#: Key of the placeholder record yielded for a stored line that is not a JSON object, so that
#: verification reports it at its position instead of crashing or skipping it.
MALFORMED_KEY = "__malformed__"

_SQLITE_SUFFIXES = frozenset({".sqlite", ".sqlite3", ".db"})
_SNIPPET_CHARS = 80
_TAIL_CHUNK = 64 * 1024
_SQLITE_PAGE = 512


class AuditLogCorrupt(Exception):
    """The stored log cannot be continued safely (torn or unparsable tail, bad head record).

    Raised instead of silently starting a new chain, which would hide whatever happened.
    """


@runtime_checkable
class AuditSink(Protocol):
    """Append-only storage for audit records (plain JSON-able dicts)."""

    def append(self, record: dict[str, Any]) -> None:
        """Store `record` durably, or raise; the log only advances when this returns.

        The sink owns `record` from then on: the log never touches it again.
        """
        ...

    def read(self) -> Iterator[dict[str, Any]]:
        """Yield every stored record in append order."""
        ...

    def last(self) -> dict[str, Any] | None:
        """The most recently stored record, or None for an empty log."""
        ...

    def close(self) -> None:
        """Release files or connections."""
        ...


def _dumps(record: dict[str, Any]) -> str:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS).decode("utf-8")


def _malformed(raw: str | bytes) -> dict[str, Any]:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return {MALFORMED_KEY: text[:_SNIPPET_CHARS]}


def _parse_record(raw: str | bytes) -> dict[str, Any]:
    """Parse one stored record; anything that is not a JSON object becomes a malformed marker."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _malformed(raw)
    if not isinstance(value, dict):
        return _malformed(raw)
    return value


def _parse_head(raw: str | bytes, where: str) -> dict[str, Any]:
    """Parse the last record strictly: a log must not be continued from garbage."""
    record = _parse_record(raw)
    if MALFORMED_KEY in record:
        raise AuditLogCorrupt(
            f"{where}: last record is not a JSON object: {record[MALFORMED_KEY]!r}; "
            "repair or archive the log before appending"
        )
    return record


def _copy(value: Any) -> Any:
    """Deep copy of JSON-shaped data (what records are), several times faster than deepcopy."""
    kind = type(value)
    if kind is dict:
        return {k: _copy(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_copy(v) for v in value]
    return value


class MemorySink:
    """In-process storage for tests, notebooks and short-lived agents; unbounded, so not for
    long-running services. Records are owned on the way in and copied on the way out."""

    def __init__(self) -> None:
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        """Take ownership of `record` (the log hands it over and keeps no reference)."""
        with self._lock:
            self._records.append(record)

    def read(self) -> Iterator[dict[str, Any]]:
        """Yield copies of a snapshot, so readers can neither alter nor race the log."""
        with self._lock:
            snapshot = list(self._records)
        for record in snapshot:
            yield _copy(record)

    def last(self) -> dict[str, Any] | None:
        """A copy of the newest record."""
        with self._lock:
            return _copy(self._records[-1]) if self._records else None

    def close(self) -> None:
        """Nothing to release."""

    @property
    def records(self) -> list[dict[str, Any]]:
        """The stored list itself: lets tests tamper with the log the way an attacker would."""
        return self._records


def _fsync_dir(path: Path) -> None:
    """Make a newly created file's directory entry durable too (POSIX only)."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_exclusive(handle: IO[bytes], path: Path) -> None:
    """Hold an advisory lock so a second writer fails at start-up instead of forking the chain."""
    if sys.platform == "win32":
        return
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(
            f"{path}: audit log is already open for writing (another process or sink); "
            "one writer per log keeps the hash chain linear"
        ) from None


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for line in handle:
            yield _parse_record(line.rstrip(b"\r\n"))


class JsonlSink:
    """One JSON object per line, fsynced per record.

    Append-only text keeps the log greppable and lets ordinary tools ship it elsewhere; the fsync
    means an event the guard reported as recorded survives a crash.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        existed = self.path.exists()
        self._handle: IO[bytes] = self.path.open("ab", buffering=0)
        _lock_exclusive(self._handle, self.path)
        if not existed:
            _fsync_dir(self.path.parent)
        self._lock = threading.Lock()
        self._tail_checked = False

    def append(self, record: dict[str, Any]) -> None:
        """Write one line and fsync it before returning."""
        line = (_dumps(record) + "\n").encode("utf-8")
        with self._lock:
            if not self._tail_checked:
                # Never glue a record onto a torn line, nor continue after a garbage one.
                self.last()
                self._tail_checked = True
            try:
                view = memoryview(line)
                while view:  # unbuffered: nothing lingers in a buffer after a failed write
                    view = view[self._handle.write(view) :]
                os.fsync(self._handle.fileno())
            except BaseException:
                # A partial write may have left a torn line: re-check before the next append.
                self._tail_checked = False
                raise

    def read(self) -> Iterator[dict[str, Any]]:
        """Yield records in file order; unparsable lines come back as malformed markers."""
        return _iter_jsonl(self.path)

    def last(self) -> dict[str, Any] | None:
        """Parse only the final line, read backwards, so start-up cost stays flat as logs grow."""
        raw = self._read_tail()
        return None if raw is None else _parse_head(raw, str(self.path))

    def _read_tail(self) -> bytes | None:
        with self.path.open("rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            if end == 0:
                return None
            handle.seek(end - 1)
            if handle.read(1) != b"\n":
                raise AuditLogCorrupt(
                    f"{self.path}: last line is incomplete (torn write?); "
                    "repair or archive the log before appending"
                )
            chunks: list[bytes] = []
            pos = end - 1  # exclude the final newline
            while pos > 0:
                start = max(0, pos - _TAIL_CHUNK)
                handle.seek(start)
                chunk = handle.read(pos - start)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    chunks.append(chunk[newline + 1 :])
                    break
                chunks.append(chunk)
                pos = start
            return b"".join(reversed(chunks))

    def close(self) -> None:
        """Close the file (which also releases the writer lock)."""
        with self._lock:
            if not self._handle.closed:
                self._handle.close()


class SqliteSink:
    """A SQLite table keyed by `seq`: the primary key turns a second writer into a hard error.

    `synchronous="FULL"` (default) makes every event durable on power loss, at one fsync per
    event; `"NORMAL"` keeps events across a process crash but may lose the last ones on power
    loss, and is several times faster.
    """

    def __init__(
        self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL"
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            with self._conn:
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS audit_events "
                    "(seq INTEGER PRIMARY KEY, record TEXT NOT NULL)"
                )
        except BaseException:
            self._conn.close()
            raise

    def append(self, record: dict[str, Any]) -> None:
        """Insert and commit; a duplicate `seq` raises `sqlite3.IntegrityError`."""
        seq = record.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError("SqliteSink needs an integer 'seq' in every record")
        text = _dumps(record)
        with self._lock, self._conn:
            self._conn.execute("INSERT INTO audit_events (seq, record) VALUES (?, ?)", (seq, text))

    def read(self) -> Iterator[dict[str, Any]]:
        """Yield records by `seq`, a page at a time, without holding the lock between pages."""
        return _iter_sqlite(self._conn, self._lock)

    def last(self) -> dict[str, Any] | None:
        """The record with the highest `seq`."""
        with self._lock:
            row = self._conn.execute(
                "SELECT record FROM audit_events ORDER BY seq DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _parse_head(row[0], str(self.path))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


def _iter_sqlite(conn: sqlite3.Connection, lock: threading.Lock) -> Iterator[dict[str, Any]]:
    after: int | None = None
    while True:
        with lock:
            if after is None:
                rows = conn.execute(
                    "SELECT seq, record FROM audit_events ORDER BY seq LIMIT ?", (_SQLITE_PAGE,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT seq, record FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, _SQLITE_PAGE),
                ).fetchall()
        for seq, text in rows:
            yield _parse_record(text)
            after = seq
        if len(rows) < _SQLITE_PAGE:
            return


def _is_sqlite(path: Path) -> bool:
    return path.suffix.lower() in _SQLITE_SUFFIXES


def open_sink(path: str | Path) -> AuditSink:
    """A writable sink chosen by file suffix: SQLite for .sqlite/.sqlite3/.db, JSONL otherwise."""
    path = Path(path)
    return SqliteSink(path) if _is_sqlite(path) else JsonlSink(path)


def read_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Read a stored log for verification without creating, locking or modifying it.

    Raises FileNotFoundError for a missing log, so a typo never verifies as an empty log.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audit log not found: {path}")
    if not _is_sqlite(path):
        return _iter_jsonl(path)
    return _read_sqlite_readonly(path)


def _read_sqlite_readonly(path: Path) -> Iterator[dict[str, Any]]:
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        yield from _iter_sqlite(conn, threading.Lock())
    finally:
        conn.close()
