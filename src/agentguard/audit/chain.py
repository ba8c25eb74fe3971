"""The hash chain: every event carries an HMAC over its content and its predecessor's hash.

Editing, deleting, inserting or reordering events then breaks the chain somewhere a verifier
holding the key can point at; anchoring `AuditLog.head()` elsewhere also exposes truncation.

The HMAC input is the event without `hash` as compact JSON with sorted keys and UTF-8
characters unescaped (orjson with `OPT_SORT_KEYS`; for strings, integers and nesting, which is
what events hold, these are the same bytes as `json.dumps(..., sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`), cheap enough to sign every decision.
"""

from __future__ import annotations

import hmac
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from agentguard.audit.events import AuditEvent, _now
from agentguard.audit.sinks import MALFORMED_KEY, AuditLogCorrupt, AuditSink

__all__ = ["GENESIS", "HASH_PREFIX", "MIN_KEY_BYTES", "AuditLog", "VerifyReport", "verify_events"]

#: `prev_hash` of the first event: a fixed value, so a deleted first event cannot go unnoticed.
GENESIS = "genesis"
HASH_PREFIX = "hmac-sha256:"
MIN_KEY_BYTES = 16

_FIELDS = frozenset(AuditEvent.model_fields)
_TEMPLATE: dict[str, Any] = dict.fromkeys(AuditEvent.model_fields)


def _require_finite(value: Any) -> None:
    """orjson writes NaN and infinities as null; a record holding one is not what was signed."""
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is float and not math.isfinite(item):
            raise ValueError("non-finite number")
        if type(item) is dict:
            stack.extend(item.values())
        elif type(item) in (list, tuple):
            stack.extend(item)


def _canonical(body: Mapping[str, Any]) -> bytes:
    return orjson.dumps(dict(body), option=orjson.OPT_SORT_KEYS)


def _mac(key: bytes, body: Mapping[str, Any]) -> str:
    """HMAC over the canonical JSON of everything but `hash`; None-valued fields are signed too."""
    return _mac_bytes(key, _canonical(body))


def _mac_bytes(key: bytes, canonical: bytes) -> str:
    return HASH_PREFIX + hmac.digest(key, canonical, "sha256").hex()


def _check_key(key: object, what: str) -> bytes:
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"{what} must be bytes, not {type(key).__name__}")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"{what} is {len(key)} bytes; at least {MIN_KEY_BYTES} random bytes are required "
            "so the chain cannot be forged by guessing the key"
        )
    return bytes(key)


