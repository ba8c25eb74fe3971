"""The hash chain: what a verifier can rely on, and how each kind of tampering is named."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentguard._canonical import canonical_json
from agentguard.audit import (
    AuditEvent,
    AuditLog,
    AuditLogCorrupt,
    AuditSink,
    MemorySink,
    VerifyReport,
    verify_events,
)

KEY = b"0123456789abcdef0123456789abcdef"
OTHER_KEY = b"fedcba9876543210fedcba9876543210"


def make_event(i: int, **overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "event": "decision",
        "tool": f"tool_{i}",
        "call_id": f"call-{i}",
        "user": "alice",
        "result": "allow",
        "summary": {"i": i, "args": {"path": f"/tmp/{i}", "flags": [1, 2.5, None, True]}},
    }
    fields.update(overrides)
    return AuditEvent(**fields)


def build_log(n: int, key: bytes = KEY, key_id: str = "k1") -> tuple[AuditLog, MemorySink]:
    sink = MemorySink()
    log = AuditLog(sink, key, key_id=key_id)
    for i in range(n):
        log.append(make_event(i))
    return log, sink


def sign(record: dict[str, Any], key: bytes) -> dict[str, Any]:
    """Re-sign a record the way an attacker holding `key` would."""
    body = {k: v for k, v in record.items() if k != "hash"}
    mac = hmac.new(key, canonical_json(body), hashlib.sha256).hexdigest()
    return {**body, "hash": "hmac-sha256:" + mac}


def bad(
    report: VerifyReport, index: int, seq: int | None, reason: str, *, exact: bool = True
) -> None:
    assert not report.ok
    assert report.first_bad_index == index
    assert report.count == index
    assert report.first_bad_seq == seq
    assert report.reason is not None
    if exact:
        assert report.reason == reason
    else:
        assert reason in report.reason
    assert report.head is None


# --- appending ---------------------------------------------------------------------------------


def test_append_fills_chain_fields_and_links_events() -> None:
    log, sink = build_log(3)
    first, second, third = sink.records
    assert (first["seq"], first["prev_hash"], first["key_id"]) == (0, "genesis", "k1")
    assert second["seq"] == 1 and second["prev_hash"] == first["hash"]
    assert third["seq"] == 2 and third["prev_hash"] == second["hash"]
    assert all(
        r["hash"].startswith("hmac-sha256:") and len(r["hash"]) == 12 + 64 for r in sink.records
    )
    assert log.head() == (2, third["hash"])


def test_hash_is_hmac_over_canonical_record_without_hash_keeping_none_fields() -> None:
    _, sink = build_log(1)
    record = sink.records[0]
    body = {k: v for k, v in record.items() if k != "hash"}
    assert body["tenant"] is None  # None-valued fields are stored and signed, not dropped
    expected = hmac.new(KEY, canonical_json(body), hashlib.sha256).hexdigest()
    assert record["hash"] == "hmac-sha256:" + expected


def test_append_returns_the_stored_event() -> None:
    log, sink = build_log(0)
    stored = log.append(make_event(7))
    assert stored.seq == 0 and stored.hash == sink.records[0]["hash"]
    assert stored.model_dump(mode="json") == sink.records[0]
    assert list(log.events()) == [stored]


def test_append_overrides_chain_fields_supplied_by_the_caller() -> None:
    log, sink = build_log(2)
    forged = make_event(2).model_copy(
        update={"seq": 99, "prev_hash": "genesis", "key_id": "k9", "hash": "hmac-sha256:00"}
    )
    stored = log.append(forged)
    assert (stored.seq, stored.prev_hash, stored.key_id) == (2, sink.records[1]["hash"], "k1")
    assert verify_events(sink.read(), KEY).ok


def test_unencodable_event_is_refused_before_anything_is_stored() -> None:
    log, sink = build_log(1)
    head = log.head()
    with pytest.raises(ValueError, match="canonically encoded"):
        log.append(make_event(1, summary={"s": "lone surrogate \ud800"}))
    with pytest.raises(ValueError, match="canonically encoded"):
        log.append(make_event(1, summary={"deep": [{"s": "\udfff"}]}))
    assert len(sink.records) == 1 and log.head() == head


def test_64_bit_integers_are_signed_exactly_and_larger_ones_refused() -> None:
    log, sink = build_log(1)
    log.append(make_event(1, summary={"n": 2**60, "deep": [{"n": -(2**63)}]}))
    assert sink.records[-1]["summary"]["n"] == 2**60
    assert verify_events(sink.read(), KEY).ok
    with pytest.raises(ValueError, match="canonically encoded"):
        log.append(make_event(2, summary={"n": 2**64}))
    assert len(sink.records) == 2


@pytest.mark.parametrize("key", [b"", b"short", b"x" * 15])
def test_short_key_is_refused(key: bytes) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        AuditLog(MemorySink(), key)


def test_text_key_and_empty_key_id_are_refused() -> None:
    with pytest.raises(TypeError, match="bytes"):
        AuditLog(MemorySink(), "0123456789abcdef0123")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key_id"):
        AuditLog(MemorySink(), KEY, key_id="")


class FlakySink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def append(self, record: dict[str, Any]) -> None:
        if self.fail:
            raise OSError("disk full")
        super().append(record)


def test_sink_failure_propagates_and_does_not_advance_the_head() -> None:
    sink = FlakySink()
    log = AuditLog(sink, KEY)
    log.append(make_event(0))
    head = log.head()
    sink.fail = True
    with pytest.raises(OSError, match="disk full"):
        log.append(make_event(1))
    assert log.head() == head
    sink.fail = False
    assert log.append(make_event(1)).seq == 1  # no gap left by the failed attempt
    assert verify_events(sink.read(), KEY).ok


def test_new_log_continues_the_chain_of_a_sink() -> None:
    _, sink = build_log(3)
    log = AuditLog(sink, KEY)
    assert log.append(make_event(3)).seq == 3
    report = verify_events(sink.read(), KEY)
    assert report.ok and report.count == 4


def test_restart_with_a_different_key_under_the_same_id_is_refused() -> None:
    _, sink = build_log(2)
    with pytest.raises(AuditLogCorrupt, match="does not verify"):
        AuditLog(sink, OTHER_KEY, key_id="k1")


def test_restart_on_a_tampered_head_is_refused() -> None:
    _, sink = build_log(2)
    sink.records[-1]["result"] = "deny"
    with pytest.raises(AuditLogCorrupt, match="tampered"):
        AuditLog(sink, KEY)


@pytest.mark.parametrize(
    ("change", "match"), [({"seq": "1"}, "no valid seq"), ({"hash": None}, "no valid hash")]
)
def test_restart_on_an_unusable_head_is_refused(change: dict[str, Any], match: str) -> None:
    _, sink = build_log(2)
    sink.records[-1].update(change)
    with pytest.raises(AuditLogCorrupt, match=match):
        AuditLog(sink, KEY)


def test_key_rotation_continues_the_chain_and_verifies_with_both_keys() -> None:
    _, sink = build_log(3)
    rotated = AuditLog(sink, OTHER_KEY, key_id="k2")
    rotated.append(make_event(3))
    keys = {"k1": KEY, "k2": OTHER_KEY}
    assert verify_events(sink.read(), keys).ok
    bad(verify_events(sink.read(), {"k1": KEY}), 3, 3, "unknown key id 'k2'")
    assert rotated.verify().ok is False  # a log's own verify only knows its own key


def test_concurrent_appends_form_one_intact_chain() -> None:
    sink = MemorySink()
    log = AuditLog(sink, KEY)
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        for i in range(50):
            log.append(make_event(i, tool=f"t{t}"))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r["seq"] for r in sink.records] == list(range(400))
    report = log.verify(expect_head=log.head())
    assert report.ok and report.count == 400


# --- verification ------------------------------------------------------------------------------


def test_intact_log_verifies_and_reports_its_head() -> None:
    log, sink = build_log(10)
    report = verify_events(sink.read(), KEY)
    assert report == VerifyReport(True, 10, None, None, None, log.head())
    assert verify_events(sink.read(), {"k1": KEY}, expect_head=log.head()).ok


def test_empty_log_verifies() -> None:
    assert verify_events([], KEY) == VerifyReport(True, 0, None, None, None, None)


def test_edited_field_is_named() -> None:
    _, sink = build_log(10)
    sink.records[3]["result"] = "deny"
    bad(verify_events(sink.read(), KEY), 3, 3, "hash mismatch")


def test_edited_nested_summary_is_named() -> None:
    _, sink = build_log(10)
    sink.records[6]["summary"]["args"]["flags"][1] = 2.25
    bad(verify_events(sink.read(), KEY), 6, 6, "hash mismatch")


def test_edited_hash_is_named() -> None:
    _, sink = build_log(10)
    sink.records[4]["hash"] = "hmac-sha256:" + "0" * 64
    bad(verify_events(sink.read(), KEY), 4, 4, "hash mismatch")


def test_deleted_middle_event_is_named() -> None:
    _, sink = build_log(10)
    del sink.records[4]
    bad(verify_events(sink.read(), KEY), 4, 5, "sequence gap: expected 4, got 5")


def test_deleted_first_event_is_named() -> None:
    _, sink = build_log(10)
    del sink.records[0]
    bad(verify_events(sink.read(), KEY), 0, 1, "sequence gap: expected 0, got 1")


def test_inserted_forged_event_is_named() -> None:
    _, sink = build_log(10)
    forged = sign({**sink.records[3], "result": "deny", "tool": "rm_rf"}, OTHER_KEY)
    sink.records.insert(3, forged)  # claims seq 3 and links to event 2, but wrong key
    bad(verify_events(sink.read(), KEY), 3, 3, "hash mismatch")


def test_inserted_event_with_unknown_key_id_is_named() -> None:
    _, sink = build_log(10)
    forged = sign({**sink.records[3], "key_id": "k9"}, OTHER_KEY)
    sink.records.insert(3, forged)
    bad(verify_events(sink.read(), {"k1": KEY}), 3, 3, "unknown key id 'k9'")


def test_replayed_event_is_named() -> None:
    _, sink = build_log(10)
    sink.records.insert(5, copy.deepcopy(sink.records[4]))
    bad(verify_events(sink.read(), KEY), 5, 4, "sequence out of order: expected 5, got 4")


@pytest.mark.parametrize(("i", "j"), [(2, 5), (2, 3), (0, 9)])
def test_swapped_events_are_named(i: int, j: int) -> None:
    _, sink = build_log(10)
    sink.records[i], sink.records[j] = sink.records[j], sink.records[i]
    bad(verify_events(sink.read(), KEY), i, j, f"sequence gap: expected {i}, got {j}")


def test_whole_log_resigned_with_another_key_is_named() -> None:
    _, sink = build_log(5)
    prev = "genesis"
    for n, record in enumerate(sink.records):
        sink.records[n] = sign({**record, "prev_hash": prev, "result": "deny"}, OTHER_KEY)
        prev = sink.records[n]["hash"]
    bad(verify_events(sink.read(), KEY), 0, 0, "hash mismatch")


def test_spliced_chains_signed_with_the_same_key_are_named() -> None:
    # Each event is authentic, but the second half comes from a different chain.
    _, first = build_log(10)
    _, second = build_log(10)
    spliced = first.records[:5] + second.records[5:]
    bad(verify_events(spliced, KEY), 5, 5, "prev_hash does not link to event 4")


def test_first_event_must_link_to_genesis() -> None:
    _, sink = build_log(3)
    sink.records[0] = sign({**sink.records[0], "prev_hash": "sha256:00"}, KEY)
    bad(verify_events(sink.read(), KEY), 0, 0, "prev_hash does not link to 'genesis'")


def test_truncated_tail_is_only_visible_against_an_anchored_head() -> None:
    log, sink = build_log(10)
    anchored = log.head()
    del sink.records[-2:]
    assert verify_events(sink.read(), KEY).ok  # why the head must be anchored elsewhere
    report = verify_events(sink.read(), KEY, expect_head=anchored)
    bad(report, 8, 8, "log ends at seq 7 but expected head seq 9")


def test_fully_truncated_log_fails_against_an_anchored_head() -> None:
    log, _ = build_log(3)
    bad(
        verify_events([], KEY, expect_head=log.head()), 0, 0, "log is empty but expected head seq 2"
    )


def test_log_grown_past_the_anchored_head_verifies() -> None:
    log, sink = build_log(5)
    anchored = log.head()
    log.append(make_event(5))
    assert verify_events(sink.read(), KEY, expect_head=anchored).ok


def test_anchored_head_from_another_chain_is_named() -> None:
    _, sink = build_log(5)
    other, _ = build_log(5, key=OTHER_KEY)
    head = other.head()
    assert head is not None
    report = verify_events(sink.read(), KEY, expect_head=head)
    bad(report, 4, 4, "event at seq 4 does not match the expected head hash")


def test_invalid_expect_head_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="expect_head"):
        verify_events([], KEY, expect_head=(-1, "x"))


def test_keys_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        verify_events([], "a text key")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        verify_events([], {"k1": "a text key"})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: ["not", "an", "object"], "malformed event: not an object (list)"),
        (lambda r: "text", "malformed event: not an object (str)"),
        (lambda r: {"__malformed__": "{oops"}, "malformed event: not a JSON object: '{oops'"),
        (lambda r: {k: v for k, v in r.items() if k != "result"}, "missing field(s) 'result'"),
        (lambda r: {**r, "extra": 1}, "unexpected field(s) 'extra'"),
        (lambda r: {**r, "seq": "2"}, "malformed event: seq"),
        (lambda r: {**r, "event": "bogus"}, "malformed event: event"),
        (lambda r: {**r, "hash": None}, "malformed event: hash is not a string"),
        (lambda r: {**r, "summary": {"x": float("inf")}}, "not canonical JSON"),
    ],
)
def test_malformed_record_is_named(mutate: Any, reason: str) -> None:
    _, sink = build_log(5)
    records: list[Any] = list(sink.read())
    records[2] = mutate(records[2])
    report = verify_events(records, KEY)
    seq = records[2].get("seq") if isinstance(records[2], dict) else None
    bad(report, 2, seq if isinstance(seq, int) else None, reason, exact=False)


def test_verify_is_reusable_as_a_log_method() -> None:
    log, sink = build_log(4)
    assert log.verify().ok
    sink.records[1]["user"] = "mallory"
    bad(log.verify(), 1, 1, "hash mismatch")


def test_memory_sink_satisfies_the_protocol() -> None:
    assert isinstance(MemorySink(), AuditSink)


# --- properties --------------------------------------------------------------------------------

SAFE_INT = 2**53 - 1
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-SAFE_INT, SAFE_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
optional_text = st.none() | st.text(max_size=16)
events = st.builds(
    AuditEvent,
    event=st.sampled_from(["decision", "execution", "guard"]),
    tool=optional_text,
    user=optional_text,
    tenant=optional_text,
    reason=optional_text,
    input_hash=optional_text,
    result=st.text(max_size=10),
    summary=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
)
FIELDS = sorted(AuditEvent.model_fields)
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def stored_log(batch: list[AuditEvent]) -> tuple[list[dict[str, Any]], tuple[int, str] | None]:
    """Append, then round-trip through JSON text exactly as the JSONL sink stores records."""
    sink = MemorySink()
    log = AuditLog(sink, KEY)
    for event in batch:
        log.append(event)
    stored = [json.loads(json.dumps(r, sort_keys=True, ensure_ascii=False)) for r in sink.read()]
    return stored, log.head()


@PROPERTY_SETTINGS
@given(st.lists(events, max_size=12))
def test_property_any_log_verifies(batch: list[AuditEvent]) -> None:
    records, head = stored_log(batch)
    report = verify_events(records, {"k1": KEY}, expect_head=head)
    assert report.ok and report.count == len(batch) and report.head == head


@PROPERTY_SETTINGS
@given(st.lists(events, min_size=1, max_size=8), st.data())
def test_property_changing_any_field_is_detected_at_that_event(
    batch: list[AuditEvent], data: st.DataObject
) -> None:
    records, head = stored_log(batch)
    i = data.draw(st.integers(0, len(records) - 1), label="index")
    field = data.draw(st.sampled_from(FIELDS), label="field")
    old = canonical_json(records[i][field])
    new = data.draw(json_values.filter(lambda v: canonical_json(v) != old), label="new value")
    records[i][field] = new
    report = verify_events(records, KEY, expect_head=head)
    assert not report.ok
    assert report.first_bad_index == i  # the spec only needs <= i; the chain gives exactly i


@PROPERTY_SETTINGS
@given(st.lists(events, min_size=1, max_size=8), st.data())
def test_property_deleting_any_event_is_detected(
    batch: list[AuditEvent], data: st.DataObject
) -> None:
    records, head = stored_log(batch)
    i = data.draw(st.integers(0, len(records) - 1), label="index")
    del records[i]
    report = verify_events(records, KEY, expect_head=head)
    assert not report.ok
    assert report.first_bad_index == i  # the spec only needs <= i; the chain gives exactly i


@PROPERTY_SETTINGS
@given(st.lists(events, min_size=2, max_size=8), st.data())
def test_property_swapping_any_two_events_is_detected(
    batch: list[AuditEvent], data: st.DataObject
) -> None:
    records, head = stored_log(batch)
    i = data.draw(st.integers(0, len(records) - 2), label="i")
    j = data.draw(st.integers(i + 1, len(records) - 1), label="j")
    records[i], records[j] = records[j], records[i]
    report = verify_events(records, KEY, expect_head=head)
    assert not report.ok
    assert report.first_bad_index == i  # the spec only needs <= i; the chain gives exactly i
