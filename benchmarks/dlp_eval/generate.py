"""Generate the labelled DLP evaluation set, `benchmarks/dlp_eval/samples.jsonl`.

Every sample is built from parts: plain strings and `Ent` values (an entity with its type), so
the span of every labelled value is known by construction, never searched for afterwards. Names,
addresses, companies and filler prose come from Faker; every labelled value (cards, SSNs, IBANs,
secrets) is made here from one seeded `random.Random`, so it is valid by construction (Luhn, IBAN
mod 97, SSN area/group/serial rules) and random (no real credential is ever written).

The output is deterministic: the same generator, seed and Faker version give byte-identical
output. `FAKER_VERSION` records the version the committed file was made with (another Faker
version may pick other names and addresses).

Labelling conventions and the negatives policy are described in `README.md` next to this file.

Run: `python benchmarks/dlp_eval/generate.py` (`--out PATH` to write elsewhere, `--seed N`);
`--heldout` writes held-out round 1, `heldout.jsonl` (another seed, a share of the tuning
templates and templates of contexts the tuning set never uses; looked at after round 1 and used
for the round-2 fixes, so it is a second tuning set now); `--heldout2` writes held-out round 2,
`heldout2.jsonl` (a third seed, shares of the tuning and round-1 templates, and templates
neither uses; scored once after round 2, then used for the round-3 fixes, so it is a third
tuning set now); `--heldout3` writes held-out round 3, `heldout3.jsonl` (a fourth seed, shares
of all earlier templates, and templates of contexts none of them uses; scored once after round
3, then used for the round-4 fixes, so it is a fourth tuning set now); `--heldout4` writes
held-out round 4, `heldout4.jsonl` (a fifth seed, shares of all earlier templates, and
templates of contexts none of them uses; written and generated before any scanner result on
it, never tuned on).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import string
import sys
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from faker import Faker

from agentguard.dlp.entities import PII_TYPES, SECRET_TYPES

SEED = 20240515
FAKER_VERSION = "40.63.0"  # the Faker release the committed sets were generated with (pinned)
OUT = Path(__file__).with_name("samples.jsonl")

PII = PII_TYPES
SECRETS = SECRET_TYPES
ENTITIES = PII + SECRETS
# Goal entities (recall >= 0.98, precision >= 0.95); PHONE_NUMBER and IP_ADDRESS are labelled
# so that detectors reporting them are scored, but they carry no goal.
GOALS = ("EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE", *SECRETS)
ENCODINGS = ("url", "base64", "qp")

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL")
ALNUM = string.ascii_letters + string.digits
UPPER_ALNUM = string.ascii_uppercase + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"
BASE32 = string.ascii_uppercase + "234567"
PASSWORD_CHARS = ALNUM + "!$%^&*-_=+.~"
URL_PASSWORD_CHARS = ALNUM + "-_.~"


@dataclass(frozen=True)
class Ent:
    """A labelled value: `text` is exactly what appears in the sample."""

    text: str
    entity: str
    encoded: str | None = None  # "url" | "base64" | "qp": `text` is the encoded form
    also: tuple[str, ...] = ()  # other types a detector may report here without penalty


Part = str | Ent


def secret(text: str, entity: str, *also: str) -> Ent:
    """A secret span; any secret may also be reported as GENERIC_SECRET without penalty."""
    extra = tuple(a for a in (*also, "GENERIC_SECRET") if a != entity)
    return Ent(text, entity, also=extra)


def flatten(parts: Iterable[Any]) -> Iterator[Part]:
    for p in parts:
        if isinstance(p, list | tuple):
            yield from flatten(p)
        else:
            yield p


def render(parts: Iterable[Any]) -> tuple[str, list[dict[str, Any]]]:
    out: list[str] = []
    spans: list[dict[str, Any]] = []
    n = 0
    for p in flatten(parts):
        if isinstance(p, Ent):
            span: dict[str, Any] = {"start": n, "end": n + len(p.text), "entity": p.entity}
            if p.encoded:
                span["encoded"] = p.encoded
            if p.also:
                span["also"] = list(p.also)
            spans.append(span)
            text = p.text
        else:
            text = p
        out.append(text)
        n += len(text)
    return "".join(out), spans


def text_of(parts: Iterable[Any]) -> str:
    return render(parts)[0]


# -- JSON with spans ---------------------------------------------------------------------------


class Str(tuple):  # type: ignore[type-arg]
    """One JSON string value made of several parts (plain text and entities)."""


def _esc(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)[1:-1]


def _esc_part(p: Part) -> Part:
    return replace(p, text=_esc(p.text)) if isinstance(p, Ent) else _esc(p)


def jparts(obj: Any, indent: int | None = None, compact: bool = False, level: int = 0) -> list[Any]:
    """`json.dumps(obj)` as parts: entity values keep their spans (over the escaped text)."""
    if isinstance(obj, Ent):
        return ['"', _esc_part(obj), '"']
    if isinstance(obj, Str):
        return ['"', *(_esc_part(p) for p in flatten(obj)), '"']
    if isinstance(obj, str):
        return [json.dumps(obj, ensure_ascii=False)]
    if isinstance(obj, dict | list):
        items = list(obj.items()) if isinstance(obj, dict) else list(enumerate(obj))
        open_, close = ("{", "}") if isinstance(obj, dict) else ("[", "]")
        if not items:
            return [open_ + close]
        out: list[Any] = [open_]
        for i, (k, v) in enumerate(items):
            if indent is not None:
                out.append("\n" + " " * (indent * (level + 1)))
            if isinstance(obj, dict):
                out.append(json.dumps(k) + (":" if compact else ": "))
            out += jparts(v, indent, compact, level + 1)
            if i < len(items) - 1:
                out.append("," if compact or indent is not None else ", ")
        if indent is not None:
            out.append("\n" + " " * (indent * level))
        out.append(close)
        return out
    return [json.dumps(obj)]


# -- encodings ---------------------------------------------------------------------------------


def qp_encode(parts: Iterable[Any]) -> list[Part]:
    """Quoted-printable (RFC 2045) with soft line breaks before column 76. An entity whose text
    the encoding changes (a soft break or an =XX escape inside it) gets `encoded="qp"`."""
    out: list[Part] = []
    col = 0
    for p in flatten(parts):
        text = p.text if isinstance(p, Ent) else p
        buf: list[str] = []
        for ch in text:
            if ch == "\n":
                buf.append("\n")
                col = 0
                continue
            escape = ch == "=" or ord(ch) > 126
            token = "".join(f"={b:02X}" for b in ch.encode()) if escape else ch
            if col + len(token) > 75:
                if buf:
                    buf.append("=\n")
                else:  # the break falls just before this part: keep it outside the span
                    out.append("=\n")
                col = 0
            buf.append(token)
            col += len(token)
        enc = "".join(buf)
        if isinstance(p, Ent):
            out.append(replace(p, text=enc, encoded="qp") if enc != text else p)
        else:
            out.append(enc)
    return out


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# -- checksums ---------------------------------------------------------------------------------


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(number: str) -> bool:
    digits = [c for c in number if c.isdigit()]
    return len(digits) > 1 and luhn_digit("".join(digits[:-1])) == digits[-1]


def iban_check_digits(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    number = int("".join(str(int(ch, 36)) for ch in rearranged))
    return f"{98 - number % 97:02d}"


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "").replace("-", "")
    return int("".join(str(int(ch, 36)) for ch in s[4:] + s[:4])) % 97 == 1


# BBAN layouts (count, class): n digits, a upper letters, c upper alphanumerics.
IBAN_LAYOUTS = {
    "DE": "18n",
    "GB": "4a14n",
    "FR": "10n11c2n",
    "ES": "20n",
    "IT": "1a10n12c",
    "NL": "4a10n",
    "BE": "12n",
    "CH": "5n12c",
    "AT": "16n",
    "PL": "24n",
    "IE": "4a14n",
    "SE": "20n",
    "PT": "21n",
    "NO": "11n",
    "DK": "14n",
    "FI": "14n",
    "LU": "3n13c",
    "MT": "4a5n18c",
    "SA": "2n18c",
    "AE": "19n",
}
IBAN_COUNTRIES = tuple(IBAN_LAYOUTS)
IBAN_WEIGHTS = (8, 6, 6, 5, 4, 4, 3, 3, 3, 3, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1)

# (brand, prefixes, length, grouping)
CARD_BRANDS: tuple[tuple[str, tuple[str, ...], int, tuple[int, ...]], ...] = (
    ("Visa", ("4",), 16, (4, 4, 4, 4)),
    ("Mastercard", ("51", "52", "53", "54", "55"), 16, (4, 4, 4, 4)),
    ("Mastercard", tuple(str(x) for x in range(2221, 2721)), 16, (4, 4, 4, 4)),
    ("American Express", ("34", "37"), 15, (4, 6, 5)),
    ("Discover", ("6011", "644", "645", "646", "647", "648", "649", "65"), 16, (4, 4, 4, 4)),
    ("JCB", tuple(str(x) for x in range(3528, 3590)), 16, (4, 4, 4, 4)),
    ("Diners Club", ("300", "301", "302", "303", "304", "305", "36", "38"), 14, (4, 6, 4)),
    ("UnionPay", ("62",), 16, (4, 4, 4, 4)),
)
CARD_WEIGHTS = (34, 18, 6, 12, 10, 7, 6, 7)
PUBLISHED_TEST_CARDS = {
    "4111111111111111",
    "4242424242424242",
    "5555555555554444",
    "5105105105105100",
    "378282246310005",
    "371449635398431",
    "6011111111111117",
    "30569309025904",
    "3530111333300000",
}
PUBLISHED_SSNS = {"123456789", "987654320", "078051120", "219099999", "457555462"}

PLACEHOLDER_SECRETS = (
    "changeme",
    "change-me",
    "password",
    "secret",
    "xxxxxxxx",
    "XXXXXXXXXXXXXXXX",
    "********",
    "<your-token>",
    "<your-api-key>",
    "<password>",
    "your-secret-key-here",
    "YOUR_API_KEY",
    "${DB_PASSWORD}",
    "${API_TOKEN}",
    "{{ .Values.db.password }}",
    "{{ secrets.API_KEY }}",
    "$SECRET_KEY",
    "REDACTED",
    "[REDACTED]",
    "dummy",
    "example",
    "test",
    "todo",
    "none",
    "null",
    "%(password)s",
    "<redacted>",
)


def ssn_ok(ssn: str) -> bool:
    m = re.fullmatch(r"(\d{3})([- ])(\d{2})\2(\d{4})", ssn)
    if not m:
        return False
    area, group, serial = m.group(1), m.group(3), m.group(4)
    digits = area + group + serial
    return (
        area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
        and len(set(digits)) > 1
        and digits not in PUBLISHED_SSNS
    )


def _lower_ascii(s: str) -> str:
    return re.sub(r"[^a-z]", "", s.lower())


# -- the generator -----------------------------------------------------------------------------


class Gen:
    """All randomness: one `random.Random` and one seeded Faker per locale."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.fakers: list[Faker] = []
        for i, loc in enumerate(LOCALES):
            f = Faker(loc)
            f.seed_instance(seed + i)
            self.fakers.append(f)
        self.en = self.fakers[0]

    # randomness helpers
    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[self.rng.randrange(len(seq))]

    def wpick(self, seq: Sequence[Any], weights: Sequence[float]) -> Any:
        return self.rng.choices(seq, weights=weights)[0]

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(alphabet[self.rng.randrange(len(alphabet))] for _ in range(n))

    def randint(self, a: int, b: int) -> int:
        return self.rng.randint(a, b)

    def faker(self) -> Faker:
        return self.pick(self.fakers)

    def sample(self, seq: Sequence[Any], k: int) -> list[Any]:
        return self.rng.sample(list(seq), k)

    # plain (unlabelled) values
    def name(self) -> str:
        return str(self.faker().name())

    def first_name(self) -> str:
        return str(self.faker().first_name())

    def company(self) -> str:
        return str(self.faker().company())

    def city(self) -> str:
        # not it_IT: its city() depends on the hash seed (set iteration), so it is not
        # reproducible across processes
        return str(self.pick(self.fakers[:5]).city())

    def address(self) -> str:
        return str(self.faker().address()).replace("\n", ", ")

    def sentence(self) -> str:
        return str(self.en.sentence(nb_words=self.randint(6, 14)))

    def sentences(self, n: int) -> str:
        return " ".join(self.sentence() for _ in range(n))

    def domain(self) -> str:
        return str(self.en.domain_name())

    def host(self) -> str:
        word = self.pick(("db", "pg", "mysql", "redis", "cache", "queue", "api", "auth", "mq"))
        env = self.pick(("prod", "stg", "internal", "eu-west-1", "int"))
        return f"{word}-{self.randint(1, 9)}.{env}.{self.domain()}"

    def user(self) -> str:
        return self.pick(("app", "admin", "svc_orders", "billing", "deploy", "etl", "root", "ci"))

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def sha(self, n: int = 40) -> str:
        return self.chars(HEX, n)

    def version(self) -> str:
        v = f"{self.randint(0, 12)}.{self.randint(0, 40)}.{self.randint(0, 30)}"
        return self.pick((v, "v" + v, v + "-rc." + str(self.randint(1, 5)), v + "+build.7"))

    def date(self) -> str:
        d = self.en.date_between(start_date=date(2022, 1, 1), end_date=date(2025, 12, 31))
        return str(
            self.pick(
                (
                    d.isoformat(),
                    d.strftime("%d/%m/%Y"),
                    d.strftime("%B %d, %Y"),
                    d.strftime("%d %b %Y"),
                )
            )
        )

    def iso_date(self) -> str:
        return str(self.en.date_between(start_date=date(2022, 1, 1), end_date=date(2025, 12, 31)))

    def timestamp(self) -> str:
        dt = self.en.date_time_between(
            start_date=datetime(2023, 1, 1), end_date=datetime(2025, 12, 31)
        )
        return f"{dt.isoformat(timespec='milliseconds')}Z"

    def order_no(self) -> str:
        return str(
            self.pick(
                (
                    f"ORD-{self.randint(2021, 2026)}-{self.randint(1, 999999):06d}",
                    f"INV-{self.randint(10000, 99999)}",
                    f"#{self.randint(100000, 9999999)}",
                    f"PO {self.randint(4500000000, 4599999999)}",
                    f"{self.chars(string.ascii_uppercase, 3)}{self.randint(1000000, 9999999)}",
                )
            )
        )

    def amount(self) -> str:
        return f"{self.randint(5, 4999)}.{self.randint(0, 99):02d}"

    # labelled PII values
    def email_str(self) -> str:
        f = self.en
        first, last = _lower_ascii(f.first_name()), _lower_ascii(f.last_name())
        local = self.pick(
            (
                f"{first}.{last}",
                f"{first[0]}{last}",
                f"{first}_{last}{self.randint(1, 99)}",
                f"{first}{self.randint(1, 999)}",
                f"{first}+{self.pick(('billing', 'news', 'crm', 'work', 'test'))}",
                f"{last}.{first}",
                str(f.user_name()),
                self.pick(("support", "billing", "hr", "payroll", "noreply", "accounts")),
            )
        )
        domain = self.pick(
            (
                str(f.free_email_domain()),
                self.domain(),
                f"mail.{self.domain()}",
                f"{f.domain_word()}.co.uk",
                f"{f.domain_word()}.com.au",
                f"{f.domain_word()}.de",
                f"{self.pick(('eu', 'corp', 'sales', 'us'))}.{self.domain()}",
            )
        )
        email = f"{local}@{domain}"
        if self.chance(0.08):
            email = local.capitalize() + "@" + domain.upper()
        return email

    def email(self) -> Ent:
        return Ent(self.email_str(), "EMAIL_ADDRESS")

    def phone_str(self) -> str:
        k = self.rng.random()
        if k < 0.45:
            return str(self.en.phone_number())
        if k < 0.75:
            return str(self.pick(self.fakers[1:4]).phone_number())
        return str(
            self.pick(
                (
                    f"+1 {self.randint(201, 989)} {self.randint(200, 999)} "
                    f"{self.randint(0, 9999):04d}",
                    f"+44 20 {self.randint(7000, 8999)} {self.randint(0, 9999):04d}",
                    f"+49 30 {self.randint(1000000, 99999999)}",
                    f"({self.randint(201, 989)}) {self.randint(200, 999)}-"
                    f"{self.randint(0, 9999):04d}",
                )
            )
        )

    def phone(self) -> Ent:
        return Ent(self.phone_str(), "PHONE_NUMBER")

    def ip_str(self) -> str:
        k = self.rng.random()
        if k < 0.45:
            return str(self.en.ipv4_public())
        if k < 0.88:
            return str(self.en.ipv4_private())
        return str(self.en.ipv6())

    def ip(self) -> Ent:
        return Ent(self.ip_str(), "IP_ADDRESS")

    def card_parts(self, sep: str | None = None) -> tuple[str, str]:
        """(brand, formatted number): Luhn-valid, never a published test number."""
        while True:
            brand, prefixes, length, groups = self.wpick(CARD_BRANDS, CARD_WEIGHTS)
            prefix = self.pick(prefixes)
            body = prefix + self.chars(string.digits, length - 1 - len(prefix))
            number = body + luhn_digit(body)
            if number not in PUBLISHED_TEST_CARDS and len(set(number)) > 3:
                break
        sep = self.wpick(("", " ", "-"), (40, 38, 22)) if sep is None else sep
        if not sep:
            return brand, number
        out, i = [], 0
        for g in groups:
            out.append(number[i : i + g])
            i += g
        return brand, sep.join(out)

    def card_str(self) -> str:
        return self.card_parts()[1]

    def card(self) -> Ent:
        return Ent(self.card_str(), "CREDIT_CARD")

    def ssn_str(self, sep: str | None = None) -> str:
        while True:
            area, group, serial = (
                self.randint(1, 899),
                self.randint(1, 99),
                self.randint(1, 9999),
            )
            s = f"{area:03d}{group:02d}{serial:04d}"
            if area != 666 and len(set(s)) > 1 and s not in PUBLISHED_SSNS:
                break
        sep = sep if sep is not None else self.wpick(("-", " "), (75, 25))
        return f"{s[:3]}{sep}{s[3:5]}{sep}{s[5:]}"

    def ssn(self) -> Ent:
        return Ent(self.ssn_str(), "US_SSN")

    def iban_str(self, country: str | None = None, spaced: bool | None = None) -> str:
        country = country or self.wpick(IBAN_COUNTRIES, IBAN_WEIGHTS)
        bban = ""
        for count, cls in re.findall(r"(\d+)([nac])", IBAN_LAYOUTS[country]):
            alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": UPPER_ALNUM}[cls]
            bban += self.chars(alphabet, int(count))
        iban = country + iban_check_digits(country, bban) + bban
        spaced = self.chance(0.5) if spaced is None else spaced
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if spaced else iban

    def iban(self) -> Ent:
        return Ent(self.iban_str(), "IBAN_CODE")

    # secret values (strings)
    def aws_key_id(self) -> str:
        return self.wpick(("AKIA", "ASIA"), (80, 20)) + self.chars(BASE32, 16)

    def aws_secret(self) -> str:
        return self.chars(B64, 40)

    def gcp_api_key(self) -> str:
        return "AIza" + self.chars(B64URL, 35)

    def azure_storage_key(self) -> str:
        return base64.b64encode(self.rng.randbytes(64)).decode()

    def azure_client_secret(self) -> str:
        tail = ALNUM + "_~.-"
        return (
            self.chars(ALNUM + "_~.", 3)
            + self.chars(string.digits, 1)
            + "Q~"
            + self.chars(tail, 34)
        )

    def github_token(self) -> str:
        if self.chance(0.3):
            return "github_pat_" + self.chars(ALNUM, 22) + "_" + self.chars(ALNUM, 59)
        return self.wpick(("ghp_", "gho_", "ghs_", "ghu_", "ghr_"), (60, 10, 15, 10, 5)) + (
            self.chars(ALNUM, 36)
        )

    def gitlab_token(self) -> str:
        return "glpat-" + self.chars(ALNUM + "_-", 20)

    def slack_token(self) -> str:
        k = self.rng.random()
        d = string.digits
        if k < 0.5:
            return (
                f"xoxb-{self.chars(d, self.randint(10, 13))}-{self.chars(d, 13)}-"
                f"{self.chars(ALNUM, 24)}"
            )
        if k < 0.85:
            return (
                f"xoxp-{self.chars(d, self.randint(10, 13))}-{self.chars(d, 12)}-"
                f"{self.chars(d, 13)}-{self.chars(HEX, 32)}"
            )
        return f"xapp-1-A{self.chars(UPPER_ALNUM, 10)}-{self.chars(d, 13)}-{self.chars(HEX, 64)}"

    def slack_webhook(self) -> str:
        return (
            f"https://hooks.slack.com/services/T{self.chars(UPPER_ALNUM, self.randint(8, 10))}"
            f"/B{self.chars(UPPER_ALNUM, self.randint(8, 10))}/{self.chars(ALNUM, 24)}"
        )

    def stripe_key(self) -> str:
        prefix = self.wpick(("sk_live_", "rk_live_", "sk_test_"), (55, 15, 30))
        n = self.pick((24, 24, 34, 99))
        return prefix + (("51" + self.chars(ALNUM, n - 2)) if n == 99 else self.chars(ALNUM, n))

    def openai_key(self) -> str:
        k = self.rng.random()
        if k < 0.5:
            return "sk-proj-" + self.chars(B64URL, 74) + "T3BlbkFJ" + self.chars(B64URL, 74)
        if k < 0.85:
            return "sk-" + self.chars(ALNUM, 20) + "T3BlbkFJ" + self.chars(ALNUM, 20)
        return "sk-svcacct-" + self.chars(B64URL, 74) + "T3BlbkFJ" + self.chars(B64URL, 74)

    def jwt(self) -> str:
        alg, sig_len = self.pick((("HS256", 32), ("RS256", 256), ("ES256", 64), ("HS512", 64)))
        header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
        if alg != "HS256" and self.chance(0.6):
            header = {"alg": alg, "kid": self.chars(HEX, 16), "typ": "JWT"}
        iat = self.randint(1_700_000_000, 1_760_000_000)
        payload: dict[str, Any] = {
            "sub": self.pick(
                (self.uuid(), str(self.randint(1000, 999999)), "auth0|" + self.sha(24))
            ),
            "iss": f"https://{self.pick(('auth', 'login', 'id', 'sso'))}.{self.domain()}/",
            "aud": self.pick(("api", "https://api.example.com", "account")),
            "iat": iat,
            "exp": iat + self.pick((300, 900, 3600, 86400)),
        }
        if self.chance(0.5):
            payload["scope"] = self.pick(("read:orders", "openid profile", "admin", "write:crm"))
        if self.chance(0.3):
            payload["name"] = self.name()
        seg = [
            b64url(json.dumps(header, separators=(",", ":")).encode()),
            b64url(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()),
            b64url(self.rng.randbytes(sig_len)),
        ]
        return ".".join(seg)

    def pem(self, kind: str | None = None, big: bool | None = None) -> str:
        kind = kind or self.wpick(("rsa", "ec", "openssh", "pkcs8"), (35, 20, 25, 20))
        big = self.chance(0.25) if big is None else big
        width = 64
        if kind == "rsa":
            label = "RSA PRIVATE KEY"
            der = (
                bytes.fromhex("308204a40201000282010100") + self.rng.randbytes(1180)
                if big
                else bytes.fromhex("3082025c02010002818100") + self.rng.randbytes(596)
            )
        elif kind == "ec":
            label = "EC PRIVATE KEY"
            der = (
                bytes.fromhex("30770201010420")
                + self.rng.randbytes(32)
                + bytes.fromhex("a00a06082a8648ce3d030107a144034200")
                + b"\x04"
                + self.rng.randbytes(64)
            )
        elif kind == "openssh":
            label, width = "OPENSSH PRIVATE KEY", 70
            der = (
                b"openssh-key-v1\x00\x00\x00\x00\x04none\x00\x00\x00\x04none\x00\x00\x00\x00"
                b"\x00\x00\x00\x01\x00\x00\x003\x00\x00\x00\x0bssh-ed25519\x00\x00\x00 "
                + self.rng.randbytes(self.pick((230, 250)))
            )
        else:
            label = "PRIVATE KEY"
            der = (
                bytes.fromhex("308204bd020100300d06092a864886f70d0101010500048204a7")
                + self.rng.randbytes(1190)
                if big
                else bytes.fromhex("308187020100301306072a8648ce3d020106082a8648ce3d030107046d")
                + self.rng.randbytes(109)
            )
        body = base64.b64encode(der).decode()
        lines = [body[i : i + width] for i in range(0, len(body), width)]
        return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"

    def public_pem(self) -> str:
        label, prefix, n = self.pick(
            (
                (
                    "PUBLIC KEY",
                    "30820122300d06092a864886f70d01010105000382010f003082010a0282010100",
                    260,
                ),
                ("CERTIFICATE", "308203", 700),
                ("RSA PUBLIC KEY", "3082010a0282010100", 260),
            )
        )
        body = base64.b64encode(bytes.fromhex(prefix) + self.rng.randbytes(n)).decode()
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----"

    def ssh_public_key(self) -> str:
        blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00 " + self.rng.randbytes(32)
        who = self.pick(("deploy@ci-runner", "alice@laptop", "build@bastion", "root@web01"))
        return f"ssh-ed25519 {base64.b64encode(blob).decode()} {who}"

    def generic_value(self) -> str:
        k = self.rng.random()
        if k < 0.25:
            return self.chars(ALNUM, self.randint(20, 40))
        if k < 0.40:
            return self.chars(HEX, self.pick((32, 40, 64)))
        if k < 0.52:
            raw = base64.b64encode(self.rng.randbytes(self.pick((24, 32, 33, 48)))).decode()
            return raw
        if k < 0.75:
            return self.chars(ALNUM, 1) + self.chars(PASSWORD_CHARS, self.randint(13, 23))
        if k < 0.82:
            return self.chars(string.ascii_lowercase + string.digits + "!$%^&*(-_=+)", 50)
        return self.pick(
            (
                "SG." + self.chars(B64URL, 22) + "." + self.chars(B64URL, 43),
                "npm_" + self.chars(ALNUM, 36),
                "key-" + self.chars(HEX, 32),
                "xkeysib-" + self.chars(HEX, 64) + "-" + self.chars(ALNUM, 16),
                "pypi-AgEIcHlwaS5vcmc" + self.chars(B64URL, 60),
                "dd" + self.chars(HEX, 30),
                "shpat_" + self.chars(HEX, 32),
            )
        )

    def url_password_value(self) -> str:
        pw = self.chars(ALNUM, 1) + self.chars(URL_PASSWORD_CHARS, self.randint(11, 27))
        if self.chance(0.15):  # a percent-encoded special character, as in a real DSN
            cut = self.randint(3, len(pw) - 2)
            pw = pw[:cut] + self.pick(("%40", "%21", "%23", "%2F")) + pw[cut:]
        return pw

    # labelled secrets (parts)
    def value_of(self, entity: str) -> list[Part]:
        """One labelled occurrence of `entity` as parts (URL_PASSWORD carries its URL)."""
        if entity == "URL_PASSWORD":
            return self.dsn()
        if entity == "GCP_SERVICE_ACCOUNT_KEY":
            raise ValueError("service-account keys are built by sa_json()")
        make: dict[str, Callable[[], str]] = {
            "AWS_ACCESS_KEY_ID": self.aws_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret,
            "GCP_API_KEY": self.gcp_api_key,
            "AZURE_STORAGE_KEY": self.azure_storage_key,
            "AZURE_CLIENT_SECRET": self.azure_client_secret,
            "GITHUB_TOKEN": self.github_token,
            "GITLAB_TOKEN": self.gitlab_token,
            "SLACK_TOKEN": self.slack_token,
            "SLACK_WEBHOOK": self.slack_webhook,
            "STRIPE_KEY": self.stripe_key,
            "OPENAI_API_KEY": self.openai_key,
            "JWT": self.jwt,
            "PRIVATE_KEY": self.pem,
            "GENERIC_SECRET": self.generic_value,
        }
        return [secret(make[entity](), entity)]

    def dsn(self, scheme: str | None = None) -> list[Part]:
        scheme = scheme or self.pick(
            ("postgresql", "postgres", "mysql", "mongodb+srv", "redis", "amqp", "https", "mssql")
        )
        user = self.user()
        pw = secret(self.url_password_value(), "URL_PASSWORD")
        host: Part = self.host()
        if scheme != "mongodb+srv" and self.chance(0.25):
            host = self.ip()
            if ":" in host.text:  # IPv6 in a URL is bracketed
                host = ["[", host, "]"]
        port = {
            "postgresql": ":5432",
            "postgres": ":5432",
            "mysql": ":3306",
            "redis": ":6379",
            "amqp": ":5672",
            "mssql": ":1433",
        }.get(scheme, "")
        path = {
            "redis": f"/{self.randint(0, 5)}",
            "amqp": "/" + self.pick(("vhost", "%2F", "orders")),
            "https": "/"
            + self.pick(("repository/pypi/simple", "artifactory/api/npm", "git/app.git")),
            "mongodb+srv": f"/{self.pick(('crm', 'orders', 'app'))}?retryWrites=true&w=majority",
        }.get(scheme, "/" + self.pick(("orders", "crm", "billing", "app", "analytics")))
        if scheme == "redis" and self.chance(0.5):
            return [f"{scheme}://:", pw, "@", host, port, path]
        if scheme == "mongodb+srv":
            host = f"cluster0.{self.chars(LOWER_ALNUM, 5)}.mongodb.net"
        return [f"{scheme}://{user}:", pw, "@", host, port, path]

    def sa_json(self, indent: int | None = 2) -> list[Any]:
        """A GCP service-account key file; the private key value is the labelled span."""
        team = self.pick(("acme", "crm", "data", "ml", "billing"))
        stage = self.pick(("prod", "dev", "analytics"))
        project = f"{team}-{stage}-{self.randint(100000, 999999)}"
        account = self.pick(("deployer", "bq-reader", "etl", "terraform", "ci-runner"))
        client_email = f"{account}@{project}.iam.gserviceaccount.com"
        key = Ent(
            self.pem("pkcs8", big=self.chance(0.7)) + "\n",
            "GCP_SERVICE_ACCOUNT_KEY",
            also=("PRIVATE_KEY", "GENERIC_SECRET"),
        )
        obj = {
            "type": "service_account",
            "project_id": project,
            "private_key_id": self.sha(40),
            "private_key": key,
            "client_email": Ent(client_email, "EMAIL_ADDRESS"),
            "client_id": str(self.randint(10**20, 10**21 - 1)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": Str(
                (
                    "https://www.googleapis.com/robot/v1/metadata/x509/",
                    Ent(urllib.parse.quote(client_email, safe=""), "EMAIL_ADDRESS", encoded="url"),
                )
            ),
            "universe_domain": "googleapis.com",
        }
        return jparts(obj, indent=indent)

    # names of variables holding each secret type, in UPPER_SNAKE
    NAMES: dict[str, tuple[str, ...]] = {
        "AWS_ACCESS_KEY_ID": ("AWS_ACCESS_KEY_ID", "S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY"),
        "AWS_SECRET_ACCESS_KEY": (
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SECRET_KEY",
            "AWS_S3_SECRET_ACCESS_KEY",
        ),
        "GCP_API_KEY": ("GOOGLE_API_KEY", "GCP_API_KEY", "MAPS_API_KEY", "FIREBASE_API_KEY"),
        "AZURE_STORAGE_KEY": ("AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "STORAGE_KEY"),
        "AZURE_CLIENT_SECRET": ("AZURE_CLIENT_SECRET", "ARM_CLIENT_SECRET", "CLIENT_SECRET"),
        "GITHUB_TOKEN": ("GITHUB_TOKEN", "GH_TOKEN", "GITHUB_PAT", "GH_ACCESS_TOKEN"),
        "GITLAB_TOKEN": ("GITLAB_TOKEN", "GITLAB_PRIVATE_TOKEN", "GL_TOKEN", "CI_PUSH_TOKEN"),
        "SLACK_TOKEN": ("SLACK_BOT_TOKEN", "SLACK_TOKEN", "SLACK_APP_TOKEN", "SLACK_USER_TOKEN"),
        "SLACK_WEBHOOK": ("SLACK_WEBHOOK_URL", "SLACK_WEBHOOK", "ALERTS_WEBHOOK_URL"),
        "STRIPE_KEY": (
            "STRIPE_SECRET_KEY",
            "STRIPE_API_KEY",
            "STRIPE_KEY",
            "STRIPE_RESTRICTED_KEY",
        ),
        "OPENAI_API_KEY": ("OPENAI_API_KEY", "OPENAI_KEY", "LLM_API_KEY"),
        "JWT": ("ACCESS_TOKEN", "AUTH_TOKEN", "ID_TOKEN", "SERVICE_JWT", "BEARER_TOKEN"),
        "URL_PASSWORD": ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "MONGO_URI", "DB_DSN"),
        "GENERIC_SECRET": (
            "DB_PASSWORD",
            "POSTGRES_PASSWORD",
            "SECRET_KEY",
            "JWT_SECRET",
            "API_KEY",
            "SESSION_SECRET",
            "ENCRYPTION_KEY",
            "WEBHOOK_SECRET",
            "SMTP_PASSWORD",
            "MAILGUN_API_KEY",
            "SENDGRID_API_KEY",
            "NPM_TOKEN",
            "TWILIO_AUTH_TOKEN",
            "DATADOG_API_KEY",
            "APP_SECRET",
            "SIGNING_KEY",
            "ADMIN_PASSWD",
            "REDIS_PASSWORD",
            "CLIENT_SECRET",
            "HMAC_KEY",
        ),
    }

    def var(self, entity: str, case: str = "upper") -> str:
        return recase(self.pick(self.NAMES[entity]), case)


