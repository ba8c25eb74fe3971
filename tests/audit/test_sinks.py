"""Storage: durability, restart continuity, and refusing to continue a damaged log."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentguard.audit import (
    AuditEvent,
    AuditLog,
    AuditLogCorrupt,
    AuditSink,
    JsonlSink,
    MemorySink,
    SqliteSink,
    open_sink,
    read_events,
    verify_events,
)
from agentguard.audit import sinks as sinks_module

KEY = b"0123456789abcdef0123456789abcdef"

SinkFactory = Callable[[Path], AuditSink]
FILE_SINKS: list[Any] = [
    pytest.param(lambda p: JsonlSink(p / "audit.jsonl"), id="jsonl"),
    pytest.param(lambda p: SqliteSink(p / "audit.sqlite"), id="sqlite"),
]


def event(i: int, **overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "event": "execution",
        "tool": "search",
        "result": "ok",
        "summary": {"i": i},
    }
    fields.update(overrides)
    return AuditEvent(**fields)


def sink_path(sink: AuditSink) -> Path:
    assert isinstance(sink, (JsonlSink, SqliteSink))
    return sink.path


@pytest.fixture
def jsonl(tmp_path: Path) -> Iterator[JsonlSink]:
    sink = JsonlSink(tmp_path / "audit.jsonl")
    yield sink
    sink.close()


# --- all sinks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", FILE_SINKS)
def test_restart_continues_the_chain(tmp_path: Path, factory: SinkFactory) -> None:
    sink = factory(tmp_path)
    log = AuditLog(sink, KEY)
    for i in range(3):
        log.append(event(i))
    log.close()

    sink = factory(tmp_path)
    log = AuditLog(sink, KEY)
    last = sink.last()
    assert last is not None and log.head() == (2, last["hash"])
    for i in range(3, 6):
        log.append(event(i))
    head = log.head()
    log.close()

    records = list(read_events(sink_path(sink)))
    assert [r["seq"] for r in records] == list(range(6))
    report = verify_events(records, KEY, expect_head=head)
    assert report.ok and report.count == 6


@pytest.mark.parametrize("factory", FILE_SINKS)
def test_concurrent_appends_form_one_intact_chain(tmp_path: Path, factory: SinkFactory) -> None:
    sink = factory(tmp_path)
    log = AuditLog(sink, KEY)
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(10):
            log.append(event(i, agent=f"agent-{t}"))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    head = log.head()
    log.close()
    report = verify_events(read_events(sink_path(sink)), KEY, expect_head=head)
    assert report.ok and report.count == 80


@pytest.mark.parametrize("factory", FILE_SINKS)
def test_awkward_values_survive_storage_and_verify(tmp_path: Path, factory: SinkFactory) -> None:
    summary = {
        "big_float": 2.0**53,
        "tiny": 5e-324,
        "tuple": (1, "two"),
        "nested": {"ü\u2028line": ["\n", None, False, -0.0, 1e21]},
    }
    sink = factory(tmp_path)
    log = AuditLog(sink, KEY)
    stored = log.append(event(0, summary=summary, user="zoë 🔐"))
    log.close()
    records = list(read_events(sink_path(sink)))
    assert records[0]["summary"]["tuple"] == [1, "two"]
    assert records == [stored.model_dump(mode="json")]
    assert verify_events(records, KEY).ok


@pytest.mark.parametrize("factory", FILE_SINKS)
def test_empty_sink(tmp_path: Path, factory: SinkFactory) -> None:
    sink = factory(tmp_path)
    assert sink.last() is None
    assert list(sink.read()) == []
    assert AuditLog(sink, KEY).head() is None
    sink.close()


def test_every_sink_satisfies_the_protocol(tmp_path: Path) -> None:
    for sink in (MemorySink(), JsonlSink(tmp_path / "a.jsonl"), SqliteSink(tmp_path / "a.db")):
        assert isinstance(sink, AuditSink)
        sink.close()


# --- MemorySink --------------------------------------------------------------------------------


def test_memory_sink_copies_out() -> None:
    sink = MemorySink()
    record: dict[str, Any] = {"seq": 0, "summary": {"a": [1]}}
    sink.append(record)
    out = next(sink.read())
    out["summary"]["a"].append(3)
    last = sink.last()
    assert last is not None
    last["seq"] = 5
    assert sink.last() == {"seq": 0, "summary": {"a": [1]}}


# --- JsonlSink ---------------------------------------------------------------------------------


def test_jsonl_writes_one_sorted_compact_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "audit.jsonl"
    sink = JsonlSink(path)
    log = AuditLog(sink, KEY)
    log.append(event(0, user="zoë"))
    log.append(event(1))
    log.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert lines[0] == json.dumps(first, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert '"user":"zoë"' in lines[0]


def test_jsonl_fsyncs_every_append(jsonl: JsonlSink, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    log = AuditLog(jsonl, KEY)
    for i in range(3):
        log.append(event(i))
    assert len(synced) == 3


def test_jsonl_last_reads_a_line_longer_than_the_tail_chunk(
    jsonl: JsonlSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sinks_module, "_TAIL_CHUNK", 7)
    log = AuditLog(jsonl, KEY)
    log.append(event(0))
    log.append(event(1, summary={"blob": "x" * 500}))
    assert jsonl.last() == list(jsonl.read())[-1]
    assert AuditLog(jsonl, KEY).head() == log.head()


def test_jsonl_start_up_reads_only_the_tail(
    jsonl: JsonlSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = AuditLog(jsonl, KEY)
    for i in range(20):
        log.append(event(i, summary={"pad": "y" * 1000}))
    jsonl.close()
    with jsonl.path.open("r+b") as handle:
        handle.write(b"#" * 5000)  # the start of the file is never looked at

    def no_full_scan(path: Path) -> Any:
        raise AssertionError("start-up must not scan the whole log")

    monkeypatch.setattr(sinks_module, "_iter_jsonl", no_full_scan)
    sink = JsonlSink(jsonl.path)
    try:
        assert AuditLog(sink, KEY).head() == log.head()
    finally:
        sink.close()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[:-40], id="torn-final-line"),
        pytest.param(lambda text: text + '{"seq": 3, "hash": "hmac-sha', id="torn-append"),
        pytest.param(lambda text: text + "not json\n", id="garbage-line"),
        pytest.param(lambda text: text + "[1, 2]\n", id="not-an-object"),
        pytest.param(lambda text: text + "\n", id="blank-line"),
    ],
)
def test_jsonl_damaged_tail_refuses_a_new_log(tmp_path: Path, damage: Callable[[str], str]) -> None:
    path = tmp_path / "audit.jsonl"
    sink = JsonlSink(path)
    log = AuditLog(sink, KEY)
    for i in range(3):
        log.append(event(i))
    log.close()
    path.write_text(damage(path.read_text(encoding="utf-8")), encoding="utf-8")

    sink = JsonlSink(path)
    try:
        with pytest.raises(AuditLogCorrupt, match=re.escape(str(path))):
            AuditLog(sink, KEY)
        with pytest.raises(AuditLogCorrupt):
            sink.append({"seq": 3})  # never glue a record onto a damaged tail
    finally:
        sink.close()


def test_jsonl_malformed_line_is_reported_at_its_index(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonlSink(path), KEY)
    for i in range(5):
        log.append(event(i))
    log.close()
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = "{this is not json\n"
    path.write_text("".join(lines), encoding="utf-8")

    records = list(read_events(path))
    assert len(records) == 5
    assert records[2] == {"__malformed__": "{this is not json"}
    report = verify_events(records, KEY)
    assert (report.ok, report.first_bad_index, report.first_bad_seq) == (False, 2, None)
    assert report.reason is not None and report.reason.startswith("malformed event")


def test_jsonl_invalid_utf8_line_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonlSink(path), KEY)
    log.append(event(0))
    log.close()
    with path.open("ab") as handle:
        handle.write(b'{"seq": 1, "x": "\xff\xfe"}\n')
    report = verify_events(read_events(path), KEY)
    assert (report.ok, report.first_bad_index) == (False, 1)


def test_jsonl_second_writer_is_refused(jsonl: JsonlSink) -> None:
    with pytest.raises(RuntimeError, match="already open for writing"):
        JsonlSink(jsonl.path)
    jsonl.close()
    JsonlSink(jsonl.path).close()  # the lock goes away with the writer


def test_jsonl_edit_on_disk_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(JsonlSink(path), KEY)
    for i in range(4):
        log.append(event(i))
    log.close()
    path.write_text(
        path.read_text(encoding="utf-8").replace('"result":"ok"', '"result":"denied"', 1),
        encoding="utf-8",
    )
    report = verify_events(read_events(path), KEY)
    assert (report.ok, report.first_bad_index, report.reason) == (False, 0, "hash mismatch")


# --- SqliteSink --------------------------------------------------------------------------------


def test_sqlite_schema_and_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "audit.sqlite"
    sink = SqliteSink(path)
    AuditLog(sink, KEY).append(event(0))
    sink.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [
            (row[1], row[2], row[3], row[5])
            for row in conn.execute("PRAGMA table_info(audit_events)")
        ]
        assert columns == [("seq", "INTEGER", 0, 1), ("record", "TEXT", 1, 0)]
        (seq, text) = conn.execute("SELECT seq, record FROM audit_events").fetchone()
        assert seq == 0 and json.loads(text)["seq"] == 0
    finally:
        conn.close()


def test_sqlite_duplicate_seq_raises(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "audit.db")
    try:
        sink.append({"seq": 0, "x": 1})
        with pytest.raises(sqlite3.IntegrityError):
            sink.append({"seq": 0, "x": 2})
        with pytest.raises(ValueError, match="integer 'seq'"):
            sink.append({"x": 3})
        assert list(sink.read()) == [{"seq": 0, "x": 1}]
    finally:
        sink.close()


def test_sqlite_second_writer_cannot_fork_the_chain(tmp_path: Path) -> None:
    first = AuditLog(SqliteSink(tmp_path / "audit.db"), KEY)
    second = AuditLog(SqliteSink(tmp_path / "audit.db"), KEY)
    first.append(event(0))
    with pytest.raises(sqlite3.IntegrityError):
        second.append(event(0))
    first.close()
    second.close()


def test_sqlite_reads_in_pages_in_seq_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sinks_module, "_SQLITE_PAGE", 3)
    sink = SqliteSink(tmp_path / "audit.db")
    log = AuditLog(sink, KEY)
    for i in range(10):
        log.append(event(i))
    seen = []
    for record in sink.read():
        seen.append(record["seq"])
        if record["seq"] == 4:
            log.append(event(10))  # appending while reading neither deadlocks nor skips
    assert seen == list(range(11))
    log.close()


def test_sqlite_tampering_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    log = AuditLog(SqliteSink(path), KEY)
    for i in range(5):
        log.append(event(i))
    log.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE audit_events SET record = replace(record, 'search', 'delete') WHERE seq = 3"
        )
        conn.execute("UPDATE audit_events SET record = '{oops' WHERE seq = 4")
    conn.close()
    report = verify_events(read_events(path), KEY)
    assert (report.ok, report.first_bad_index, report.reason) == (False, 3, "hash mismatch")


# --- open_sink / read_events -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.sqlite", SqliteSink),
        ("a.sqlite3", SqliteSink),
        ("a.db", SqliteSink),
        ("A.DB", SqliteSink),
        ("a.jsonl", JsonlSink),
        ("a.log", JsonlSink),
        ("a.txt", JsonlSink),
        ("audit", JsonlSink),
    ],
)
def test_open_sink_picks_by_suffix(tmp_path: Path, name: str, kind: type) -> None:
    sink = open_sink(str(tmp_path / name))
    try:
        assert isinstance(sink, kind)
    finally:
        sink.close()


@pytest.mark.parametrize("name", ["missing.jsonl", "missing.sqlite"])
def test_read_events_on_a_missing_file_raises_and_creates_nothing(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        read_events(tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_read_events_does_not_modify_a_sqlite_log(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    log = AuditLog(SqliteSink(path), KEY)
    log.append(event(0))
    log.close()
    before = path.read_bytes()
    assert [r["seq"] for r in read_events(path)] == [0]
    assert path.read_bytes() == before  # (SQLite may leave empty -wal/-shm sidecar files)


def test_read_events_opens_sqlite_read_only(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).close()  # an empty database, not an audit log
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        list(read_events(path))


def test_sqlite_sink_synchronous_setting(tmp_path: Path) -> None:
    import sqlite3

    normal = SqliteSink(tmp_path / "n.db", synchronous="NORMAL")
    assert normal._conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    normal.close()
    full = SqliteSink(tmp_path / "f.db")
    assert full._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    full.close()
    with pytest.raises(ValueError, match="synchronous"):
        SqliteSink(tmp_path / "x.db", synchronous="OFF")  # type: ignore[arg-type]
    assert sqlite3.sqlite_version
