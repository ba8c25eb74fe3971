"""Scanning an outbound payload: every leaf, with its path, decoded where it is encoded.

What counts as a leaf: every string and number in the (nested) arguments, and every key. A
string that holds JSON is parsed and walked (`$.body<json>.card`); a form body
(`a=1&b=2`) is split into its fields (`$.body<form>.b`). URL-encoded and quoted-printable text
is decoded byte for byte with a map back to the original offsets, so a finding points at the
encoded characters as sent; base64 runs that decode to text are scanned and reported as the
whole run.

Bounds, all failing closed (`ScanIncomplete`): total characters, nesting depth, number of
leaves, decoding depth, and a deadline for the whole payload.
"""

from __future__ import annotations

import binascii
import bisect
import dataclasses
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from agentguard.dlp.engine import Detector, Hit, Profile, detector, resolve
from agentguard.dlp.errors import ScanIncomplete

__all__ = ["Finding", "ScanIncomplete", "Scanner"]

_TOKEN = re.compile(r"[^\s\"'<>]+")
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
# `key=a+b` (a form value with + for spaces), not base64 (`abc+def==`)
_FORM_PLUS = re.compile(r"(?:^|[&?])[\w.\[\]-]{1,64}=[^\s&=]*\+")
# Quoted-printable: a soft line break, or an escape not followed by another hex digit (so
# `per_page=100` and `card=2221...` are not taken for escapes).
_QP = re.compile(r"=\r?\n|=[0-9A-F]{2}(?![0-9A-Fa-f])")
_B64_RUN = re.compile(r"(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_-]{12,}={0,2}(?![A-Za-z0-9+/_=-])")
# MIME base64: 76-character lines (tried only where a run of base64 characters starts, so the
# scan is linear rather than 76 steps at every letter)
_B64_MIME = re.compile(r"(?<![A-Za-z0-9+/])(?:[A-Za-z0-9+/]{76}\r?\n)+[A-Za-z0-9+/]{4,76}={0,2}")
# Where a URL decoding could apply: a %XX escape, or a `+` in a form value (`=...+`)
_URL_MARK = re.compile(r"%[0-9A-Fa-f]{2}|=[^\s&=\"'<>]*\+")
_URL_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_QP_ESCAPE = re.compile(r"=[0-9A-Fa-f]{2}(?![0-9A-Fa-f])|=\r?\n")
_URLSAFE = str.maketrans("-_", "+/")
# `name: ` / `name=` right before a base64 value (a Kubernetes Secret's `data:` entry): the
# decoded value is scanned with its name, so a recognizer that needs the name sees it.
_ASSIGNED = re.compile(r"([A-Za-z_][\w.-]{0,63})[\"']?[ \t]{0,4}[:=][ \t]{0,4}[\"']?$")
_FORM = re.compile(r"^[^\s=&]{1,256}=[^\s&]*(?:&[^\s=&]{1,256}=[^\s&]*)+$")
_MAX_DECODED = 64 * 1024  # characters decoded out of one leaf
_SEPARATOR = "\n\x00\n"  # between decoded pieces scanned together; no entity spans it


@dataclass(frozen=True)
class Finding:
    """One entity found in one leaf: where (`path`, offsets into the leaf as sent), what, how."""

    entity: str
    path: str
    start: int
    end: int
    score: float
    encoding: str | None = None  # "url", "qp", "base64" when found after decoding

    def describe(self) -> dict[str, Any]:
        """Type, field and encoding: what approval requests and audit events may show."""
        return {"type": self.entity, "path": self.path, "encoding": self.encoding}