def recase(name: str, case: str) -> str:
    words = name.lower().split("_")
    if case == "upper":
        return name.upper()
    if case == "snake":
        return name.lower()
    if case == "camel":
        return words[0] + "".join(w.capitalize() for w in words[1:])
    if case == "pascal":
        return "".join(w.capitalize() for w in words)
    if case == "dotted":
        return ".".join(words)
    if case == "kebab":
        return "-".join(words)
    raise ValueError(case)


# -- building blocks for templates -------------------------------------------------------------

SINGLE_LINE_SECRETS = tuple(
    s for s in SECRETS if s not in ("GCP_SERVICE_ACCOUNT_KEY", "PRIVATE_KEY")
)


def google_client_id(g: Gen) -> str:
    """An OAuth client ID: public by design, never a secret."""
    return f"{g.randint(10**11, 10**12 - 1)}-{g.chars(LOWER_ALNUM, 32)}.apps.googleusercontent.com"


def benign_settings(g: Gen) -> list[tuple[str, str]]:
    """Harmless settings, several with secret-like names (hard negatives inside positives)."""
    pool = [
        ("DEBUG", g.pick(("false", "true", "0"))),
        ("PORT", g.pick(("8080", "3000", "8000"))),
        ("LOG_LEVEL", g.pick(("info", "debug", "warning"))),
        ("NODE_ENV", g.pick(("production", "staging"))),
        ("AWS_REGION", g.pick(("eu-west-1", "us-east-1", "eu-central-1"))),
        ("TOKEN_TTL_SECONDS", g.pick(("3600", "900", "86400"))),
        ("PASSWORD_MIN_LENGTH", g.pick(("12", "10", "14"))),
        ("MAX_TOKENS", g.pick(("4096", "2048", "1024"))),
        ("API_KEY_HEADER", "X-API-Key"),
        ("SECRET_NAME", g.pick(("prod/db-credentials", "billing/stripe", "crm/api"))),
        ("SESSION_KEY_PREFIX", "sess:"),
        ("KEY_ROTATION_DAYS", g.pick(("90", "30"))),
        ("TOKEN_AUDIENCE", g.pick(("api://default", "https://api.internal"))),
        ("CACHE_TTL", str(g.randint(30, 900))),
        ("TIMEZONE", g.pick(("Europe/Berlin", "UTC", "America/New_York"))),
        ("APP_VERSION", g.version()),
        ("BUILD_SHA", g.sha()),
        ("REQUEST_ID_HEADER", "X-Request-ID"),
        ("PUBLIC_URL", f"https://app.{g.domain()}"),
        ("AZURE_TENANT_ID", g.uuid()),
        ("AZURE_CLIENT_ID", g.uuid()),
        ("SENTRY_ENVIRONMENT", g.pick(("production", "staging"))),
        ("FEATURE_FLAGS", "new-checkout,dark-mode"),
        ("PASSWORD_RESET_URL", f"https://app.{g.domain()}/reset"),
        ("WORKERS", str(g.randint(2, 16))),
        ("STRIPE_PUBLISHABLE_KEY", "pk_live_" + g.chars(ALNUM, 24)),
        (
            "GOOGLE_CLIENT_ID",
            google_client_id(g),
        ),
        ("DB_HOST", g.host()),
        ("DB_USER", g.user()),
        ("DB_NAME", g.pick(("orders", "crm", "billing"))),
        ("TOKENIZER", g.pick(("cl100k_base", "o200k_base"))),
    ]
    return g.sample(pool, g.randint(2, 6))


def config_lines(g: Gen, fmt: str, items: list[tuple[str, list[Part]]], comment: bool) -> list[Any]:
    """Key/value lines in one config format; `items` are (UPPER_NAME, value parts)."""
    out: list[Any] = []
    case = {
        "env": "upper",
        "export": "upper",
        "yaml": "snake",
        "toml": "snake",
        "ini": "snake",
        "properties": "dotted",
        "json": "camel",
        "tfvars": "snake",
    }[fmt]
    if comment:
        c = g.pick(
            (
                "# production settings",
                "# do not commit",
                "# TODO move to vault",
                "# generated by setup.sh",
                "# local overrides",
            )
        )
        if fmt == "ini":
            out.append(f"[{g.pick(('default', 'app', 'production', 'service'))}]\n")
        elif fmt != "json":
            out.append(c + "\n")
    if fmt == "json":
        obj = {
            recase(k, case): (Str(v) if len(v) != 1 or not isinstance(v[0], Ent) else v[0])
            for k, v in items
        }
        return jparts(obj, indent=g.pick((2, 4, None)))
    for k, v in items:
        name = recase(k, case)
        q = g.pick(('"', "'", "")) if fmt in ("env", "export", "yaml") else ""
        if fmt in ("toml", "tfvars"):
            q = '"'
        lead = {
            "env": f"{name}=",
            "export": f"export {name}=",
            "yaml": f"{name}: ",
            "toml": f"{name} = ",
            "tfvars": f"{name} = ",
            "ini": f"{name} = ",
            "properties": f"{name}=",
        }[fmt]
        out += [lead, q, v, q, "\n"]
    return out


DSN_NAMES = {
    "postgresql": ("DATABASE_URL", "DB_DSN", "SQLALCHEMY_DATABASE_URI"),
    "postgres": ("DATABASE_URL", "POSTGRES_URL"),
    "mysql": ("DATABASE_URL", "MYSQL_URL"),
    "mongodb+srv": ("MONGO_URI", "MONGODB_URL"),
    "redis": ("REDIS_URL", "CACHE_URL"),
    "amqp": ("BROKER_URL", "CELERY_BROKER_URL", "AMQP_URL"),
    "https": ("PIP_INDEX_URL", "ARTIFACT_REPO_URL"),
    "mssql": ("SQLSERVER_DSN", "DATABASE_URL"),
}


def secret_item(g: Gen, entity: str) -> tuple[str, list[Part]]:
    """(UPPER_NAME, value parts) for one secret of a single-line type."""
    if entity == "URL_PASSWORD":
        scheme = g.pick(tuple(DSN_NAMES))
        return g.pick(DSN_NAMES[scheme]), g.dsn(scheme)
    if entity == "AZURE_STORAGE_KEY" and g.chance(0.6):
        account = g.pick(("acme", "crm", "billing", "media")) + g.chars(LOWER_ALNUM, 6)
        return (
            g.pick(("AZURE_STORAGE_CONNECTION_STRING", "STORAGE_CONNECTION_STRING")),
            [
                f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey=",
                *g.value_of(entity),
                ";EndpointSuffix=core.windows.net",
            ],
        )
    return g.var(entity), g.value_of(entity)


def prose_with(g: Gen, parts: list[Any]) -> list[Any]:
    """Filler sentences around `parts`."""
    before = g.sentences(g.randint(0, 2))
    after = g.sentences(g.randint(0, 2))
    return [before + (" " if before else ""), parts, (" " if after else "") + after]


# -- templates: each returns parts ---------------------------------------------------------------


def t_sentence(g: Gen, i: int) -> list[Any]:
    name, first = g.name(), g.first_name()
    brand, card = g.card_parts()
    templates: list[Callable[[], list[Any]]] = [
        lambda: [f"Hi, this is {name}. You can reach me at ", g.email(), " or on ", g.phone(), "."],
        lambda: [
            f"Please charge the {brand} card ",
            Ent(card, "CREDIT_CARD"),
            f" (exp {g.randint(1, 12):02d}/{g.randint(26, 31)}) for order {g.order_no()}.",
        ],
        lambda: ["My social security number is ", g.ssn(), f" and I was born on {g.date()}."],
        lambda: [
            f"Refund {g.amount()} EUR to {name}, IBAN ",
            g.iban(),
            f", reference {g.order_no()}.",
        ],
        lambda: [
            f"Employee record: {name}, SSN ",
            g.ssn(),
            ", phone ",
            g.phone(),
            f", address {g.address()}.",
        ],
        lambda: [
            "The login from ",
            g.ip(),
            " for ",
            g.email(),
            f" was blocked at {g.timestamp()}.",
        ],
        lambda: ["Forward the statement to ", g.email(), "; the account is ", g.iban(), "."],
        lambda: [
            f"{first} asked us to update the card on file to ",
            g.card(),
            f" and the billing address to {g.address()}.",
        ],
        lambda: [
            "Can you check why the payment from ",
            g.card(),
            " failed? Customer email: ",
            g.email(),
            ", phone ",
            g.phone(),
            ".",
        ],
        lambda: [
            f"Tax form for {name}: SSN ",
            g.ssn(),
            f", employer {g.company()}, contact ",
            g.email(),
            ".",
        ],
        lambda: [
            f"New payee {g.company()} - IBAN ",
            g.iban(),
            f" (BIC {g.en.swift()}), invoice {g.order_no()} for {g.amount()} EUR.",
        ],
        lambda: [
            f"Customer {name} (",
            g.email(),
            f") disputes a charge on card ending {g.randint(1000, 9999)}; call back on ",
            g.phone(),
            ".",
        ],
        lambda: [
            "user: my card number is ",
            g.card(),
            " and my SSN is ",
            g.ssn(),
            ", please open the account today",
        ],
        lambda: [f"Send the contract to {name} at ", g.email(), " and cc ", g.email(), "."],
        lambda: ["Server ", g.ip(), " rejected the upload from ", g.ip(), f" at {g.timestamp()}."],
        lambda: [f"Payroll change for {name}: new IBAN ", g.iban(), ", old IBAN ", g.iban(), "."],
        lambda: [
            f"Verified identity of {name} with SSN ",
            g.ssn(),
            f" on {g.date()}; card on file ",
            g.card(),
            ".",
        ],
    ]
    return prose_with(g, templates[i % len(templates)]())


def t_json_pii(g: Gen, i: int) -> list[Any]:
    k = i % 9
    if k == 0:
        obj: Any = {
            "name": "send_email",
            "args": {
                "to": g.email(),
                "cc": [g.email() for _ in range(g.randint(0, 2))],
                "subject": g.sentence(),
                "body": Str(("Hi, the card we have on file is ", g.card(), ". " + g.sentence())),
            },
            "id": "call_" + g.chars(ALNUM, 24),
        }
    elif k == 1:
        obj = {
            "id": g.uuid(),
            "name": g.name(),
            "email": g.email(),
            "phone": g.phone(),
            "ssn": g.ssn(),
            "address": g.address(),
            "created_at": g.timestamp(),
            "tier": g.pick(("gold", "silver", "free")),
        }
    elif k == 2:
        obj = {
            "amount": g.randint(100, 500000),
            "currency": g.pick(("eur", "usd", "gbp")),
            "source": {
                "object": "card",
                "number": g.card(),
                "exp_month": g.randint(1, 12),
                "exp_year": g.randint(2026, 2032),
                "cvc": str(g.randint(100, 999)),
            },
            "receipt_email": g.email(),
            "metadata": {"order_id": g.order_no()},
        }
    elif k == 3:
        obj = {
            "beneficiary": g.name(),
            "iban": g.iban(),
            "bic": g.en.swift(),
            "amount": g.amount(),
            "reference": g.order_no(),
            "notify": g.email(),
        }
    elif k == 4:
        obj = {
            "users": [
                {"email": g.email(), "last_login_ip": g.ip(), "id": g.randint(1, 99999)}
                for _ in range(g.randint(2, 4))
            ],
            "next_cursor": None,
        }
    elif k == 5:
        obj = {
            "type": g.pick(("customer.updated", "customer.created", "payment_method.attached")),
            "created": g.randint(1_700_000_000, 1_760_000_000),
            "data": {"object": {"email": g.email(), "phone": g.phone(), "name": g.name()}},
        }
    elif k == 6:
        obj = {
            "tool": "lookup_customer",
            "result": Str(
                ("Found ", g.name(), " <", g.email(), ">, SSN ", g.ssn(), ", IBAN ", g.iban(), ".")
            ),
        }
    elif k == 7:
        obj = {
            "employee": {"name": g.name(), "ssn": g.ssn(), "salary_account": g.iban()},
            "manager_email": g.email(),
            "start_date": g.date(),
        }
    else:
        obj = {
            "messages": [
                {
                    "role": "user",
                    "content": Str(
                        ("Please update my email to ", g.email(), " and my phone to ", g.phone())
                    ),
                },
                {"role": "assistant", "content": "Done. Anything else?"},
                {
                    "role": "user",
                    "content": Str(("Also pay invoice ", g.order_no(), " with ", g.card())),
                },
            ]
        }
    return jparts(obj, indent=g.pick((None, 2)), compact=g.chance(0.3))


