"""Make untrusted text inert as instructions before a model (or a renderer) sees it.

Indirect prompt injection rides in what tools return: web pages, emails, files, retrieved
documents, MCP answers. `sanitize` removes what a reader cannot see, turns fake conversation
markers and tool-call syntax into visible data, and defangs images and links that would send
data to hosts nobody allowed. It is a pure function; `Sanitized.changes` says what it did.

What it does, in order:

1. Truncate to `max_chars` ("truncated": characters cut). This bounds all later work.
2. Remove Unicode tag characters U+E0000-U+E007F ("tag_chars": they spell invisible ASCII),
   invisible format characters ("invisible": zero-width space/joiners, word joiner, invisible
   operators, BOM, soft hyphen, Mongolian vowel separator, combining grapheme joiner, Hangul
   fillers, interlinear annotation marks, musical formatting, and runs of two or more variation
   selectors, which can smuggle bytes) and bidirectional controls ("bidi"). U+200D (ZWJ) goes
   too, even inside emoji: keeping it "only where harmless" needs a grapheme parser, and an
   emoji sequence split into its parts still reads fine. Surrogate code points, which no
   correct decoder produces and which cannot be encoded as UTF-8, become U+FFFD (counted as
   "invisible"), so the result always encodes.
3. Neutralize fake conversation markers ("role_marker"): a role word followed by a colon at the
   start of a line (after optional whitespace and markdown such as `#`, `*`, `>`, `-`):
   System, Assistant, User, Human, AI, Developer, Tool (any case, optionally followed by
   "prompt", "message", "instruction(s)" or "override"). Only line starts count, so prose such
   as "the system: a description" or "a user: guide" inside a sentence is untouched, while a
   line reading "User: John" is neutralized. Chat-template tokens anywhere (`<|name|>` in any
   spelling, including the full-width bars some templates use, `[INST]`, `[/INST]`,
   `<<SYS>>`, `<</SYS>>`, `<s>`, `</s>` exactly, `<start_of_turn>`, `### Instruction:` and
   kin) and role tags (`<system>`, `</assistant>`, `<user id=1>`, `<instructions>`...).
4. Neutralize tool-call syntax ("tool_call_syntax"): `<tool_call>`, `<function_call>`,
   `<function=...>`, `<invoke name=...>`, `<|python_tag|>`, `[TOOL_CALLS]`, the JSON keys
   `"tool_calls":` and `"function_call":`, and the opening brace of JSON objects shaped like a
   tool call (`{"name": ..., "arguments": ...}`, `{"type": "tool_use", ...}`).
5. Images and links ("image_defanged", "link_defanged"). An image loads by itself, so a URL
   carrying data in its query string leaks it without a click. Markdown images (inline and
   reference style) and HTML elements that fetch a URL (`<img>`, `<iframe>`, `<script>`,
   `<link>`, `<base>`, `srcset`, meta refresh...) survive only when the URL is http(s) to an
   allowed host; relative URLs and `data:` URIs are removed too (except a relative markdown
   image whose alt text nests brackets two deep: it loads from the page's own origin). Any
   other markup that holds an absolute URL attribute or CSS `url()` off the allowed hosts loses
   it, wherever it stands; text without a `<` holds no markup. Links (markdown inline,
   reference definitions, autolinks `<https://...>`, `<a href>`) survive when relative or
   http(s) to an allowed host; otherwise the text stays and the URL goes. Bare URLs in prose
   are left alone: nothing follows them without a person clicking, and a GitHub-style renderer
   that links them still does not load them. URLs are read the way a browser reads them:
   entities and backslash escapes decoded, tabs and newlines dropped, `https:evil.test` and
   `//evil.test` and `\\\\evil.test` have a host, user info before `@` is not the host,
   percent-encoded hosts decoded, IDNA (UTS 46, non-transitional) applied; when a link can be
   read two ways it must be allowed both ways.

Every replacement is visible data in one style: `[role-marker removed: system]`,
`[tool-call syntax removed: tool_call]`, `[image removed: evil.test]`, and for links the text
followed by `(link removed: evil.test)`. A neutralized reference definition keeps its label:
`[ref] (link removed: evil.test)`.

Idempotent: removing one construct can join its neighbours into a new one (`[a]` followed by a
defanged link whose text starts with "(https://..."), so steps 3-5 repeat until nothing
changes. A text built to keep producing new constructs round after round is hostile; after a
few rounds the characters every rule needs (`<>[](){}|:="'#`) become spaces ("scrubbed"), and
nothing in the result can act. Hence `sanitize(sanitize(x).text).text == sanitize(x).text`,
as long as the result fits `max_chars` (a replacement can be longer than what it replaces).

Bounded work on hostile input: every pattern is linear (single-character alternatives, bounded
repetition, lookaheads of bounded width) and every scan keeps moving forward.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote

__all__ = ["Change", "Sanitized", "host_allowed", "sanitize"]

_KINDS = (
    "truncated",
    "tag_chars",
    "invisible",
    "bidi",
    "role_marker",
    "tool_call_syntax",
    "image_defanged",
    "link_defanged",
    "scrubbed",
)
_MAX_ROUNDS = 4
_DETAIL_MAX = 100


@dataclass(frozen=True)
class Change:
    """One kind of change and how often it happened; `detail` names hosts for links/images."""

    kind: str
    count: int
    detail: str | None = None


@dataclass(frozen=True)
class Sanitized:
    """The sanitized text and what was changed to get it."""

    text: str
    changes: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class _Tally:
    """Counts per kind, and the distinct hosts named, across all rounds."""

    __slots__ = ("counts", "details")

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(_KINDS, 0)
        self.details: dict[str, list[str]] = {}

    def add(self, kind: str, count: int = 1, detail: str | None = None) -> None:
        if count <= 0:
            return
        self.counts[kind] += count
        if detail is not None:
            seen = self.details.setdefault(kind, [])
            if detail not in seen and len(seen) < 16:
                seen.append(detail)

    def changes(self) -> tuple[Change, ...]:
        out = []
        for kind in _KINDS:
            if self.counts[kind]:
                names = self.details.get(kind)
                detail = _clip(", ".join(names)) if names else None
                out.append(Change(kind, self.counts[kind], detail))
        return tuple(out)


def _clip(text: str, limit: int = _DETAIL_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- step 2: what a reader cannot see -------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")
_TAG_CHARS = re.compile("[\U000e0000-\U000e007f]+")
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u115f\u1160\u180e\u200b-\u200d\u2060-\u2065\u3164\ufeff\uffa0"
    "\ufff9-\ufffb\U0001d173-\U0001d17a]+"
)
_VARIATION_RUN = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]{2,}")
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]+")
_ANY_HIDDEN = re.compile(
    "[\ud800-\udfff\U000e0000-\U000e007f\u00ad\u034f\u115f\u1160\u180e\u200b-\u200f"
    "\u2060-\u2065\u3164\ufeff\uffa0\ufff9-\ufffb\U0001d173-\U0001d17a\u061c\u202a-\u202e"
    "\u2066-\u2069\ufe00-\ufe0f\U000e0100-\U000e01ef]"
)


def _strip_invisible(text: str, tally: _Tally) -> str:
    """Step 2: remove what renders as nothing but a model still reads."""
    if text.isascii() or _ANY_HIDDEN.search(text) is None:
        return text
    text, n = _SURROGATE.subn("\ufffd", text)
    tally.add("invisible", n)
    for pattern, kind in (
        (_TAG_CHARS, "tag_chars"),
        (_INVISIBLE, "invisible"),
        (_BIDI, "bidi"),
        (_VARIATION_RUN, "invisible"),
    ):
        before = len(text)
        text = pattern.sub("", text)
        tally.add(kind, before - len(text))
    return text


# -- step 3: fake conversation markers ------------------------------------------------------

_HSPACE = "\\t \u00a0\u1680\u2000-\u200a\u202f\u205f\u3000"
# Led by the line break itself, so the scan is fast: "\n" (a literal, the fastest) in one
# pattern, the rarer breaks in another; the text is searched with a "\n" in front so that its
# first line counts too.
_LINE_ROLE_REST = (
    f"(?P<prefix>[{_HSPACE}#*>_~`|+\\-]{{0,200}})"
    + r"(?i:(?P<word>system|assistant|user|human|ai|developer|tool))"
    + r"(?i:(?P<extra>[ \t]{1,3}(?:prompt|message|instructions?|override)))?"
    + "[*_~`]{0,3}[ \\t]{0,3}[:\uff1a]"
)
_LINE_ROLE = re.compile("(?P<lead>\n)" + _LINE_ROLE_REST)
_RARE_BREAKS = "\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_LINE_ROLE_RARE = re.compile(f"(?P<lead>[\\r{_RARE_BREAKS}])" + _LINE_ROLE_REST)
_CHAT_TOKEN = re.compile(
    "[<\\[#](?:"
    "(?<=<)[|\uff5c](?P<pipe>[A-Za-z0-9_.:\\-\u2581]{1,40})[|\uff5c]>"
    r"|(?<=\[)(?i:(?P<bracket>/?(?:INST|SYSTEM_PROMPT|AVAILABLE_TOOLS|TOOL_RESULTS|TOOL_CALLS)))\]"
    r"|(?<=<)<(?i:(?P<sys>/?SYS))>>"
    r"|(?<=<)(?i:(?P<turn>start_of_turn|end_of_turn))>"
    r"|(?<=<)(?P<s>/?s)>"
    r"|(?<=#)(?<!##)#{1,5}[ \t]*(?i:(?P<alpaca>instruction|system|response|input))[ \t]*:"
    ")"
)
_TOOL_TOKENS = frozenset({"python_tag", "call", "tool_calls"})
_ROLE_TAG = re.compile(
    r"<[ \t]*(?P<close>/?)[ \t]*(?P<name>system|assistant|user|human|developer|instructions?)"
    r"(?:[\s/][^<>]{0,1000})?>",
    re.IGNORECASE,
)
_NAME_CHARS = re.compile(r"[^a-z0-9_/ ]+")


def _name(raw: str) -> str:
    return _NAME_CHARS.sub("_", raw.casefold().replace("\u2581", "_"))[:40]


def _role_markers(text: str, tally: _Tally) -> str:
    """Step 3: a turn marker inside data becomes data."""

    def line_role(m: re.Match[str]) -> str:
        tally.add("role_marker")
        name = m["word"] + (" " + m["extra"].strip() if m["extra"] else "")
        return f"{m['lead']}{m['prefix']}[role-marker removed: {_name(' '.join(name.split()))}]"

    def token(m: re.Match[str]) -> str:
        name = next(g for g in m.groups() if g is not None)
        if _name(name) in _TOOL_TOKENS:
            tally.add("tool_call_syntax")
            return f"[tool-call syntax removed: {_name(name)}]"
        tally.add("role_marker")
        return f"[role-marker removed: {_name(name)}]"

    def role_tag(m: re.Match[str]) -> str:
        tally.add("role_marker")
        return f"[role-marker removed: {m['close']}{_name(m['name'])}]"

    if ":" in text or "\uff1a" in text:
        text = _LINE_ROLE.sub(line_role, "\n" + text)[1:]
        if text.count("\r") != text.count("\r\n") or any(c in text for c in _RARE_BREAKS):
            text = _LINE_ROLE_RARE.sub(line_role, text)
    if "<" in text or "[" in text or "#" in text:
        text = _CHAT_TOKEN.sub(token, text)
    if "<" in text:
        text = _ROLE_TAG.sub(role_tag, text)
    return text


# -- step 4: tool-call syntax ---------------------------------------------------------------

_TOOL_TAG = re.compile(
    r"<[ \t]*(?P<close>/?)[ \t]*(?:[A-Za-z][A-Za-z0-9_\-]{0,20}:)?"
    r"(?P<name>tool_calls?|function_calls?|tool_use|tool_result|tool_response|invoke)"
    r"(?:[\s/][^<>]{0,1000})?>"
    r"|<(?P<fn>function)=[^<>\n]{0,200}>"
    r"|<(?P<fnclose>/function)[ \t]*>"
    r"|<(?P<param>parameter)\s+name[ \t]*=[^<>]{0,1000}>",
    re.IGNORECASE,
)
_TOOL_KEY = re.compile(r"""["'](?P<key>tool_calls|function_call)["'][ \t]*:""", re.IGNORECASE)
_Q = "[\"']"  # JSON or a Python repr
_TOOL_TYPES = "tool_use|tool_call|function_call|function|server_tool_use|mcp_tool_use"
_TOOL_JSON = re.compile(
    # {"name": "...", ..., "arguments": ...} (either quote style, keys in this object)
    rf"\{{(?=[^{{}}]{{0,400}}?{_Q}(?:name|tool_name){_Q}\s{{0,20}}:\s{{0,20}}{_Q})"
    rf"(?=[^{{}}]{{0,800}}?{_Q}(?:arguments|parameters){_Q}\s{{0,20}}:)"
    # {"type": "tool_use", ...}
    rf"|\{{(?=[^{{}}]{{0,400}}?{_Q}type{_Q}\s{{0,20}}:\s{{0,20}}{_Q}(?:{_TOOL_TYPES}){_Q})"
    # {"arguments": {...}, "name": ...}
    rf"|\{{(?=\s{{0,20}}{_Q}(?:arguments|parameters){_Q}\s{{0,20}}:)"
    rf"(?=[^\n]{{0,1000}}?{_Q}name{_Q}\s{{0,20}}:)",
    re.IGNORECASE,
)


def _tool_calls(text: str, tally: _Tally) -> str:
    """Step 4: text shaped like a tool call is shown as data, not parsed as one."""

    def tag(m: re.Match[str]) -> str:
        tally.add("tool_call_syntax")
        if m["name"] is not None:
            return f"[tool-call syntax removed: {m['close']}{_name(m['name'])}]"
        name = m["fn"] or m["fnclose"] or m["param"]
        return f"[tool-call syntax removed: {_name(name)}]"

    def key(m: re.Match[str]) -> str:
        tally.add("tool_call_syntax")
        return f"[tool-call syntax removed: {_name(m['key'])}]"

    def brace(_: re.Match[str]) -> str:
        tally.add("tool_call_syntax")
        return "[tool-call syntax removed: json]"

    if "<" in text:
        text = _TOOL_TAG.sub(tag, text)
    if '"' in text or "'" in text:
        text = _TOOL_KEY.sub(key, text)
    if "{" in text:
        text = _TOOL_JSON.sub(brace, text)
    return text


# -- hosts and URLs ---------------------------------------------------------------------------

_HOST_OK = re.compile(r"[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*|\[[0-9a-f:.]+\]")
_HOST_SHOWN = re.compile(r"[^a-z0-9._:\-]")


@lru_cache(maxsize=4096)
def _norm_host(host: str) -> str | None:
    """Lower case, IDNA (UTS 46, non-transitional, as browsers do), one trailing dot dropped;
    None when it is not a host name at all."""
    h = host.strip()
    if h.endswith("."):
        h = h[:-1]
    if not h or len(h) > 253:
        return None
    if h.isascii():
        h = h.lower()
    else:
        import idna  # light, and only needed for international names

        try:
            h = idna.encode(h, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    return h if _HOST_OK.fullmatch(h) else None


class _Hosts:
    """The allow-list, normalized once."""

    __slots__ = ("exact", "suffixes")

    def __init__(self, allowed: Iterable[str]) -> None:
        exact: set[str] = set()
        suffixes: set[str] = set()
        for entry in (allowed,) if isinstance(allowed, str) else allowed:  # one name, not letters
            if not isinstance(entry, str):
                continue
            wildcard = entry.strip().startswith("*.")
            norm = _norm_host(entry.strip()[2:] if wildcard else entry)
            if norm is None or norm.startswith("["):
                continue
            suffixes.add("." + norm)
            if not wildcard:
                exact.add(norm)
        self.exact = frozenset(exact)
        self.suffixes = tuple(sorted(suffixes))

    def allows(self, host: str) -> bool:
        norm = _norm_host(host)
        if norm is None:
            return False
        return norm in self.exact or norm.endswith(self.suffixes)


def host_allowed(host: str, allowed_hosts: Collection[str]) -> bool:
    """Whether `host` is an allowed entry or a subdomain of one ("example.com" allows
    "docs.example.com"; "*.example.com" allows only subdomains). Case-insensitive,
    IDNA-normalized, one trailing dot ignored; anything unparseable is not allowed."""
    return _Hosts(allowed_hosts).allows(host)


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]{0,40}):")
_TAB_NL = re.compile(r"[\t\n\r]")
_C0_SPACE = "".join(chr(i) for i in range(0x21))
_MD_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_AUTHORITY = re.compile(r"[^/\\?#]*")
_SCHEME_SHOWN = re.compile(r"[^a-z0-9+.\-]")