class Scanner:
    """Finds PII and secrets in outbound payloads; see the module docstring for the rules."""

    def __init__(
        self,
        profile: Profile = "patterns",
        *,
        max_chars: int = 1_000_000,
        max_depth: int = 32,
        max_leaves: int = 10_000,
        time_budget: float = 2.0,
        decode: bool = True,
    ) -> None:
        self.profile = profile
        self.max_chars = max_chars
        self.max_depth = max_depth
        self.max_leaves = max_leaves
        self.time_budget = time_budget
        self.decode = decode
        self._detector: Detector | None = None

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = detector(self.profile)
        return self._detector

    def scan_text(self, text: str) -> list[Finding]:
        """Findings in one text (path `$`)."""
        return self.scan(text)

    def scan(self, value: Any, path: str = "$") -> list[Finding]:
        """Findings in every leaf of `value` (arguments, a message, a result)."""
        self.detector  # noqa: B018 - built first: loading Presidio is not the payload's time
        run = _Run(self, time.monotonic() + self.time_budget)
        run.walk(value, path, 0)
        return run.findings


class _Run:
    def __init__(self, scanner: Scanner, deadline: float) -> None:
        self.s = scanner
        self.deadline = deadline
        self.findings: list[Finding] = []
        self.chars = 0
        self.leaves = 0
        self.values: set[tuple[str, str]] | None = None  # found already, when walking inner JSON

    def walk(self, value: Any, path: str, depth: int) -> None:
        if depth > self.s.max_depth:
            raise ScanIncomplete(f"payload nested deeper than {self.s.max_depth} levels at {path}")
        if isinstance(value, Mapping):
            for key, item in value.items():
                child = f"{path}.{key}" if _plain(key) else f"{path}[{json.dumps(str(key))}]"
                self.text(str(key), f"{child}<key>", depth)
                self.walk(item, child, depth + 1)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                self.walk(item, f"{path}[{i}]", depth + 1)
        elif isinstance(value, str):
            self.text(value, path, depth)
        elif isinstance(value, bool) or value is None:
            return
        elif isinstance(value, int | float):
            self.text(str(value), path, depth)
        elif isinstance(value, bytes | bytearray):
            self.text(bytes(value).decode("latin-1"), path, depth)
        else:
            raise ScanIncomplete(f"cannot scan a {type(value).__name__} at {path}")

    def text(self, text: str, path: str, depth: int) -> None:
        self.leaves += 1
        self.chars += len(text)
        if self.leaves > self.s.max_leaves:
            raise ScanIncomplete(f"payload has more than {self.s.max_leaves} fields")
        if self.chars > self.s.max_chars:
            raise ScanIncomplete(f"payload is larger than {self.s.max_chars} characters")
        if not text:
            return
        raw = self.s.detector.scan(text, deadline=self.deadline)
        seen = {(h.entity, text[h.start : h.end]) for h in raw}
        decoded_hits: list[tuple[Hit, str]] = []
        if self.s.decode:
            taken = [(h.start, h.end) for h in raw if h.entity != "GENERIC_SECRET"]
            pieces = [p for p in _decodings(text, taken) if p[0]]
            # One detector pass over all decoded pieces, joined by a separator no entity spans.
            starts, joined, pos = [], [], 0
            for decoded, _index, _kind in pieces:
                starts.append(pos)
                joined.append(decoded)
                pos += len(decoded) + len(_SEPARATOR)
            hits = (
                self.s.detector.scan(_SEPARATOR.join(joined), deadline=self.deadline)
                if pieces
                else []
            )
            for hit in hits:
                i = bisect.bisect_right(starts, hit.start) - 1
                decoded, index, kind = pieces[i]
                local = Hit(hit.entity, hit.start - starts[i], hit.end - starts[i], hit.score)
                if local.end > len(decoded):
                    continue  # ran across the separator
                start, end = index(local)
                if hit.entity == "EMAIL_ADDRESS" and kind == "url" and _in_userinfo(text, start):
                    continue  # `user:pa%40ss@host`: decoding made the password look like one
                decoded_hits.append((Hit(hit.entity, start, end, hit.score), kind))
                seen.add((hit.entity, decoded[local.start : local.end]))
        # What decoding found where the plain text already showed it is the same finding.
        decoded_hits = [
            (h, kind)
            for h, kind in decoded_hits
            if not any(r.start < h.end and h.start < r.end and r.entity == h.entity for r in raw)
        ]
        kinds = {(h.start, h.end, h.entity): kind for h, kind in decoded_hits}
        merged = resolve([*raw, *(h for h, _ in decoded_hits)])
        found = [
            Finding(h.entity, path, h.start, h.end, h.score, kinds.get((h.start, h.end, h.entity)))
            for h in merged
        ]
        fields = _form_fields(text)
        if fields:
            found = [_in_field(f, fields) for f in found]
        if self.values is not None:
            found = [f for f in found if (f.entity, text[f.start : f.end]) not in self.values]
        self.findings.extend(found)
        if self.s.decode:
            self.inner_json(text, path, depth, seen)

    def inner_json(self, text: str, path: str, depth: int, seen: set[tuple[str, str]]) -> None:
        """JSON inside a string: walked for what the text scan could not see (escapes)."""
        stripped = text.strip()
        if stripped[:1] not in ("{", "[") or len(stripped) < 2:
            return
        try:
            inner = json.loads(stripped)
        except (ValueError, RecursionError):
            return
        nested = _Run(self.s, self.deadline)
        nested.chars, nested.leaves = self.chars, self.leaves
        nested.values = seen
        nested.walk(inner, f"{path}<json>", depth + 1)
        self.chars, self.leaves = nested.chars, nested.leaves
        self.findings.extend(nested.findings)