def t_json_encoded(g: Gen, i: int) -> list[Any]:
    """JSON payloads with base64- or URL-encoded PII (one value per encoded span)."""
    entity = ("EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE")[i % 4]
    # spaced forms, so that URL encoding changes them (%20 or +)
    value = {
        "EMAIL_ADDRESS": g.email_str,
        "CREDIT_CARD": lambda: g.card_parts(" ")[1],
        "US_SSN": lambda: g.ssn_str(" "),
        "IBAN_CODE": lambda: g.iban_str(spaced=True),
    }[entity]()
    if (i // 4) % 2 == 0:
        plain = g.pick(
            (
                value,
                f"customer: {g.name()} / {value}",
                json.dumps({"value": value}),
                f"Note from support: please verify {value} before shipping.",
            )
        )
        ent = Ent(b64(plain), entity, encoded="base64")
        if g.chance(0.5):
            obj: Any = {
                "attachment": {
                    "filename": g.pick(("note.txt", "customer.json", "export.csv")),
                    "content_type": "text/plain",
                    "content_base64": ent,
                },
                "uploaded_by": g.uuid(),
            }
        else:
            obj = {"headers": {"X-User": ent, "X-Request-Id": g.uuid()}, "path": "/api/v2/profile"}
    else:
        enc = g.pick((urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)))
        ent = Ent(enc, entity, encoded="url")
        param = {
            "EMAIL_ADDRESS": "email",
            "CREDIT_CARD": "card",
            "US_SSN": "ssn",
            "IBAN_CODE": "iban",
        }[entity]
        obj = g.pick(
            (
                {
                    "event": "page_view",
                    "url": Str(
                        (
                            f"https://shop.{g.domain()}/checkout?step=2&{param}=",
                            ent,
                            "&utm_source=newsletter",
                        )
                    ),
                    "ts": g.timestamp(),
                },
                {"query": Str(("q=", ent, "&limit=20")), "source": "search-box"},
                {
                    "method": "POST",
                    "body": Str(
                        (f"name={urllib.parse.quote_plus(g.name())}&{param}=", ent, "&consent=1")
                    ),
                },
            )
        )
    return jparts(obj, indent=g.pick((None, 2)))


def t_config(g: Gen, i: int) -> list[Any]:
    focus = SINGLE_LINE_SECRETS[i % len(SINGLE_LINE_SECRETS)]
    others = [e for e in g.sample(SINGLE_LINE_SECRETS, g.randint(0, 3)) if e != focus]
    items = [secret_item(g, e) for e in [focus, *others]]
    items += [(k, [v]) for k, v in benign_settings(g)]
    if g.chance(0.3):
        items.append(("SUPPORT_EMAIL", [g.email()]))
    g.rng.shuffle(items)
    fmt = g.pick(("env", "env", "export", "yaml", "toml", "ini", "properties", "json", "tfvars"))
    return config_lines(g, fmt, items, comment=g.chance(0.5))


def t_config_special(g: Gen, i: int) -> list[Any]:
    k = i % 10
    if k == 0:  # ~/.aws/credentials
        out: list[Any] = []
        for profile in g.sample(("default", "prod", "staging", "ci"), g.randint(1, 2)):
            key_id = g.aws_key_id()
            out += [
                f"[{profile}]\naws_access_key_id = ",
                secret(key_id, "AWS_ACCESS_KEY_ID"),
                "\naws_secret_access_key = ",
                secret(g.aws_secret(), "AWS_SECRET_ACCESS_KEY"),
                "\n",
            ]
            if key_id.startswith("ASIA"):
                out += [
                    "aws_session_token = ",
                    secret("IQoJb3JpZ2luX2VjE" + g.chars(B64, 300), "GENERIC_SECRET"),
                    "\n",
                ]
            out.append(f"region = {g.pick(('eu-west-1', 'us-east-1'))}\n\n")
        return out
    if k == 1:  # k8s Secret with base64 data
        out = [
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ",
            g.pick(("app-secrets", "db-credentials", "ci-tokens")),
            "\n  namespace: ",
            g.pick(("default", "prod", "billing")),
            "\ntype: Opaque\ndata:\n",
        ]
        for e in g.sample(
            (
                "GITHUB_TOKEN",
                "STRIPE_KEY",
                "OPENAI_API_KEY",
                "GENERIC_SECRET",
                "SLACK_TOKEN",
                "AWS_SECRET_ACCESS_KEY",
                "PRIVATE_KEY",
            ),
            g.randint(1, 3),
        ):
            value = g.value_of(e)[0]
            assert isinstance(value, Ent)
            name = "tls.key" if e == "PRIVATE_KEY" else g.var(e, "snake")
            out += [f"  {name}: ", replace(value, text=b64(value.text), encoded="base64"), "\n"]
        out.append(f"  {g.pick(('username', 'db_user'))}: {b64(g.user())}\n")
        return out
    if k == 2:  # k8s Secret with stringData
        out = ["apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-config\nstringData:\n"]
        for e in g.sample(SINGLE_LINE_SECRETS, g.randint(2, 3)):
            name, value = secret_item(g, e)
            out += [f'  {recase(name, "snake")}: "', value, '"\n']
        return out
    if k == 3:  # GCP service account file
        return g.sa_json(indent=g.pick((2, 2, None)))
    if k == 4:  # appsettings.json (Azure)
        account = g.pick(("acme", "crm", "billing")) + g.chars(LOWER_ALNUM, 6)
        obj = {
            "Logging": {"LogLevel": {"Default": "Information"}},
            "ConnectionStrings": {
                "Storage": Str(
                    (
                        f"DefaultEndpointsProtocol=https;AccountName={account};AccountKey=",
                        secret(g.azure_storage_key(), "AZURE_STORAGE_KEY"),
                        ";EndpointSuffix=core.windows.net",
                    )
                ),
            },
            "AzureAd": {
                "Instance": "https://login.microsoftonline.com/",
                "TenantId": g.uuid(),
                "ClientId": g.uuid(),
                "ClientSecret": secret(g.azure_client_secret(), "AZURE_CLIENT_SECRET"),
            },
            "AllowedHosts": "*",
        }
        return jparts(obj, indent=2)
    if k == 5:  # private key file
        kind = g.pick(("rsa", "ec", "openssh", "pkcs8"))
        path = {
            "rsa": "~/.ssh/id_rsa",
            "ec": "certs/server.key",
            "openssh": "~/.ssh/id_ed25519",
            "pkcs8": "secrets/signing-key.pem",
        }[kind]
        return [
            g.pick((f"$ cat {path}\n", f"==> {path} <==\n", "")),
            secret(g.pem(kind), "PRIVATE_KEY"),
            "\n",
        ]
    if k == 6:  # yaml with a key in a block scalar
        pem = g.pem(g.pick(("rsa", "ec", "openssh")))
        indent = " " * g.pick((4, 6))
        return [
            f"deploy:\n  host: {g.host()}\n  user: {g.user()}\n  ssh_private_key: |\n{indent}",
            secret(pem.replace("\n", "\n" + indent), "PRIVATE_KEY"),
            f'\n  known_hosts: "{g.ssh_public_key()}"\n',
        ]
    if k == 7:  # docker-compose
        svc = g.pick(("api", "worker", "web"))
        out = [
            f"services:\n  {svc}:\n    image: ghcr.io/acme/{svc}:{g.version()}\n    environment:\n"
        ]
        for e in g.sample(SINGLE_LINE_SECRETS, g.randint(1, 3)):
            name, value = secret_item(g, e)
            out += [f"      - {name}=", value, "\n"]
        for name, v in benign_settings(g)[:3]:
            out.append(f"      - {name}={v}\n")
        return out
    if k == 8:  # .npmrc / .pypirc / .netrc / .git-credentials
        which = g.pick(("npmrc", "pypirc", "netrc", "git-credentials"))
        if which == "npmrc":
            return [
                "registry=https://registry.npmjs.org/\n//registry.npmjs.org/:_authToken=",
                secret("npm_" + g.chars(ALNUM, 36), "GENERIC_SECRET"),
                "\n",
            ]
        if which == "pypirc":
            return [
                "[distutils]\nindex-servers = pypi\n\n[pypi]\nusername = __token__\npassword = ",
                secret("pypi-AgEIcHlwaS5vcmc" + g.chars(B64URL, 120), "GENERIC_SECRET"),
                "\n",
            ]
        if which == "netrc":
            return [
                f"machine api.{g.domain()}\n  login ",
                g.email(),
                "\n  password ",
                secret(g.generic_value(), "GENERIC_SECRET"),
                "\n",
            ]
        tok = g.pick(("GITHUB_TOKEN", "GITLAB_TOKEN"))
        host = "github.com" if tok == "GITHUB_TOKEN" else "gitlab.com"
        value = g.github_token() if tok == "GITHUB_TOKEN" else g.gitlab_token()
        return [f"https://{g.user()}:", secret(value, tok, "URL_PASSWORD"), f"@{host}\n"]
    # wp-config / php
    return [
        "<?php\ndefine('DB_NAME', 'wordpress');\ndefine('DB_USER', '",
        g.user(),
        "');\ndefine('DB_PASSWORD', '",
        secret(g.generic_value(), "GENERIC_SECRET"),
        f"');\ndefine('DB_HOST', '{g.host()}');\ndefine('AUTH_KEY', '",
        secret(
            g.chars(string.ascii_letters + string.digits + "!$%^&*()-_=+[]{}<>~", 64),
            "GENERIC_SECRET",
        ),
        "');\n",
    ]