def _target(url: str) -> tuple[str | None, str | None]:
    """(scheme, host) as a browser reads the URL. scheme None: relative; "": scheme-relative."""
    if "&" in url:
        url = html.unescape(url)
    url = _TAB_NL.sub("", url).strip(_C0_SPACE)
    m = _SCHEME.match(url)
    if m:
        scheme = m.group(1).lower()
        if scheme not in ("http", "https"):
            return scheme, None
        return scheme, _host_of(url[m.end() :].lstrip("/\\"))
    if url[:2] in ("//", "\\\\", "/\\", "\\/"):
        return "", _host_of(url.lstrip("/\\"))
    return None, None


def _host_of(rest: str) -> str:
    authority = _AUTHORITY.match(rest)
    auth = authority.group(0) if authority else ""
    auth = auth[auth.rfind("@") + 1 :]
    if auth.startswith("["):
        close = auth.find("]")
        host = auth[: close + 1] if close > 0 else auth
    else:
        host = auth.split(":", 1)[0]
    return unquote(host) if "%" in host else host


def _describe(scheme: str | None, host: str | None) -> str:
    """A short, inert name for where a URL points: safe to put back into the text."""
    if host:
        norm = _norm_host(host)
        shown = norm if norm is not None else _HOST_SHOWN.sub("?", host.lower())
        return _clip(shown.strip("[]") or "invalid host")
    if scheme is None:
        return "relative URL"
    if scheme == "":
        return "invalid URL"
    return f"{_SCHEME_SHOWN.sub('', scheme)[:20]} URL"


