"""Recognizers Presidio lacks: secrets (cloud keys, tokens, private keys, passwords) and a
linear-time email recognizer.

Why our own base class: a Presidio `PatternRecognizer` reports the whole match and, when its
regex times out, logs a warning and skips the pattern (a silent fail-open). These recognizers
report the secret's own span (a named group `v`), validate what they match (entropy, JWT
header, placeholders), and raise `ScanTimeout` instead of skipping. Every pattern starts with a
literal or a bounded class and has no nested unbounded repetition.

Why email is replaced: Presidio's email regex backtracks super-linearly on dotted text (40 KB of
`a.a.a.` took 89 s here). This one finds each `@` and looks at most 64 characters to its left
and 255 to its right, so its cost is linear in the text.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import regex
from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from agentguard.dlp.errors import ScanTimeout

__all__ = [
    "SECRET_ENTITIES",
    "AgentguardEmailRecognizer",
    "AgentguardIpRecognizer",
    "AgentguardPhoneRecognizer",
    "ScanTimeout",
    "SecretRecognizer",
    "secret_recognizers",
]

PATTERN_TIMEOUT = 1.0  # seconds per pattern and text: a bound, not an expected cost


Validator = Callable[[str], bool]


@dataclass(frozen=True)
class Rule:
    entity: str
    pattern: str  # a regex with a named group `v` (the reported span) or none (whole match)
    score: float
    validate: Validator | None = None
    flags: int = 0
    requires: str | None = None  # a substring the text must contain for the rule to run
    # Substrings one of which every match contains (lowercase when the rule ignores case):
    # a rule whose anchors are all absent is skipped without running its regex.
    anchors: tuple[str, ...] = ()
    # Keywords every match begins with (a stdlib regex over the lowercased text): the rule's
    # regex is then tried only where one starts, on the lowercased text, instead of scanning
    # the whole text case-insensitively (the slowest rules, four times faster).
    lead: str | None = None
    # Context the match needs nearby (a regex, case as written): the rule's regex then runs
    # only on windows of `near_chars` around each match of it (an AWS key id, `provider "aws"`).
    near: str | None = None
    near_chars: int = 0
    # The validator for a match whose group `w` took part (a value wrapped in a call)
    validate_wrapped: Validator | None = None


# Words that mark a placeholder wherever they stand in a value (`your_api_key_here`,
# `sk_test_EXAMPLE`, `changeme123`), but only written in one case (`example`, `EXAMPLE`,
# `Example`): a random value that happens to hold `XXxxx` or `eXaMple` is not a placeholder.
_PLACEHOLDER_WORDS = (
    "changeme",
    "change_me",
    "your_",
    "your-",
    "your",
    "example",
    "placeholder",
    "redacted",
    "dummy",
    "sample",
    "xxxx",
    "todo",
    "replace",
    "secret_here",
    "password_here",
    "insert",
)
_PLACEHOLDER = re.compile(
    r"^(?i:x+|\*+|\.+|-+|_+|0+|<[^>]*>|\$\{[^}]*\}|\{\{[^}]*\}\}|%[^%]*%|\$[A-Z_]+|"
    # the bare words of documentation examples (`postgresql://user:password@localhost`)
    r"password|passwd|pass|secret|test|none|null|nil|empty|default)$|"
    r".*(?:"
    + "|".join(
        re.escape(form)
        for w in _PLACEHOLDER_WORDS
        # (`Xxxx` is no word: a random `XXxxx` holds it)
        for form in dict.fromkeys((w, w.upper(), w if w == "xxxx" else w.capitalize()))
    )
    + r")"
)


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


# Published example credentials (AWS's documentation key pair, the Azurite development
# account key): documentation, not secrets.
_DOCUMENTED = frozenset(
    {
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
    }
)


def _not_placeholder(value: str) -> bool:
    return value not in _DOCUMENTED and not _PLACEHOLDER.match(value)


def _random(min_bits: float = 3.0) -> Validator:
    """A token's variable part looks random: not a placeholder, not a documented example."""

    def check(value: str) -> bool:
        return _not_placeholder(value) and entropy(value) >= min_bits

    return check


def _kinds(value: str) -> int:
    """How many of lower case, upper case, digits and other characters `value` mixes."""
    return sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )


def _high_entropy(min_len: int = 12, min_bits: float = 3.0) -> Validator:
    def check(value: str) -> bool:
        if len(value) < min_len or not _not_placeholder(value):
            return False
        return _kinds(value) >= 2 and entropy(value) >= min_bits

    return check


_CODE_REF = re.compile(r"^[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+(?:\(.*)?$")
# `ClientSecretCredential(`, `getenv(...)`, `std::env::var(`: a call opened or made, nothing
# after it
_CALL = re.compile(r"^(?:::)?[A-Za-z_$](?:[\w$.]|::)*\((?:[^()]*\))?$")
# `std::env::var`, `Config::get`, `Secrets::API_KEY`: a path of identifiers (Rust, C++, PHP)
_SCOPED = re.compile(r"^(?:::)?[A-Za-z_]\w*(?:::[A-Za-z_]\w*)+(?:\(.*)?$")
# References to a secret kept elsewhere, not the secret: a vault / secrets-manager address
# (`vault:secret/data/db#password`, `arn:aws:secretsmanager:...`) and a credential name bound
# to a file (systemd's `LoadCredential=db-password:/etc/credstore/db-password`).
_SECRET_REF = re.compile(
    r"^(?:(?:vault|ssm|secretsmanager|secretmanager|keyvault|kms|sops|arn|op|awssm|gcpsm)"
    r"[:+]|[\w.@-]{1,64}:/[\w./-]*$)",
    re.IGNORECASE,
)
# One segment of a code reference: a word, optionally with a few digits (`s3`, `v1beta1`)
_WORDISH = re.compile(r"^[A-Za-z_$][A-Za-z_$]*(?:\d{1,3}[A-Za-z_$]*)?(?:\d{1,3})?$")
_PATH = re.compile(r"^[a-z0-9_.-]*(?:/[a-z0-9_.-]+)+/?$")