def curl_for(g: Gen, focus: str) -> list[Any]:
    """A curl command that carries one secret of type `focus` in a realistic place."""
    v = g.value_of(focus)
    ct = "-H 'Content-Type: application/json' "
    if focus == "OPENAI_API_KEY":
        body = Str(("Summarize the ticket from ", g.email(), " about order ", g.order_no()))
        return [
            'curl https://api.openai.com/v1/chat/completions \\\n  -H "Authorization: Bearer ',
            v,
            '" \\\n  ',
            ct,
            "\\\n  -d '",
            jparts({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": body}]}),
            "'",
        ]
    if focus == "GITHUB_TOKEN":
        return [
            f'curl -sS -H "Authorization: {g.pick(("token", "Bearer"))} ',
            v,
            '" -H "Accept: application/vnd.github+json" https://api.github.com/repos/',
            f"{g.pick(('acme', 'octo-org'))}/{g.pick(('api', 'infra', 'web'))}/issues?state=open",
        ]
    if focus == "GITLAB_TOKEN":
        return [
            'curl --header "PRIVATE-TOKEN: ',
            v,
            '" "https://gitlab.com/api/v4/projects/',
            str(g.randint(100, 99999)),
            '/pipelines?ref=main"',
        ]
    if focus == "SLACK_TOKEN":
        return [
            'curl -X POST -H "Authorization: Bearer ',
            v,
            '" ',
            ct,
            '--data \'{"channel":"C0',
            g.chars(UPPER_ALNUM, 8),
            '","text":"deploy ',
            g.version(),
            " done\"}' https://slack.com/api/chat.postMessage",
        ]
    if focus == "SLACK_WEBHOOK":
        return [
            "curl -X POST ",
            ct,
            '--data \'{"text":"Nightly backup failed on ',
            g.host(),
            "\"}' ",
            v,
        ]
    if focus == "STRIPE_KEY":
        if g.chance(0.5):
            return [
                "curl https://api.stripe.com/v1/customers \\\n  -u ",
                v,
                ": \\\n  -d email=",
                Ent(urllib.parse.quote(g.email_str(), safe=""), "EMAIL_ADDRESS", encoded="url"),
                " \\\n  -d name=",
                urllib.parse.quote_plus(g.name()),
            ]
        return [
            'curl https://api.stripe.com/v1/payment_methods \\\n  -H "Authorization: Bearer ',
            v,
            '" \\\n  -d type=card \\\n  -d "card[number]=',
            g.card(),
            f'" \\\n  -d "card[exp_month]={g.randint(1, 12)}" -d "card[cvc]={g.randint(100, 999)}"',
        ]
    if focus == "GCP_API_KEY":
        return [
            'curl "https://maps.googleapis.com/maps/api/geocode/json?address=',
            urllib.parse.quote_plus(g.city()),
            "&key=",
            v,
            '"',
        ]
    if focus == "JWT":
        return [
            f"curl -s https://api.{g.domain()}/v1/orders/{g.uuid()} \\\n"
            "  -H 'Authorization: Bearer ",
            v,
            "'",
        ]
    if focus == "URL_PASSWORD":
        pw = secret(g.url_password_value(), "URL_PASSWORD")
        return [
            f"curl -fsSL https://{g.user()}:",
            pw,
            f"@nexus.{g.domain()}/repository/raw/",
            f"releases/app-{g.version()}.tar.gz -o app.tgz",
        ]
    if focus == "AWS_ACCESS_KEY_ID" or focus == "AWS_SECRET_ACCESS_KEY":
        return [
            'curl --aws-sigv4 "aws:amz:eu-west-1:s3" --user "',
            secret(g.aws_key_id(), "AWS_ACCESS_KEY_ID"),
            ":",
            secret(g.aws_secret(), "AWS_SECRET_ACCESS_KEY"),
            f'" https://{g.pick(("backups", "exports"))}.s3.eu-west-1.amazonaws.com/'
            f"{g.iso_date()}.tar.gz",
        ]
    if focus == "AZURE_CLIENT_SECRET":
        return [
            "curl -X POST https://login.microsoftonline.com/",
            g.uuid(),
            "/oauth2/v2.0/token \\\n  -d client_id=",
            g.uuid(),
            " \\\n  -d client_secret=",
            v,
            " \\\n  -d scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
            " -d grant_type=client_credentials",
        ]
    if focus == "AZURE_STORAGE_KEY":
        return [
            "AZURE_STORAGE_KEY=",
            v,
            " az storage blob upload --account-name ",
            g.chars(LOWER_ALNUM, 10),
            " -c backups -f dump.sql -n ",
            g.iso_date(),
            ".sql",
        ]
    # GENERIC_SECRET
    header = g.pick(("X-API-Key", "X-Api-Key", "api-key", "X-Auth-Token", "X-Secret-Token"))
    return [
        f"curl -s https://api.{g.domain()}/v2/contacts?email=",
        Ent(urllib.parse.quote(g.email_str(), safe=""), "EMAIL_ADDRESS", encoded="url"),
        f' -H "{header}: ',
        v,
        '"',
    ]


CURL_FOCUS = (
    "OPENAI_API_KEY",
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "SLACK_TOKEN",
    "SLACK_WEBHOOK",
    "STRIPE_KEY",
    "GCP_API_KEY",
    "JWT",
    "URL_PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_STORAGE_KEY",
    "GENERIC_SECRET",
)


def t_curl(g: Gen, i: int) -> list[Any]:
    return curl_for(g, CURL_FOCUS[i % len(CURL_FOCUS)])


def t_shell(g: Gen, i: int) -> list[Any]:
    k = i % 9
    if k == 0:
        return [
            "AWS_ACCESS_KEY_ID=",
            secret(g.aws_key_id(), "AWS_ACCESS_KEY_ID"),
            " AWS_SECRET_ACCESS_KEY=",
            secret(g.aws_secret(), "AWS_SECRET_ACCESS_KEY"),
            f" aws s3 cp s3://{g.pick(('exports', 'backups'))}/{g.iso_date()}.csv .",
        ]
    if k == 1:
        return [
            "az login --service-principal -u ",
            g.uuid(),
            " -p ",
            secret(g.azure_client_secret(), "AZURE_CLIENT_SECRET"),
            " --tenant ",
            g.uuid(),
        ]
    if k == 2:
        return ['psql "', g.dsn("postgresql"), "\" -c 'select count(*) from orders'"]
    if k == 3:
        return [
            f"docker login {g.pick(('registry.gitlab.com', 'ghcr.io', 'docker.io'))} "
            f"--username {g.user()} --password ",
            secret(g.generic_value(), "GENERIC_SECRET"),
        ]
    if k == 4:
        e = g.pick(("OPENAI_API_KEY", "GITHUB_TOKEN", "STRIPE_KEY", "SLACK_TOKEN", "GCP_API_KEY"))
        return [
            f"export {g.var(e)}=",
            g.value_of(e),
            "\n",
            g.pick(("python run.py", "make deploy", "npm run sync")),
        ]
    if k == 5:
        tok = g.pick(("GITLAB_TOKEN", "GITHUB_TOKEN"))
        host, user = (
            ("gitlab.com", "oauth2") if tok == "GITLAB_TOKEN" else ("github.com", "x-access-token")
        )
        value = g.github_token() if tok == "GITHUB_TOKEN" else g.gitlab_token()
        return [
            f"git clone https://{user}:",
            secret(value, tok, "URL_PASSWORD"),
            f"@{host}/{g.pick(('acme', 'platform'))}/{g.pick(('infra', 'billing', 'site'))}.git",
        ]
    if k == 6:
        return [
            "mysql -h ",
            g.ip(),
            f" -u {g.user()} --password=",
            secret(g.generic_value(), "GENERIC_SECRET"),
            " shop < dump.sql",
        ]
    if k == 7:
        return [
            "kubectl create secret generic db-creds --from-literal=username=",
            g.user(),
            " --from-literal=password=",
            secret(g.generic_value(), "GENERIC_SECRET"),
        ]
    return [
        f"heroku config:set {g.var('STRIPE_KEY')}=",
        g.value_of("STRIPE_KEY"),
        " SENDGRID_API_KEY=",
        secret("SG." + g.chars(B64URL, 22) + "." + g.chars(B64URL, 43), "GENERIC_SECRET"),
        " -a ",
        g.pick(("shop-prod", "crm-api")),
    ]


def py_frame(g: Gen) -> str:
    mod = g.pick(("billing/worker.py", "crm/sync.py", "api/handlers.py", "jobs/export.py"))
    fn = g.pick(("process_invoice", "sync_contacts", "handle_request", "run_export", "charge"))
    line = g.pick(
        (
            "result = client.call(payload)",
            "conn = connect(dsn)",
            "resp.raise_for_status()",
            "return self._send(request)",
        )
    )
    return f'  File "/srv/app/{mod}", line {g.randint(12, 480)}, in {fn}\n    {line}\n'


def java_frames(g: Gen, n: int) -> str:
    classes = (
        "com.acme.billing.PaymentService.charge",
        "com.acme.crm.ContactRepository.save",
        "org.springframework.jdbc.datasource.DataSourceUtils.getConnection",
        "com.zaxxer.hikari.pool.HikariPool.getConnection",
        "org.apache.http.impl.client.CloseableHttpClient.execute",
        "com.acme.api.OrderController.create",
    )
    out = []
    for _ in range(n):
        c = g.pick(classes)
        out.append(f"\tat {c}({c.split('.')[-2]}.java:{g.randint(20, 600)})\n")
    return "".join(out)


def t_stacktrace(g: Gen, i: int) -> list[Any]:
    k = i % 12
    tb = "Traceback (most recent call last):\n"
    if k == 0:
        host = g.ip()
        return [
            tb,
            py_frame(g),
            py_frame(g),
            'psycopg2.OperationalError: connection to server at "',
            host,
            '", port 5432 failed: FATAL:  password authentication failed for user "',
            g.user(),
            "\"\n\nLocal variables:\n  dsn = '",
            g.dsn("postgresql"),
            "'\n  retries = 3\n",
        ]
    if k == 1:
        return [
            tb,
            py_frame(g),
            "requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: ",
            "https://api.github.com/user/repos?access_token=",
            g.value_of("GITHUB_TOKEN"),
            "&per_page=100\n",
        ]
    if k == 2:
        return [
            tb,
            py_frame(g),
            py_frame(g),
            "botocore.exceptions.ClientError: An error occurred ",
            "(SignatureDoesNotMatch) when calling the PutObject operation\n\nlocals:\n",
            "  aws_access_key_id = '",
            secret(g.aws_key_id(), "AWS_ACCESS_KEY_ID"),
            "'\n",
            "  aws_secret_access_key = '",
            secret(g.aws_secret(), "AWS_SECRET_ACCESS_KEY"),
            "'\n",
            f"  bucket = '{g.pick(('exports', 'invoices'))}-{g.randint(1, 99)}'\n",
        ]
    if k == 3:
        return [
            tb,
            py_frame(g),
            "ValueError: card ",
            g.card(),
            " declined for customer ",
            g.email(),
            f" (order {g.order_no()})\n",
        ]
    if k == 4:
        return [
            tb,
            py_frame(g),
            "KeyError: '",
            g.email(),
            "'\n\nDuring handling of the above exception, another exception occurred:\n\n",
            tb,
            py_frame(g),
            "crm.errors.ContactNotFound: no contact with SSN ",
            g.ssn(),
            "\n",
        ]
    if k == 5:
        return [
            tb,
            py_frame(g),
            "jwt.exceptions.ExpiredSignatureError: Signature has expired\n",
            "  token = '",
            g.value_of("JWT"),
            f"'\n  request_id = '{g.uuid()}'\n",
        ]
    if k == 6:
        return [
            tb,
            py_frame(g),
            "redis.exceptions.AuthenticationError: invalid username-password pair\n",
            "  url = '",
            g.dsn("redis"),
            "'\n",
        ]
    if k == 7:
        return [
            tb,
            py_frame(g),
            "slack_sdk.errors.SlackApiError: The request to the Slack API failed. ",
            "(url: https://slack.com/api/chat.postMessage)\nThe server responded with: ",
            "{'ok': False, 'error': 'channel_not_found'}\n  client = WebClient(token='",
            g.value_of("SLACK_TOKEN"),
            "')\n",
        ]
    if k == 8:
        stamp = g.timestamp()
        return [
            f"{stamp} ERROR 1 --- [nio-8080-exec-{g.randint(1, 9)}] "
            "o.h.engine.jdbc.spi.SqlExceptionHelper",
            " : Access denied for user '",
            g.user(),
            "'@'",
            g.ip(),
            "' (using password: YES)\n",
            "org.springframework.jdbc.CannotGetJdbcConnectionException: Failed to obtain JDBC ",
            "Connection; url=jdbc:mysql://",
            g.host(),
            ":3306/shop?user=",
            g.user(),
            "&password=",
            secret(g.url_password_value(), "GENERIC_SECRET", "URL_PASSWORD"),
            "&useSSL=true\n",
            java_frames(g, g.randint(3, 6)),
        ]
    if k == 9:
        return [
            "com.acme.payments.CardDeclinedException: card ",
            g.card(),
            " declined for customer ",
            g.email(),
            "\n",
            java_frames(g, g.randint(2, 5)),
            "Caused by: com.stripe.exception.CardException: Your card was declined.; "
            "request-id: req_",
            g.chars(ALNUM, 14),
            "\n",
            java_frames(g, 2),
        ]
    if k == 10:
        return [
            "MongoServerError: bad auth : Authentication failed.\n    at Connection.onMessage ",
            "(/app/node_modules/mongodb/lib/cmap/connection.js:207:30)\n    at MessageStream.",
            "<anonymous> (/app/node_modules/mongodb/lib/cmap/connection.js:60:60) {\n  ok: 0,\n",
            "  code: 8000,\n  uri: '",
            g.dsn("mongodb+srv"),
            "'\n}\n",
        ]
    focus = g.pick(
        (
            "AZURE_STORAGE_KEY",
            "GCP_API_KEY",
            "STRIPE_KEY",
            "OPENAI_API_KEY",
            "GITLAB_TOKEN",
            "SLACK_WEBHOOK",
            "AZURE_CLIENT_SECRET",
            "GENERIC_SECRET",
        )
    )
    name, value = secret_item(g, focus)
    return [
        tb,
        py_frame(g),
        py_frame(g),
        f"RuntimeError: upstream call failed with status {g.pick((401, 403, 500, 502))}\n\n",
        "Frame locals:\n  settings = {'",
        recase(name, "snake"),
        "': '",
        value,
        "', 'timeout': 30, ",
        f"'region': '{g.pick(('eu-west-1', 'westeurope'))}'}}\n",
    ]


def t_log(g: Gen, i: int) -> list[Any]:
    k = i % 10
    ts = g.timestamp()
    if k == 0:
        return [
            g.ip(),
            f' - - [{ts}] "GET /api/v1/users?email=',
            Ent(urllib.parse.quote(g.email_str(), safe=""), "EMAIL_ADDRESS", encoded="url"),
            f'&page={g.randint(1, 9)} HTTP/1.1" 200 {g.randint(200, 9000)} "-" "',
            g.en.user_agent(),
            '"',
        ]
    if k == 1:
        return jparts(
            {
                "ts": ts,
                "level": "info",
                "msg": "login ok",
                "user": g.email(),
                "ip": g.ip(),
                "request_id": g.uuid(),
                "latency_ms": g.randint(3, 900),
            },
            compact=True,
        )
    if k == 2:
        return [
            f"{ts} DEBUG http.client send: b'GET /v1/charges?limit=10 HTTP/1.1\\r\\nHost: ",
            "api.stripe.com\\r\\nAuthorization: Bearer ",
            g.value_of("STRIPE_KEY"),
            "\\r\\nUser-Agent: python-requests/2.32.3\\r\\n\\r\\n'",
        ]
    if k == 3:
        return [
            f"{ts} WARN auth: token rejected token=",
            g.value_of("JWT"),
            " reason=expired user=",
            g.email(),
            f" trace={g.sha(32)}",
        ]
    if k == 4:
        return [
            f"{ts} INFO notify: posting alert to ",
            g.value_of("SLACK_WEBHOOK"),
            f" (incident {g.order_no()})",
        ]
    if k == 5:
        return [
            f"{ts} DEBUG botocore.credentials: Found credentials in environment variables. ",
            "access_key=",
            secret(g.aws_key_id(), "AWS_ACCESS_KEY_ID"),
            " region=eu-west-1 ",
            f"request_id={g.uuid()}",
        ]
    if k == 6:
        return [
            f"[{ts}] payment.failed customer=",
            g.email(),
            " card=",
            g.card(),
            " ip=",
            g.ip(),
            f" amount={g.amount()} order={g.order_no()}",
        ]
    if k == 7:
        return [
            f"{ts} INFO payout queued: beneficiary iban=",
            g.iban(),
            " notify=",
            g.email(),
            f" batch={g.uuid()}",
        ]
    if k == 8:
        e = g.pick(
            (
                "OPENAI_API_KEY",
                "GITHUB_TOKEN",
                "GITLAB_TOKEN",
                "GCP_API_KEY",
                "SLACK_TOKEN",
                "AZURE_CLIENT_SECRET",
            )
        )
        return [
            f"{ts} DEBUG config loaded: {{'{g.var(e, 'snake')}': '",
            g.value_of(e),
            f"', 'timeout': {g.randint(5, 60)}, 'retries': 3}}",
        ]
    return [
        f"{ts} ERROR worker: could not connect to ",
        g.dsn(),
        f" after 3 attempts (job {g.uuid()})",
    ]


def t_email(g: Gen, i: int) -> list[Any]:
    sender, to = g.email(), g.email()
    sender_name = g.name()
    head = ["From: ", sender_name, " <", sender, ">\nTo: ", to, "\n"]
    if g.chance(0.3):
        head += ["Cc: ", g.email(), "\n"]
    subject = g.pick(
        (
            "Updated payment details",
            "Re: your account",
            "Payroll change",
            "Fwd: invoice question",
            "Identity verification",
            "Bank details for refund",
        )
    )
    when = g.en.date_time_between(start_date=datetime(2023, 1, 1), end_date=datetime(2025, 12, 31))
    date = when.strftime("%a, %d %b %Y %H:%M:%S +0000")
    head += [f"Subject: {subject}\nDate: {date}\nMIME-Version: 1.0\n"]
    k = i % 3
    entities: list[Callable[[], Ent]] = [g.card, g.ssn, g.iban, g.email, g.phone]
    intros = {
        "CREDIT_CARD": ("My new card is ", "Please charge ", "The card number is "),
        "US_SSN": ("My SSN is ", "Social security number: ", "For the tax form, SSN "),
        "IBAN_CODE": ("The account is ", "Please wire it to ", "New IBAN: "),
        "EMAIL_ADDRESS": ("Reach me at ", "Please write to ", "Send it to "),
        "PHONE_NUMBER": ("Call me on ", "My mobile is ", "You can phone "),
    }
    greet = g.pick(("Hi team,", "Hello,", "Dear support,", "Hallo zusammen,", "Bonjour,"))
    sign = g.pick(("Grüße", "Best regards", "Thanks", "Cordialement", "Saludos"))
    if k in (0, 1):  # quoted-printable body with long lines: soft breaks land inside values
        body: list[Any] = [greet, "\n\n"]
        for _ in range(g.randint(2, 3)):
            filler = g.sentences(g.randint(1, 2))
            value = g.pick(entities)()
            body += [
                filler,
                " ",
                g.pick(intros[value.entity]),
                value,
                g.pick((". ", ", thanks. ", " - see below. ")),
                g.sentence(),
                "\n\n",
            ]
        body += [sign, ",\n", sender_name, "\n", g.phone(), "\n"]
        return [
            head,
            'Content-Type: text/plain; charset="utf-8"\n',
            "Content-Transfer-Encoding: quoted-printable\n\n",
            qp_encode(body),
        ]
    # multipart with a base64 attachment holding one value
    boundary = "000000000000" + g.chars(HEX, 16)  # Gmail-style
    e = g.pick(entities[:4])()
    plain = g.pick(
        (
            f"Customer: {g.name()}\nValue: {e.text}\n",
            f"{e.text}\n",
            f"Please update the record to {e.text} before Friday.\n",
        )
    )
    encoded = base64.encodebytes(plain.encode()).decode().rstrip("\n")
    return [
        head,
        f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n--{boundary}\n',
        'Content-Type: text/plain; charset="utf-8"\n\n',
        greet,
        " ",
        g.sentence(),
        " See the attached note.\n\n",
        sign,
        ",\n",
        sender_name,
        "\n\n",
        f'--{boundary}\nContent-Type: text/plain; name="note.txt"\n',
        "Content-Transfer-Encoding: base64\n",
        'Content-Disposition: attachment; filename="note.txt"\n\n',
        Ent(encoded, e.entity, encoded="base64"),
        f"\n--{boundary}--\n",
    ]


def t_code(g: Gen, i: int) -> list[Any]:
    k = i % 12
    if k == 0:
        return [
            'import boto3\n\ns3 = boto3.client(\n    "s3",\n    aws_access_key_id="',
            secret(g.aws_key_id(), "AWS_ACCESS_KEY_ID"),
            '",\n    aws_secret_access_key="',
            secret(g.aws_secret(), "AWS_SECRET_ACCESS_KEY"),
            '",\n    region_name="eu-central-1",\n)\n',
        ]
    if k == 1:
        return [
            'from openai import OpenAI\n\nclient = OpenAI(api_key="',
            g.value_of("OPENAI_API_KEY"),
            '")\nresp = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)\n',
        ]
    if k == 2:
        return [
            'import stripe\n\nstripe.api_key = "',
            g.value_of("STRIPE_KEY"),
            '"\nstripe.Customer.create(email="',
            g.email(),
            '")\n',
        ]
    if k == 3:
        return [
            'const { Octokit } = require("@octokit/rest");\nconst octokit = new Octokit({ auth: "',
            g.value_of("GITHUB_TOKEN"),
            '" });\n',
        ]
    if k == 4:
        return [
            'from slack_sdk import WebClient\n\nclient = WebClient(token="',
            g.value_of("SLACK_TOKEN"),
            '")\nclient.chat_postMessage(channel="#alerts", text="deploy done")\n',
        ]
    if k == 5:
        return [
            'package main\n\nvar jwtSecret = []byte("',
            secret(g.generic_value(), "GENERIC_SECRET"),
            '")\n\nfunc main() {\n\tdsn := "',
            g.dsn("postgres"),
            '"\n\tdb, _ := sql.Open("pgx", dsn)\n',
            "\tdefer db.Close()\n}\n",
        ]
    if k == 6:
        return [
            'resp = requests.get(\n    "https://maps.googleapis.com/maps/api/geocode/json",\n',
            '    params={"address": address, "key": "',
            g.value_of("GCP_API_KEY"),
            '"},\n)\n',
        ]
    if k == 7:
        account = g.chars(LOWER_ALNUM, 10)
        return [
            'String connStr = "DefaultEndpointsProtocol=https;AccountName=',
            account,
            ";AccountKey=",
            secret(g.azure_storage_key(), "AZURE_STORAGE_KEY"),
            ';EndpointSuffix=core.windows.net";\n',
            "BlobServiceClient client = new BlobServiceClientBuilder()",
            ".connectionString(connStr).buildClient();\n",
        ]
    if k == 8:
        return [
            'credential = ClientSecretCredential(\n    tenant_id="',
            g.uuid(),
            '",\n    client_id="',
            g.uuid(),
            '",\n    client_secret="',
            secret(g.azure_client_secret(), "AZURE_CLIENT_SECRET"),
            '",\n)\n',
        ]
    if k == 9:
        return [
            'SIGNING_KEY = """',
            secret(g.pem(g.pick(("rsa", "ec", "pkcs8"))), "PRIVATE_KEY"),
            '"""\n\ndef sign(payload: bytes) -> bytes:\n    return _sign(SIGNING_KEY, payload)\n',
        ]
    if k == 10:
        return [
            'def test_normalize_contact():\n    c = normalize({"email": "',
            g.email(),
            '", "phone": "',
            g.phone(),
            '"})\n    assert c.country == "US"\n',
        ]
    return [
        'import gitlab\n\ngl = gitlab.Gitlab("https://gitlab.com", private_token="',
        g.value_of("GITLAB_TOKEN"),
        '")\nproject = gl.projects.get(',
        str(g.randint(100, 99999)),
        ")\n",
    ]


def indent_parts(parts: list[Any], pad: str) -> list[Any]:
    """Indent every line of plain text (entity texts here hold no raw newline)."""
    return [p.replace("\n", "\n" + pad) if isinstance(p, str) else p for p in flatten(parts)]


def t_gcp_sa(g: Gen, i: int) -> list[Any]:
    """A GCP service-account key in the places it ends up."""
    k = i % 6
    if k == 0:
        path = g.pick(("key.json", "sa.json", "credentials/gcp.json", "terraform/account.json"))
        return [f"$ cat {path}\n", g.sa_json(indent=2), "\n"]
    if k == 1:
        name = g.pick(("GOOGLE_CREDENTIALS", "GCP_SA_KEY", "GOOGLE_APPLICATION_CREDENTIALS_JSON"))
        return [f"{name}='", g.sa_json(indent=None), "'\n"]
    if k == 2:
        return [
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: gcp-sa\nstringData:\n",
            "  key.json: |\n    ",
            indent_parts(g.sa_json(indent=2), "    "),
            "\n",
        ]
    if k == 3:
        project = g.pick(("acme-prod", "data-lake"))
        return [
            f'provider "google" {{\n  project     = "{project}"\n  credentials = <<EOF\n',
            g.sa_json(indent=2),
            "\nEOF\n}\n",
        ]
    if k == 4:
        return [
            "info = json.loads('",
            g.sa_json(indent=None),
            "')\ncreds = service_account.Credentials.from_service_account_info(info)\n",
        ]
    intro = g.pick(
        (
            "why does BigQuery say permission denied with this key? ",
            "here is the service account file from the old project:\n",
        )
    )
    return [intro, g.sa_json(indent=g.pick((2, None)))]


def t_keyjson(g: Gen, i: int) -> list[Any]:
    """Private keys as JSON string values (GitHub App, Snowflake, JWT signing config)."""
    name = g.pick(("private_key", "privateKey", "signing_key_pem", "app_private_key"))
    obj = {
        "app_id": g.randint(10000, 999999),
        "installation_id": g.randint(10**6, 10**8),
        name: secret(g.pem(g.pick(("rsa", "ec", "pkcs8"))), "PRIVATE_KEY"),
    }
    return jparts(obj, indent=g.pick((2, None)))


def t_chat_paste(g: Gen, i: int) -> list[Any]:
    """Secrets pasted into a chat message to an assistant."""
    focus = SECRETS[i % len(SECRETS)]
    intro = g.pick(
        (
            "can you check why this fails? ",
            "here is my config: ",
            "the deploy broke after I changed this: ",
            "why does auth return 401 with ",
        )
    )
    if focus == "GCP_SERVICE_ACCOUNT_KEY":
        return [intro, "\n", g.sa_json(indent=2)]
    if focus == "PRIVATE_KEY":
        return [
            intro,
            "ssh keeps asking for a passphrase with this key\n",
            secret(g.pem(g.pick(("openssh", "rsa"))), "PRIVATE_KEY"),
            "\n",
            g.sentence(),
        ]
    name, value = secret_item(g, focus)
    return [intro, f"{name}=", value, " ", g.sentence()]


# -- negatives ---------------------------------------------------------------------------------


def isbn13(g: Gen) -> str:
    body = "978" + g.chars(string.digits, 9)
    check = (10 - sum((1 if i % 2 == 0 else 3) * int(c) for i, c in enumerate(body)) % 10) % 10
    s = body + str(check)
    return g.pick((s, f"{s[:3]}-{s[3]}-{s[4:7]}-{s[7:12]}-{s[12]}"))


def luhn_invalid(g: Gen) -> str:
    _, card = g.card_parts()
    digits = [c for c in card if c.isdigit()]
    last = str((int(digits[-1]) + g.randint(1, 9)) % 10)
    return card[:-1] + last


def bad_iban(g: Gen) -> str:
    iban = g.iban_str(spaced=False)
    while True:
        check = f"{g.randint(2, 98):02d}"
        bad = iban[:2] + check + iban[4:]
        if not iban_ok(bad):
            break
    return " ".join(bad[i : i + 4] for i in range(0, len(bad), 4)) if g.chance(0.5) else bad


def bad_ssn(g: Gen) -> str:
    sep = g.pick(("-", " "))
    area, group, serial = g.pick(
        (
            ("000", f"{g.randint(1, 99):02d}", f"{g.randint(1, 9999):04d}"),
            ("666", f"{g.randint(1, 99):02d}", f"{g.randint(1, 9999):04d}"),
            (f"{g.randint(900, 999)}", f"{g.randint(1, 99):02d}", f"{g.randint(1, 9999):04d}"),
            (f"{g.randint(1, 665):03d}", "00", f"{g.randint(1, 9999):04d}"),
            (f"{g.randint(1, 665):03d}", f"{g.randint(1, 99):02d}", "0000"),
            ("123", "45", "6789"),
            ("078", "05", "1120"),
        )
    )
    return f"{area}{sep}{group}{sep}{serial}"


def placeholder_assignments(g: Gen) -> list[str]:
    lines = []
    for _ in range(g.randint(3, 6)):
        e = g.pick(
            (
                "GENERIC_SECRET",
                "STRIPE_KEY",
                "OPENAI_API_KEY",
                "GITHUB_TOKEN",
                "AWS_SECRET_ACCESS_KEY",
                "SLACK_TOKEN",
                "AZURE_CLIENT_SECRET",
            )
        )
        value = g.pick(
            (
                *PLACEHOLDER_SECRETS,
                {
                    "STRIPE_KEY": "sk_test_" + "X" * 24,
                    "OPENAI_API_KEY": "sk-...",
                    "GITHUB_TOKEN": "ghp_" + "x" * 36,
                    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    "SLACK_TOKEN": "xoxb-your-bot-token",
                    "AZURE_CLIENT_SECRET": "<client-secret>",
                    "GENERIC_SECRET": "<changeme>",
                }[e],
            )
        )
        lines.append(f"{g.var(e)}={value}")
    return lines


def t_negative(g: Gen, i: int) -> tuple[str, list[Any]]:
    """(note, parts) for a text with no labelled value."""
    k = i % 24
    if k == 0:
        return "uuids and trace ids in a log", [
            f"{g.timestamp()} INFO request done request_id={g.uuid()} trace_id={g.sha(32)} "
            f"span_id={g.sha(16)} duration_ms={g.randint(2, 900)} status=200"
        ]
    if k == 1:
        shas = "\n".join(
            f"{g.sha(g.pick((7, 10, 40)))} {g.sentence()}" for _ in range(g.randint(3, 6))
        )
        return "git shas in git log", [shas]
    if k == 2:
        return "base64 image fragment", [
            '{"avatar": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA',
            base64.b64encode(g.rng.randbytes(g.randint(200, 600))).decode(),
            '", "width": 64}',
        ]
    if k == 3:
        return "order numbers and amounts", [
            f"Order {g.order_no()} shipped on {g.date()}; "
            f"invoice {g.order_no()} for {g.amount()} EUR, "
            f"tracking 1Z{g.chars(UPPER_ALNUM, 16)}, customer no. {g.randint(10000000, 99999999)}."
        ]
    if k == 4:
        return "isbns", [
            f"Reading list: {g.en.catch_phrase()} (ISBN {isbn13(g)}), "
            f"{g.en.catch_phrase()} (ISBN {isbn13(g)}), published {g.date()}."
        ]
    if k == 5:
        return "dates and versions", [
            f"Release {g.version()} ({g.date()}) replaces {g.version()}; requires python>=3.10, "
            f"node {g.randint(16, 22)}.{g.randint(0, 12)}.{g.randint(0, 9)}; built {g.timestamp()} "
            f"with {g.en.user_agent()}"
        ]
    if k == 6:
        return "luhn-invalid 16-digit numbers", [
            f"Card number {luhn_invalid(g)} was rejected as invalid (checksum), as was "
            f"{luhn_invalid(g)}. {g.sentence()}"
        ]
    if k == 7:
        return "iban-like strings with bad checksums", [
            f"The IBAN {bad_iban(g)} failed validation; please re-check {bad_iban(g)} too."
        ]
    if k == 8:
        return "sk- words", [
            g.pick(
                (
                    "We trained the model with sk-learn (scikit-learn), exported with skl2onnx.",
                    "Keys that start with sk_live_ must never be committed; use sk_test_ in CI.",
                    "Install scikit-learn, then run the risk-adjusted task-queue benchmarks.",
                    "The sk-SK locale (Slovak) falls back to cs-CZ; see the desk-booking docs.",
                    "OpenAI keys look like sk-... and live in the OPENAI_API_KEY variable.",
                )
            ),
            " ",
            g.sentence(),
        ]
    if k == 9:
        return "placeholder secrets in .env", ["\n".join(placeholder_assignments(g)) + "\n"]
    if k == 10:
        pool = (
            "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
            "AWS_SECRET_ACCESS_KEY: ${{ secrets.AWS_SECRET }}",
            "DATABASE_URL: postgres://app:${DB_PASSWORD}@db:5432/app",
            "REDIS_URL: redis://:${REDIS_PASSWORD}@cache:6379/0",
            "api_key: {{ .Values.apiKey }}",
            'password: "%(password)s"',
            "session_secret: $SESSION_SECRET",
            "stripe_key: ${STRIPE_SECRET_KEY:?missing}",
            "client_secret: {{ vault 'secret/data/app' 'client_secret' }}",
            "OPENAI_API_KEY: ${{ secrets.OPENAI_API_KEY }}",
            "token: !vault |\n    $ANSIBLE_VAULT;1.1;AES256",
        )
        lines = g.sample(pool, g.randint(3, 6))
        region = g.pick(("eu-west-1", "us-east-2", "westeurope"))
        return "template references instead of secrets", [
            "env:\n" + "".join(f"  {line}\n" for line in lines) + f"  region: {region}\n"
        ]
    if k == 11:
        return "secret-like names with harmless values", [
            "\n".join(f"{recase(n, 'snake')}: {v}" for n, v in benign_settings(g))
            + "\n"
            + g.pick(
                (
                    "primary_key: id\n",
                    "idempotency_key_header: Idempotency-Key\n",
                    "cache_key: user:{id}:profile\n",
                )
            )
            + g.pick(("token_type: bearer\n", "max_tokens: 4096\n", "password_policy: strong\n"))
        ]
    if k == 12:
        return "documented example credentials", [
            g.pick(
                (
                    "AWS docs example: aws_access_key_id = AKIAIOSFODNN7EXAMPLE, "
                    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    "Azurite: DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                    "AccountKey="
                    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
                    "KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;",
                    "Slack's docs use https://hooks.slack.com/services/T00000000/B00000000/"
                    "XXXXXXXXXXXXXXXXXXXXXXXX as the webhook example.",
                    "export GITHUB_TOKEN=ghp_" + "x" * 36 + "  # replace with your token",
                    "STRIPE_SECRET_KEY=sk_test_XXXXXXXXXXXXXXXXXXXXXXXX",
                    "DATABASE_URL=postgresql://user:password@localhost:5432/mydb",
                )
            )
        ]
    if k == 13:
        return "public keys and certificates", [
            g.pick((f"{g.public_pem()}\n", f"{g.ssh_public_key()}\n"))
        ]
    if k == 14:
        return "publishable and public identifiers", [
            f"STRIPE_PUBLISHABLE_KEY=pk_{g.pick(('live', 'test'))}_"
            f"{g.chars(ALNUM, g.pick((24, 99)))}\n"
            f"GOOGLE_CLIENT_ID={google_client_id(g)}\n"
            f"AZURE_TENANT_ID={g.uuid()}\nAZURE_SUBSCRIPTION_ID={g.uuid()}\n"
            f"ROLE_ARN=arn:aws:iam::{g.randint(10**11, 10**12 - 1)}:role/"
            f"{g.pick(('deploy', 'ci', 'readonly'))}\n"
        ]
    if k == 15:
        return "invalid ssns", [
            f"Rejected SSNs (invalid area/group/serial): {bad_ssn(g)}, {bad_ssn(g)} "
            f"and {bad_ssn(g)}."
        ]
    if k == 16:
        return "checksums and digests", [
            f"sha256:{g.sha(64)}  app-{g.version()}.tar.gz\n"
            f"image: ghcr.io/acme/api@sha256:{g.sha(64)}\n"
            f"integrity: sha512-{base64.b64encode(g.rng.randbytes(64)).decode()}\n"
        ]
    if k == 17:
        return "email-like strings that are not addresses", [
            g.pick(
                (
                    "Use icon@2x.png and logo@3x.png for retina screens; "
                    "import from @types/node and "
                    "pin lodash@4.17.21.",
                    "Run as deploy@ci-runner or root@localhost; @app.route('/x') handles it.",
                    f"Follow @{g.en.user_name()} for news; "
                    f"ping @channel when {g.sentence().lower()}",
                )
            )
        ]
    if k == 18:
        return "masked values", [
            g.pick(
                (
                    "openai.AuthenticationError: Error code: 401 - Incorrect API key provided: "
                    f"sk-proj-****{g.chars(ALNUM, 4)}.",
                    "stripe.error.AuthenticationError: Invalid API Key provided: "
                    f"sk_live_****{g.chars(ALNUM, 4)}",
                    f"Card ending in {g.randint(1000, 9999)} (**** **** **** "
                    f"{g.randint(1000, 9999)}) was charged {g.amount()}.",
                    f"SSN on file: ***-**-{g.randint(1000, 9999)}; "
                    f"IBAN DE** **** **** **** **{g.randint(10, 99)}",
                    "password: ******** (hidden)  token: [REDACTED]  api_key: <redacted>",
                )
            )
        ]
    if k == 19:
        return "hex colors, numbers and coordinates", [
            f"theme: #{g.sha(6)}; accent #{g.sha(6)}; "
            f"lat {g.en.latitude()}, lon {g.en.longitude()}; "
            f"build {g.randint(10**9, 10**10 - 1)}; port {g.randint(1024, 65535)}; "
            f"pid {g.randint(100, 99999)}"
        ]
    if k == 20:
        return "jwt-like fragments that are not tokens", [
            "The header eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9 decodes to "
            '{"alg":"HS256","typ":"JWT"}; '
            f"a token has three dot-separated parts. {g.sentence()}"
        ]
    if k == 21:
        return "code reading secrets from the environment", [
            g.pick(
                (
                    'password = os.environ["DB_PASSWORD"]\napi_key = os.getenv("OPENAI_API_KEY")\n',
                    "const token = process.env.GITHUB_TOKEN;\n"
                    "const secret = config.get('stripe.secretKey');\n",
                    "client_secret: str = Field(default=None, repr=False)\n"
                    "api_key: SecretStr | None = None\n",
                    "DB_PASSWORD=\nAPI_KEY=\nSECRET_KEY=None\n",
                )
            )
        ]
    if k == 22:
        return "business prose without personal data", [
            f"{g.company()} reported {g.randint(2, 40)}% growth in "
            f"Q{g.randint(1, 4)} {g.randint(2021, 2025)}. "
            f"{g.sentences(3)} Contact the sales team via the portal."
        ]
    return "aws identifiers that are not keys", [
        f"arn:aws:s3:::{g.pick(('exports', 'logs'))}-{g.randint(100, 999)}/*  "
        f"i-{g.sha(17)}  vpc-{g.sha(8)}  sg-{g.sha(17)}  ami-{g.sha(17)}  "
        f"account {g.randint(10**11, 10**12 - 1)}"
    ]


# -- held-out-only templates -------------------------------------------------------------------
#
# Held-out round 1 (`heldout.jsonl`, `--heldout`) is made with another seed from a share of the
# templates above plus the templates below, which the tuning set never uses: contexts the
# recognizers were not written against (SQL, CSV, XML and SOAP, Postman collections, Kubernetes
# `env` lists, notebooks, Dockerfiles, Terraform providers, access logs with query keys,
# markdown runbooks, .NET / PHP / Ruby settings, PII in other languages). Held-out round 1
# was looked at after round 1 and used for the round-2 fixes, so it is a second tuning set
# now; held-out round 2 (below) became the third after round 3 and round 3 the fourth after
# round 4; round 4 is not tuned on.

HUMAN_NAMES = {
    "AWS_ACCESS_KEY_ID": "AWS access key ID",
    "AWS_SECRET_ACCESS_KEY": "AWS secret access key",
    "GCP_API_KEY": "Google API key",
    "AZURE_STORAGE_KEY": "storage account key",
    "AZURE_CLIENT_SECRET": "Azure client secret",
    "GITHUB_TOKEN": "GitHub token",
    "GITLAB_TOKEN": "GitLab token",
    "SLACK_TOKEN": "Slack bot token",
    "SLACK_WEBHOOK": "Slack webhook",
    "STRIPE_KEY": "Stripe secret key",
    "OPENAI_API_KEY": "OpenAI key",
    "JWT": "access token",
    "URL_PASSWORD": "connection string",
    "GENERIC_SECRET": "password",
}


def plain_generic(g: Gen) -> Ent:
    """A generic secret without characters that need escaping in XML, URLs or SQL."""
    while True:
        v = g.generic_value()
        if not set(v) & set("&<>'\"%+=#?\\"):
            return secret(v, "GENERIC_SECRET")


def ho_focus(i: int) -> str:
    return SINGLE_LINE_SECRETS[i % len(SINGLE_LINE_SECRETS)]


def ho_value(g: Gen, entity: str) -> list[Part]:
    if entity == "GENERIC_SECRET":
        return [plain_generic(g)]
    if entity == "URL_PASSWORD":
        return g.dsn()
    return g.value_of(entity)


def t_ho_markdown(g: Gen, i: int) -> list[Any]:
    """A runbook or ticket in markdown with credentials pasted in."""
    focus = ho_focus(i)
    label = HUMAN_NAMES[focus]
    head = g.pick(("## Staging access", "### Handover notes", "# Incident 4711 - follow-up"))
    bullet = g.pick(("- **{}:** `", "* {}: `", "| {} | `"))
    tail = " |\n" if bullet.startswith("|") else "\n"
    return [
        f"{head}\n\n{g.sentence()}\n\n",
        f"- **Host:** {g.host()}\n- **Owner:** ",
        g.email(),
        "\n",
        bullet.format(label.capitalize()),
        ho_value(g, focus),
        "`" + tail,
        f"\n{g.sentence()}\n",
    ]


def t_ho_sql(g: Gen, i: int) -> list[Any]:
    """SQL: rows with PII, and database users created with a password."""
    k = i % 3
    if k == 0:
        return [
            "INSERT INTO customers (name, email, ssn, card_number, iban) VALUES\n  ('",
            g.name().replace("'", "''"),
            "', '",
            g.email(),
            "', '",
            g.ssn(),
            "', '",
            g.card(),
            "', '",
            g.iban(),
            "');\n",
        ]
    if k == 1:
        pw = plain_generic(g)
        stmt = g.pick(
            (
                ("CREATE USER {} WITH PASSWORD '", "';"),
                ('ALTER USER {} IDENTIFIED BY "', '";'),
                ("CREATE LOGIN {} WITH PASSWORD = '", "';"),
            )
        )
        return [
            f"-- migration {g.randint(100, 999)}\n",
            stmt[0].format(g.user()),
            pw,
            stmt[1] + "\n",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {g.user()};\n",
        ]
    return [
        "UPDATE users SET email = '",
        g.email(),
        f"', updated_at = '{g.iso_date()}' WHERE id = {g.randint(1, 99999)};\n",
        "UPDATE payouts SET iban = '",
        g.iban(),
        f"' WHERE id = {g.randint(1, 99999)};\n",
    ]


def t_ho_csv(g: Gen, i: int) -> list[Any]:
    """A CSV export with PII columns."""
    rows: list[Any] = ["id,name,email,ssn,card,iban,created\n"]
    for _ in range(g.randint(2, 4)):
        rows += [
            f'{g.randint(1000, 99999)},"{g.name()}",',
            g.email(),
            ",",
            Ent(g.ssn_str("-"), "US_SSN"),
            ",",
            g.card(),
            ",",
            g.iban(),
            f",{g.iso_date()}\n",
        ]
    return rows


def t_ho_xml(g: Gen, i: int) -> list[Any]:
    """XML: a SOAP request with credentials and PII, or an AWS STS response."""
    k = i % 3
    if k == 0:
        return [
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">\n'
            "  <soapenv:Header><wsse:Security><wsse:UsernameToken>\n"
            f"    <wsse:Username>{g.user()}</wsse:Username>\n    <wsse:Password>",
            plain_generic(g),
            "</wsse:Password>\n  </wsse:UsernameToken></wsse:Security></soapenv:Header>\n"
            "  <soapenv:Body><CreateCustomer>\n    <Email>",
            g.email(),
            "</Email>\n    <CardNumber>",
            g.card(),
            "</CardNumber>\n  </CreateCustomer></soapenv:Body>\n</soapenv:Envelope>\n",
        ]
    if k == 1:
        return [
            "<AssumeRoleResponse><AssumeRoleResult><Credentials>\n  <AccessKeyId>",
            secret("ASIA" + g.chars(BASE32, 16), "AWS_ACCESS_KEY_ID"),
            "</AccessKeyId>\n  <SecretAccessKey>",
            secret(g.aws_secret(), "AWS_SECRET_ACCESS_KEY"),
            f"</SecretAccessKey>\n  <Expiration>{g.timestamp()}</Expiration>\n"
            "</Credentials></AssumeRoleResult></AssumeRoleResponse>\n",
        ]
    focus = ho_focus(i)
    tag = g.pick(("apiKey", "ApiToken", "secret", "Token"))
    if focus == "GENERIC_SECRET":
        tag = g.pick(("password", "apiKey", "clientSecret"))
    return [
        f'<?xml version="1.0"?>\n<settings>\n  <endpoint>https://api.{g.domain()}</endpoint>\n',
        f"  <{tag}>",
        ho_value(g, focus),
        f"</{tag}>\n  <contact>",
        g.email(),
        "</contact>\n</settings>\n",
    ]


def t_ho_access_log(g: Gen, i: int) -> list[Any]:
    """Access-log lines with a credential in the query string."""
    focus = g.pick(
        ("GENERIC_SECRET", "GCP_API_KEY", "JWT", "SLACK_TOKEN", "STRIPE_KEY", "GITHUB_TOKEN")
    )
    param = {
        "GENERIC_SECRET": g.pick(("api_key", "apikey", "token", "secret", "auth")),
        "GCP_API_KEY": "key",
        "JWT": g.pick(("access_token", "jwt", "id_token")),
        "SLACK_TOKEN": "token",
        "STRIPE_KEY": "api_key",
        "GITHUB_TOKEN": "access_token",
    }[focus]
    value: list[Part] = (
        [secret(g.chars(ALNUM, g.randint(24, 40)), "GENERIC_SECRET")]
        if focus == "GENERIC_SECRET"
        else g.value_of(focus)
    )
    path = g.pick(("/v1/export", "/api/v2/items", "/maps/api/geocode/json", "/hooks/ingest"))
    return [
        g.ip(),
        f' - - [{g.timestamp()}] "GET {path}?{param}=',
        value,
        f'&page={g.randint(1, 9)} HTTP/1.1" 200 {g.randint(100, 99999)} '
        f'"-" "{g.en.user_agent()}"\n',
    ]


def t_ho_app_settings(g: Gen, i: int) -> list[Any]:
    """.NET, PHP, Ruby and Java settings with a password or key."""
    k = i % 4
    if k == 0:
        return [
            '"ConnectionStrings": {\n  "Default": "Server=tcp:',
            g.host(),
            f",1433;Initial Catalog={g.pick(('orders', 'crm'))};User ID={g.user()};Password=",
            plain_generic(g),
            ';Encrypt=True;"\n}\n',
        ]
    if k == 1:
        name = g.pick(("db_password", "api_secret", "smtp_pass", "auth_token"))
        return [
            "<?php\n$config['db_host'] = '",
            g.host(),
            f"';\n$config['{name}'] = '",
            plain_generic(g),
            "';\n",
        ]
    if k == 2:
        return [
            'Rails.application.configure do\n  config.secret_key_base = "',
            secret(g.chars(HEX, 128), "GENERIC_SECRET"),
            '"\n  config.action_mailer.default_options = { from: "',
            g.email(),
            '" }\nend\n',
        ]
    return [
        "spring.datasource.url=jdbc:postgresql://",
        g.host(),
        ":5432/app\nspring.datasource.username=",
        g.user(),
        "\nspring.datasource.password=",
        plain_generic(g),
        "\n",
    ]


def t_ho_terraform(g: Gen, i: int) -> list[Any]:
    """Terraform provider blocks with inline credentials."""
    k = i % 3
    if k == 0:
        return [
            'provider "aws" {\n  region     = "eu-west-1"\n  access_key = "',
            secret(g.aws_key_id(), "AWS_ACCESS_KEY_ID"),
            '"\n  secret_key = "',
            secret(g.aws_secret(), "AWS_SECRET_ACCESS_KEY"),
            '"\n}\n',
        ]
    if k == 1:
        return [
            'provider "azurerm" {\n  features {}\n  tenant_id     = "',
            g.uuid(),
            '"\n  client_id     = "',
            g.uuid(),
            '"\n  client_secret = "',
            secret(g.azure_client_secret(), "AZURE_CLIENT_SECRET"),
            '"\n}\n',
        ]
    return [
        'provider "github" {\n  owner = "acme"\n  token = "',
        secret(g.github_token(), "GITHUB_TOKEN"),
        '"\n}\n\nresource "github_actions_secret" "slack" {\n  plaintext_value = "',
        secret(g.slack_webhook(), "SLACK_WEBHOOK"),
        '"\n}\n',
    ]


POSTMAN_FOCUS = (
    "GENERIC_SECRET",
    "JWT",
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "SLACK_TOKEN",
    "STRIPE_KEY",
    "OPENAI_API_KEY",
    "GCP_API_KEY",
)


def t_ho_postman(g: Gen, i: int) -> list[Any]:
    """A Postman collection item: header names and values in separate fields."""
    focus = POSTMAN_FOCUS[i % len(POSTMAN_FOCUS)]
    header = {
        "GENERIC_SECRET": g.pick(("X-API-Key", "X-Auth-Token", "api-key")),
        "JWT": "Authorization",
    }.get(focus, g.pick(("Authorization", "X-Api-Key")))
    value = ho_value(g, focus)
    if header == "Authorization":
        value = [Str(("Bearer ", *value))]
    obj = {
        "name": g.pick(("Create order", "List users", "Export report")),
        "request": {
            "method": "POST",
            "header": [
                {"key": "Content-Type", "value": "application/json"},
                {"key": header, "value": value[0]},
            ],
            "url": {"raw": f"https://api.{g.domain()}/v1/orders"},
            "body": {"mode": "raw", "raw": "{}"},
        },
    }
    return jparts(obj, indent=g.pick((2, None)))


def t_ho_k8s_env(g: Gen, i: int) -> list[Any]:
    """A Kubernetes container `env` list: the name and the value on separate lines."""
    focus = ho_focus(i)
    name, value = (
        secret_item(g, focus) if focus != "GENERIC_SECRET" else (g.var(focus), [plain_generic(g)])
    )
    return [
        "spec:\n  containers:\n    - name: app\n      image: ghcr.io/acme/app:",
        g.version(),
        "\n      env:\n        - name: LOG_LEVEL\n          value: info\n",
        f'        - name: {name}\n          value: "',
        value,
        '"\n',
    ]


def t_ho_notebook(g: Gen, i: int) -> list[Any]:
    """A Jupyter notebook cell (JSON) that sets a key in code."""
    focus = ho_focus(i)
    name, value = (
        secret_item(g, focus) if focus != "GENERIC_SECRET" else (g.var(focus), [plain_generic(g)])
    )
    line = Str(('os.environ["' + name + '"] = "', *value, '"\n'))
    obj = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": g.randint(1, 40),
                "metadata": {},
                "outputs": [],
                "source": ["import os\n", line, "client = make_client()\n"],
            }
        ],
        "nbformat": 4,
    }
    return jparts(obj, indent=1)