class _Urls:
    """Decisions on URLs for one call: images need an allowed http(s) host; links may also be
    relative."""

    __slots__ = ("_seen", "hosts")

    def __init__(self, hosts: _Hosts) -> None:
        self.hosts = hosts
        self._seen: dict[str, tuple[bool, str | None]] = {}

    def _verdict(self, url: str) -> tuple[bool, str | None]:
        """(relative?, why it is not allowed: None if allowed; a relative URL names itself)."""
        found = self._seen.get(url)
        if found is None:
            scheme, host = _target(url)
            if scheme is None:
                found = (True, _describe(None, None))
            elif scheme in ("", "http", "https") and host and self.hosts.allows(host):
                found = (False, None)
            else:
                found = (False, _describe(scheme, host))
            if len(self._seen) < 4096:
                self._seen[url] = found
        return found

    def bad(self, urls: Iterable[str], *, relative_ok: bool) -> str | None:
        """A description of the first URL not allowed, or None when all are allowed. A URL
        with backslashes is read with and without markdown's escapes (renderers differ)."""
        for url in urls:
            readings = (url, _MD_ESCAPE.sub(r"\1", url)) if "\\" in url else (url,)
            for reading in readings:
                relative, why = self._verdict(reading)
                if relative and relative_ok:
                    continue
                if why is not None:
                    return why
        return None