# The pieces of an identifier: `SECRET`, `Key`, `key`, `HTTP` (before `Client`), `42`
_PIECES = re.compile(r"[A-Z]+(?=[A-Z][a-z]|[^A-Za-z]|$)|[A-Z]?[a-z]+|[A-Z]+|\d+|[^A-Za-z\d]+")
_VOWELS = frozenset("aeiouyAEIOUY")


def _natural(segment: str) -> bool:
    """An identifier made of words (`SECRET_KEY`, `environ`, `getSecretValue`, `HTTPClient`,
    `v1beta1`, `k8s`, `apiKeyV2`), not a mixed-case random run (`GpfmLUvQOoMW93Iu`,
    `EFX9E6QwRSaOcqtEWGD`): those change case every one or two letters, have one-letter
    lowercase words inside and digits all over. `_` and `-` separate words."""
    return all(_natural_word(part) for part in re.split(r"[^A-Za-z0-9]+", segment) if part)


def _natural_word(part: str) -> bool:
    pieces = _PIECES.findall(part)
    digit_runs = [p for p in pieces if p.isdigit()]
    if len(digit_runs) > 2 or any(len(p) > 3 for p in digit_runs):
        return False
    letters = short = 0
    for n, piece in enumerate(pieces):
        if not piece[0].isalpha():
            continue
        letters += len(piece)
        by_digit = (n > 0 and pieces[n - 1].isdigit()) or (
            n < len(pieces) - 1 and pieces[n + 1].isdigit()
        )
        if by_digit and len(piece) == 1:  # `v1beta1`, `s3`, `k8s`, `apiKeyV2`
            continue
        inside = (
            0 < n < len(pieces) - 1 and pieces[n - 1][0].isalpha() and pieces[n + 1][0].isalpha()
        )
        if len(piece) == 1 and piece.islower() and inside:  # a one-letter word inside a name
            return False
        short += len(piece) <= 2
    # words of one or two letters: a few (`getIdByName`), not one in every few letters
    return short <= 1 + letters / 10


def _code_ref(value: str) -> bool:
    """`settings.SECRET_KEY`, `os.environ.get(...)`: dotted words, not a dotted random token
    (`SG.<22 random>.<43 random>`, a SendGrid key, nor `GpfmLUvQOoMW93Iu.ZHlnN02`)."""
    if not _CODE_REF.match(value):
        return False
    dotted = value.split("(", 1)[0]
    return all(_WORDISH.match(seg) and _natural(seg) for seg in dotted.split("."))


# A PowerShell cmdlet name, `Verb-Noun` (`ConvertTo-SecureString`, `Get-Secret`): a command,
# not a value
_CMDLET = re.compile(r"^[A-Z][a-z]+[A-Za-z]*-[A-Z][A-Za-z]+$")
# An identifier of words (`dbPassword`, `DB_PASSWORD`, `prod/api-token`): a name, not a value
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[_.:/-][A-Za-z0-9]+)*$")


def _identifier(value: str) -> bool:
    return bool(_IDENTIFIER.match(value)) and all(
        _natural(seg) for seg in re.split(r"[_.:/-]", value)
    )


def _generic_value(value: str) -> bool:
    """A secret-looking value, not a URL, a path, a code reference or a placeholder."""
    if "://" in value or value.startswith(("/", "./", "~/", "${", "{{", "<", "%(")):
        return False
    if _code_ref(value) or _CALL.match(value) or _PATH.match(value) or _SCOPED.match(value):
        return False
    if _SECRET_REF.match(value) or _CMDLET.match(value):
        return False
    return _high_entropy(10, 3.0)(value)


def _wrapped_value(value: str) -> bool:
    """A literal passed to a call (`ConvertTo-SecureString '...'`, `SecretString("...")`): a
    generic value, not a name the call looks up (`requireSecret("dbPassword")`)."""
    return _generic_value(value) and not _identifier(value)


def _random_value(value: str) -> bool:
    """The value of a name that only sometimes holds a secret (`routing_key`, `service_key`):
    a generic value that looks random (at least 16 characters, letters with digits, not an
    identifier of words such as a RabbitMQ routing key `orders.created`)."""
    return (
        len(value) >= 16
        and _generic_value(value)
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and entropy(value) >= 3.3
        and not _identifier(value)
    )


def _prose_value(value: str) -> bool:
    """A value quoted in prose (`the password is ...`): a generic value that mixes letters
    with digits or has three kinds of characters, not a word (`case-sensitive`)."""
    if not _generic_value(value):
        return False
    has_letter = any(c.isalpha() for c in value)
    return _kinds(value) >= 3 or (has_letter and any(c.isdigit() for c in value))