def t_ho_dockerfile(g: Gen, i: int) -> list[Any]:
    """A Dockerfile or docker run line with a credential baked in."""
    focus = ho_focus(i)
    name, value = (
        secret_item(g, focus) if focus != "GENERIC_SECRET" else (g.var(focus), [plain_generic(g)])
    )
    k = i % 3
    if k == 0:
        return [
            f"FROM python:3.12-slim\nWORKDIR /app\nENV {name}=",
            value,
            '\nCMD ["python", "main.py"]\n',
        ]
    if k == 1:
        return [f"FROM node:20\nARG {name}=", value, "\nRUN npm ci && npm run build\n"]
    return [
        f"docker run -d --name app -e {name}=",
        value,
        f" -p 8080:8080 acme/app:{g.version()}\n",
    ]


def t_ho_pii_prose(g: Gen, i: int) -> list[Any]:
    """PII in phrasings and languages the tuning set does not use."""
    name = g.name()
    templates: list[Callable[[], list[Any]]] = [
        lambda: ["Meine IBAN lautet ", g.iban(), ", bitte überweisen Sie den Betrag bis Freitag."],
        lambda: ["Mon numéro de carte est le ", g.card(), ", pouvez-vous vérifier le paiement ?"],
        lambda: ["Mi correo es ", g.email(), " y mi número de cuenta ", g.iban(), "."],
        lambda: [f'To: "{name}" <', g.email(), ">\nCc: <", g.email(), ">\nSubject: contract\n"],
        lambda: ['<a href="mailto:', g.email(), f'">Write to {name}</a>'],
        lambda: ["SSN on the W-2 is ", g.ssn(), f"; employee {name}, hired {g.date()}."],
        lambda: [
            "Kreditkarte: ",
            g.card(),
            f" (gültig bis {g.randint(1, 12):02d}/{g.randint(26, 31)})",
        ],
        lambda: [f"Applicant {name} | SSN: ", g.ssn(), " | email: ", g.email()],
        lambda: ["Bankverbindung: ", g.iban(), f" ({g.company()})"],
        lambda: ["> card ", g.card(), " declined twice, customer is ", g.email()],
    ]
    return templates[i % len(templates)]()


def t_ho_negative(g: Gen, i: int) -> tuple[str, list[Any]]:
    """Hard negatives in the held-out contexts."""
    k = i % 8
    if k == 0:
        return "held-out: markdown placeholders", [
            f"## Setup\n\n- **API key:** `{g.pick(PLACEHOLDER_SECRETS)}`\n"
            f"- **Password:** `{g.pick(PLACEHOLDER_SECRETS)}`\n- **Region:** eu-west-1\n"
        ]
    if k == 1:
        return "held-out: sql without secrets", [
            f"SELECT id, created_at FROM orders WHERE total > {g.amount()} "
            f"AND token_count < {g.randint(100, 9000)} ORDER BY id LIMIT 50;"
        ]
    if k == 2:
        return "held-out: k8s env from secretKeyRef", [
            "env:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef:\n"
            "        name: db-credentials\n        key: password\n"
        ]
    if k == 3:
        return "held-out: lockfile integrity hashes", [
            f'"node_modules/{g.pick(("lodash", "react", "chalk"))}": {{\n'
            f'  "version": "{g.version()}",\n'
            f'  "integrity": "sha512-{base64.b64encode(g.rng.randbytes(64)).decode()}"\n}}'
        ]
    if k == 4:
        return "held-out: masked card in a receipt", [
            f"Paid {g.amount()} EUR with Visa **** **** **** {g.randint(1000, 9999)} "
            f"on {g.date()}, auth code {g.chars(UPPER_ALNUM, 6)}."
        ]
    if k == 5:
        # round 2: the client field is a host name (it was an unlabelled client IPv4 address,
        # which made this negative a label defect)
        return "held-out: access log without credentials", [
            f'{g.host()} - - [{g.timestamp()}] "GET /api/v2/items?page={g.randint(1, 9)}'
            f'&sort=created_at&token_type=bearer HTTP/1.1" 200 {g.randint(100, 9999)}'
        ]
    if k == 6:
        return "held-out: terraform variable references", [
            'provider "aws" {\n  access_key = var.aws_access_key\n'
            "  secret_key = var.aws_secret_key\n}\n"
        ]
    return "held-out: xml with public identifiers", [
        f"<settings><clientId>{g.uuid()}</clientId><tokenEndpoint>https://login."
        f"{g.domain()}/oauth2/token</tokenEndpoint><apiVersion>{g.version()}</apiVersion></settings>"
    ]


HELDOUT_SEED = 918273645
HELDOUT_OUT = Path(__file__).with_name("heldout.jsonl")
HELDOUT_SHARE = 0.35  # of each tuning template's count, drawn with the held-out seed
HELDOUT_SCHEDULE: tuple[tuple[str, str, Template, int], ...] = (
    ("chat", "held-out: markdown runbook", t_ho_markdown, 70),
    ("code", "held-out: sql", t_ho_sql, 60),
    ("log", "held-out: csv export", t_ho_csv, 40),
    ("config", "held-out: xml", t_ho_xml, 60),
    ("log", "held-out: access log with query credential", t_ho_access_log, 60),
    ("config", "held-out: .net/php/ruby/java settings", t_ho_app_settings, 60),
    ("config", "held-out: terraform provider", t_ho_terraform, 45),
    ("json", "held-out: postman collection", t_ho_postman, 56),
    ("config", "held-out: kubernetes env list", t_ho_k8s_env, 56),
    ("json", "held-out: jupyter notebook", t_ho_notebook, 42),
    ("shell", "held-out: dockerfile", t_ho_dockerfile, 56),
    ("sentence", "held-out: pii prose", t_ho_pii_prose, 80),
)
N_HELDOUT_NEGATIVE = 80


# -- held-out round 2: templates no other set uses --------------------------------------------
#
# The round-2 held-out set (`heldout2.jsonl`, `--heldout2`) is made with a third seed from a
# share of the tuning templates and of the round-1 held-out templates, plus the templates below
# (notes starting `held-out-2:`), which were written before any scanner result on them was
# looked at. It was scored once after round 2 and then used for the round-3 fixes (held-out
# round 2, scored once after round 2, then used for round-3 fixes), so it is a tuning set now.
# Round 3 fixed its one label defect: the kubeconfig template wrote an IPv6 server address
# without brackets. Its contexts: GitHub Actions workflows, Ansible vars and inventories,
# Helm values, HAR captures, Go / Rust config structs, chat / ticket / email message bodies
# quoting credentials, Windows registry exports and .ini files, systemd units, kubeconfigs, and
# PII in invoices, shipping labels, vCards and payroll stubs.

H2_NOTE = "held-out-2:"


def h2_item(g: Gen, focus: str, case: str = "upper") -> tuple[str, list[Part]]:
    """(name, value parts) for one single-line secret, the name in `case`."""
    if focus == "GENERIC_SECRET":
        return g.var(focus, case), [plain_generic(g)]
    name, value = secret_item(g, focus)
    return recase(name, case), value


def t_h2_gha(g: Gen, i: int) -> list[Any]:
    """A GitHub Actions workflow with a credential inline in `env:` or `with:`."""
    focus = ho_focus(i)
    name, value = h2_item(g, focus)
    head = (
        f"name: {g.pick(('deploy', 'release', 'nightly'))}\non:\n  push:\n    branches: [main]\n"
        "jobs:\n  deploy:\n    runs-on: ubuntu-latest\n"
    )
    if focus == "GENERIC_SECRET" and i % 2 == 0:
        return [
            head,
            "    steps:\n      - uses: actions/checkout@v4\n"
            "      - uses: docker/login-action@v3\n        with:\n"
            f"          registry: ghcr.io\n          username: {g.user()}\n          password: ",
            value,
            "\n      - run: make push\n",
        ]
    q = g.pick(("", '"', "'"))
    if i % 3 == 0:
        return [
            head,
            f"    env:\n      {name}: {q}",
            value,
            f"{q}\n",
            "    steps:\n      - run: ./deploy.sh\n",
        ]
    return [
        head,
        "    steps:\n      - uses: actions/checkout@v4\n      - name: Deploy\n"
        "        run: ./scripts/deploy.sh\n        env:\n          NODE_ENV: production\n",
        f"          {name}: {q}",
        value,
        f"{q}\n",
    ]


def t_h2_ansible(g: Gen, i: int) -> list[Any]:
    """Ansible without vault: a vars file or an INI inventory line with a password."""
    focus = ho_focus(i)
    k = i % 3
    if k == 0:
        return [
            "[db]\n",
            f"db{g.randint(1, 9)} ansible_host=",
            g.ip(),
            f" ansible_user={g.user()} ansible_password=",
            plain_generic(g),
            "\n",
        ]
    if k == 1:
        return [
            f"---\n# group_vars/{g.pick(('db', 'web', 'all'))}.yml\npostgres_users:\n"
            f'  - name: {g.user()}\n    password: "',
            plain_generic(g),
            '"\n    priv: ALL\nansible_become_pass: ',
            plain_generic(g),
            "\n",
        ]
    name, value = h2_item(g, focus, "snake")
    return [
        f"---\n# host_vars/{g.pick(('app01', 'worker02', 'api03'))}.yml\napp_port: 8080\n",
        f"{name}: ",
        value,
        "\nadmin_email: ",
        g.email(),
        "\n",
    ]