# -- step 5: images and links -----------------------------------------------------------------

# After "](": a destination that may leave the page (a scheme, "//", an entity or escape that
# could spell one). Anything else is a relative URL for every reader.
_MAY_LEAVE = (
    r"(?=[\x00-\x20]{0,40}<?[\x00-\x20]{0,40}"
    r"(?:[A-Za-z][A-Za-z0-9+.\-\t]{0,40}[:&\\]|[/\\][\t\n\r]{0,5}[/\\&]|&))"
)
_MD_INLINE = re.compile(
    r"!\[(?P<alt>(?:[^\[\]]|\[[^\[\]]{0,200}\]){0,1000})\]\("
    r"|\[(?P<text>[^\[\]]{0,1000})\]\(" + _MAY_LEAVE + r"|\]\(" + _MAY_LEAVE
)
_WS_NL = re.compile(r"[ \t]*(?:\r?\n[ \t]*)?")
_ANGLE_DEST = re.compile(r"<((?:[^<>\n\\]|\\.){0,2000})>")
_RAW_DEST = re.compile(
    r"(?:[^\x00-\x20()\\]|\\.|\((?:[^\x00-\x20()\\]|\\.){0,1000}\)){0,2000}", re.DOTALL
)
_TITLE = re.compile(
    r"\"(?:[^\"\\]|\\.){0,2000}\"|'(?:[^'\\]|\\.){0,2000}'|\((?:[^()\\]|\\.){0,2000}\)",
    re.DOTALL,
)
_LOOSE_DEST = re.compile(r"<?([^\s)]{0,2000})")
_PLAIN_DEST = re.compile(r"[ \t]{0,20}([^\s()<>\\&\"']{0,2000})[ \t]{0,20}\)")