def _jwt(value: str) -> bool:
    head = value.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict) and isinstance(header.get("alg"), str)


def _mixed(value: str) -> bool:
    """Random tokens mix letters and digits; words and repeated characters do not."""
    return (
        any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and entropy(value) >= 3.0
        and _not_placeholder(value)
    )


# Names a secret is assigned to; the pattern starts with them so the engine can skip ahead.
_NAME = (
    r"(?:api[_.-]?key|apikey|secret|token|passw(?:or)?d|pwd|passphrase|private[_.-]?key|"
    r"credentials?|(?:signing|encryption|auth|hmac|jwt|session|master|app)[_.-]?key)"
)
# The same names, written to start at their keyword (a `key` only after its qualifier), so a
# rule can be tried where a keyword starts; `_LEAD` finds those keywords.
_NAME_LED = (
    r"(?:(?<=(?:api|private|signing|encryption|auth|hmac|jwt|session|master|app)[_.-]?)key|"
    # `existingSecret: db-credentials` (Helm) names a Secret object, not a secret
    r"(?<!existing[_.-]?)secret|token|passw(?:or)?d|pwd|passphrase|credentials?|"
    # `smtp_pass`, `ansible_become_pass`, `?auth=`: the short words only as the last part of
    # a name (not `bypass`, `passport`, `oauth`, `author`), right before the separator (`bad
    # auth : Authentication failed` is prose)
    # (or right before the closing quote of a call's or a name/value pair's first argument)
    r"(?<![a-z0-9])pass(?=[\"'\]]{0,3}[ \t]{0,2}[=:]|[\"'`][ \t]{0,4},)|"
    r"(?<![a-z0-9])auth(?=[\"'\]]{0,3}[=:]|[\"'`][ \t]{0,4},))"
)
_LEAD = r"key|secret|token|pass|pwd|credential|auth"
# ...unless the name says the value is something else: an id, a URL, a file, a count.
_HARMLESS_SUFFIX = (
    r"(?![A-Za-z0-9_.-]{0,30}?(?i:_?(?:id|ids|uri|url|urls|endpoint|name|names|path|file|"
    r"type|audience|header|length|len|count|expiry|expires|ttl|version|izer|izers|policy|"
    r"reset|hint|field|prefix|format|provider|store|manager|label|ref|refs|class|arn)\b))"
)
# Quoted: anything up to the closing quote; bare: up to a separator (and not a call). A bare
# value runs on over `&` unless a query parameter follows (`?token=...&page=2`): generated
# passwords use `&` (`SESSION_SECRET=tfm0=yjd*1p_&st8()...`).
_BARE = r"(?:[^\s\"'`,;<>{}\[\]&]|&(?![A-Za-z_][\w.\[\]-]{0,64}=))"
_VALUE = (
    r"(?:(?P<q>[\"'`])(?P<v>[^\"'`\r\n]{8,256})(?P=q)"
    r"|(?P<v>" + _BARE + r"{8,256}+)(?!\())"
)

# Between a name and its value: closing quotes and brackets (`os.environ["TOKEN"] =`,
# `$config['api_secret'] =`), markdown emphasis (`**Password:** `), then `=`, `:`, `=>`, `:=`
# or a markdown table's `|`.
# The value starts on the name's line: a YAML key with nothing after it on its line
# (`secrets:` with nested keys below) is a parent, not an assignment.
_SEP = (
    r"(?:\\?[\"'`\]]){0,3}(?:\*\*|__)?[ \t]{0,4}(?:=|:|=>|:=|\|)[ \t]{0,4}(?:\*\*|__)?"
    r"[ \t]{0,4}"
)
# A name and its value in separate fields: `{"key": "NAME", "value": "..."}` (Postman, HAR
# `name`), a Kubernetes / YAML list entry `- name: NAME` + `value: ...`, and XML attributes
# `key="NAME" value="..."` (.NET appSettings). The name field is checked by a lookbehind.
_PAIR_JSON_HEAD = r"(?<=[\"'](?:key|name)[\"']\s{0,4}:\s{0,4}[\"'][\w .-]{0,30})"
_PAIR_JSON_TAIL = r"[\"']\s{0,4},\s{0,40}[\"']value[\"']\s{0,4}:\s{0,4}"
_PAIR_YAML_HEAD = r"(?<=\bname:[ \t]{0,4}[\"']?[\w.-]{0,30})"
_PAIR_YAML_TAIL = r"[\"']?[ \t]{0,4}\r?\n[ \t]{0,16}value:[ \t]{0,4}"
_PAIR_ATTR_HEAD = r"(?<=\b(?:key|name)[ \t]{0,2}=[ \t]{0,2}[\"'][\w.:-]{0,30})"
_PAIR_ATTR_TAIL = r"[\"'][ \t]{1,4}value[ \t]{0,2}=[ \t]{0,2}"
# A setter call with the name and the value as its first two arguments:
# `os.Setenv("SMTP_PASSWORD", "...")`, `putenv`, `os.environ.setdefault`, `std::env::set_var`,
# `[Environment]::SetEnvironmentVariable('API_KEY', '...', 'Machine')`.
_SETTER = r"(?:setenv|putenv|setdefault|set_var|setenvironmentvariable|setproperty|setsecret)"
_PAIR_CALL_HEAD = r"(?<=" + _SETTER + r"\([ \t]{0,4}[\"'`][\w .-]{0,30})"
_PAIR_CALL_TAIL = r"[\"'`][ \t]{0,4},[ \t]{0,4}"
_NAME_REST = _NAME_LED + _HARMLESS_SUFFIX + r"[A-Za-z0-9_.:-]{0,30}"
# A call or a cmdlet on the right-hand side wraps the value: `ConvertTo-SecureString '...'
# -AsPlainText`, `Buffer.from("...")`, `base64decode("...")`, `new SecretString("...")`. Calls
# that look a secret up by name are not wrappers (their argument is a name); the pattern runs on
# lowercased text.
_LOOKUP = (
    r"(?![\w$.:-]{0,60}?(?:get|read|load|lookup|fetch|require|resolve|env|prompt|input|ask|"
    r"vault|param|config|setting|option|arg|var|propert|find|query|credential|keyring|file|"
    r"path|name|ref|arn|manager|ssm)[\w$.:-]{0,60}?(?:\(|[ \t]))"
)
_WRAP = (
    r"(?:"
    + _LOOKUP
    + r"(?:new[ \t]{1,4})?[a-z_$][\w$.:]{0,60}\([ \t]{0,4}(?=[\"'`])|"
    + _LOOKUP
    + r"[a-z]{2,20}-[a-z]{2,40}[ \t]{1,4}(?:-[a-z]{2,30}[ \t]{1,4})?(?=[\"'`]))"
)
_WRAPPED = r"(?P<q>[\"'`])(?P<v>[^\"'`\s]{8,256})(?P=q)"
# Names that hold a secret only sometimes (a PagerDuty `routing_key` is one, a RabbitMQ
# `routing_key` is not): their values must look random (`_random_value`).
_WEAK_KEY = (
    r"(?<=(?<![a-z0-9])(?:routing|integration|service|license|licence|access|client|account|"
    r"shared|write|ingest|ingestion|admin|deploy|webhook|consumer|partner|merchant)[_.-]?)key"
)
# AWS secret names, words joined by `_`, `.`, `-` or a space (`Aws secret access key:`)
_AWS_NAME = (
    r"(?:aws[_. -]?secret[_. -]?access[_. -]?key|aws[_. -]?secret[_. -]?key|"
    r"secret[_. -]?access[_. -]?key)"
)
_AWS_VALUE = r"(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
_AWS_KEY_ID = r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"