def t_h2_helm(g: Gen, i: int) -> list[Any]:
    """Helm values.yaml: the credential under a nested key."""
    focus = ho_focus(i)
    head = (
        f"replicaCount: {g.randint(1, 5)}\nimage:\n  repository: ghcr.io/acme/app\n"
        f'  tag: "{g.version()}"\n'
    )
    if focus == "GENERIC_SECRET":
        return [
            head,
            "postgresql:\n  enabled: true\n  auth:\n    username: app\n    password: ",
            plain_generic(g),
            "\n    database: app\n",
        ]
    if focus == "AWS_SECRET_ACCESS_KEY":
        return [
            head,
            "backup:\n  s3:\n    bucket: acme-backups\n    accessKeyId: ",
            secret(g.aws_key_id(), "AWS_ACCESS_KEY_ID"),
            "\n    secretAccessKey: ",
            secret(g.aws_secret(), "AWS_SECRET_ACCESS_KEY"),
            "\n",
        ]
    name, value = h2_item(g, focus, "camel")
    section = g.pick(("secrets", "config", "env", "integrations"))
    return [head, f"{section}:\n  {name}: ", value, "\n"]


HAR_FOCUS = (
    "GENERIC_SECRET",
    "JWT",
    "GITHUB_TOKEN",
    "STRIPE_KEY",
    "OPENAI_API_KEY",
    "GCP_API_KEY",
    "SLACK_TOKEN",
    "GITLAB_TOKEN",
    "AZURE_CLIENT_SECRET",
)


def t_h2_har(g: Gen, i: int) -> list[Any]:
    """A HAR capture entry: headers and query parameters as name/value objects."""
    focus = HAR_FOCUS[i % len(HAR_FOCUS)]
    value = ho_value(g, focus)
    k = i % 3
    headers: list[Any] = [
        {"name": "Accept", "value": "application/json"},
        {"name": "User-Agent", "value": g.en.user_agent()},
    ]
    query: list[Any] = [{"name": "page", "value": str(g.randint(1, 9))}]
    post: dict[str, Any] = {}
    if k == 0:
        header = {"JWT": "Authorization", "GENERIC_SECRET": g.pick(("X-Api-Key", "X-Auth-Token"))}
        hname = header.get(focus, g.pick(("Authorization", "X-API-Key")))
        hvalue: Any = Str(("Bearer ", *value)) if hname == "Authorization" else value[0]
        headers.append({"name": hname, "value": hvalue})
    elif k == 1:
        pname = "key" if focus == "GCP_API_KEY" else g.pick(("api_key", "access_token", "token"))
        query.append({"name": pname, "value": value[0]})
    else:
        post = {
            "mimeType": "application/json",
            "text": Str(('{"email": "', g.email(), '", "client_secret": "', *value, '"}')),
        }
    request: dict[str, Any] = {
        "method": "POST" if post else "GET",
        "url": f"https://api.{g.domain()}/v1/items",
        "httpVersion": "HTTP/1.1",
        "headers": headers,
        "queryString": query,
        "cookies": [],
    }
    if post:
        request["postData"] = post
    obj = {
        "log": {
            "version": "1.2",
            "creator": {"name": "Firefox", "version": "128.0"},
            "entries": [
                {
                    "startedDateTime": g.timestamp(),
                    "request": request,
                    "response": {"status": 200, "statusText": "OK"},
                }
            ],
        }
    }
    return jparts(obj, indent=g.pick((2, None)))


def t_h2_struct(g: Gen, i: int) -> list[Any]:
    """Go and Rust config structs with a credential literal."""
    focus = ho_focus(i)
    if focus == "URL_PASSWORD":
        focus = "GENERIC_SECRET"
    k = i % 3
    if k == 0:
        name, value = h2_item(g, focus, "pascal")
        return [
            'cfg := &Config{\n\tEndpoint: "https://api.',
            g.domain(),
            f'",\n\tTimeout:  {g.randint(5, 60)} * time.Second,\n\t{name}: "',
            value,
            '",\n}\n',
        ]
    if k == 1:
        name, value = h2_item(g, focus, "snake")
        conv = g.pick(('".to_string()', '".into()', '".to_owned()'))
        return [
            'let config = Config {\n    endpoint: "https://api.',
            g.domain(),
            f'".into(),\n    {name}: "',
            value,
            conv + ",\n    ..Default::default()\n};\n",
        ]
    name, value = h2_item(g, focus)
    return [
        'func init() {\n\tos.Setenv("',
        name,
        '", "',
        value,
        '")\n}\n',
    ]


def t_h2_message(g: Gen, i: int) -> list[Any]:
    """A Slack message, Jira comment or email body quoting a credential or PII in prose."""
    who = g.first_name()
    k = i % 4
    if k == 3:
        pii = g.pick(
            (
                lambda: ["customer called, card on file is ", g.card(), ", refund to ", g.email()],
                lambda: ["new hire paperwork: SSN ", g.ssn(), ", payroll IBAN ", g.iban()],
                lambda: ["please update the billing contact to ", g.email(), " asap"],
            )
        )()
        return [f"@{who.lower()} ", pii, "\n"]
    focus = ho_focus(i)
    if focus == "URL_PASSWORD":
        return [f"Hi {who}, staging DB is ", g.dsn(), f" - {g.sentence()}\n"]
    if focus == "AWS_SECRET_ACCESS_KEY":
        return [
            f"{who}: sandbox AWS keys, access key ",
            secret(g.aws_key_id(), "AWS_ACCESS_KEY_ID"),
            " and secret ",
            secret(g.aws_secret(), "AWS_SECRET_ACCESS_KEY"),
            ", please rotate after the demo.\n",
        ]
    label = HUMAN_NAMES[focus]
    value = ho_value(g, focus)
    form = g.pick(
        (
            ("Hey {who}, the {label} for staging is ", " - rotate it after the demo."),
            ("{who} commented: used {label} ", " to reproduce, works now."),
            ("Hi {who},\n\nthe new {label}: ", "\n\nBest,\nOps\n"),
            ("> {label} is ", "\n{who}: thanks, that fixed it"),
        )
    )
    return [form[0].format(who=who, label=label), value, form[1].format(who=who, label=label)]


def t_h2_registry(g: Gen, i: int) -> list[Any]:
    """A Windows registry export or an .ini file with a credential."""
    focus = ho_focus(i)
    if focus == "URL_PASSWORD":
        focus = "GENERIC_SECRET"
    name, value = h2_item(g, focus, "pascal")
    if i % 2 == 0:
        return [
            "Windows Registry Editor Version 5.00\n\n"
            f"[HKEY_LOCAL_MACHINE\\SOFTWARE\\{g.pick(('Acme', 'Contoso', 'Fabrikam'))}\\Agent]\n"
            f'"ServerUrl"="https://api.{g.domain()}"\n"PollInterval"=dword:0000003c\n"{name}"="',
            value,
            '"\n',
        ]
    if focus == "GENERIC_SECRET":
        return [
            "[Database]\nServer=",
            g.host(),
            f"\nUser={g.user()}\nPassword=",
            plain_generic(g),
            "\n\n[Logging]\nLevel=Info\n",
        ]
    return ["[Service]\nEndpoint=https://api.", g.domain(), f"\n{name}=", value, "\nRetries=3\n"]


def t_h2_systemd(g: Gen, i: int) -> list[Any]:
    """A systemd unit with credentials in `Environment=`."""
    focus = ho_focus(i)
    name, value = h2_item(g, focus)
    q = g.pick(('"', ""))
    return [
        f"[Unit]\nDescription=Acme {g.pick(('worker', 'api', 'scheduler'))}\n"
        "After=network.target\n\n"
        f"[Service]\nUser={g.user()}\nEnvironment=LOG_LEVEL=info\nEnvironment={q}{name}=",
        value,
        f"{q}\nExecStart=/opt/acme/bin/app serve\nRestart=on-failure\n",
    ]


def t_h2_kubeconfig(g: Gen, i: int) -> list[Any]:
    """A kubeconfig with a user token, a client key or an auth-provider secret."""
    k = i % 3
    server: Any = g.ip() if g.chance(0.5) else f"k8s.{g.domain()}"
    if isinstance(server, Ent) and ":" in server.text:  # an IPv6 host is bracketed in a URL
        server = ["[", server, "]"]
    head: list[Any] = [
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://",
        server,
        ":6443\n  name: prod\ncontexts:\n- context:\n    cluster: prod\n    user: admin\n"
        "  name: prod\ncurrent-context: prod\nusers:\n- name: admin\n  user:\n",
    ]
    if k == 0:
        return [head, "    token: ", secret(g.jwt(), "JWT"), "\n"]
    if k == 1:
        key = base64.b64encode((g.pem() + "\n").encode()).decode()
        return [head, "    client-key-data: ", Ent(key, "PRIVATE_KEY", "base64"), "\n"]
    return [
        head,
        "    auth-provider:\n      name: azure\n      config:\n        client-id: ",
        g.uuid(),
        "\n        client-secret: ",
        secret(g.azure_client_secret(), "AZURE_CLIENT_SECRET"),
        "\n",
    ]


def t_h2_documents(g: Gen, i: int) -> list[Any]:
    """PII in invoices, shipping labels, vCards, payroll stubs and CRM exports."""
    name = g.name()
    k = i % 5
    if k == 0:
        return [
            f"INVOICE {g.order_no()}\nBill to: {name}\n{g.company()}\n{g.address()}\nE-mail: ",
            g.email(),
            f"\nAmount due: {g.amount()} EUR\nPlease pay by bank transfer to IBAN ",
            g.iban(),
            f" by {g.date()}.\n",
        ]
    if k == 1:
        return [
            f"SHIP TO:\n{name.upper()}\n{g.address()}\nTel: ",
            g.phone(),
            "\nNotify: ",
            g.email(),
            f"\nTracking: 1Z{g.chars(UPPER_ALNUM, 16)}\n",
        ]
    if k == 2:
        return [
            f"BEGIN:VCARD\nVERSION:3.0\nFN:{name}\nORG:{g.company()}\nEMAIL;TYPE=work:",
            g.email(),
            "\nTEL;TYPE=cell:",
            g.phone(),
            "\nNOTE:SSN ",
            g.ssn(),
            "\nEND:VCARD\n",
        ]
    if k == 3:
        return [
            f"PAY STUB {g.date()}\nEmployee: {name}\nSSN: ",
            g.ssn(),
            f"\nNet pay: {g.amount()}\nDeposited to: ",
            g.iban(),
            "\n",
        ]
    return [
        "Account Name\tContact\tEmail\tCard on file\n",
        f"{g.company()}\t{name}\t",
        g.email(),
        "\t",
        g.card(),
        "\n",
    ]


def t_h2_gcp(g: Gen, i: int) -> list[Any]:
    """A GCP service-account key in a workflow input, Helm values or a Jupyter/Colab cell."""
    k = i % 3
    if k == 0:
        return [
            "      - uses: google-github-actions/auth@v2\n        with:\n"
            "          credentials_json: '",
            g.sa_json(indent=None),
            "'\n",
        ]
    if k == 1:
        return [
            "gcp:\n  projectId: acme-prod\n  serviceAccountKey: |\n    ",
            indent_parts(g.sa_json(indent=2), "    "),
            "\n",
        ]
    return [
        "from google.oauth2 import service_account\nKEY = ",
        g.sa_json(indent=4),
        "\ncreds = service_account.Credentials.from_service_account_info(KEY)\n",
    ]


def t_h2_negative(g: Gen, i: int) -> tuple[str, list[Any]]:
    """Hard negatives in the round-2 contexts."""
    k = i % 10
    if k == 0:
        var = g.var(g.pick(("GENERIC_SECRET", "STRIPE_KEY", "SLACK_TOKEN", "OPENAI_API_KEY")))
        return "held-out-2: workflow with secret references", [
            f"jobs:\n  {g.pick(('deploy', 'release', 'test'))}:\n    env:\n"
            f"      {var}: ${{{{ secrets.{var} }}}}\n"
            "      GITHUB_TOKEN: ${{ github.token }}\n    steps:\n"
            "      - uses: docker/login-action@v3\n        with:\n"
            f"          username: {g.user()}\n"
            "          password: ${{ secrets.REGISTRY_PASSWORD }}\n"
        ]
    if k == 1:
        lines = "\n".join("          " + g.sha(64)[:64] for _ in range(3))
        return "held-out-2: ansible vault-encrypted value", [
            'db_user: app\ndb_password: "{{ vault_db_password }}"\napi_token: !vault |\n'
            f"          $ANSIBLE_VAULT;1.1;AES256\n{lines}\n"
        ]
    if k == 2:
        return "held-out-2: helm values with existing secrets", [
            "postgresql:\n  auth:\n    existingSecret: db-credentials\n"
            "    secretKeys:\n      userPasswordKey: password\n  tls:\n    enabled: true\n"
            f"serviceAccount:\n  create: true\n  name: {g.user()}\n"
        ]
    if k == 3:
        return "held-out-2: har without credentials", [
            '{"headers": [{"name": "Accept", "value": "application/json"}, '
            f'{{"name": "X-Request-Id", "value": "{g.uuid()}"}}, '
            '{"name": "token_type", "value": "bearer"}], '
            f'"cookies": [{{"name": "_ga", "value": "GA1.2.{g.randint(10**8, 10**9)}.'
            f'{g.randint(10**9, 2 * 10**9)}"}}]}}'
        ]
    if k == 4:
        return "held-out-2: config structs reading the environment", [
            f'cfg := &Config{{\n\tAPIKey: os.Getenv("{g.var("GENERIC_SECRET")}"),\n'
            f'\tPassword: os.Getenv("DB_PASSWORD"),\n\tTimeout: {g.randint(5, 60)},\n}}\n'
            f'let token = std::env::var("{g.var("GITHUB_TOKEN")}")?;\n'
        ]
    if k == 5:
        return "held-out-2: message about a credential without it", [
            f"@{g.first_name().lower()} I rotated the {g.pick(('prod', 'staging', 'eu'))} DB "
            f"password, the new one is in {g.pick(('1Password', 'Vault', 'Bitwarden'))} under "
            f"'{g.pick(('prod-db', 'db/app', 'crm-db'))}'. The API token now expires after "
            f"{g.randint(5, 120)} minutes."
        ]
    if k == 6:
        return "held-out-2: registry export without secrets", [
            "Windows Registry Editor Version 5.00\n\n[HKEY_LOCAL_MACHINE\\SOFTWARE\\Acme\\Agent]\n"
            '"InstallPath"="C:\\\\Program Files\\\\Acme"\n"TokenLifetime"=dword:00000e10\n'
            f'"PasswordPolicy"="complex"\n"ClientId"="{g.uuid()}"\n'
        ]
    if k == 7:
        return "held-out-2: systemd credentials from files", [
            f"[Service]\nUser={g.user()}\nEnvironmentFile=/etc/acme/{g.user()}.env\n"
            "LoadCredential=db-password:/etc/credstore/db-password\n"
            f"Environment=TOKEN_TTL={g.randint(60, 86400)}\nExecStart=/opt/acme/bin/app\n"
        ]
    if k == 8:
        cert = base64.b64encode(g.public_pem().encode()).decode()
        return "held-out-2: kubeconfig with exec plugin", [
            f"clusters:\n- cluster:\n    certificate-authority-data: {cert}\n"
            f"    server: https://k8s.{g.domain()}\nusers:\n- name: eks\n  user:\n    exec:\n"
            "      command: aws\n      args: [eks, get-token, --cluster-name, prod]\n"
        ]
    return "held-out-2: invoice with masked card", [
        f"Invoice {g.order_no()} paid with card **** **** **** {g.randint(1000, 9999)} on "
        f"{g.date()}; VAT ID DE{g.randint(10**8, 10**9 - 1)}; "
        f"tracking 1Z{g.chars(UPPER_ALNUM, 16)}."
    ]


HELDOUT2_SEED = 31415926
HELDOUT2_OUT = Path(__file__).with_name("heldout2.jsonl")
HELDOUT2_SHARE = 0.2  # of each tuning template's count
HELDOUT2_ROUND1_SHARE = 0.3  # of each round-1 held-out template's count
HELDOUT2_SCHEDULE: tuple[tuple[str, str, Template, int], ...] = (
    ("config", "held-out-2: github actions workflow", t_h2_gha, 56),
    ("config", "held-out-2: ansible vars and inventory", t_h2_ansible, 45),
    ("config", "held-out-2: helm values", t_h2_helm, 56),
    ("json", "held-out-2: har capture", t_h2_har, 54),
    ("code", "held-out-2: go / rust config struct", t_h2_struct, 56),
    ("chat", "held-out-2: message body", t_h2_message, 75),
    ("config", "held-out-2: registry export / ini", t_h2_registry, 56),
    ("config", "held-out-2: systemd unit", t_h2_systemd, 56),
    ("config", "held-out-2: kubeconfig", t_h2_kubeconfig, 45),
    ("sentence", "held-out-2: invoices, labels, vcards", t_h2_documents, 80),
    ("config", "held-out-2: gcp key in workflow / values / code", t_h2_gcp, 18),
)
N_HELDOUT2_NEGATIVE = 100


# -- held-out round 3: templates no other set uses --------------------------------------------
#
# The round-3 held-out set (`heldout3.jsonl`, `--heldout3`) is made with a fourth seed from a
# share of the tuning, round-1 and round-2 templates, plus the templates below (notes starting
# `held-out-3:`), written and generated before any scanner result on them was looked at:
# Jenkinsfiles, GitLab CI / CircleCI YAML, Spring `application.yml`, Django `settings.py`,
# Laravel `.env` and `config/*.php`, Prometheus / Alertmanager configs, Slack / Teams chat
# exports, support tickets, bash history, PowerShell, crontabs, PEM keys and GCP keys in those
# contexts, and PII in HR records, medical intake forms and travel bookings.

H3_NOTE = "held-out-3:"


def h3_value(g: Gen, focus: str) -> list[Part]:
    """A labelled value for `focus` that needs no escaping in shell, Groovy or PHP quotes."""
    if focus == "GENERIC_SECRET":
        return [plain_generic(g)]
    return ho_value(g, focus)


def t_h3_jenkins(g: Gen, i: int) -> list[Any]:
    """A declarative Jenkinsfile with a credential in `environment`, `withEnv` or a step."""
    focus = ho_focus(i)
    name, value = h2_item(g, focus)
    k = i % 3
    stage = g.pick(("Build", "Deploy", "Publish", "Release"))
    if k == 0:
        return [
            "pipeline {\n    agent any\n    environment {\n"
            f"        APP_ENV = '{g.pick(('prod', 'staging'))}'\n        {name} = '",
            value,
            f"'\n    }}\n    stages {{\n        stage('{stage}') {{\n"
            "            steps {\n                sh './gradlew build'\n            }\n"
            "        }\n    }\n}\n",
        ]
    if k == 1:
        return [
            f"node {{\n    stage('{stage}') {{\n        withEnv(['{name}=",
            value,
            "']) {\n            sh 'make deploy'\n        }\n    }\n}\n",
        ]
    if focus == "GENERIC_SECRET":
        return [
            f"stage('{stage}') {{\n    steps {{\n        sh \"docker login registry.",
            g.domain(),
            f" --username {g.user()} --password ",
            plain_generic(g),
            '"\n    }\n}\n',
        ]
    return [
        f"stage('{stage}') {{\n    steps {{\n        script {{\n"
        f"            def {recase(name, 'camel')} = '",
        value,
        '\'\n            sh "./release.sh"\n        }\n    }\n}\n',
    ]


def t_h3_ci(g: Gen, i: int) -> list[Any]:
    """GitLab CI and CircleCI YAML with a credential in `variables:` / `environment:`."""
    focus = ho_focus(i)
    name, value = h2_item(g, focus)
    q = g.pick(("", '"', "'"))
    if i % 2 == 0:
        return [
            "stages:\n  - test\n  - deploy\n\nvariables:\n  DOCKER_DRIVER: overlay2\n"
            f"  {name}: {q}",
            value,
            f"{q}\n\ndeploy:\n  stage: deploy\n  image: alpine:3.20\n  script:\n"
            "    - ./deploy.sh\n  only:\n    - main\n",
        ]
    return [
        "version: 2.1\njobs:\n  build:\n    docker:\n      - image: cimg/node:20.11\n"
        f"    environment:\n      NODE_ENV: test\n      {name}: {q}",
        value,
        f"{q}\n    steps:\n      - checkout\n      - run: npm ci && npm test\n",
    ]


def t_h3_spring(g: Gen, i: int) -> list[Any]:
    """A Spring Boot `application.yml` with nested credentials."""
    focus = ho_focus(i)
    head = f"server:\n  port: {g.pick(('8080', '8443', '9000'))}\nspring:\n  application:\n"
    head += f"    name: {g.pick(('orders', 'billing', 'crm'))}-service\n"
    k = i % 3
    if focus == "GENERIC_SECRET" and k == 0:
        return [
            head,
            "  datasource:\n    url: jdbc:postgresql://",
            g.host(),
            ":5432/app\n    username: app\n    password: ",
            plain_generic(g),
            "\n    driver-class-name: org.postgresql.Driver\n",
        ]
    if focus == "GENERIC_SECRET" and k == 1:
        return [
            head,
            f"  mail:\n    host: smtp.{g.domain()}\n    port: 587\n    username: ",
            g.email(),
            "\n    password: ",
            plain_generic(g),
            "\njwt:\n  expiration: 3600\n",
        ]
    name, value = h2_item(g, focus, "camel")
    return [
        head,
        f"app:\n  integrations:\n    {g.pick(('billing', 'notify', 'storage'))}:\n"
        f"      enabled: true\n      {name}: ",
        value,
        "\n",
    ]


def t_h3_django(g: Gen, i: int) -> list[Any]:
    """A Django `settings.py` with literal credentials."""
    focus = ho_focus(i)
    head = "from pathlib import Path\n\nBASE_DIR = Path(__file__).resolve().parent.parent\n"
    head += "DEBUG = False\nALLOWED_HOSTS = ['" + g.domain() + "']\n"
    if focus == "GENERIC_SECRET":
        k = i % 3
        if k == 0:
            return [head, "SECRET_KEY = '", plain_generic(g), "'\n"]
        if k == 1:
            return [
                head,
                "DATABASES = {\n    'default': {\n"
                "        'ENGINE': 'django.db.backends.postgresql',\n"
                "        'NAME': 'app',\n        'USER': 'app',\n        'PASSWORD': '",
                plain_generic(g),
                "',\n        'HOST': '",
                g.host(),
                "',\n        'PORT': '5432',\n    }\n}\n",
            ]
        return [
            head,
            f"EMAIL_HOST = 'smtp.{g.domain()}'\nEMAIL_HOST_USER = '",
            g.email(),
            "'\nEMAIL_HOST_PASSWORD = '",
            plain_generic(g),
            "'\n",
        ]
    name, value = h2_item(g, focus)
    return [head, f"{name} = '", value, "'\n"]


def t_h3_laravel(g: Gen, i: int) -> list[Any]:
    """A Laravel `.env` or a `config/services.php` array with a credential."""
    focus = ho_focus(i)
    k = i % 3
    if k == 0:
        key = "base64:" + base64.b64encode(g.rng.randbytes(32)).decode()
        return [
            "APP_NAME=Laravel\nAPP_ENV=production\nAPP_KEY=",
            secret(key, "GENERIC_SECRET"),
            f"\nAPP_DEBUG=false\nAPP_URL=https://{g.domain()}\n\nDB_CONNECTION=mysql\nDB_HOST=",
            g.host(),
            "\nDB_PORT=3306\nDB_DATABASE=app\nDB_USERNAME=app\nDB_PASSWORD=",
            plain_generic(g),
            "\n",
        ]
    if k == 1:
        name, value = h2_item(g, focus)
        return [
            f"APP_NAME=Laravel\nAPP_ENV=production\nLOG_CHANNEL=stack\n"
            f"MAIL_MAILER=smtp\nMAIL_HOST=smtp.{g.domain()}\n{name}=",
            value,
            "\nQUEUE_CONNECTION=redis\n",
        ]
    if focus == "GENERIC_SECRET":
        return [
            "<?php\n\nreturn [\n    'mailgun' => [\n        'domain' => '",
            "mg." + g.domain(),
            "',\n        'secret' => '",
            plain_generic(g),
            "',\n        'endpoint' => 'api.eu.mailgun.net',\n    ],\n];\n",
        ]
    name, value = h2_item(g, focus, "snake")
    return [
        "<?php\n\nreturn [\n    'integrations' => [\n        '",
        name,
        "' => '",
        value,
        "',\n        'timeout' => 30,\n    ],\n];\n",
    ]