def _inline_dest(text: str, i: int) -> tuple[int, list[str], bool]:
    """After `](` at `i`: (end of the link, the ways to read its URL, whether it is a valid
    CommonMark link). Renderers disagree on odd destinations; every reading is checked."""
    plain = _PLAIN_DEST.match(text, i)
    if plain:  # the common case: one reading only
        return plain.end(), [plain.group(1)], True
    j = _WS_NL.match(text, i)
    start = j.end() if j else i
    loose = _LOOSE_DEST.match(text, start)
    loose_url = loose.group(1).removesuffix(">") if loose else ""
    loose_end = loose.end() if loose else start
    dest: str | None = None
    k = start
    if text.startswith("<", start):
        am = _ANGLE_DEST.match(text, start)
        if am:
            dest, k = am.group(1), am.end()
    else:
        rm = _RAW_DEST.match(text, start)
        if rm:
            dest, k = rm.group(0), rm.end()
    if dest is not None:
        ws = _WS_NL.match(text, k)
        after = ws.end() if ws else k
        if after > k:
            title = _TITLE.match(text, after)
            if title:
                ws = _WS_NL.match(text, title.end())
                after = ws.end() if ws else title.end()
        if text.startswith(")", after):
            return after + 1, [dest, loose_url], True
    readings = [loose_url] if dest is None else [dest, loose_url]
    return max(loose_end, start), readings, False