RULES: tuple[Rule, ...] = (
    Rule(
        "AWS_ACCESS_KEY_ID",
        r"\b(?P<v>(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA)[A-Z0-9]{16})\b",
        0.95,
        _random(3.0),
        anchors=("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA"),
    ),
    Rule(  # under an AWS secret name: assigned, an XML element, a name/value pair
        "AWS_SECRET_ACCESS_KEY",
        r"(?i:" + _AWS_NAME + r")"
        r"(?:"
        + _SEP
        + r"|[\"'>]?\s{1,4}|>|[\"'`][ \t]{0,4},[ \t]{0,4}|"
        + _PAIR_JSON_TAIL
        + r"|"
        + _PAIR_YAML_TAIL
        + r")"
        r"(?:\\?[\"'`])?" + _AWS_VALUE,
        0.95,
        _high_entropy(40, 3.5),
        anchors=("secret",),
        lead="aws|secret",
    ),
    Rule(  # `secret_key = "..."` (Terraform's aws provider, SDK configs) next to a key id
        "AWS_SECRET_ACCESS_KEY",
        r"(?i:secret(?:[_.-]?(?:access[_.-]?)?key)?)" + _SEP + r"(?:\\?[\"'`])?" + _AWS_VALUE,
        0.9,
        _high_entropy(40, 3.5),
        flags=regex.IGNORECASE,
        anchors=("secret",),
        near=_AWS_KEY_ID + r"|provider\s{1,4}\"aws\"",
        near_chars=300,
    ),
    Rule(  # an AWS-secret-shaped value right next to a key id (`AKIA..., <secret>`, prose)
        "AWS_SECRET_ACCESS_KEY",
        r"(?<![A-Za-z0-9/+=])" + _AWS_VALUE,
        0.85,
        lambda v: (
            _high_entropy(40, 4.0)(v)
            and any(c.isupper() for c in v)
            and any(c.islower() for c in v)
            and any(c.isdigit() for c in v)
        ),
        anchors=("AKIA", "ASIA"),
        near=_AWS_KEY_ID,
        near_chars=80,
    ),
    Rule(
        "AWS_SECRET_ACCESS_KEY",
        r"\b(?:AKIA|ASIA)[A-Z0-9]{16}:(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
        0.95,
        _high_entropy(40, 3.5),
        anchors=("AKIA", "ASIA"),
    ),
    Rule(
        "GCP_API_KEY",
        r"\b(?P<v>AIza[0-9A-Za-z_-]{35})(?![0-9A-Za-z_-])",
        0.95,
        _random(3.0),
        anchors=("AIza",),
    ),
    Rule(
        "GCP_SERVICE_ACCOUNT_KEY",
        r"\"private_key\"\s{0,4}:\s{0,4}\"(?P<v>-----BEGIN (?:RSA )?PRIVATE KEY-----"
        r"(?:\\n|[A-Za-z0-9+/=\s]){20,8000}?-----END (?:RSA )?PRIVATE KEY-----(?:\\n)?)\"",
        0.99,
        requires="service_account",
        anchors=("private_key",),
    ),
    Rule(
        "AZURE_STORAGE_KEY",
        r"(?i:AccountKey|SharedAccessKey)\s{0,2}=\s{0,2}(?P<v>[A-Za-z0-9+/]{43,86}={0,2})"
        r"(?![A-Za-z0-9+/=])",
        0.95,
        _high_entropy(40, 4.0),
        anchors=("accountkey", "sharedaccesskey"),
    ),
    Rule(  # a storage account key anywhere: 64 random bytes, base64 (not an SRI digest)
        "AZURE_STORAGE_KEY",
        r"(?<![A-Za-z0-9+/])(?<!sha512-)(?P<v>[A-Za-z0-9+/]{86}==)(?![A-Za-z0-9+/=])",
        0.85,
        _high_entropy(80, 4.5),
        anchors=("==",),
    ),
    Rule(
        "AZURE_CLIENT_SECRET",
        r"(?<![A-Za-z0-9_~.-])(?P<v>[A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,34})"
        r"(?![A-Za-z0-9_~.-])",
        0.9,
        _random(3.0),
        anchors=("Q~",),
    ),
    Rule(
        "GITHUB_TOKEN",
        r"(?<![A-Za-z0-9_])(?P<v>(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82}))"
        r"(?![A-Za-z0-9_])",
        0.99,
        _random(3.0),
        anchors=("gho_", "ghp_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    Rule(
        "GITLAB_TOKEN",
        r"(?<![A-Za-z0-9_-])(?P<v>glpat-[A-Za-z0-9_-]{20})(?![A-Za-z0-9_-])",
        0.99,
        _random(3.0),
        anchors=("glpat-",),
    ),
    Rule(
        "SLACK_TOKEN",
        r"(?<![A-Za-z0-9-])(?P<v>(?:xox[abposr]-(?:[0-9]{8,13}-){1,3}[A-Za-z0-9-]{8,64}|"
        r"xapp-[0-9]-[A-Z0-9]{8,16}-[0-9]{8,16}-[a-f0-9]{32,80}))(?![A-Za-z0-9-])",
        0.99,
        _random(3.0),
        anchors=("xox", "xapp-"),
    ),
    Rule(
        "SLACK_WEBHOOK",
        r"(?P<v>https://hooks\.slack\.com/(?:services|workflows)/T[A-Z0-9]{6,12}/"
        r"[A-Z0-9]{6,12}/[A-Za-z0-9]{16,32})",
        0.99,
        _random(3.0),
        anchors=("hooks.slack.com",),
    ),
    Rule(  # publishable keys (pk_) are public by design
        "STRIPE_KEY",
        r"(?<![A-Za-z0-9_])(?P<v>(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{24,99})(?![A-Za-z0-9])",
        0.99,
        _random(3.0),
        anchors=("sk_live_", "sk_test_", "rk_live_", "rk_test_"),
    ),
    Rule(
        "OPENAI_API_KEY",
        r"(?<![A-Za-z0-9_-])(?P<v>sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,200})"
        r"(?![A-Za-z0-9_-])",
        0.9,
        _mixed,
        anchors=("sk-",),
    ),
    Rule(
        "JWT",
        r"(?<![A-Za-z0-9_-])(?P<v>eyJ[A-Za-z0-9_-]{8,2000}\.eyJ[A-Za-z0-9_-]{8,8000}\."
        r"[A-Za-z0-9_-]{8,2000})(?![A-Za-z0-9_-])",
        0.95,
        _jwt,
        anchors=("eyJ",),
    ),
    Rule(
        "PRIVATE_KEY",
        r"(?P<v>-----BEGIN "
        r"(?P<k>(?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----"
        r"(?:\\n|[A-Za-z0-9+/=\s:,.-]){16,16000}?-----END (?P=k)-----)",
        0.99,
        anchors=("-----BEGIN",),
    ),
    Rule(
        "URL_PASSWORD",
        r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/?#@\"'<>]{0,128}:"
        r"(?P<v>[^\s/?#@\"'<>]{1,128})@[A-Za-z0-9.\[-]",
        0.9,
        _not_placeholder,
        anchors=("://",),
    ),
    Rule(  # `NAME = value`; a call on the right-hand side may wrap the value (group `w`):
        # `$pass = ConvertTo-SecureString '...'`, `apiKey = Buffer.from("...")`
        "GENERIC_SECRET",
        _NAME_LED
        + _HARMLESS_SUFFIX
        + r"[A-Za-z0-9_.-]{0,30}"
        + _SEP
        + r"(?:(?P<w>"
        + _WRAP
        + r")"
        + _WRAPPED
        + r"|(?:\[\]byte\()?"
        + _VALUE
        + r")",
        0.8,
        _generic_value,
        regex.IGNORECASE,
        anchors=("key", "secret", "token", "pass", "pwd", "credential", "auth"),
        lead=_LEAD,
        validate_wrapped=_wrapped_value,
    ),
    Rule(  # a call named for a secret takes it: `SecretValue.unsafe_plain_text("...")`
        "GENERIC_SECRET",
        r"(?<![a-z0-9_$])" + _LOOKUP + r"(?:secret|secure|sensitive|passw(?:or)?d|token|"
        r"credential)[\w$]{0,40}(?:\.[\w$]{1,40}){0,3}\([ \t]{0,4}" + _WRAPPED,
        0.75,
        _wrapped_value,
        regex.IGNORECASE,
        anchors=("(",),
        lead=r"secret|secure|sensitive|passw|token|credential",
    ),
    Rule(  # `routing_key: <32 hex>`, `service_key = "..."`: names that hold a random secret
        "GENERIC_SECRET",
        _WEAK_KEY + _HARMLESS_SUFFIX + r"[A-Za-z0-9_.-]{0,30}" + _SEP + _VALUE,
        0.75,
        _random_value,
        regex.IGNORECASE,
        anchors=("key",),
        lead=r"key",
    ),
    Rule(  # a name and its value in separate fields (JSON key/name + value, YAML, XML attrs)
        "GENERIC_SECRET",
        r"(?:"
        + _PAIR_JSON_HEAD
        + _NAME_REST
        + _PAIR_JSON_TAIL
        + r"|"
        + _PAIR_YAML_HEAD
        + _NAME_REST
        + _PAIR_YAML_TAIL
        + r"|"
        + _PAIR_ATTR_HEAD
        + _NAME_REST
        + _PAIR_ATTR_TAIL
        + r")"
        + _VALUE,
        0.8,
        _generic_value,
        regex.IGNORECASE,
        anchors=("value",),
        lead=_LEAD,
    ),
    Rule(  # a setter call: `os.Setenv("SMTP_PASSWORD", "...")`
        "GENERIC_SECRET",
        _PAIR_CALL_HEAD + _NAME_REST + _PAIR_CALL_TAIL + _VALUE,
        0.8,
        _generic_value,
        regex.IGNORECASE,
        anchors=(
            "setenv",
            "putenv",
            "setdefault",
            "set_var",
            "setenvironment",
            "setproperty",
            "setsecret",
        ),
        lead=_LEAD,
    ),
    Rule(  # prose: `the password is ...`, `> token was ...`
        "GENERIC_SECRET",
        r"(?:passw(?:or)?d|passphrase|secret|token|(?<=api[ _-]?)key)s?[ \t]{1,3}"
        r"(?:is|was|is[ \t]now|now[ \t]is|(?:set|changed|reset)[ \t]to)[ \t]{1,3}"
        r"(?:(?P<q>[\"'`])(?P<v>[^\"'`\s]{8,256})(?P=q)|"
        r"(?P<v>[^\s\"'`,;<>()\[\]{}]{8,256}?)(?=[.,;:!?]?(?:\s|$)))",
        0.7,
        _prose_value,
        regex.IGNORECASE,
        anchors=(" is ", " was ", " to "),
        # the keyword with its verb: the rule's regex runs only where both are
        lead=r"(?:passw(?:or)?d|passphrase|secret|token|key)s?[ \t]{1,3}"
        r"(?:is|was|now|set|changed|reset)[ \t]",
    ),
    Rule(  # prose: `used password ...`, `try the token ...`, `with API key ...`
        "GENERIC_SECRET",
        r"(?<=(?<![a-z0-9])(?:used|using|use|tried|try|with|enter|entered|paste|pasted)[ \t]{1,3}"
        r"(?:the[ \t]{1,3}|this[ \t]{1,3}|my[ \t]{1,3}|our[ \t]{1,3})?)"
        r"(?:passw(?:or)?d|passphrase|secret|token|api[ _-]?key)[ \t]{1,3}"
        r"(?:(?P<q>[\"'`])(?P<v>[^\"'`\s]{8,256})(?P=q)|"
        r"(?P<v>[^\s\"'`,;<>()\[\]{}]{8,256}?)(?=[.,;:!?]?(?:\s|$)))",
        0.7,
        _prose_value,
        regex.IGNORECASE,
        anchors=("us", "tr", "with", "enter", "paste"),
        lead=r"passw|secret|token|api",
    ),
    Rule(  # an XML / HTML element named like a secret: `<wsse:Password>...</wsse:Password>`
        "GENERIC_SECRET",
        r"(?<=<[A-Za-z0-9_:.-]{0,40})" + _NAME_REST + r"(?:[ \t][^<>\r\n]{0,200})?>[ \t]{0,4}"
        r"(?P<v>[^<>\s\"']{8,256})[ \t]{0,4}</",
        0.8,
        _generic_value,
        regex.IGNORECASE,
        anchors=("</",),
        lead=_LEAD,
    ),
    Rule(  # SQL: `WITH PASSWORD '...'`, `IDENTIFIED BY "..."` (or a bare word)
        "GENERIC_SECRET",
        r"(?:passw(?:or)?d[ \t]{1,4}(?P<q>['\"])(?P<v>[^'\"\r\n]{8,256})(?P=q)|"
        r"identified[ \t]{1,4}by[ \t]{1,4}(?:(?P<q>['\"])(?P<v>[^'\"\r\n]{8,256})(?P=q)|"
        r"(?P<v>[^\s'\";]{8,256})))",
        0.8,
        _generic_value,
        regex.IGNORECASE,
        anchors=("passw", "identified"),
        lead=r"passw|identified",
    ),
    Rule(  # define('DB_PASSWORD', '...'), --password value, -p=value
        "GENERIC_SECRET",
        r"(?:define\(\s{0,4}['\"][A-Za-z0-9_]{0,30}" + _NAME + r"[A-Za-z0-9_]{0,30}['\"]"
        r"\s{0,4},\s{0,4}|--" + _NAME + r"[A-Za-z0-9_-]{0,20}(?:\s{1,4}|=))" + _VALUE,
        0.8,
        _generic_value,
        regex.IGNORECASE,
        anchors=("define(", "--"),
        lead=r"define\(|--(?=[a-z])",
    ),
    Rule(  # ~/.netrc: `machine host login user password value` (lines or one line)
        "GENERIC_SECRET",
        r"(?:\bmachine[ \t]{1,8}[^\s]{1,256}|\bdefault)\s{1,8}"
        r"(?:login[ \t]{1,8}[^\s]{1,256}\s{1,8})?password[ \t]{1,8}(?P<v>[^\s]{8,256})",
        0.8,
        _generic_value,
        requires="password",
        anchors=("machine", "default"),
    ),
)

SECRET_ENTITIES: tuple[str, ...] = tuple(dict.fromkeys(r.entity for r in RULES))


class SecretRecognizer(EntityRecognizer):
    """One secret type: a bounded pattern plus a validator; times out loudly, never silently."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self._regex = regex.compile(rule.pattern, rule.flags)
        # A rule that ignores case lists lowercase anchors and compares them with lowercased text.
        self._folded = bool(rule.flags & regex.IGNORECASE) or "(?i" in rule.pattern
        self._lead = re.compile(rule.lead) if rule.lead is not None else None
        # the same regex for the lowercased text (case no longer matters there)
        self._lowered = regex.compile(rule.pattern, rule.flags & ~regex.IGNORECASE)
        self._near = regex.compile(rule.near) if rule.near is not None else None
        super().__init__(supported_entities=[rule.entity], name=f"agentguard_{rule.entity}")

    def load(self) -> None:
        return None

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if entities and self.rule.entity not in entities:
            return []
        return list(self.matches(text))

    def matches(self, text: str) -> Iterable[RecognizerResult]:
        if self.rule.requires is not None and self.rule.requires not in text:
            return
        haystack = _lower(text) if self._folded else text
        if self.rule.anchors and not any(a in haystack for a in self.rule.anchors):
            return
        group = "v" if "v" in self._regex.groupindex else 0
        try:
            if self._near is not None:
                found: Iterable[Any] = self._windowed(text)
            elif self._lead is not None and len(haystack) == len(text):
                found = self._led(haystack)
            else:  # lowercasing moved offsets (a few non-ASCII letters): the plain way
                found = self._regex.finditer(text, timeout=PATTERN_TIMEOUT)
            wrapped = self.rule.validate_wrapped
            for match in found:
                start, end = match.span(group)
                value = text[start:end]
                check = self.rule.validate
                if wrapped is not None and match.start("w") >= 0:
                    check = wrapped
                if check is not None and not check(value):
                    continue
                yield RecognizerResult(self.rule.entity, start, end, self.rule.score)
        except TimeoutError:
            raise ScanTimeout(f"{self.rule.entity} pattern timed out") from None

    def _windowed(self, text: str) -> Iterator[Any]:
        """Matches of the rule in windows of `near_chars` around each match of `near` (merged);
        a window takes in whole the tokens it cuts (at most 256 characters more on each side),
        so a cut token is neither missed nor taken for a short one."""
        assert self._near is not None
        pad = self.rule.near_chars
        windows: list[list[int]] = []
        for m in self._near.finditer(text, timeout=PATTERN_TIMEOUT):
            start, end = max(0, m.start() - pad), min(len(text), m.end() + pad)
            while start > 0 and m.start() - start < pad + 256 and not text[start - 1].isspace():
                start -= 1
            while end < len(text) and end - m.end() < pad + 256 and not text[end].isspace():
                end += 1
            if windows and start <= windows[-1][1]:
                windows[-1][1] = max(windows[-1][1], end)
            else:
                windows.append([start, end])
        for start, end in windows:
            yield from self._regex.finditer(text, start, end, timeout=PATTERN_TIMEOUT)

    def _led(self, lowered: str) -> Iterator[Any]:
        """Matches of the rule in lowercased text, tried only where a lead keyword starts; like
        `finditer`, a match never starts inside the previous one."""
        assert self._lead is not None
        done = 0
        for lead in self._lead.finditer(lowered):
            at = lead.start()
            if at < done:
                continue
            match = self._lowered.match(lowered, at, timeout=PATTERN_TIMEOUT)
            if match is not None:
                done = match.end()
                yield match


_LAST_LOWERED: tuple[str, str] = ("", "")


def _lower(text: str) -> str:
    """`text.lower()`, computed once for the rules that run on the same text one after another."""
    global _LAST_LOWERED
    last = _LAST_LOWERED  # one read: another thread may replace it
    if last[0] is text:
        return last[1]
    lowered = text.lower()
    _LAST_LOWERED = (text, lowered)
    return lowered


_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-")
_DOMAIN = regex.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])"
)
# `icon@2x.png` is a file name, not an address
_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "css", "js", "ico"})
# the userinfo of a URL (`scheme://user:pass@host`); a decoded password may hold another `@`
_IN_URL = regex.compile(r"://[^\s/?#]{0,256}$")


def _local_start(text: str, at: int) -> int | None:
    """Start of the local part that ends at `at`, at most 64 characters back."""
    i = at
    while i > 0 and at - i < 64 and text[i - 1] in _LOCAL_CHARS:
        i -= 1
    while i < at and text[i] in "._+-":  # a local part starts with a letter or digit
        i += 1
    if i == at or text[at - 1] == "." or ".." in text[i:at]:
        return None
    return i


def in_userinfo(text: str, at: int) -> bool:
    """Is offset `at` inside the userinfo of a URL (`scheme://user:pass@host`)?"""
    return _IN_URL.search(text, max(0, at - 260), at) is not None


class AgentguardEmailRecognizer(EntityRecognizer):
    """Email addresses in linear time: anchored on each `@`, bounded on both sides."""

    def __init__(self) -> None:
        super().__init__(supported_entities=["EMAIL_ADDRESS"], name="agentguard_EMAIL_ADDRESS")

    def load(self) -> None:
        return None

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if entities and "EMAIL_ADDRESS" not in entities:
            return []
        out: list[RecognizerResult] = []
        at = text.find("@")
        while at != -1:
            start = _local_start(text, at)
            right = _DOMAIN.match(text, at + 1, min(len(text), at + 256))
            # user:password@host in a URL is a credential (URL_PASSWORD), not an address
            in_url = in_userinfo(text, at)
            is_file = (
                right is not None and right.group().rsplit(".", 1)[-1].lower() in _FILE_SUFFIXES
            )
            if start is not None and right is not None and not in_url and not is_file:
                out.append(RecognizerResult("EMAIL_ADDRESS", start, right.end(), 0.9))
            at = text.find("@", at + 1)
        return out


_PHONE = regex.compile(
    r"(?<![\w+-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]?\d{2,5}){1,4}(?![\w-])"
)
_NANP = regex.compile(r"^(?:\+?1[ .-]?)?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}$")
_DATE_LIKE = regex.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")


class AgentguardPhoneRecognizer(EntityRecognizer):
    """Phone numbers: cheap candidates, a shape or context test, then `phonenumbers`.

    A candidate counts when it is written as a phone number (international `+`, or a
    North American `(415) 555-2671` shape) or has a phone word nearby; bare digit runs (order
    numbers, account ids, dates) are not parsed at all. Presidio's recognizer runs
    `phonenumbers`' matcher over the whole text once per region, the slowest part of a scan,
    and reports those digit runs.
    """

    CONTEXT = ("phone", "tel", "mobile", "cell", "call", "fax", "whatsapp", "sms")

    def __init__(self, regions: Iterable[str] = ("US", "GB", "DE", "FR")) -> None:
        self.regions = tuple(regions)
        super().__init__(
            supported_entities=["PHONE_NUMBER"],
            name="agentguard_PHONE_NUMBER",
            context=list(self.CONTEXT),
        )

    def load(self) -> None:
        return None

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        import phonenumbers

        if entities and "PHONE_NUMBER" not in entities:
            return []
        out: list[RecognizerResult] = []
        verdicts: dict[str, bool] = {}  # per call only: phone numbers are not kept around
        lowered: str | None = None
        try:
            for match in _PHONE.finditer(text, timeout=PATTERN_TIMEOUT):
                candidate = match.group()
                if _DATE_LIKE.match(candidate):
                    continue
                if not (candidate.startswith("+") or _NANP.match(candidate)):
                    if lowered is None:
                        lowered = text.lower()
                    near = lowered[max(0, match.start() - 40) : match.start()]
                    if not any(word in near for word in self.CONTEXT):
                        continue
                valid = verdicts.get(candidate)
                if valid is None:
                    valid = verdicts[candidate] = self._valid(phonenumbers, candidate)
                if valid:
                    out.append(RecognizerResult("PHONE_NUMBER", match.start(), match.end(), 0.6))
        except TimeoutError:
            raise ScanTimeout("PHONE_NUMBER pattern timed out") from None
        return out

    def _valid(self, phonenumbers: Any, candidate: str) -> bool:
        if not 7 <= sum(c.isdigit() for c in candidate) <= 15:
            return False
        for region in (None,) if candidate.startswith("+") else self.regions:
            try:
                if phonenumbers.is_valid_number(phonenumbers.parse(candidate, region)):
                    return True
            except phonenumbers.NumberParseException:
                continue
        return False


_IPV4 = regex.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_IPV6 = regex.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")


class AgentguardIpRecognizer(EntityRecognizer):
    """IPv4 and IPv6 addresses: linear candidates validated by `ipaddress`."""

    def __init__(self) -> None:
        super().__init__(supported_entities=["IP_ADDRESS"], name="agentguard_IP_ADDRESS")

    def load(self) -> None:
        return None

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        import ipaddress

        if entities and "IP_ADDRESS" not in entities:
            return []
        out: list[RecognizerResult] = []
        patterns = [_IPV4] if "::" not in text and text.count(":") < 2 else [_IPV4, _IPV6]
        for pattern in patterns:
            for match in pattern.finditer(text, timeout=PATTERN_TIMEOUT):
                candidate = match.group()
                if pattern is _IPV6 and (candidate.count(":") < 2 or len(candidate) < 3):
                    continue
                try:
                    address = ipaddress.ip_address(candidate)
                except ValueError:
                    continue
                # loopback and unspecified addresses name no one; `rv:1.9.7.20` is a version
                if address.is_loopback or address.is_unspecified:
                    continue
                if text[max(0, match.start() - 3) : match.start()].lower() == "rv:":
                    continue
                out.append(RecognizerResult("IP_ADDRESS", match.start(), match.end(), 0.6))
        return out


def secret_recognizers() -> list[EntityRecognizer]:
    """One recognizer per secret type."""
    return [SecretRecognizer(rule) for rule in RULES]