def t_h3_prometheus(g: Gen, i: int) -> list[Any]:
    """Prometheus scrape configs and Alertmanager receivers with credentials."""
    k = i % 5
    target = f"{g.pick(('node', 'api', 'db'))}-{g.randint(1, 9)}.{g.domain()}:9100"
    if k == 0:
        return [
            "scrape_configs:\n  - job_name: node\n    scheme: https\n    basic_auth:\n"
            "      username: prometheus\n      password: ",
            plain_generic(g),
            f"\n    static_configs:\n      - targets: ['{target}']\n",
        ]
    if k == 1:
        token = g.pick(("JWT", "GITLAB_TOKEN", "GITHUB_TOKEN"))
        return [
            "scrape_configs:\n  - job_name: api\n    authorization:\n      type: Bearer\n"
            "      credentials: ",
            secret(g.jwt() if token == "JWT" else g.value_of(token)[0].text, token),
            f"\n    static_configs:\n      - targets: ['{target}']\n",
        ]
    if k == 2:
        return [
            "global:\n  resolve_timeout: 5m\n  slack_api_url: '",
            secret(g.slack_webhook(), "SLACK_WEBHOOK"),
            "'\nroute:\n  receiver: slack-ops\nreceivers:\n  - name: slack-ops\n"
            "    slack_configs:\n      - channel: '#ops-alerts'\n",
        ]
    if k == 3:
        return [
            f"global:\n  smtp_smarthost: 'smtp.{g.domain()}:587'\n  smtp_from: '",
            g.email(),
            "'\n  smtp_auth_username: alertmanager\n  smtp_auth_password: '",
            plain_generic(g),
            "'\n",
        ]
    return [
        "receivers:\n  - name: pagerduty\n    pagerduty_configs:\n      - routing_key: ",
        secret(g.chars(HEX, 32), "GENERIC_SECRET"),
        "\n        severity: critical\n",
    ]


def t_h3_chat_export(g: Gen, i: int) -> list[Any]:
    """A Slack or Teams export (JSON) with a credential or PII in a message."""
    focus = ho_focus(i)
    who = g.first_name()
    if i % 4 == 3:
        pii = g.pick(
            (
                lambda: Str(("customer's card is ", g.card(), ", email ", g.email())),
                lambda: Str(("her SSN is ", g.ssn(), " and IBAN ", g.iban())),
                lambda: Str(("send the contract to ", g.email(), " please")),
            )
        )()
        text: Any = pii
    elif focus == "AWS_SECRET_ACCESS_KEY":
        text = Str(
            (
                "aws key ",
                secret(g.aws_key_id(), "AWS_ACCESS_KEY_ID"),
                " secret ",
                secret(g.aws_secret(), "AWS_SECRET_ACCESS_KEY"),
            )
        )
    else:
        label = HUMAN_NAMES[focus]
        text = Str((f"here is the {label}: ", *h3_value(g, focus), " (rotate after the demo)"))
    if i % 2 == 0:
        obj: Any = [
            {
                "type": "message",
                "user": "U" + g.chars(UPPER_ALNUM, 10),
                "text": f"<@U{g.chars(UPPER_ALNUM, 10)}> can you check staging?",
                "ts": f"{g.randint(1700000000, 1760000000)}.{g.randint(100000, 999999)}",
            },
            {
                "type": "message",
                "user": "U" + g.chars(UPPER_ALNUM, 10),
                "text": text,
                "ts": f"{g.randint(1700000000, 1760000000)}.{g.randint(100000, 999999)}",
            },
        ]
    else:
        obj = {
            "id": str(g.randint(10**12, 10**13 - 1)),
            "messageType": "message",
            "createdDateTime": g.timestamp(),
            "from": {"user": {"id": g.uuid(), "displayName": who}},
            "body": {"contentType": "text", "content": text},
        }
    return jparts(obj, indent=g.pick((2, None)))


def t_h3_ticket(g: Gen, i: int) -> list[Any]:
    """A support ticket: a customer pasting config or PII into the description."""
    focus = ho_focus(i)
    n = g.randint(10000, 99999)
    name = g.name()
    head: list[Any] = [f"Ticket #{n}\nRequester: {name} <", g.email(), ">\n"]
    if i % 3 == 2:
        return [
            head,
            "Subject: double charge\n\nHi, my card ",
            g.card(),
            f" was charged twice on {g.date()}. Call me back on ",
            g.phone(),
            ".\n",
        ]
    name_, value = h2_item(g, focus)
    return [
        head,
        "Subject: cannot connect after upgrade\n\nHere is my .env, maybe something is wrong:\n\n"
        f"LOG_LEVEL=debug\n{name_}=",
        value,
        "\n\nThanks!\n",
    ]


def t_h3_bash_history(g: Gen, i: int) -> list[Any]:
    """`~/.bash_history`: credentials typed on the command line between ordinary commands."""
    focus = ho_focus(i)
    before = g.pick(("cd ~/src/app\ngit pull\n", "ls -la\nvim .env\n", "docker ps\n"))
    after = g.pick(("git status\n", "history | tail\n", "exit\n"))
    k = i % 4
    if focus == "GENERIC_SECRET" and k == 0:
        return [
            before,
            f"mysql -h {g.host()} -u {g.user()} --password=",
            plain_generic(g),
            " app\n",
            after,
        ]
    if focus == "GENERIC_SECRET" and k == 1:
        return [before, "PGPASSWORD='", plain_generic(g), f"' psql -h {g.host()} -U app\n", after]
    if focus == "AWS_SECRET_ACCESS_KEY" and k == 2:
        return [
            before,
            "aws configure set aws_access_key_id ",
            secret(g.aws_key_id(), "AWS_ACCESS_KEY_ID"),
            "\naws configure set aws_secret_access_key ",
            secret(g.aws_secret(), "AWS_SECRET_ACCESS_KEY"),
            "\n",
            after,
        ]
    name, value = h2_item(g, focus)
    q = g.pick(("", "'", '"'))
    return [before, f"export {name}={q}", value, f"{q}\n", after]


def t_h3_powershell(g: Gen, i: int) -> list[Any]:
    """PowerShell: `$env:` assignments, `SetEnvironmentVariable`, `ConvertTo-SecureString`."""
    focus = ho_focus(i)
    name, value = h2_item(g, focus)
    k = i % 4
    if k == 0:
        return [f"$ErrorActionPreference = 'Stop'\n$env:{name} = '", value, "'\n.\\deploy.ps1\n"]
    if k == 1:
        return [
            f"[Environment]::SetEnvironmentVariable('{name}', '",
            value,
            "', 'Machine')\nRestart-Service AcmeAgent\n",
        ]
    if focus == "GENERIC_SECRET" or k == 2:
        return [
            f"$user = '{g.user()}'\n$pass = ConvertTo-SecureString '",
            plain_generic(g),
            "' -AsPlainText -Force\n$cred = New-Object System.Management.Automation.PSCredential"
            f"($user, $pass)\nEnter-PSSession -ComputerName {g.host()} -Credential $cred\n",
        ]
    return [
        f'${recase(name, "camel")} = "',
        value,
        f'"\nInvoke-RestMethod -Uri https://api.{g.domain()}/v1/sync -Method Post\n',
    ]


def t_h3_crontab(g: Gen, i: int) -> list[Any]:
    """A crontab with a credential inline in an environment line or a job."""
    focus = ho_focus(i)
    head: list[Any] = [
        "# m h  dom mon dow   command\nSHELL=/bin/bash\nMAILTO=",
        g.email(),
        "\n",
    ]
    k = i % 3
    if focus == "GENERIC_SECRET" and k == 0:
        return [
            head,
            "0 3 * * * PGPASSWORD=",
            plain_generic(g),
            f" pg_dump -h {g.host()} -U app app | gzip > /backup/app.sql.gz\n",
        ]
    if focus == "GENERIC_SECRET" and k == 1:
        return [
            head,
            '*/5 * * * * curl -fsS -H "X-Api-Key: ',
            plain_generic(g),
            f'" https://hc.{g.domain()}/ping/{g.uuid()}\n',
        ]
    name, value = h2_item(g, focus)
    return [
        head,
        f"{name}=",
        value,
        "\n30 2 * * 1 /opt/acme/bin/sync --full >> /var/log/sync.log\n",
    ]


def t_h3_keys(g: Gen, i: int) -> list[Any]:
    """PEM private keys and GCP service-account files in the round-3 contexts."""
    k = i % 5
    if k == 0:
        pem = g.pem().replace("\n", "\n    ")
        return [
            "jwt:\n  issuer: https://auth." + g.domain() + "\n  private-key: |\n    ",
            Ent(pem, "PRIVATE_KEY", also=("GENERIC_SECRET",)),
            "\n",
        ]
    if k == 1:
        return [
            "cat > ~/.ssh/deploy_key <<'EOF'\n",
            Ent(g.pem(), "PRIVATE_KEY", also=("GENERIC_SECRET",)),
            "\nEOF\nchmod 600 ~/.ssh/deploy_key\n",
        ]
    if k == 2:
        return [
            "$json = @'\n",
            g.sa_json(indent=2),
            "\n'@\nSet-Content -Path $env:TEMP\\sa.json -Value $json\n",
        ]
    if k == 3:
        return [
            "from google.oauth2 import service_account\n\nGS_BUCKET_NAME = 'acme-media'\n"
            "GS_CREDENTIALS = service_account.Credentials.from_service_account_info(\n",
            g.sa_json(indent=4),
            "\n)\n",
        ]
    return [
        "deploy:\n  stage: deploy\n  before_script:\n    - echo '",
        g.sa_json(indent=None),
        "' > /tmp/sa.json\n    - gcloud auth activate-service-account --key-file /tmp/sa.json\n",
    ]


def t_h3_records(g: Gen, i: int) -> list[Any]:
    """PII in HR records, medical intake forms and travel bookings."""
    name = g.name()
    k = i % 3
    if k == 0:
        return [
            f"EMPLOYEE RECORD\nName: {name}\nEmployee ID: E{g.randint(10000, 99999)}\n"
            f"Department: {g.pick(('Finance', 'Engineering', 'Sales'))}\nStart date: {g.date()}\n"
            "SSN: ",
            g.ssn(),
            "\nSalary account (IBAN): ",
            g.iban(),
            "\nPersonal e-mail: ",
            g.email(),
            "\nMobile: ",
            g.phone(),
            "\n",
        ]
    if k == 1:
        return [
            f"PATIENT INTAKE FORM\nPatient name: {name}\nDate of birth: {g.date()}\n"
            "Social Security No.: ",
            g.ssn(),
            f"\nInsurance member ID: {g.chars(UPPER_ALNUM, 3)}{g.randint(10**8, 10**9 - 1)}\n"
            "Email: ",
            g.email(),
            "\nPhone: ",
            g.phone(),
            f"\nAllergies: {g.pick(('none known', 'penicillin', 'latex'))}\nCard for co-payment: ",
            g.card(),
            "\n",
        ]
    return [
        f"BOOKING CONFIRMATION\nBooking reference: {g.chars(string.ascii_uppercase, 6)}\n"
        f"Passenger: {name.upper()}\nFlight: {g.chars(string.ascii_uppercase, 2)}"
        f"{g.randint(100, 9999)} on {g.date()}\nContact e-mail: ",
        g.email(),
        "\nContact phone: ",
        g.phone(),
        "\nPaid with card ",
        g.card(),
        "\n",
    ]


def t_h3_negative(g: Gen, i: int) -> tuple[str, list[Any]]:
    """Hard negatives in the round-3 contexts."""
    k = i % 12
    var = g.var(g.pick(("GENERIC_SECRET", "GITHUB_TOKEN", "STRIPE_KEY", "SLACK_TOKEN")))
    if k == 0:
        return "held-out-3: jenkinsfile with credential bindings", [
            "pipeline {\n    agent any\n    environment {\n"
            f"        {var} = credentials('{var.lower().replace('_', '-')}')\n    }}\n"
            "    stages {\n        stage('Deploy') {\n            steps {\n"
            "                withCredentials([string(credentialsId: 'api-token', "
            "variable: 'API_TOKEN')]) {\n                    sh './deploy.sh'\n"
            "                }\n            }\n        }\n    }\n}\n"
        ]
    if k == 1:
        return "held-out-3: ci yaml with variable references", [
            f"variables:\n  {var}: ${var}\n  DEPLOY_TOKEN: $CI_JOB_TOKEN\n"
            'deploy:\n  script:\n    - echo "$REGISTRY_PASSWORD" | docker login -u ci '
            "--password-stdin registry.example.com\n"
        ]
    if k == 2:
        return "held-out-3: spring yml with placeholders", [
            "spring:\n  datasource:\n    url: jdbc:postgresql://localhost:5432/app\n"
            "    username: ${DB_USER}\n    password: ${SPRING_DATASOURCE_PASSWORD:}\n"
            f"jwt:\n  secret: ${{JWT_SECRET}}\n  expiration: {g.randint(600, 86400)}\n"
            "  token-header: Authorization\n"
        ]
    if k == 3:
        return "held-out-3: django settings reading the environment", [
            "SECRET_KEY = os.environ['DJANGO_SECRET_KEY']\n"
            "AUTH_PASSWORD_VALIDATORS = [\n    {'NAME': 'django.contrib.auth.password_validation."
            "MinimumLengthValidator'},\n]\n"
            "PASSWORD_HASHERS = ['django.contrib.auth.hashers.Argon2PasswordHasher']\n"
            f"SESSION_COOKIE_AGE = {g.randint(3600, 1209600)}\n"
        ]
    if k == 4:
        return "held-out-3: laravel config reading env", [
            "<?php\n\nreturn [\n    'key' => env('APP_KEY'),\n    'cipher' => 'AES-256-CBC',\n"
            "    'mysql' => [\n        'password' => env('DB_PASSWORD', ''),\n"
            f"        'database' => env('DB_DATABASE', '{g.pick(('forge', 'app', 'crm'))}'),\n"
            "    ],\n];\n"
        ]
    if k == 5:
        return "held-out-3: prometheus config with credential files", [
            "scrape_configs:\n  - job_name: node\n    basic_auth:\n      username: prometheus\n"
            "      password_file: /etc/prometheus/secrets/node-password\n"
            "    authorization:\n      credentials_file: /etc/prometheus/secrets/token\n"
            f"    static_configs:\n      - targets: ['node-{g.randint(1, 9)}:9100']\n"
        ]
    if k == 6:
        return "held-out-3: chat export about a credential without it", [
            json.dumps(
                [
                    {
                        "type": "message",
                        "user": "U" + g.chars(UPPER_ALNUM, 10),
                        "text": "the new API token is in the team vault under "
                        f"'{g.pick(('ci/deploy', 'prod/api', 'stripe'))}', the old one is revoked",
                        "ts": f"{g.randint(1700000000, 1760000000)}.000200",
                    }
                ]
            )
        ]
    if k == 7:
        return "held-out-3: bash history without credentials", [
            "read -rs DB_PASSWORD\nexport DB_PASSWORD\n"
            "export VAULT_TOKEN=$(vault login -token-only -method=oidc)\n"
            'kubectl create secret generic db --from-literal=password="$DB_PASSWORD"\n'
            f"git log --oneline -n {g.randint(3, 20)}\n"
        ]
    if k == 8:
        return "held-out-3: powershell reading secrets", [
            "$cred = Get-Credential\n"
            "$token = Get-Secret -Name GitHubToken -AsPlainText\n"
            "$pass = Read-Host -AsSecureString 'Password'\n"
            "[Environment]::GetEnvironmentVariable('API_KEY', 'Machine')\n"
        ]
    if k == 9:
        return "held-out-3: crontab without credentials", [
            f'MAILTO=""\n0 {g.randint(0, 23)} * * * /usr/local/bin/backup '
            "--password-file /etc/backup/pass --token-file /run/secrets/token\n"
        ]
    if k == 10:
        return "held-out-3: hr record with masked identifiers", [
            f"Employee ID: E{g.randint(10000, 99999)}\nSSN: ***-**-{g.randint(1000, 9999)}\n"
            f"Bank account: ending {g.randint(1000, 9999)}\nMRN: {g.randint(10**7, 10**8)}\n"
            f"Ticket number: 176-{g.randint(10**9, 10**10 - 1)}\n"
        ]
    return "held-out-3: alertmanager with secret files", [
        "global:\n  slack_api_url_file: /etc/alertmanager/slack_url\n"
        "  smtp_auth_password_file: /etc/alertmanager/smtp_password\n"
        "receivers:\n  - name: pd\n    pagerduty_configs:\n"
        "      - routing_key_file: /etc/alertmanager/pd_key\n"
    ]


HELDOUT3_SEED = 27182818
HELDOUT3_OUT = Path(__file__).with_name("heldout3.jsonl")
HELDOUT3_SHARE = 0.2  # of each tuning template's count
HELDOUT3_ROUND1_SHARE = 0.2  # of each round-1 template's count
HELDOUT3_ROUND2_SHARE = 0.25  # of each round-2 template's count
HELDOUT3_SCHEDULE: tuple[tuple[str, str, Template, int], ...] = (
    ("code", "held-out-3: jenkinsfile", t_h3_jenkins, 56),
    ("config", "held-out-3: gitlab ci / circleci yaml", t_h3_ci, 56),
    ("config", "held-out-3: spring application.yml", t_h3_spring, 56),
    ("code", "held-out-3: django settings.py", t_h3_django, 56),
    ("config", "held-out-3: laravel .env / config php", t_h3_laravel, 45),
    ("config", "held-out-3: prometheus / alertmanager", t_h3_prometheus, 40),
    ("json", "held-out-3: slack / teams export", t_h3_chat_export, 56),
    ("chat", "held-out-3: support ticket", t_h3_ticket, 56),
    ("shell", "held-out-3: bash history", t_h3_bash_history, 56),
    ("shell", "held-out-3: powershell", t_h3_powershell, 56),
    ("config", "held-out-3: crontab", t_h3_crontab, 45),
    ("config", "held-out-3: keys in ci / settings / scripts", t_h3_keys, 40),
    ("sentence", "held-out-3: hr / medical / travel records", t_h3_records, 75),
)
N_HELDOUT3_NEGATIVE = 120


# -- held-out round 4: templates no other set uses --------------------------------------------
#
# The round-4 held-out set (`heldout4.jsonl`, `--heldout4`) is made with a fifth seed from a
# share of the tuning and round-1 to round-3 templates, plus the templates below (notes starting
# `held-out-4:`), written and generated before any scanner result on them was looked at:
# Pulumi / CDK code and stack files, nginx / Apache configs, Kafka / ZooKeeper properties and
# JAAS files, Airflow connections, dbt `profiles.yml`, Firebase / `google-services.json` and
# Postman environments, iOS `Info.plist` / Android `gradle.properties`, OIDC client and SAML
# settings, and PII in legal / insurance documents, school records and loyalty programs.

H4_NOTE = "held-out-4:"


def t_h4_pulumi(g: Gen, i: int) -> list[Any]:
    """Pulumi (TypeScript, stack YAML, CLI) and AWS CDK (Python) with an inline credential."""
    focus = ho_focus(i)
    k = i % 4
    if focus == "GENERIC_SECRET" and k in (0, 1):
        if k == 0:
            return [
                'const db = new aws.rds.Instance("app-db", {\n    engine: "postgres",\n'
                f'    instanceClass: "db.t3.micro",\n    username: "{g.user()}",\n    password: "',
                plain_generic(g),
                '",\n    skipFinalSnapshot: true,\n});\n',
            ]
        return [
            'db = rds.DatabaseInstance(\n    self, "AppDb",\n'
            "    engine=rds.DatabaseInstanceEngine.POSTGRES,\n"
            f'    credentials=rds.Credentials.from_password("{g.user()}", '
            'SecretValue.unsafe_plain_text("',
            plain_generic(g),
            '")),\n)\n',
        ]
    name, value = h2_item(g, focus, "camel")
    if k == 2:
        return [
            f"encryptionsalt: v1:{g.chars(B64, 12)}:v1:{g.chars(B64, 16)}\nconfig:\n"
            f"  aws:region: {g.pick(('eu-west-1', 'us-east-1'))}\n  app:{name}: ",
            value,
            "\n",
        ]
    if k == 3:
        return [f"$ pulumi config set --secret {name} ", value, "\n$ pulumi up --yes\n"]
    return [
        'import * as pulumi from "@pulumi/pulumi";\n\n',
        f'const {name} = "',
        value,
        f'";\nexport const endpoint = "https://api.{g.domain()}";\n',
    ]


def t_h4_webserver(g: Gen, i: int) -> list[Any]:
    """nginx and Apache httpd configs with a credential in a header, variable or env."""
    focus = ho_focus(i)
    host = g.host()
    k = i % 3
    if focus == "GENERIC_SECRET":
        header = g.pick(("X-Api-Key", "X-Auth-Token", "X-Internal-Secret"))
        if k == 0:
            return [
                f"location /api/ {{\n    proxy_pass http://{host}:8080;\n"
                f'    proxy_set_header {header} "',
                plain_generic(g),
                '";\n}\n',
            ]
        if k == 1:
            return [
                f"<VirtualHost *:443>\n    ServerName {host}\n    SetEnv DB_PASSWORD ",
                plain_generic(g),
                "\n</VirtualHost>\n",
            ]
        return [
            "location ~ \\.php$ {\n    fastcgi_pass unix:/run/php/php8.2-fpm.sock;\n"
            "    fastcgi_param APP_SECRET ",
            plain_generic(g),
            ";\n}\n",
        ]
    name, value = h2_item(g, focus)
    if k == 0 and focus in ("JWT", "GITHUB_TOKEN", "GITLAB_TOKEN", "SLACK_TOKEN", "OPENAI_API_KEY"):
        return [
            f"location / {{\n    proxy_pass https://{host};\n"
            '    proxy_set_header Authorization "Bearer ',
            value,
            '";\n}\n',
        ]
    if k == 1:
        return [
            f'<VirtualHost *:80>\n    ServerName {host}\n    SetEnv {name} "',
            value,
            '"\n    DocumentRoot /var/www/html\n</VirtualHost>\n',
        ]
    return [f'server {{\n    listen 80;\n    set ${name.lower()} "', value, '";\n}\n']


def t_h4_kafka(g: Gen, i: int) -> list[Any]:
    """Kafka client / broker properties and ZooKeeper JAAS files with credentials."""
    focus = ho_focus(i)
    k = i % 4
    brokers = ",".join(f"kafka-{n}.{g.domain()}:9093" for n in range(1, 4))
    if focus == "GENERIC_SECRET" or k == 3:
        if k in (0, 3):
            return [
                f"bootstrap.servers={brokers}\nsecurity.protocol=SASL_SSL\n"
                "sasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security."
                f'scram.ScramLoginModule required username="{g.user()}" password="',
                plain_generic(g),
                '";\n',
            ]
        if k == 1:
            return [
                "ssl.truststore.location=/etc/kafka/secrets/truststore.jks\n"
                "ssl.keystore.location=/etc/kafka/secrets/keystore.jks\nssl.keystore.password=",
                plain_generic(g),
                "\nssl.key.password=",
                plain_generic(g),
                "\n",
            ]
        return [
            "KafkaServer {\n    org.apache.kafka.common.security.plain.PlainLoginModule required\n"
            '    username="admin"\n    password="',
            plain_generic(g),
            '";\n};\n',
        ]
    name, value = h2_item(g, focus, "dotted")
    return [
        f"bootstrap.servers={brokers}\nclient.id={g.user()}-producer\n{name}=",
        value,
        "\nacks=all\n",
    ]