def _md_inline(text: str, urls: _Urls, tally: _Tally) -> str:
    """Inline markdown images and links, including those whose text holds brackets."""
    if "](" not in text:
        return text
    out: list[str] = []
    pos = 0
    while True:
        m = _MD_INLINE.search(text, pos)
        if m is None:
            break
        end, readings, valid = _inline_dest(text, m.end())
        simple = m["text"] is not None or m["alt"] is not None
        if simple:
            image = m["alt"] is not None
        else:  # "](" after text with nested brackets: an image if "![" opened it
            image = text.rfind("![", max(pos, m.start() - 1000), m.start()) != -1
        bad = urls.bad(readings, relative_ok=not image)
        if bad is None:
            nxt = end if valid else m.end()
            out.append(text[pos:nxt])
            pos = nxt
            continue
        out.append(text[pos : m.start()])
        if simple and image:
            out.append(f"[image removed: {bad}]")
        elif simple:
            out.append(f"{m['text']} (link removed: {bad})")
        elif image:
            out.append(f"] [image removed: {bad}]")
        else:
            out.append(f"] (link removed: {bad})")
        tally.add("image_defanged" if image else "link_defanged", 1, bad)
        pos = max(end, m.end())
    out.append(text[pos:])
    return "".join(out)


_DEF = re.compile(
    r"\[(?P<label>[^\[\]]{1,999})\]:[ \t]*(?:\r?\n[ \t]*)?"
    r"(?P<dest><[^<>\n]{0,2000}>|[^\s<]\S{0,2000})"
)
_REF_IMAGE = re.compile(
    r"!\[(?P<alt>[^\[\]]{0,1000})\](?:[ \t]?\[(?P<label>[^\[\]]{0,999})\]|(?![(:\[]))"
)


def _label(raw: str) -> str:
    return " ".join(raw.split()).casefold()


def _def_url(dest: str) -> str:
    return dest[1:-1] if dest.startswith("<") and dest.endswith(">") else dest


def _md_references(text: str, urls: _Urls, tally: _Tally) -> str:
    """Reference definitions to hosts not allowed are defanged, so no reference can use them;
    reference images whose definition is no image URL are removed."""
    if "]:" not in text:
        return text
    defs: dict[str, list[str]] = {}
    for m in _DEF.finditer(text):
        defs.setdefault(_label(m["label"]), []).append(_def_url(m["dest"]))
    if not defs:
        return text

    def image(m: re.Match[str]) -> str:
        label = _label(m["label"] or m["alt"] or "")
        dests = defs.get(label)
        if not dests:
            return m.group(0)
        bad = urls.bad(dests, relative_ok=False)
        if bad is None:
            return m.group(0)
        tally.add("image_defanged", 1, bad)
        return f"[image removed: {bad}]"

    def definition(m: re.Match[str]) -> str:
        bad = urls.bad([_def_url(m["dest"])], relative_ok=True)
        if bad is None:
            return m.group(0)
        tally.add("link_defanged", 1, bad)
        return f"[{m['label']}] (link removed: {bad})"

    if "![" in text:
        text = _REF_IMAGE.sub(image, text)
    return _DEF.sub(definition, text)