def _in_userinfo(text: str, at: int) -> bool:
    from agentguard.dlp.recognizers import in_userinfo  # loads Presidio: not on import

    return in_userinfo(text, at)


def _form_fields(text: str) -> list[tuple[int, int, str]] | None:
    """(start, end, name) of each field of a form body (`a=1&b=2`), or None."""
    if len(text) > _MAX_DECODED or not _FORM.match(text):
        return None
    fields, pos = [], 0
    for part in text.split("&"):
        name = part.split("=", 1)[0]
        fields.append((pos, pos + len(part), name))
        pos += len(part) + 1
    return fields


def _in_field(finding: Finding, fields: list[tuple[int, int, str]]) -> Finding:
    for start, end, name in fields:
        if start <= finding.start < end:
            field = name if _plain(name) else json.dumps(name)
            return dataclasses.replace(finding, path=f"{finding.path}<form>.{field}")
    return finding


def _plain(key: Any) -> bool:
    return isinstance(key, str) and key.isidentifier()


def _decodings(text: str, taken: list[tuple[int, int]]) -> Iterator[tuple[str, Any, str]]:
    """(decoded text, hit -> original span, encoding) for each encoding present in `text`.

    Base64 runs inside something already found (a JWT, a key) are not decoded again.
    """
    if "%" in text or ("+" in text and "=" in text):
        for start, end in _url_tokens(text):
            token = text[start:end]
            if _PERCENT.search(token) or ("+" in token and _FORM_PLUS.search(token)):
                decoded, offsets = _unescape(token, start, "%", plus=True)
                yield decoded, _mapper(offsets), "url"
    if "=" in text and _QP.search(text):
        for start, end in _qp_blocks(text):  # only the lines that carry escapes
            decoded, offsets = _unescape(text[start:end], start, "=", plus=False)
            yield decoded, _mapper(offsets), "qp"
    budget = _MAX_DECODED
    runs = list(_B64_MIME.finditer(text)) if "\n" in text else []
    mime = _Spans([(m.start(), m.end()) for m in runs])
    busy = _Spans(taken)
    for m in runs:
        joined = re.sub(r"\r?\n", "", m.group())
        decoded_mime = _b64_text(joined)
        if decoded_mime is not None:
            budget -= len(decoded_mime)
            span = m.span()
            yield decoded_mime, (lambda _hit, span=span: span), "base64"
    for m in _B64_RUN.finditer(text):
        if budget <= 0:
            break
        if mime.overlaps(m.start(), m.end()) or busy.overlaps(m.start(), m.end()):
            continue
        raw = m.group()
        decoded_b64 = _b64_text(raw)
        if decoded_b64 is not None:
            budget -= len(decoded_b64)
            span = m.span()
            named = _ASSIGNED.search(text, max(0, m.start() - 72), m.start())
            if named is not None:
                decoded_b64 = f"{named.group(1)}: {decoded_b64}"
            yield decoded_b64, (lambda _hit, span=span: span), "base64"