def t_h4_airflow(g: Gen, i: int) -> list[Any]:
    """Airflow connections and variables: env URIs, the CLI and connection JSON."""
    focus = ho_focus(i)
    k = i % 3
    conn = g.pick(("warehouse", "crm_db", "orders", "analytics"))
    if focus == "URL_PASSWORD":
        return [f"AIRFLOW_CONN_{conn.upper()}='", g.dsn(), "'\n"]
    if focus == "GENERIC_SECRET":
        if k == 0:
            return [
                f"airflow connections add '{conn}' --conn-type postgres "
                f"--conn-host {g.host()} --conn-login {g.user()} --conn-password '",
                plain_generic(g),
                "' --conn-port 5432\n",
            ]
        return jparts(
            {
                conn: {
                    "conn_type": "postgres",
                    "host": g.host(),
                    "login": g.user(),
                    "password": plain_generic(g),
                    "port": 5432,
                }
            },
            indent=2,
        )
    name, value = h2_item(g, focus, "snake")
    if k == 0:
        return [f"airflow variables set {name} '", value, "'\n"]
    return jparts({name: Str(tuple(value))}, indent=2)


def t_h4_dbt(g: Gen, i: int) -> list[Any]:
    """dbt `profiles.yml` for Postgres, Snowflake, Databricks and BigQuery."""
    k = i % 4
    head = f"{g.pick(('analytics', 'jaffle_shop', 'finance'))}:\n  target: prod\n  outputs:\n"
    head += "    prod:\n"
    if k == 0:
        return [
            head,
            f"      type: postgres\n      host: {g.host()}\n      user: {g.user()}\n"
            "      password: ",
            plain_generic(g),
            "\n      port: 5432\n      dbname: analytics\n      schema: dbt\n      threads: 4\n",
        ]
    if k == 1:
        return [
            head,
            f"      type: snowflake\n      account: {g.chars(LOWER_ALNUM, 7)}.eu-west-1\n"
            f"      user: {g.user()}\n      private_key_passphrase: ",
            plain_generic(g),
            "\n      role: TRANSFORMER\n      warehouse: TRANSFORMING\n",
        ]
    if k == 2:
        return [
            head,
            f"      type: databricks\n      host: adb-{g.randint(10**12, 10**13)}.azuredatabricks"
            ".net\n      http_path: /sql/1.0/warehouses/"
            f"{g.chars(HEX, 16)}\n      token: ",
            secret("dapi" + g.chars(HEX, 32), "GENERIC_SECRET"),
            "\n      schema: analytics\n",
        ]
    return [
        head,
        "      type: bigquery\n      method: service-account-json\n"
        f"      project: {g.pick(('acme', 'crm'))}-prod\n      dataset: dbt\n      keyfile_json: ",
        g.sa_json(indent=None),
        "\n",
    ]


def t_h4_firebase(g: Gen, i: int) -> list[Any]:
    """`google-services.json`, a Firebase web config and a Postman environment."""
    k = i % 3
    project = f"{g.pick(('acme', 'shop', 'crm'))}-{g.randint(1000, 9999)}"
    if k == 0:
        return jparts(
            {
                "project_info": {
                    "project_number": str(g.randint(10**11, 10**12)),
                    "project_id": project,
                    "storage_bucket": f"{project}.appspot.com",
                },
                "client": [
                    {
                        "client_info": {
                            "mobilesdk_app_id": f"1:{g.randint(10**11, 10**12)}:android:"
                            + g.chars(HEX, 16),
                        },
                        "api_key": [{"current_key": secret(g.gcp_api_key(), "GCP_API_KEY")}],
                    }
                ],
            },
            indent=2,
        )
    if k == 1:  # a Firebase web config, saved as JSON
        return jparts(
            {
                "apiKey": secret(g.gcp_api_key(), "GCP_API_KEY"),
                "authDomain": f"{project}.firebaseapp.com",
                "projectId": project,
                "appId": f"1:{g.randint(10**11, 10**12)}:web:{g.chars(HEX, 22)}",
            },
            indent=g.pick((2, None)),
        )
    focus = ho_focus(i)
    name, value = h2_item(g, focus, "camel")
    return jparts(
        {
            "id": g.uuid(),
            "name": g.pick(("Production", "Staging", "Local")),
            "values": [
                {"key": "baseUrl", "value": f"https://api.{g.domain()}", "enabled": True},
                {"key": name, "value": Str(tuple(value)), "type": "secret", "enabled": True},
            ],
            "_postman_variable_scope": "environment",
        },
        indent=g.pick((2, None)),
    )


def t_h4_mobile(g: Gen, i: int) -> list[Any]:
    """An iOS `Info.plist` or an Android `gradle.properties` with a key or signing password."""
    focus = ho_focus(i)
    if focus == "GENERIC_SECRET" and i % 2 == 0:
        return [
            "org.gradle.jvmargs=-Xmx2048m\nandroid.useAndroidX=true\n"
            "RELEASE_STORE_FILE=release.keystore\nRELEASE_STORE_PASSWORD=",
            plain_generic(g),
            "\nRELEASE_KEY_ALIAS=upload\nRELEASE_KEY_PASSWORD=",
            plain_generic(g),
            "\n",
        ]
    name, value = h2_item(g, focus, g.pick(("upper", "pascal")))
    if i % 2 == 0:
        return ["android.useAndroidX=true\nkotlin.code.style=official\n", f"{name}=", value, "\n"]
    return [
        '<?xml version="1.0" encoding="UTF-8"?>\n<plist version="1.0">\n<dict>\n'
        f"\t<key>CFBundleIdentifier</key>\n\t<string>com.{g.user()}.app</string>\n"
        f"\t<key>{name}</key>\n\t<string>",
        value,
        "</string>\n</dict>\n</plist>\n",
    ]


def t_h4_identity(g: Gen, i: int) -> list[Any]:
    """OIDC client registrations, Keycloak clients and SAML SP settings with secrets."""
    k = i % 4
    if k == 0:
        return jparts(
            {
                "client_id": g.uuid(),
                "client_secret": plain_generic(g),
                "redirect_uris": [f"https://app.{g.domain()}/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_method": "client_secret_basic",
            },
            indent=2,
        )
    if k == 1:
        return jparts(
            {
                "clientId": g.pick(("web-portal", "crm-api", "admin-ui")),
                "protocol": "openid-connect",
                "publicClient": False,
                "secret": plain_generic(g),
                "redirectUris": [f"https://{g.host()}/*"],
            },
            indent=2,
        )
    if k == 2:
        return [
            "spring.security.oauth2.client.registration.okta.client-id=",
            g.chars(ALNUM, 20),
            "\nspring.security.oauth2.client.registration.okta.client-secret=",
            plain_generic(g),
            "\nspring.security.oauth2.client.provider.okta.issuer-uri=https://",
            g.domain(),
            "/oauth2/default\n",
        ]
    return [
        "SAML_SETTINGS = {\n    'sp': {\n        'entityId': 'https://",
        g.domain(),
        "/saml/metadata',\n        'privateKey': '''",
        Ent(g.pem("rsa"), "PRIVATE_KEY", also=("GENERIC_SECRET",)),
        "''',\n    },\n}\n",
    ]


def t_h4_documents(g: Gen, i: int) -> list[Any]:
    """PII in legal and insurance documents, school records and loyalty programs."""
    name = g.name()
    k = i % 4
    if k == 0:
        return [
            f"CLAIM FORM\nPolicy number: POL-{g.randint(10**7, 10**8 - 1)}\nClaimant: {name}\n"
            f"Date of loss: {g.date()}\nClaimant SSN: ",
            g.ssn(),
            "\nPay the settlement to IBAN ",
            g.iban(),
            "\nCorrespondence: ",
            g.email(),
            "\n",
        ]
    if k == 1:
        return [
            f"SETTLEMENT AGREEMENT\n\nThis agreement is made on {g.date()} between "
            f'{g.company()} and {name} (the "Claimant"), whose notices go to ',
            g.email(),
            ". The sum shall be paid to the Claimant's account ",
            g.iban(),
            " within thirty days.\n",
        ]
    if k == 2:
        return [
            f"STUDENT RECORD\nStudent: {name}\nGrade: {g.randint(1, 12)}\n"
            f"Guardian: {g.name()}\nGuardian e-mail: ",
            g.email(),
            "\nGuardian phone: ",
            g.phone(),
            "\nGuardian SSN (financial aid): ",
            g.ssn(),
            "\n",
        ]
    return [
        f"Loyalty program enrolment\nMember: {name}\nMember no.: LP{g.randint(10**8, 10**9)}\n"
        f"Tier: {g.pick(('Silver', 'Gold', 'Platinum'))}\nE-mail: ",
        g.email(),
        "\nLinked card: ",
        g.card(),
        "\n",
    ]


def t_h4_negative(g: Gen, i: int) -> tuple[str, list[Any]]:
    """Hard negatives in the round-4 contexts."""
    k = i % 12
    if k == 0:
        return "held-out-4: pulumi reading secrets from config", [
            'const config = new pulumi.Config();\nconst dbPassword = config.requireSecret("'
            'dbPassword");\nconst apiToken = config.getSecret("apiToken");\n'
            f'export const bucket = "{g.user()}-assets";\n'
        ]
    if k == 1:
        return "held-out-4: nginx with credential files", [
            f'server {{\n    server_name {g.host()};\n    auth_basic "Restricted";\n'
            "    auth_basic_user_file /etc/nginx/.htpasswd;\n"
            "    ssl_certificate_key /etc/ssl/private/site.key;\n"
            "    ssl_password_file /etc/nginx/ssl_passwords;\n}\n"
        ]
    if k == 2:
        return "held-out-4: kafka properties with config providers", [
            "config.providers=file\nconfig.providers.file.class=org.apache.kafka.common.config."
            "provider.FileConfigProvider\nssl.keystore.password=${file:/opt/kafka/secrets."
            "properties:keystore.password}\nsasl.jaas.config=${file:/opt/kafka/jaas.properties:"
            f"jaas}}\nretries={g.randint(3, 10)}\n"
        ]
    if k == 3:
        return "held-out-4: airflow templates referencing connections", [
            "SELECT * FROM orders WHERE ds = '{{ ds }}';\n"
            "-- password: {{ conn.warehouse.password }}\n"
            "headers = {'Authorization': 'Bearer {{ var.value.api_token }}'}\n"
        ]
    if k == 4:
        return "held-out-4: dbt profile reading env vars", [
            "analytics:\n  outputs:\n    prod:\n      type: postgres\n"
            "      password: \"{{ env_var('DBT_PASSWORD') }}\"\n"
            "      token: \"{{ env_var('DBT_DATABRICKS_TOKEN') }}\"\n      threads: "
            f"{g.randint(1, 8)}\n"
        ]
    if k == 5:
        return "held-out-4: google-services oauth clients", [
            json.dumps(
                {
                    "oauth_client": [
                        {
                            "client_id": google_client_id(g),
                            "client_type": 1,
                            "android_info": {
                                "package_name": f"com.{g.user()}.app",
                                "certificate_hash": g.sha(40),
                            },
                        }
                    ]
                },
                indent=2,
            )
        ]
    if k == 6:
        return "held-out-4: postman environment with empty secrets", [
            json.dumps(
                {
                    "name": "Production",
                    "values": [
                        {"key": "api_key", "value": "", "type": "secret", "enabled": True},
                        {"key": "token", "value": "{{access_token}}", "type": "default"},
                    ],
                }
            )
        ]
    if k == 7:
        return "held-out-4: plist with usage descriptions", [
            "<dict>\n\t<key>NSCameraUsageDescription</key>\n\t<string>Scan your loyalty card"
            "</string>\n\t<key>GIDClientID</key>\n\t<string>"
            f"{google_client_id(g)}</string>\n\t<key>API_BASE_URL</key>\n"
            f"\t<string>https://api.{g.domain()}</string>\n</dict>\n"
        ]
    if k == 8:
        return "held-out-4: gradle signing from environment", [
            'signingConfigs {\n    release {\n        storeFile file("release.keystore")\n'
            '        storePassword System.getenv("STORE_PASSWORD")\n'
            '        keyPassword project.findProperty("RELEASE_KEY_PASSWORD") ?: ""\n'
            "    }\n}\n"
        ]
    if k == 9:
        cert = "".join(g.chars(B64, 64) + "\n" for _ in range(4))
        return "held-out-4: saml metadata with a public certificate", [
            f'<md:EntityDescriptor entityID="https://{g.domain()}/saml">\n'
            '  <md:SPSSODescriptor>\n    <md:KeyDescriptor use="signing">\n'
            f"      <ds:X509Certificate>\n{cert}      </ds:X509Certificate>\n"
            "    </md:KeyDescriptor>\n  </md:SPSSODescriptor>\n</md:EntityDescriptor>\n"
        ]
    if k == 10:
        return "held-out-4: insurance letter with masked identifiers", [
            f"Dear policyholder, your claim CLM-{g.randint(10**6, 10**7)} was approved on "
            f"{g.date()}. The payout goes to the account ending {g.randint(1000, 9999)}; "
            f"SSN on file ***-**-{g.randint(1000, 9999)}. Policy POL-{g.randint(10**7, 10**8)}."
        ]
    return "held-out-4: oidc discovery document", [
        json.dumps(
            {
                "issuer": f"https://login.{g.domain()}",
                "token_endpoint": f"https://login.{g.domain()}/oauth2/token",
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
                "jwks_uri": f"https://login.{g.domain()}/.well-known/jwks.json",
            },
            indent=2,
        )
    ]


HELDOUT4_SEED = 16180339
HELDOUT4_OUT = Path(__file__).with_name("heldout4.jsonl")
HELDOUT4_SHARE = 0.15  # of each tuning template's count
HELDOUT4_ROUND1_SHARE = 0.15  # of each round-1 template's count
HELDOUT4_ROUND2_SHARE = 0.2  # of each round-2 template's count
HELDOUT4_ROUND3_SHARE = 0.25  # of each round-3 template's count
HELDOUT4_SCHEDULE: tuple[tuple[str, str, Template, int], ...] = (
    ("code", "held-out-4: pulumi / cdk", t_h4_pulumi, 56),
    ("config", "held-out-4: nginx / apache config", t_h4_webserver, 56),
    ("config", "held-out-4: kafka / zookeeper properties", t_h4_kafka, 56),
    ("config", "held-out-4: airflow connections", t_h4_airflow, 56),
    ("config", "held-out-4: dbt profiles.yml", t_h4_dbt, 40),
    ("json", "held-out-4: firebase / postman environment", t_h4_firebase, 48),
    ("config", "held-out-4: plist / gradle.properties", t_h4_mobile, 56),
    ("config", "held-out-4: oidc / saml settings", t_h4_identity, 40),
    ("sentence", "held-out-4: legal / insurance / school / loyalty", t_h4_documents, 80),
)
N_HELDOUT4_NEGATIVE = 120


# -- the schedule ------------------------------------------------------------------------------

Template = Callable[[Gen, int], list[Any]]
SCHEDULE: tuple[tuple[str, str, Template, int], ...] = (
    ("sentence", "faker prose with pii", t_sentence, 280),
    ("json", "json payload with pii", t_json_pii, 225),
    ("json", "json payload with encoded pii", t_json_encoded, 96),
    ("config", "config file", t_config, 336),
    ("config", "special config file", t_config_special, 150),
    ("config", "gcp service-account key", t_gcp_sa, 84),
    ("curl", "curl command", t_curl, 195),
    ("shell", "shell command", t_shell, 90),
    ("stacktrace", "stack trace", t_stacktrace, 144),
    ("log", "log line", t_log, 140),
    ("email", "raw email", t_email, 120),
    ("code", "source code", t_code, 120),
    ("json", "private key in json", t_keyjson, 52),
    ("chat", "secret pasted in chat", t_chat_paste, 80),
)
N_NEGATIVE = 360


def generate(
    seed: int = SEED,
    *,
    heldout: bool = False,
    heldout2: bool = False,
    heldout3: bool = False,
    heldout4: bool = False,
) -> list[dict[str, Any]]:
    """The tuning set; or (`heldout`) held-out round 1: a share of the tuning templates plus
    the round-1 templates, with their own negatives; or (`heldout2`) held-out round 2: smaller
    shares of both plus the round-2 templates and negatives; or (`heldout3`) held-out round 3:
    shares of all three plus the round-3 templates and negatives; or (`heldout4`) held-out round
    4: shares of all four plus the round-4 templates and negatives. A held-out set never
    repeats a text of an earlier set."""
    g = Gen(seed)
    samples: list[dict[str, Any]] = []
    seen: set[str] = set()
    if heldout or heldout2 or heldout3 or heldout4:
        seen |= {s["text"] for s in generate()}
    if heldout2 or heldout3 or heldout4:
        seen |= {s["text"] for s in generate(HELDOUT_SEED, heldout=True)}
    if heldout3 or heldout4:
        seen |= {s["text"] for s in generate(HELDOUT2_SEED, heldout2=True)}
    if heldout4:
        seen |= {s["text"] for s in generate(HELDOUT3_SEED, heldout3=True)}
    counters: Counter[str] = Counter()

    def add(kind: str, note: str, parts: list[Any]) -> None:
        text, spans = render(parts)
        if text in seen:
            return
        seen.add(text)
        counters[kind] += 1
        samples.append(
            {
                "id": f"{kind}-{counters[kind]:04d}",
                "kind": kind,
                "note": note,
                "text": text,
                "spans": spans,
            }
        )

    def share(
        sched: tuple[tuple[str, str, Template, int], ...], part: float
    ) -> tuple[tuple[str, str, Template, int], ...]:
        return tuple((kind, note, fn, max(1, round(n * part))) for kind, note, fn, n in sched)

    schedule = SCHEDULE
    negatives: list[tuple[Callable[[Gen, int], tuple[str, list[Any]]], int]] = [
        (t_negative, N_NEGATIVE)
    ]
    if heldout4:
        schedule = (
            share(SCHEDULE, HELDOUT4_SHARE)
            + share(HELDOUT_SCHEDULE, HELDOUT4_ROUND1_SHARE)
            + share(HELDOUT2_SCHEDULE, HELDOUT4_ROUND2_SHARE)
            + share(HELDOUT3_SCHEDULE, HELDOUT4_ROUND3_SHARE)
            + HELDOUT4_SCHEDULE
        )
        negatives = [
            (t_negative, round(N_NEGATIVE * HELDOUT4_SHARE)),
            (t_ho_negative, round(N_HELDOUT_NEGATIVE * HELDOUT4_ROUND1_SHARE)),
            (t_h2_negative, round(N_HELDOUT2_NEGATIVE * HELDOUT4_ROUND2_SHARE)),
            (t_h3_negative, round(N_HELDOUT3_NEGATIVE * HELDOUT4_ROUND3_SHARE)),
            (t_h4_negative, N_HELDOUT4_NEGATIVE),
        ]
    elif heldout3:
        schedule = (
            share(SCHEDULE, HELDOUT3_SHARE)
            + share(HELDOUT_SCHEDULE, HELDOUT3_ROUND1_SHARE)
            + share(HELDOUT2_SCHEDULE, HELDOUT3_ROUND2_SHARE)
            + HELDOUT3_SCHEDULE
        )
        negatives = [
            (t_negative, round(N_NEGATIVE * HELDOUT3_SHARE)),
            (t_ho_negative, round(N_HELDOUT_NEGATIVE * HELDOUT3_ROUND1_SHARE)),
            (t_h2_negative, round(N_HELDOUT2_NEGATIVE * HELDOUT3_ROUND2_SHARE)),
            (t_h3_negative, N_HELDOUT3_NEGATIVE),
        ]
    elif heldout2:
        schedule = (
            share(SCHEDULE, HELDOUT2_SHARE)
            + share(HELDOUT_SCHEDULE, HELDOUT2_ROUND1_SHARE)
            + HELDOUT2_SCHEDULE
        )
        negatives = [
            (t_negative, round(N_NEGATIVE * HELDOUT2_SHARE)),
            (t_ho_negative, round(N_HELDOUT_NEGATIVE * HELDOUT2_ROUND1_SHARE)),
            (t_h2_negative, N_HELDOUT2_NEGATIVE),
        ]
    elif heldout:
        schedule = share(SCHEDULE, HELDOUT_SHARE) + HELDOUT_SCHEDULE
        negatives = [
            (t_negative, round(N_NEGATIVE * HELDOUT_SHARE)),
            (t_ho_negative, N_HELDOUT_NEGATIVE),
        ]
    for kind, note, fn, n in schedule:
        for i in range(n):
            add(kind, note, fn(g, i))
    for make, n in negatives:
        for i in range(n):
            note, parts = make(g, i)
            add("negative", note, parts)
    return samples


def write(samples: list[dict[str, Any]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="\n") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--heldout",
        action="store_true",
        help=f"held-out round 1 (seed {HELDOUT_SEED}, round-1 templates, {HELDOUT_OUT.name}; "
        "looked at after round 1, used for round-2 fixes)",
    )
    which.add_argument(
        "--heldout2",
        action="store_true",
        help=f"held-out round 2 (seed {HELDOUT2_SEED}, round-2 templates, {HELDOUT2_OUT.name}; "
        "scored once after round 2, then used for round-3 fixes)",
    )
    which.add_argument(
        "--heldout3",
        action="store_true",
        help=f"held-out round 3 (seed {HELDOUT3_SEED}, round-3 templates, {HELDOUT3_OUT.name}; "
        "scored once after round 3, then used for round-4 fixes)",
    )
    which.add_argument(
        "--heldout4",
        action="store_true",
        help=f"held-out round 4 (seed {HELDOUT4_SEED}, round-4 templates, {HELDOUT4_OUT.name}; "
        "never tuned on)",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"output file (default {OUT})")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    out, seed = (
        (HELDOUT4_OUT, HELDOUT4_SEED)
        if args.heldout4
        else (HELDOUT3_OUT, HELDOUT3_SEED)
        if args.heldout3
        else (HELDOUT2_OUT, HELDOUT2_SEED)
        if args.heldout2
        else (HELDOUT_OUT, HELDOUT_SEED)
        if args.heldout
        else (OUT, SEED)
    )
    if args.out is None:
        args.out = out
    if args.seed is None:
        args.seed = seed
    import faker

    if faker.VERSION != FAKER_VERSION:
        print(
            f"note: Faker {faker.VERSION} (the committed file was made with {FAKER_VERSION})",
            file=sys.stderr,
        )
    samples = generate(
        args.seed,
        heldout=args.heldout,
        heldout2=args.heldout2,
        heldout3=args.heldout3,
        heldout4=args.heldout4,
    )
    write(samples, args.out)
    per_entity = Counter(sp["entity"] for s in samples for sp in s["spans"])
    size = args.out.stat().st_size
    print(f"wrote {len(samples)} samples ({size / 1e6:.2f} MB) to {args.out}")
    for entity in ENTITIES:
        print(f"  {entity:<24} {per_entity[entity]:>5}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