_AUTOLINK = re.compile(r"<(?P<url>[A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]{0,2000})>")


def _autolinks(text: str, urls: _Urls, tally: _Tally) -> str:
    def sub(m: re.Match[str]) -> str:
        bad = urls.bad([m["url"]], relative_ok=True)
        if bad is None:
            return m.group(0)
        tally.add("link_defanged", 1, bad)
        return f"(link removed: {bad})"

    return _AUTOLINK.sub(sub, text) if "<" in text else text


_URL_ATTRS = (
    "src",
    "href",
    "srcset",
    "poster",
    "data",
    "background",
    "action",
    "formaction",
    "lowsrc",
    "dynsrc",
    "longdesc",
    "ping",
    "codebase",
    "manifest",
    "icon",
    "srcdoc",
    "style",
    "content",
    "xlink:href",
)


def _led(words: Iterable[str]) -> tuple[str, str]:
    """(a class of first letters, the rest per first letter): a pattern that starts with a
    character class is scanned far faster than one that starts with an alternation."""
    rest: dict[str, list[str]] = {}
    for word in words:
        rest.setdefault(word[0], []).append(re.escape(word[1:]))
    first = "".join(sorted({c for k in rest for c in (k, k.upper())}))
    alts = "|".join(
        f"(?<=[{k}{k.upper()}])(?:{'|'.join(sorted(v, key=len, reverse=True))})"
        for k, v in sorted(rest.items())
    )
    return first, alts


_ATTR_FIRST, _ATTR_REST = _led(_URL_ATTRS)
# The name starts the attribute: after whitespace, "/", a quote, or at the very start.
_ATTR_NAME = "(?P<name>[" + _ATTR_FIRST + "](?<![^\\s/\"'].)(?i:" + _ATTR_REST + "))"
_ATTR_VALUE = r"""\s*=\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<uq>[^\s"'=<>`]+))"""
_ATTR = re.compile(_ATTR_NAME + _ATTR_VALUE)
_FETCHING_TAGS = (
    "a|area|img|image|iframe|frame|video|audio|source|track|embed|object|applet|script|link"
    "|base|input|picture|use|meta|form|button|body|table|td|th|tr|bgsound|portal|fencedframe"
    "|feimage|svg:image|svg:a|svg:use"
)
_HTML_TAG = re.compile(
    r"<(?=[AaBbDdEeFfIiLlMmOoPpSsTtUuVv])(?P<tag>(?i:" + _FETCHING_TAGS + r"))"
    r"(?P<attrs>[\s/][^<>]{0,4000})>"
    r"(?:(?P<text>[^<]{0,1000})</a\s*>)?",
    re.IGNORECASE,
)
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^'")\s]*))""", re.IGNORECASE)
_ABS_URL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]{0,30}:)?//[^\s'\")]+")
_REFRESH_URL = re.compile(r"""url\s*=\s*['"]?([^'";\s]+)""", re.IGNORECASE)
_LINK_ATTRS = frozenset({"action", "formaction", "longdesc"})
_LINK_TAGS = frozenset({"a", "area"})


def _attr_urls(name: str, value: str) -> tuple[list[str], str | None]:
    """(URLs an attribute makes a browser use, or a reason it is unsafe whatever it holds)."""
    v = html.unescape(value) if "&" in value else value
    if name == "srcdoc":
        return [], "srcdoc"
    if name == "srcset":
        return [p.split()[0] for p in v.split(",") if p.strip()], None
    if name == "style":
        if "\\" in v:
            return [], "escaped CSS"
        found = [next(g for g in m.groups() if g is not None) for m in _CSS_URL.finditer(v)]
        return found + _ABS_URL.findall(v), None
    if name == "content":
        return _REFRESH_URL.findall(v), None
    return [v], None


def _attr_value(m: re.Match[str]) -> str:
    for group in ("dq", "sq", "uq"):
        if m[group] is not None:
            return m[group]
    return ""


