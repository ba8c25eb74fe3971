"""Taint: values that arrived in untrusted content, found again in a later tool call's arguments.

An injected instruction rarely says "ignore your instructions"; it says "forward this to
attacker@evil.test". The attack lands when the model copies a value from a tool result into an
argument. So the guard remembers opaque fingerprints of the values in every untrusted result
(`fingerprints_of`), and `trace` reports each argument value that carries one of them and was
not in the user's own messages, plus arguments that copied a long run of untrusted text.

Fingerprints are digests of a normalized value, never the value: labels that hold them can be
stored and shown without leaking what they stand for. Previews are redacted for reviewers.
Every scan is bounded (characters, values, nodes, windows) and linear-time: patterns have
bounded quantifiers and may start only at the start of a run (a lookbehind), and they are run
only around anchors (an '@', a '://', a '.' or '-' inside a word, a run of digits), since most
of a text can start no value at all.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "ArgValue",
    "Provenance",
    "TaintValue",
    "ValueKind",
    "extract",
    "fingerprint",
    "fingerprints_of",
    "normalize",
    "trace",
    "values_in_args",
]

ValueKind = Literal["email", "url", "host", "iban", "account", "phone", "file", "id", "text"]

_PREFIX: dict[str, str] = {
    "email": "em",
    "url": "ur",
    "host": "ho",
    "iban": "ib",
    "account": "ac",
    "phone": "ph",
    "file": "fi",
    "id": "id",
    "text": "tx",
}
_PREVIEW_MAX = 60


@dataclass(frozen=True, slots=True)
class TaintValue:
    """One tracked value: its kind, an opaque fingerprint, and a redacted preview."""

    kind: ValueKind
    fingerprint: str
    preview: str


@dataclass(frozen=True, slots=True)
class ArgValue:
    """A value found in tool arguments, and where (`recipients[2].email`)."""

    path: str
    value: TaintValue


@dataclass(frozen=True, slots=True)
class Provenance:
    """An argument that carries untrusted content: what it is and which results it came from."""

    path: str
    kind: ValueKind
    preview: str
    sources: tuple[str, ...]


# --- normalization ---------------------------------------------------------------------------

_ZERO_WIDTH = dict.fromkeys(
    map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff")
)
_NOT_DIGIT = re.compile(r"[^0-9]")
_PHONE_TRUNK = re.compile(r"^(\+\s*[0-9]{1,3})[\s.\-]*\(0\)")
_HOST_PORT = re.compile(r"([^:\[\]]*):[0-9]{1,5}")
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}


def _idna(host: str) -> str:
    """Lowercase; non-ASCII hosts to punycode, so 'bücher.example' meets 'xn--bcher-kva.example'."""
    host = host.lower()
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii").lower()
    except (UnicodeError, ValueError):
        return host


def _step_email(s: str) -> str:
    s = s.strip().casefold()
    if s.endswith(">") and "<" in s:
        s = s[s.rfind("<") + 1 : -1].strip()
    if s.startswith("mailto:"):
        s = s[7:].strip()
    at = s.rfind("@")
    if at >= 0 and "?" in s[at:]:
        s = s[: s.index("?", at)]
    return s


def _step_url(s: str) -> str:
    s = s.strip()
    try:
        parts = urlsplit(s)
        port = parts.port
    except ValueError:
        return s
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc:
        return s
    host = _idna(parts.hostname or "")
    if ":" in host:
        host = f"[{host}]"
    userinfo, at, _ = parts.netloc.rpartition("@")
    netloc = f"{userinfo}{at}{host}"
    if port is not None and _DEFAULT_PORTS.get(scheme) != port:
        netloc += f":{port}"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{parts.path or '/'}{query}"


def _step_host(s: str) -> str:
    s = s.strip().lower()
    match = _HOST_PORT.fullmatch(s)
    if match:
        s = match.group(1)
    s = s.rstrip(".")
    while s.startswith("www."):
        s = s[4:]
    return _idna(s)


def _step_iban(s: str) -> str:
    return "".join(s.upper().split())


def _step_phone(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).strip()
    if s[:4].lower() == "tel:":
        s = s[4:].strip()
    s = _PHONE_TRUNK.sub(r"\1", s)
    digits = _NOT_DIGIT.sub("", s)
    if s.startswith("+"):
        return "+" + digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    return digits


def _step_account(s: str) -> str:
    return _NOT_DIGIT.sub("", unicodedata.normalize("NFKC", s))


def _step_file(s: str) -> str:
    return re.split(r"[/\\]", s.strip())[-1].strip().casefold()


def _step_id(s: str) -> str:
    return s.strip().casefold()


def _norm_text(s: str) -> str:
    """Text for substring comparison: invisible characters out, NFKC, casefold, one space."""
    s = unicodedata.normalize("NFKC", s.translate(_ZERO_WIDTH)).casefold()
    return " ".join(s.split())


_STEPS: dict[str, Callable[[str], str]] = {
    "email": _step_email,
    "url": _step_url,
    "host": _step_host,
    "iban": _step_iban,
    "account": _step_account,
    "phone": _step_phone,
    "file": _step_file,
    "id": _step_id,
    "text": _norm_text,
}


def normalize(kind: ValueKind, raw: str) -> str:
    """The one spelling of a value, so `Bob@Evil.Test` and `<bob@evil.test>` are the same.

    Each kind's rule is applied until it stops changing anything (at most four times), which
    makes `normalize` idempotent even for odd input where one pass would not settle; input that
    never settles is returned as given.
    """
    step = _STEPS.get(kind)
    if step is None:
        raise ValueError(f"unknown value kind: {kind!r}")
    if not isinstance(raw, str):
        raise TypeError("raw must be a string")
    current = raw
    for _ in range(4):
        following = step(current)
        if following == current:
            return current
        current = following
    return raw


def _digest(kind: str, normalized: str) -> str:
    data = normalized.encode("utf-8", "surrogatepass")
    return f"{_PREFIX[kind]}:{hashlib.sha256(data).hexdigest()[:16]}"


def fingerprint(kind: ValueKind, raw: str) -> str:
    """Digest of the normalized value: equal values meet, and the value itself is not kept."""
    return _digest(kind, normalize(kind, raw))


# --- previews --------------------------------------------------------------------------------


def _clip(text: str, keep_tail: bool = False) -> str:
    if len(text) <= _PREVIEW_MAX and text.isprintable():
        return text
    if keep_tail:
        text = text[-256:]
    text = "".join(ch if ch.isprintable() else "?" for ch in text[:256])
    if len(text) <= _PREVIEW_MAX:
        return text
    if keep_tail:
        return "…" + text[-(_PREVIEW_MAX - 1) :]
    return text[: _PREVIEW_MAX - 1] + "…"


def _preview(kind: str, norm: str, raw: str) -> str:
    """Enough for a reviewer to recognize the value, never the whole of a personal one."""
    if kind == "email":
        local, _, domain = norm.rpartition("@")
        return _clip(f"{local[:1]}***@{domain}", keep_tail=True)
    if kind == "url":
        parts = norm.split("/", 3)
        rest = "…" if len(parts) > 3 and parts[3] else ""
        return _clip(f"{parts[0]}//{parts[2] if len(parts) > 2 else ''}/{rest}")
    if kind == "host":
        return _clip(norm, keep_tail=True)
    if kind == "iban":
        return _clip(f"{norm[:4]} **** {norm[-4:]}")
    if kind == "account":
        return "****" + norm[-4:]
    if kind == "phone":
        digits = norm.lstrip("+")
        if norm.startswith("+"):
            return f"+{digits[:2]}******{digits[-2:]}"
        return f"******{digits[-3:]}"
    if kind == "file":
        name = _clip(norm, keep_tail=True)
        has_dir = "/" in raw or "\\" in raw
        return name if name.startswith("…") or not has_dir else _clip("…" + name, keep_tail=True)
    if kind == "id":
        return norm if len(norm) <= 24 else f"{norm[:12]}…{norm[-8:]}"
    return _clip(norm)


# --- extraction ------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+\-])([A-Za-z0-9._%+\-]{1,64})@"
    r"([A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){1,8})"
)
_URL = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?:https?|ftps?|sftp|wss?)://[^\s<>\"'`{}|\\^]{1,2048}", re.IGNORECASE
)
_URL_TRAIL = ".,;:!?'\"*]}>)\u201d\u2019\u00bb\u300d\u300f"
_LABEL_TLD = re.compile(r"[a-z]{2,24}|xn--[a-z0-9\-]{1,59}")
_HOST = re.compile(
    r"(?<![A-Za-z0-9.\-@/:_%])"
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}([A-Za-z]{2,24}))"
    r"(?![A-Za-z0-9\-_@(]|\.[A-Za-z0-9])"
)
# Bare names count as hosts only with these endings: words that end identifiers in code
# (`logger.info`, `user.name`, `row.id`, `self.app`) are left out on purpose.
_TLDS = frozenset(
    _words(
        """com net org edu gov mil int biz io co ai dev xyz top online club shop cloud tech vip icu
    ly gg tv cc ws su us uk de fr nl eu ru cn jp br au ca ch es se dk fi be ie nz za mx ar pt gr
    tr kr tw hk sg cz hu ro ua il ae sa ir vn th my ph kz by lt lv ee lu li sk si hr bg pk ng ke
    eg cl pe ve cx nu tk ml ga cf gq test example invalid onion local internal lan arpa"""
    )
)
_FILE_EXTS = _words(
    "pdf docx doc xlsx xlsm xls csv tsv pptx ppt odt ods odp rtf txt md rst json yaml yml xml "
    "html htm ini cfg conf toml log sql sqlite db eml msg pst ics vcf zip tar gz tgz bz2 xz 7z "
    "rar jar war iso dmg pkg deb rpm exe msi bat cmd ps1 sh bash py ipynb js ts jsx tsx java kt "
    "go rs rb php cpp cc c h hpp cs swift pl lua png jpg jpeg gif svg bmp tiff webp mp3 mp4 wav "
    "mov avi pem key crt cer p12 pfx env bak dll so apk"
)
_FILE_EXT_SET = frozenset(_FILE_EXTS)
_FILE = re.compile(
    r"(?<![A-Za-z0-9_\-.~/\\:@%])"
    r"((?:[A-Za-z]:)?[/\\~]?(?:[A-Za-z0-9_\-.~]{1,128}[/\\]){0,32}"
    r"[A-Za-z0-9_\-.~]{0,128}?\.(?:" + "|".join(sorted(_FILE_EXTS, key=len, reverse=True)) + r"))"
    r"(?![A-Za-z0-9_\-]|\.[A-Za-z0-9])",
    re.IGNORECASE,
)
# The boundary check comes after the first character so the engine can skip ahead to a capital.
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9].)[A-Z][0-9]{2}(?: ?[A-Z0-9]){11,30}")
_IBAN_LENGTHS = {
    cc: int(n)
    for cc, n in (
        item.split(":")
        for item in _words(
            """AD:24 AE:23 AL:28 AT:20 AZ:28 BA:20 BE:16 BG:22 BH:22 BI:27 BR:29 BY:28
        CH:21 CR:22 CY:28 CZ:24 DE:22 DJ:27 DK:18 DO:28 EE:20 EG:29 ES:24 FI:18 FK:18 FO:18 FR:27
        GB:22 GE:22 GI:23 GL:18 GR:27 GT:28 HR:21 HU:28 IE:22 IL:23 IQ:23 IS:26 IT:27 JO:30 KW:30
        KZ:20 LB:28 LC:32 LI:21 LT:20 LU:20 LV:21 LY:25 MC:27 MD:24 ME:22 MK:19 MN:20 MR:27 MT:31
        MU:30 NI:28 NL:18 NO:15 OM:23 PK:24 PL:28 PS:29 PT:25 QA:29 RO:24 RS:22 RU:33 SA:24 SC:31
        SD:18 SE:24 SI:19 SK:24 SM:27 SO:23 ST:25 SV:28 TL:23 TN:24 TR:26 UA:29 VA:22 VG:24 XK:20
        YE:30"""
        )
    )
}
_ACCOUNT = re.compile(
    r"\b(?:account|acct|a/c|acc|kto|konto|kontonummer|compte|cuenta|conta|rekening|bank|"
    r"beneficiary|routing|aba|bsb|sort\s{1,3}code|wire|deposit)\b"
    r"[^0-9\n]{0,24}?(?<![A-Za-z0-9])([0-9](?:[ \-]?[0-9]){7,16})",
    re.IGNORECASE,
)
_PHONE_PATTERNS = (
    re.compile(r"(?<![A-Za-z0-9+])\+[1-9](?:[ .\-/]?[0-9()]){6,24}"),
    re.compile(r"(?<![A-Za-z0-9+.,\-/])00[1-9](?:[ .\-/]?[0-9()]){6,24}"),
    re.compile(
        r"(?<![A-Za-z0-9+\-./])(?:1[ .\-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[.\-])"
        r"[2-9][0-9]{2}[ .\-][0-9]{4}"
    ),
    re.compile(r"(?<![A-Za-z0-9+\-./,])0[1-9][0-9]{0,4}[ /\-][0-9]{2,8}(?:[ \-][0-9]{2,8}){0,4}"),
    re.compile(
        r"\b(?:tel|telephone|phone|mobile|mob|cell|fax|call|sms|whatsapp|telefon|tlf)\b"
        r"[.:#]?\s{0,3}(?:no\.?|nr\.?|number)?[.:#]?\s{0,3}(\+?[0-9(](?:[ .\-/]?[0-9()]){6,24})",
        re.IGNORECASE,
    ),
)
_DATE = re.compile(r"[0-9]{1,4}[\-/.][0-9]{1,2}[\-/.][0-9]{1,4}")
_ID = re.compile(r"(?<![A-Za-z0-9_\-./:#@])[A-Za-z0-9]{1,32}(?:[\-_][A-Za-z0-9]{1,32}){1,12}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_ID_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{4,62}[A-Za-z0-9]")
_NUMBERISH = re.compile(r"\+?[0-9()][0-9 ().\-/]{6,40}")
_LETTER = re.compile(r"[A-Za-z]")
# Anchors and the runs around them: the full patterns are run only there.
_LOCAL_RUN = re.compile(r"[A-Za-z0-9._%+\-]{0,65}")
_TOKEN = re.compile(r"[A-Za-z0-9_\-.~/\\:@%#]*")
_DOT = re.compile(r"\.(?=[A-Za-z0-9])")
_DASH = re.compile(r"-(?=[A-Za-z0-9])")
_UNDERSCORE = re.compile(r"_(?=[A-Za-z0-9])")
_NUM_RUN = re.compile(r"[0-9][0-9 ().\-/]{6,}[0-9]")
_NUM_TAIL = re.compile(r"[ ().\-/]*")
_CONTEXT_BEFORE = 64


class _Collector:
    """Values in first-found order, deduplicated by fingerprint, up to a bound."""

    __slots__ = ("limit", "seen", "seen_raw", "values")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.values: list[TaintValue] = []
        self.seen: set[str] = set()
        self.seen_raw: set[tuple[str, str]] = set()

    def add(self, kind: ValueKind, raw: str) -> bool:
        """Record one value; False once the bound is reached, so scanning can stop."""
        if len(self.values) >= self.limit:
            return False
        if (kind, raw) in self.seen_raw:
            return True
        self.seen_raw.add((kind, raw))
        norm = normalize(kind, raw)
        if not norm or norm == "+":
            return True
        fp = _digest(kind, norm)
        if fp not in self.seen:
            self.seen.add(fp)
            self.values.append(TaintValue(kind, fp, _preview(kind, norm, raw)))
        return len(self.values) < self.limit


def _valid_domain(domain: str) -> str | None:
    """The longest prefix of labels that ends in a plausible TLD, or None."""
    labels = domain.strip("-").split(".")
    while len(labels) >= 2:
        if all(labels) and _LABEL_TLD.fullmatch(labels[-1].lower()):
            return ".".join(labels)
        labels.pop()
    return None


def _scan_emails(text: str, out: _Collector, spans: list[tuple[int, int]]) -> bool:
    covered = 0
    at = text.find("@")
    while at >= 0:
        match = None
        if at >= covered:
            run = _LOCAL_RUN.match(text[max(covered, at - 65) : at][::-1])
            size = run.end() if run else 0
            if 0 < size <= 64:  # a longer run has no valid start: the pattern would not match
                match = _EMAIL.match(text, at - size)
        if match is not None:
            covered = match.end()
            local = match.group(1).lstrip(".")
            domain = _valid_domain(match.group(2))
            if local and domain is not None:
                spans.append((match.start(), match.end()))
                if not out.add("email", f"{local}@{domain}") or not out.add("host", domain):
                    return False
        at = text.find("@", at + 1)
    return True


def _trim_url(url: str) -> str:
    while url and url[-1] in _URL_TRAIL:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def _scan_urls(text: str, out: _Collector, spans: list[tuple[int, int]]) -> bool:
    covered = 0
    sep = text.find("://")
    while sep >= 0:
        match = None
        for start in range(max(covered, sep - 5), sep - 1):
            match = _URL.match(text, start)
            if match is not None:
                break
        if match is not None:
            covered = match.end()
            url = _trim_url(match.group(0))
            try:
                host = urlsplit(url).hostname
            except ValueError:
                host = None
            if host:
                spans.append((match.start(), match.start() + len(url)))
                if not out.add("url", url) or not out.add("host", host):
                    return False
        sep = text.find("://", sep + 3)
    return True


def _token_regions(text: str, anchors: Iterable[int]) -> list[tuple[int, int]]:
    """The word-like runs (maximal, so the same as scanning the whole text) around anchors."""
    regions: list[tuple[int, int]] = []
    covered = 0
    for anchor in anchors:
        if anchor < covered:
            continue
        back = _TOKEN.match(text[covered:anchor][::-1])
        start = anchor - (back.end() if back else 0)
        forward = _TOKEN.match(text, anchor)
        covered = forward.end() if forward else anchor + 1
        regions.append((start, min(len(text), covered + 1)))
    return regions


def _number_regions(text: str) -> list[tuple[int, int]]:
    """Runs of 8+ digit-like characters with room for a keyword before ('account no.')."""
    regions: list[tuple[int, int]] = []
    for run in _NUM_RUN.finditer(text):
        if len(_NOT_DIGIT.sub("", run.group())) < 8:
            continue
        start = max(0, run.start() - _CONTEXT_BEFORE)
        tail = _NUM_TAIL.match(text, run.end())
        end = min(len(text), (tail.end() if tail else run.end()) + 1)
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
        else:
            regions.append((start, end))
    return regions


def _scan_hosts(text: str, out: _Collector, regions: _Regions) -> bool:
    for start, end in regions.dots:
        for match in _HOST.finditer(text, start, end):
            tld = match.group(2).lower()
            if tld in _TLDS and tld not in _FILE_EXT_SET and not out.add("host", match.group(1)):
                return False
    return True


def _iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34 or not compact.isalnum() or not compact.isascii():
        return False
    if not (compact[:2].isalpha() and compact[2:4].isdigit()):
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1
    except ValueError:
        return False


def _iban_in(raw: str) -> tuple[str | None, int]:
    """The IBAN a match starts with (or None when the checksum fails), and where it ends.

    The country's length decides where it ends, at a group edge; an IBAN-shaped run with a bad
    checksum still ends there, so its digits are not taken for a phone or account number.
    """
    compact = raw.replace(" ", "")
    length = _IBAN_LENGTHS.get(compact[:2])
    if length is None or len(compact) < length:
        return (compact if _iban_ok(compact) else None), len(raw)
    count = 0
    for index, ch in enumerate(raw):
        if ch != " ":
            count += 1
            if count == length:
                if raw[index + 1 : index + 2] not in ("", " "):
                    return None, len(raw)
                return (compact[:length] if _iban_ok(compact[:length]) else None), index + 1
    return None, len(raw)


def _scan_ibans(text: str, out: _Collector, spans: list[tuple[int, int]]) -> bool:
    for match in _IBAN.finditer(text):
        iban, end = _iban_in(match.group(0))
        spans.append((match.start(), match.start() + end))
        if iban is not None and not out.add("iban", iban):
            return False
    return True


def _run_continues(text: str, end: int) -> bool:
    """A digit run that the bounded pattern cut short: the digits go on past the match."""
    nxt = text[end : end + 1]
    return nxt.isdigit() or (nxt in (" ", "-") and text[end + 1 : end + 2].isdigit())


def _scan_accounts(text: str, out: _Collector, regions: _Regions) -> bool:
    for start, end in regions.numbers:
        for match in _ACCOUNT.finditer(text, start, end):
            digits = _NOT_DIGIT.sub("", match.group(1))
            if not 8 <= len(digits) <= 17 or _run_continues(text, match.end(1)):
                continue
            if not out.add("account", match.group(1)):
                return False
    return True


def _phone_digits(candidate: str) -> str | None:
    """A plausible phone number (8 to 15 digits, not a date), trimmed of trailing groups."""
    candidate = candidate.rstrip("()/.- ")
    if _DATE.fullmatch(candidate):
        return None
    digits = _NOT_DIGIT.sub("", candidate)
    while len(digits) > 15 and " " in candidate:
        candidate = candidate.rsplit(" ", 1)[0].rstrip("()/.- ")
        digits = _NOT_DIGIT.sub("", candidate)
    if not 8 <= len(digits) <= 15 or candidate.count("(") != candidate.count(")"):
        return None
    return candidate


def _scan_phones(text: str, out: _Collector, regions: _Regions) -> bool:
    for start, end in regions.numbers:
        for pattern in _PHONE_PATTERNS:
            group = 1 if pattern.groups else 0
            for match in pattern.finditer(text, start, end):
                if _run_continues(text, match.end(group)):
                    continue
                phone = _phone_digits(match.group(group))
                if phone is not None and not out.add("phone", phone):
                    return False
    return True


def _scan_files(text: str, out: _Collector, regions: _Regions) -> bool:
    for start, end in regions.dots:
        for match in _FILE.finditer(text, start, end):
            if not out.add("file", match.group(1)):
                return False
    return True


def _id_ok(token: str) -> bool:
    if _UUID.fullmatch(token):
        return True
    if not 6 <= len(token) <= 64 or not _LETTER.search(token):
        return False
    return sum(ch.isdigit() for ch in token) >= 2


def _scan_ids(text: str, out: _Collector, regions: _Regions) -> bool:
    for start, stop in regions.dashes:
        for match in _ID.finditer(text, start, stop):
            end = match.end()
            nxt = text[end : end + 1]
            if nxt.isalnum() or nxt in ("@", "-", "_"):
                continue
            if nxt in ".:/" and text[end + 1 : end + 2].isalnum():
                continue
            if _id_ok(match.group(0)) and not out.add("id", match.group(0)):
                return False
    return True


class _Regions:
    """Where the second-round scans look, found once per text."""

    __slots__ = ("dashes", "dots", "numbers")

    def __init__(self, text: str) -> None:
        self.dots = _token_regions(text, (m.start() for m in _DOT.finditer(text)))
        dashes = heapq.merge(
            (m.start() for m in _DASH.finditer(text)),
            (m.start() for m in _UNDERSCORE.finditer(text)),
        )
        self.dashes = _token_regions(text, dashes)
        self.numbers = _number_regions(text)


_Scan = Callable[[str, _Collector, _Regions], bool]
_SpanScan = Callable[[str, _Collector, list[tuple[int, int]]], bool]
# Whole-value kinds first; their spans are blanked before the rest are scanned, so the digits
# of an IBAN are not also a phone number and a URL's path is not also a file name or an id.
_FIRST: tuple[_SpanScan, ...] = (_scan_emails, _scan_urls, _scan_ibans)
_THEN: tuple[_Scan, ...] = (_scan_hosts, _scan_accounts, _scan_phones, _scan_files, _scan_ids)


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    parts: list[str] = []
    last = 0
    for start, end in sorted(spans):
        if end <= last:
            continue
        start = max(start, last)
        parts.append(text[last:start])
        parts.append(" " * (end - start))
        last = end
    parts.append(text[last:])
    return "".join(parts)


def extract(text: str, *, max_chars: int = 200_000, max_values: int = 2_000) -> list[TaintValue]:
    """Values in `text` worth tracking, deduplicated by fingerprint, at most `max_values`.

    Kinds are scanned in order of how much damage a redirected value does (emails, URLs and
    hosts first), so a text stuffed with decoy ids cannot crowd out an address; only the first
    `max_chars` characters are read.
    """
    if not isinstance(text, str):
        raise TypeError("text must be a string")
    if max_values <= 0 or max_chars <= 0 or not text:
        return []
    text = text[:max_chars]
    out = _Collector(max_values)
    spans: list[tuple[int, int]] = []
    for first in _FIRST:
        if not first(text, out, spans):
            return out.values
    text = _blank(text, spans)
    regions = _Regions(text)
    for scan in _THEN:
        if not scan(text, out, regions):
            break
    return out.values


def fingerprints_of(text: str) -> list[str]:
    """Fingerprints of the values in an untrusted result: what its label carries as taint."""
    return [value.fingerprint for value in extract(text)]


# --- arguments -------------------------------------------------------------------------------

_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")
_PATH_MAX = 256
_PATH_HEAD = 160
_LEAF_WHOLE_MAX = 256


def _key_segment(key: Any) -> str:
    if isinstance(key, str):
        text = key
    elif isinstance(key, (int, float)) or key is None:
        text = str(key) if not isinstance(key, int) or key.bit_length() <= 64 else "int"
    else:
        text = type(key).__name__
    if _SAFE_KEY.fullmatch(text):
        return text
    return "[" + json.dumps(text[:64]) + "]"


def _join(parent: str, head: str | None, segment: str, is_key: bool) -> tuple[str, str | None]:
    """Child path; past `_PATH_MAX` it keeps a fixed head and the last step, so deep nesting
    costs constant work per node instead of copying an ever longer path."""
    sep = "." if is_key and parent and not segment.startswith("[") else ""
    if head is not None:
        return head + sep + segment, head
    path = parent + sep + segment
    if len(path) > _PATH_MAX:
        head = parent[:_PATH_HEAD] + "…"
        return head + sep + segment, head
    return path, None


def _walk(args: Any, max_nodes: int) -> Iterator[tuple[str, str | int]]:
    """String and integer leaves with their paths, depth-first in order, without recursion."""
    stack: list[tuple[Any, str, str | None]] = [(args, "", None)]
    nodes = 0
    while stack and nodes < max_nodes:
        value, path, head = stack.pop()
        nodes += 1
        if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
            yield path or "$", value
        elif isinstance(value, Mapping):
            children: list[tuple[Any, str, str | None]] = []
            for key, item in value.items():
                if len(children) >= max_nodes - nodes:
                    break
                child, child_head = _join(path, head, _key_segment(key), True)
                children.append((item, child, child_head))
            stack.extend(reversed(children))
        elif isinstance(value, (list, tuple)):
            count = min(len(value), max_nodes - nodes)
            for index in range(count - 1, -1, -1):
                child, child_head = _join(path, head, f"[{index}]", False)
                stack.append((value[index], child, child_head))


def _whole_leaf(text: str, out: _Collector) -> None:
    """A leaf that is itself one value: `account="12345678"`, `domain="evil.example"`."""
    text = text.strip()
    if not text or len(text) > _LEAF_WHOLE_MAX:
        return
    compact = "".join(text.split()).upper()
    if 15 <= len(compact) <= 34 and _iban_ok(compact):
        out.add("iban", compact)
        return
    if _NUMBERISH.fullmatch(text):
        digits = _NOT_DIGIT.sub("", text)
        if 8 <= len(digits) <= 17 and not text.startswith("+"):
            out.add("account", text)
        if 8 <= len(digits) <= 15:
            out.add("phone", text)
        return
    if " " in text or "/" in text or "@" in text:
        return
    labels = text.rstrip(".").split(".")
    if (
        len(labels) >= 2
        and all(0 < len(label) <= 63 for label in labels)
        and all(ch.isalnum() or ch in "-_" for label in labels for ch in label)
        and not labels[-1].isdigit()
        and any(ch.isalpha() for ch in labels[-1])
    ):
        out.add("host", text)
    if _ID_TOKEN.fullmatch(text) and _LETTER.search(text) and any(ch.isdigit() for ch in text):
        out.add("id", text)


def _leaf_values(leaf: str | int) -> list[TaintValue]:
    if isinstance(leaf, int):
        out = _Collector(4)
        if leaf.bit_length() > 64:  # far beyond 17 digits, and str() of a huge int may raise
            return out.values
        digits = str(abs(leaf))
        if 8 <= len(digits) <= 17:
            out.add("account", digits)
        if 8 <= len(digits) <= 15:
            out.add("phone", digits)
        return out.values
    found = extract(leaf)
    out = _Collector(len(found) + 8)
    for value in found:
        out.seen.add(value.fingerprint)
        out.values.append(value)
    _whole_leaf(leaf, out)
    return out.values


def values_in_args(args: Any, *, max_nodes: int = 10_000) -> list[ArgValue]:
    """Every value in tool arguments with its path (`recipients[2].email`), in walk order.

    Besides what `extract` finds in each string, a leaf that is itself one value is classified
    as a whole (bare host, account or phone number, IBAN, id), since an argument has no
    surrounding words to give it context; integers of 8 to 17 digits count as account/phone.
    """
    return [
        ArgValue(path, value)
        for path, leaf in _walk(args, max_nodes)
        for value in _leaf_values(leaf)
    ]


# --- tracing ---------------------------------------------------------------------------------

_MAX_SOURCES = 5
_ARG_CHARS = 65_536
_MAX_WINDOWS = 4_096
_TEXT_CHARS = 200_000
# `w in text` scans about this many characters in the time one window is sliced and stored.
_SCAN_RATIO = 250
_CACHE_CHARS = 8_000_000

_norm_cache: OrderedDict[str, str] = OrderedDict()
_norm_cache_chars = 0
_norm_lock = threading.Lock()


def _norm_untrusted(text: str) -> str:
    """Normalized untrusted text, cached: the guard passes the same results on every call."""
    global _norm_cache_chars
    text = text[:_TEXT_CHARS]
    with _norm_lock:
        found = _norm_cache.get(text)
        if found is not None:
            _norm_cache.move_to_end(text)
            return found
    found = _norm_text(text)
    with _norm_lock:
        if text not in _norm_cache:
            _norm_cache[text] = found
            _norm_cache_chars += len(text) + len(found)
        while _norm_cache_chars > _CACHE_CHARS and _norm_cache:
            old, old_norm = _norm_cache.popitem(last=False)
            _norm_cache_chars -= len(old) + len(old_norm)
    return found


def _labels(sources: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for label in sources:
        if label not in out:
            out.append(label)
            if len(out) >= _MAX_SOURCES:
                break
    return tuple(out)


def _starts(length: int, size: int, step: int) -> list[int]:
    """Window starts every `step`, plus one flush with the end so the tail is covered too."""
    last = length - size
    starts = list(range(0, last + 1, step))
    if starts and starts[-1] != last:
        starts.append(last)
    return starts


def _text_hits(
    leaves: list[tuple[str, str]],
    untrusted_texts: Sequence[tuple[str, str]],
    user_texts: Sequence[str],
    size: int,
) -> list[Provenance]:
    """Arguments sharing a run of `size`+ characters with untrusted text and not with the user's.

    Windows every `size // 2` characters, so a shared run of 1.5 x `size` is always found and a
    shorter one (at least `size`) often. Two strategies, chosen by estimated cost: few windows
    are tested with `in` (a C-speed substring search) against each text; many are put in a set
    of every window of the arguments, and each untrusted text is probed at its own step.
    """
    step = max(1, size // 2)
    sources = [(label, _norm_untrusted(text)) for label, text in untrusted_texts]
    sources = [(label, text) for label, text in sources if len(text) >= size]
    if not sources:
        return []
    users = [_norm_text(text[:_TEXT_CHARS]) for text in user_texts]
    user_cache: dict[str, bool] = {}

    def from_user(window: str) -> bool:
        known = user_cache.get(window)
        if known is None:
            known = user_cache[window] = any(window in text for text in users)
        return known

    args: list[tuple[str, str, list[int]]] = []
    budget = _MAX_WINDOWS
    for path, leaf in leaves:
        if budget <= 0:
            break
        norm = _norm_text(leaf[:_ARG_CHARS])
        starts = _starts(len(norm), size, step)[:budget]
        if starts:
            budget -= len(starts)
            args.append((path, norm[: starts[-1] + size], starts))
    if not args:
        return []

    hits: dict[int, list[str]] = {}
    previews: dict[int, str] = {}

    def record(index: int, label: str, window: str) -> None:
        found = hits.setdefault(index, [])
        if label not in found and len(found) < _MAX_SOURCES:
            found.append(label)
            previews.setdefault(index, window)

    windows = sum(len(starts) for _, _, starts in args)
    arg_chars = sum(len(norm) for _, norm, _ in args)
    total = sum(len(text) for _, text in sources)
    if windows * total <= _SCAN_RATIO * (arg_chars + total // step):
        for index, (_, norm, starts) in enumerate(args):
            for label, text in sources:
                for start in starts:
                    window = norm[start : start + size]
                    if window in text and not from_user(window):
                        record(index, label, window)
                        break
    else:
        # Set operations run in C: the first owner of each window, plus the rare others.
        sets = [{norm[i : i + size] for i in range(len(norm) - size + 1)} for _, norm, _ in args]
        first: dict[str, int] = {}
        for index in range(len(sets) - 1, -1, -1):
            first.update(dict.fromkeys(sets[index], index))
        others: dict[str, list[int]] = {}
        union: set[str] = set()
        for index, windows_of in enumerate(sets):
            for window in windows_of & union:
                others.setdefault(window, []).append(index)
            union |= windows_of
        for label, text in sources:
            done: set[int] = set()
            for start in _starts(len(text), size, step):
                window = text[start : start + size]
                owner = first.get(window)
                if owner is None or from_user(window):
                    continue
                for index in (owner, *others.get(window, ())):
                    if index not in done:
                        done.add(index)
                        record(index, label, window)
                if len(done) == len(args):
                    break
    return [
        Provenance(args[index][0], "text", _clip("…" + previews[index][:48] + "…"), tuple(labels))
        for index, labels in hits.items()
    ]


def trace(
    args: Any,
    tainted: Mapping[str, Sequence[str]],
    trusted: Collection[str],
    *,
    untrusted_texts: Sequence[tuple[str, str]] = (),
    user_texts: Sequence[str] = (),
    min_substring: int = 40,
) -> list[Provenance]:
    """Which argument values came from untrusted content, and from which results.

    A value is reported when its fingerprint is in `tainted` and not in `trusted` (the values
    of the user's own messages), once per argument path and value. With `untrusted_texts`, an
    argument that shares a run of `min_substring` characters with one of them, and not with any
    of `user_texts`, is reported as kind 'text' (a run of 1.5 x `min_substring` is always found,
    a shorter one may be). Sorted by path, then kind.
    """
    if min_substring < 1:
        raise ValueError("min_substring must be at least 1")
    exempt = trusted if isinstance(trusted, (set, frozenset)) else frozenset(trusted)
    found: dict[tuple[str, str], Provenance] = {}
    strings: list[tuple[str, str]] = []
    for path, leaf in _walk(args, 10_000):
        if isinstance(leaf, str):
            strings.append((path, leaf))
        if not tainted:
            continue
        for value in _leaf_values(leaf):
            fp = value.fingerprint
            if fp in exempt or (path, fp) in found:
                continue
            sources = tainted.get(fp)
            if sources:
                found[(path, fp)] = Provenance(path, value.kind, value.preview, _labels(sources))
    out = list(found.values())
    if untrusted_texts and strings:
        out.extend(_text_hits(strings, untrusted_texts, user_texts, min_substring))
    out.sort(key=lambda p: (p.path, p.kind, p.preview, p.sources))
    return out