class AuditLog:
    """Appends events to a sink as one HMAC-linked chain.

    One `AuditLog` per sink: the head is kept in memory, and a second writer would fork the chain
    (the JSONL sink refuses a second writer, the SQLite sink rejects the duplicate `seq`).
    """

    def __init__(self, sink: AuditSink, key: bytes, *, key_id: str = "k1") -> None:
        self._key = _check_key(key, "audit key")
        if not isinstance(key_id, str) or not key_id:
            raise ValueError("key_id must be a non-empty string")
        self._sink = sink
        self._key_id = key_id
        self._lock = threading.Lock()
        self._head = self._load_head()

    @property
    def key_id(self) -> str:
        """The key id written into every event this log signs."""
        return self._key_id

    @property
    def sink(self) -> AuditSink:
        """The underlying storage."""
        return self._sink

    def _load_head(self) -> tuple[int, str] | None:
        """Continue the stored chain; refuse a head that cannot be trusted rather than restart."""
        last = self._sink.last()
        if last is None:
            return None
        seq, stored_hash = last.get("seq"), last.get("hash")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise AuditLogCorrupt(f"last stored event has no valid seq: {seq!r}")
        if not isinstance(stored_hash, str) or not stored_hash.startswith(HASH_PREFIX):
            raise AuditLogCorrupt(f"last stored event (seq {seq}) has no valid hash")
        if last.get("key_id") == self._key_id:
            body = {k: v for k, v in last.items() if k != "hash"}
            try:
                expected = _mac(self._key, body)
            except (ValueError, TypeError) as exc:
                raise AuditLogCorrupt(f"last stored event (seq {seq}) is not signable: {exc}")
            if not hmac.compare_digest(expected.encode(), stored_hash.encode()):
                raise AuditLogCorrupt(
                    f"last stored event (seq {seq}) does not verify with key id "
                    f"{self._key_id!r}: wrong key, or the log was tampered with"
                )
        return seq, stored_hash

    def append(self, event: AuditEvent) -> AuditEvent:
        """Sign, link and store `event`; returns it as stored.

        Any sink error propagates and leaves the head unchanged, so the caller can fail closed
        and a retry continues the chain without a gap.
        """
        # model_dump(mode="json") gives plain JSON data (lists, string keys), so the stored
        # record parses back to exactly what was signed.
        record = self._append_body(event.model_dump(mode="json"))
        # The sink owns `record` now; only scalars are read back from it.
        return event.model_copy(
            update={k: record[k] for k in ("seq", "prev_hash", "key_id", "hash", "created_at")}
        )

    def append_fields(self, fields: Mapping[str, Any]) -> tuple[int, str]:
        """`append` for callers on a hot path that already hold plain JSON field values.

        Same chain, same record; skips building a model. Unknown field names are refused.
        Returns the new head `(seq, hash)`.
        """
        unknown = fields.keys() - _FIELDS
        if unknown:
            raise ValueError(f"unknown audit event field(s): {', '.join(sorted(unknown))}")
        body = {**_TEMPLATE, **fields}
        if body["created_at"] is None:
            body["created_at"] = _now()
        if body["summary"] is None:
            body["summary"] = {}
        record = self._append_body(body)
        return record["seq"], record["hash"]

    def _append_body(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._head is None:
                seq, prev_hash = 0, GENESIS
            else:
                seq, prev_hash = self._head[0] + 1, self._head[1]
            body.update(seq=seq, prev_hash=prev_hash, key_id=self._key_id)
            body.pop("hash", None)
            try:
                canonical = _canonical(body)
            except (ValueError, TypeError, orjson.JSONEncodeError) as exc:
                raise ValueError(f"audit event cannot be canonically encoded: {exc}") from exc
            body["hash"] = _mac_bytes(self._key, canonical)
            head = (seq, body["hash"])
            self._sink.append(body)  # the sink takes ownership: nothing here touches it again
            self._head = head
            return {
                "seq": seq,
                "hash": head[1],
                "prev_hash": prev_hash,
                "key_id": self._key_id,
                "created_at": body["created_at"],
            }

    def head(self) -> tuple[int, str] | None:
        """Last `(seq, hash)`; publish it elsewhere so a truncated tail can be detected later."""
        with self._lock:
            return self._head

    def events(self) -> Iterator[AuditEvent]:
        """Stored events in order (no verification: use `verify` for that)."""
        for record in self._sink.read():
            yield AuditEvent.model_validate(record)

    def verify(self, *, expect_head: tuple[int, str] | None = None) -> VerifyReport:
        """Verify the stored chain with this log's key."""
        return verify_events(self._sink.read(), {self._key_id: self._key}, expect_head=expect_head)

    def close(self) -> None:
        """Close the sink."""
        self._sink.close()


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of a verification.

    `count` is the number of events that verified before the first problem (all of them when
    `ok`). `first_bad_index` is the 0-based position in the stream; `first_bad_seq` is the seq
    the bad record claims, or the first missing seq for a truncated tail. `head` is the verified
    `(seq, hash)` of the last event when `ok` and the log is not empty.
    """

    ok: bool
    count: int
    first_bad_index: int | None
    first_bad_seq: int | None
    reason: str | None
    head: tuple[int, str] | None = None


class _Bad(Exception):
    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.seq = seq


def _names(keys: Iterable[str]) -> str:
    return ", ".join(repr(k) for k in sorted(keys))


def _check_record(record: object, keys: bytes | Mapping[str, bytes]) -> tuple[int, str, str]:
    """Structure and authenticity of one record; returns `(seq, prev_hash, hash)`."""
    if not isinstance(record, Mapping):
        raise _Bad(f"malformed event: not an object ({type(record).__name__})")
    if MALFORMED_KEY in record and len(record) == 1:
        raise _Bad(f"malformed event: not a JSON object: {record[MALFORMED_KEY]!r}")
    raw_seq = record.get("seq")
    seq = raw_seq if isinstance(raw_seq, int) and not isinstance(raw_seq, bool) else None
    missing, extra = _FIELDS - record.keys(), record.keys() - _FIELDS
    if missing:
        raise _Bad(f"malformed event: missing field(s) {_names(missing)}", seq)
    if extra:
        raise _Bad(f"malformed event: unexpected field(s) {_names(map(str, extra))}", seq)
    try:
        AuditEvent.model_validate(dict(record), strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _Bad(f"malformed event: {where}: {first['msg']}", seq) from None
    prev_hash, key_id, stored_hash = record["prev_hash"], record["key_id"], record["hash"]
    if seq is None or seq < 0:
        raise _Bad(f"malformed event: invalid seq {raw_seq!r}")
    for name, value in (("prev_hash", prev_hash), ("key_id", key_id), ("hash", stored_hash)):
        if not isinstance(value, str):
            raise _Bad(f"malformed event: {name} is not a string", seq)
    if isinstance(keys, (bytes, bytearray)):
        key = bytes(keys)
    elif key_id in keys:
        key = keys[key_id]
    else:
        raise _Bad(f"unknown key id {key_id!r}", seq)
    try:
        _require_finite(record)
        expected = _mac(key, {k: v for k, v in record.items() if k != "hash"})
    except (ValueError, TypeError) as exc:
        raise _Bad(f"malformed event: not canonical JSON ({exc})", seq) from None
    if not hmac.compare_digest(expected.encode(), stored_hash.encode()):
        raise _Bad("hash mismatch", seq)
    return seq, prev_hash, stored_hash


def verify_events(
    events: Iterable[Mapping[str, Any]],
    keys: bytes | Mapping[str, bytes],
    *,
    expect_head: tuple[int, str] | None = None,
) -> VerifyReport:
    """Check every event's HMAC, sequence and link, stopping at the first problem.

    `keys` is one key, or a mapping of key id to key so a log that spans key rotations verifies.
    Pass `expect_head` (a previously anchored `AuditLog.head()`) to detect a truncated tail; a
    log that has grown past the anchor is fine as long as the anchored event is still there.
    """
    if isinstance(keys, Mapping):
        if not all(isinstance(k, (bytes, bytearray)) for k in keys.values()):
            raise TypeError("keys must map key ids to bytes")
    elif not isinstance(keys, (bytes, bytearray)):
        raise TypeError(f"keys must be bytes or a mapping of key id to bytes, not {type(keys)}")
    if expect_head is not None:
        want_seq, want_hash = expect_head
        if not isinstance(want_seq, int) or want_seq < 0 or not isinstance(want_hash, str):
            raise ValueError("expect_head must be (seq >= 0, hash)")
    expected_seq, expected_prev = 0, GENESIS
    head: tuple[int, str] | None = None
    head_seen = False
    count = 0
    for index, record in enumerate(events):
        try:
            seq, prev_hash, stored_hash = _check_record(record, keys)
            if seq > expected_seq:
                raise _Bad(f"sequence gap: expected {expected_seq}, got {seq}", seq)
            if seq < expected_seq:
                raise _Bad(f"sequence out of order: expected {expected_seq}, got {seq}", seq)
            if not hmac.compare_digest(prev_hash.encode(), expected_prev.encode()):
                target = f"event {seq - 1}" if seq > 0 else repr(GENESIS)
                raise _Bad(f"prev_hash does not link to {target}", seq)
            if expect_head is not None and seq == expect_head[0]:
                if not hmac.compare_digest(stored_hash.encode(), expect_head[1].encode()):
                    raise _Bad(f"event at seq {seq} does not match the expected head hash", seq)
                head_seen = True
        except _Bad as bad:
            return VerifyReport(False, index, index, bad.seq, bad.reason)
        head = (seq, stored_hash)
        expected_seq, expected_prev = seq + 1, stored_hash
        count = index + 1
    if expect_head is not None and not head_seen:
        want = expect_head[0]
        if head is None:
            reason = f"log is empty but expected head seq {want}"
        else:
            reason = f"log ends at seq {head[0]} but expected head seq {want}"
        return VerifyReport(False, count, count, expected_seq, reason)
    return VerifyReport(True, count, None, None, None, head)