def _html_tags(text: str, urls: _Urls, tally: _Tally) -> str:
    """HTML elements that fetch a URL by themselves go; `<a>` to a host not allowed keeps its
    text."""

    def sub(m: re.Match[str]) -> str:
        tag = m["tag"].lower()
        bad_image: str | None = None
        bad_link: str | None = None
        for a in _ATTR.finditer(m["attrs"]):
            name = a["name"].lower()
            found, unsafe = _attr_urls(name, _attr_value(a))
            link = name in _LINK_ATTRS or (tag in _LINK_TAGS and name in ("href", "ping"))
            if unsafe is not None:
                bad_image = bad_image or unsafe
                continue
            bad = urls.bad(found, relative_ok=link)
            if bad is not None and link:
                bad_link = bad_link or bad
            elif bad is not None:
                bad_image = bad_image or bad
        if bad_image is not None:
            tally.add("image_defanged", 1, bad_image)
            return f"[image removed: {bad_image}]" + _after_tag(m)
        if bad_link is not None:
            tally.add("link_defanged", 1, bad_link)
            if tag == "a" and m["text"] is not None:
                return f"{m['text']} (link removed: {bad_link})"
            return f"(link removed: {bad_link})" + _after_tag(m)
        return m.group(0)

    return _HTML_TAG.sub(sub, text) if "<" in text else text


def _after_tag(m: re.Match[str]) -> str:
    """What the tag pattern took after the tag itself (text and `</a>`), kept as it was."""
    return m.string[m.end("attrs") + 1 : m.end()]


_FALLBACK = re.compile(
    "(?=["
    + _ATTR_FIRST
    + "uU@])(?:"
    + _ATTR_NAME
    + _ATTR_VALUE
    + r"""|(?i:url)\(\s*(?:"(?P<c1>[^"]*)"|'(?P<c2>[^']*)'|(?P<c3>[^'")\s]*))"""
    + r"""|@(?i:import)\s+(?:"(?P<i1>[^"]*)"|'(?P<i2>[^']*)')"""
    + ")"
)


def _html_fallback(text: str, urls: _Urls, tally: _Tally) -> str:
    """A safety net for markup the tag pass could not read (a `>` inside a quoted value, an
    unterminated tag, HTML built by earlier removals): any URL attribute or CSS URL pointing
    off the allowed hosts is removed wherever it stands. Relative URLs are left here."""

    def sub(m: re.Match[str]) -> str:
        if m["name"] is not None:
            name = m["name"].lower()
            found, unsafe = _attr_urls(name, _attr_value(m))
            link = name in ("href", "ping") or name in _LINK_ATTRS
        else:
            found = [next(m[g] for g in ("c1", "c2", "c3", "i1", "i2") if m[g] is not None)]
            unsafe, link = None, False
        bad = unsafe or urls.bad(found, relative_ok=True)
        if bad is None:
            return m.group(0)
        tally.add("link_defanged" if link else "image_defanged", 1, bad)
        return f"(link removed: {bad})" if link else f"[image removed: {bad}]"

    if "<" not in text:
        return text  # no markup at all: an attribute or a style outside a tag does nothing
    return _FALLBACK.sub(sub, text)


def _links_and_images(text: str, urls: _Urls, tally: _Tally) -> str:
    """Step 5."""
    text = _html_tags(text, urls, tally)
    text = _md_inline(text, urls, tally)
    text = _md_references(text, urls, tally)
    text = _autolinks(text, urls, tally)
    return _html_fallback(text, urls, tally)


# -- the whole --------------------------------------------------------------------------------

_SCRUB = re.compile("[<>\\[\\](){}|:\uff1a\"'=#]")


def _neutralize(text: str, urls: _Urls, tally: _Tally) -> str:
    text = _role_markers(text, tally)
    text = _tool_calls(text, tally)
    return _links_and_images(text, urls, tally)


def sanitize(
    text: str, *, allowed_hosts: Collection[str] = (), max_chars: int = 1_000_000
) -> Sanitized:
    """Untrusted text made inert as instructions: see the module docstring for every rule."""
    if not isinstance(text, str):
        raise TypeError(f"sanitize expects str, got {type(text).__name__}")
    if max_chars < 0:
        raise ValueError("max_chars must be >= 0")
    tally = _Tally()
    if len(text) > max_chars:
        tally.add("truncated", len(text) - max_chars)
        text = text[:max_chars]
    text = _strip_invisible(text, tally)
    urls = _Urls(_Hosts(allowed_hosts))
    for _ in range(_MAX_ROUNDS):
        new = _neutralize(text, urls, tally)
        if new == text:
            break
        text = new
    else:  # still producing new constructs: hostile; take away what every rule needs
        text, n = _SCRUB.subn(" ", text)
        tally.add("scrubbed", n)
    return Sanitized(text, tally.changes())