def _url_tokens(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each token (`_TOKEN`) that holds a URL escape or a form `+`, found from
    the marks rather than by splitting the whole text; each token once."""
    done = 0
    for m in _URL_MARK.finditer(text):
        at = m.start()
        if at < done:
            continue
        start = at
        while start > done and text[start - 1] not in "\"'<>" and not text[start - 1].isspace():
            start -= 1
        token = _TOKEN.match(text, at)  # the mark itself is made of token characters
        end = token.end() if token is not None else m.end()
        done = end
        yield start, end


class _Spans:
    """Sorted, merged spans with an O(log n) overlap test."""

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        merged: list[list[int]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = [m[0] for m in merged]
        self.ends = [m[1] for m in merged]

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self.starts, end - 1) - 1
        return i >= 0 and self.ends[i] > start


def _qp_blocks(text: str) -> Iterator[tuple[int, int]]:
    """Runs of lines with quoted-printable escapes or soft line breaks (joined lines)."""
    block: tuple[int, int] | None = None
    pos = 0
    for line in text.splitlines(keepends=True):
        end = pos + len(line)
        if _QP.search(line):
            block = (block[0], end) if block is not None else (pos, end)
        elif block is not None:
            yield block[0], end if text[block[1] - 2 : block[1]].endswith("=\n") else block[1]
            block = None
        pos = end
    if block is not None:
        yield block


def _unescape(text: str, base: int, mark: str, *, plus: bool) -> tuple[str, list[int]]:
    """Decode `%XX` (or `=XX`, and `=` soft line breaks) to latin-1 characters, one per byte,
    each mapped to the offset of the characters it came from."""
    text = text[: 3 * _MAX_DECODED + 3]  # an escape is at most 3 characters
    escapes = _URL_ESCAPE if mark == "%" else _QP_ESCAPE
    out: list[str] = []
    offsets: list[int] = []
    pos = 0
    for m in escapes.finditer(text):
        at = m.start()
        if at > pos:
            chunk = text[pos:at]
            out.append(chunk.replace("+", " ") if plus else chunk)
            offsets.extend(range(base + pos, base + at))
        escape = m.group()
        if escape[1] not in "\r\n":  # not a soft line break
            out.append(chr(int(escape[1:3], 16)))
            offsets.append(base + at)
        pos = m.end()
    if pos < len(text):
        chunk = text[pos:]
        out.append(chunk.replace("+", " ") if plus else chunk)
        offsets.extend(range(base + pos, base + len(text)))
    offsets.append(base + len(text))
    decoded = "".join(out)
    if len(decoded) > _MAX_DECODED:
        decoded, offsets = decoded[:_MAX_DECODED], offsets[: _MAX_DECODED + 1]
    # UTF-8 multi-byte sequences stay as latin-1 characters: every entity agentguard looks for
    # is ASCII, and the one-character-per-byte map keeps offsets exact.
    return decoded, offsets


_HEX = frozenset("0123456789abcdefABCDEF")


def _hex2(s: str) -> bool:
    return len(s) == 2 and s[0] in _HEX and s[1] in _HEX


def _mapper(offsets: list[int]) -> Any:
    def span(hit: Hit) -> tuple[int, int]:
        end = offsets[hit.end] if hit.end < len(offsets) else offsets[-1]
        return offsets[hit.start], end

    return span


def _b64_text(raw: str) -> str | None:
    """The text a base64 run (standard or URL-safe alphabet, as `_B64_RUN` matched it) decodes
    to, when it is mostly printable UTF-8."""
    if len(raw.rstrip("=")) % 4 == 1:
        return None  # no base64 encoding has this length
    padded = raw + "=" * (-len(raw) % 4)
    if "-" in raw or "_" in raw:
        padded = padded.translate(_URLSAFE)
    try:
        data = binascii.a2b_base64(padded)
        text = data.decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    if not text:
        return None
    if text.isprintable():
        return text
    printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
    return text if printable / len(text) > 0.95 else None
