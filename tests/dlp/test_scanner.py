"""The DLP scanner finds PII and secrets in every leaf of an outbound payload, decoded, with
its field path; bounded in time and size, and failing closed when it cannot finish.

The attacks: a secret hidden in a nested field, a dict key, a number, JSON inside a string, a
form body, URL-encoded, quoted-printable or base64; and inputs built to make a scanner slow
(stock Presidio spends over a minute on tens of kilobytes of `a.a.a.` and then skips the
pattern silently).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentguard.dlp import ScanIncomplete, Scanner
from agentguard.dlp import scan as _scan
from agentguard.dlp.recognizers import _identifier, _natural, _not_placeholder, entropy

SCANNER = Scanner()


def found(value, scanner: Scanner = SCANNER) -> set[tuple[str, str]]:
    return {(f.entity, f.path) for f in scanner.scan(value)}


def texts(text: str) -> list[tuple[str, str]]:
    return [(f.entity, text[f.start : f.end]) for f in SCANNER.scan_text(text)]


# ------------------------------------------------------------------ what it finds

SECRETS = {
    "AWS_ACCESS_KEY_ID": ("aws_access_key_id = AKIAZ3MQ7RTX9PLK2WQE", "AKIAZ3MQ7RTX9PLK2WQE"),
    "AWS_SECRET_ACCESS_KEY": (
        "aws_secret_access_key=Jx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4uI7oR",
        "Jx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4uI7oR",
    ),
    "GCP_API_KEY": (
        "key=AIzaSyD3x9Qm2LkT7vR1pW8nB4cZ6yH0jF5gS2a",
        "AIzaSyD3x9Qm2LkT7vR1pW8nB4cZ6yH0jF5gS2a",
    ),
    "AZURE_STORAGE_KEY": (
        "DefaultEndpointsProtocol=https;AccountName=acme;AccountKey="
        + "Qm9zcUx2N3ZCMW5LOHBaM2NXNnlIMGRGNWdTMmFFNHVJN29SSng5VDJtUTRyTDd2QjFuSzhwWjNjVzZ5SA=="
        + ";EndpointSuffix=core.windows.net",
        "Qm9zcUx2N3ZCMW5LOHBaM2NXNnlIMGRGNWdTMmFFNHVJN29SSng5VDJtUTRyTDd2QjFuSzhwWjNjVzZ5SA==",
    ),
    "AZURE_CLIENT_SECRET": (
        "AZURE_CLIENT_SECRET: abc8Q~Zx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE",
        "abc8Q~Zx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE",
    ),
    "GITHUB_TOKEN": (
        "git clone https://x:ghp_Zx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4u@github.com/acme/app",
        "ghp_Zx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4u",
    ),
    "GITLAB_TOKEN": ("PRIVATE-TOKEN: glpat-Zx9T2mQ4rL7vB1nK8pZ3", "glpat-Zx9T2mQ4rL7vB1nK8pZ3"),
    "SLACK_TOKEN": (
        "token xoxb-2345678901-3456789012345-Zx9T2mQ4rL7vB1nK8pZ3cW6y",
        "xoxb-2345678901-3456789012345-Zx9T2mQ4rL7vB1nK8pZ3cW6y",
    ),
    "SLACK_WEBHOOK": (
        "POST https://hooks.slack.com/services/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",
        "https://hooks.slack.com/services/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",
    ),
    "STRIPE_KEY": (
        "stripe.api_key = 'sk_live_Zx9T2mQ4rL7vB1nK8pZ3cW6y'",
        "sk_live_Zx9T2mQ4rL7vB1nK8pZ3cW6y",
    ),
    "OPENAI_API_KEY": (
        "OPENAI=sk-proj-Zx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4uI7oRJx9T",
        "sk-proj-Zx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4uI7oRJx9T",
    ),
    "URL_PASSWORD": (
        "DATABASE_URL=postgres://app:Tq7!vR2mLx9@db.internal:5432/prod",
        "Tq7!vR2mLx9",
    ),
    "GENERIC_SECRET": ('{"client_secret": "Zx9T2mQ4rL7vB1nK"}', "Zx9T2mQ4rL7vB1nK"),
}


@pytest.mark.parametrize("entity", sorted(SECRETS))
def test_each_secret_type_is_found_with_its_own_span(entity):
    text, value = SECRETS[entity]
    assert (entity, value) in texts(text)


def test_jwts_and_private_keys_are_found_whole():
    header = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(b'{"sub":"alice","exp":1800000000}').rstrip(b"=").decode()
    jwt = f"{header}.{body}.c2lnbmF0dXJlLWJ5dGVzLWhlcmUtMTIzNDU2Nzg5MA"
    assert ("JWT", jwt) in texts(f"Authorization: Bearer {jwt}")
    pem = (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2a\n"
        "E4uI7oRJx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4uI7oR==\n-----END RSA PRIVATE KEY-----"
    )
    assert ("PRIVATE_KEY", pem) in texts(f"key file:\n{pem}\n")


@pytest.mark.parametrize(
    "text, entity, value",
    [
        ("Contact alice.smith@example.com today", "EMAIL_ADDRESS", "alice.smith@example.com"),
        ("card 4111 1111 1111 1111 exp 12/29", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("IBAN DE89 3704 0044 0532 0130 00", "IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
        ("SSN: 536-22-1847", "US_SSN", "536-22-1847"),
    ],
)
def test_pii_is_found(text, entity, value):
    assert (entity, value) in texts(text)


@pytest.mark.parametrize(
    "text",
    [
        "password=changeme",
        "api_key: <your-api-key>",
        "token = ${GITHUB_TOKEN}",
        "use sk-learn for the model",
        "order 4111 1111 1111 1112 shipped",  # fails Luhn
        "IBAN DE00 3704 0044 0532 0130 00",  # bad checksum
        "commit 3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39",
        "request id 123e4567-e89b-12d3-a456-426614174000",
    ],
)
def test_placeholders_and_look_alikes_are_not_findings(text):
    assert texts(text) == []


# ------------------------------------------------------------------ where it looks


def test_every_leaf_is_scanned_with_its_path():
    payload = {
        "to": "bob@example.com",
        "cc": ["x", {"note": "card 4111-1111-1111-1111"}],
        "amount": 4111111111111111,  # a card number sent as a number
        "headers": {"X-Api-Key": "sk_live_Zx9T2mQ4rL7vB1nK8pZ3cW6y"},
        "sk_live_Zx9T2mQ4rL7vB1nK8pZ3cW6y": "a secret used as a key",
    }
    assert found(payload) == {
        ("EMAIL_ADDRESS", "$.to"),
        ("CREDIT_CARD", "$.cc[1].note"),
        ("CREDIT_CARD", "$.amount"),
        ("STRIPE_KEY", '$.headers["X-Api-Key"]'),
        ("STRIPE_KEY", "$.sk_live_Zx9T2mQ4rL7vB1nK8pZ3cW6y<key>"),
    }


def test_json_inside_a_string_is_walked_for_what_its_text_hides():
    inner = json.dumps({"user": {"email": "carol\u0040example.org"}, "n": 1}, ensure_ascii=True)
    escaped = inner.replace("@", "\\u0040")
    assert found({"body": escaped}) == {("EMAIL_ADDRESS", "$.body<json>.user.email")}
    plain = json.dumps({"email": "carol@example.org"})
    assert found({"body": plain}) == {("EMAIL_ADDRESS", "$.body")}  # once, not twice


def test_form_bodies_are_scanned_per_field():
    body = "to=alice%40example.com&subject=hi&token=ghp_Zx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4u"
    assert found({"body": body}) == {
        ("EMAIL_ADDRESS", "$.body<form>.to"),
        ("GITHUB_TOKEN", "$.body<form>.token"),
    }


@pytest.mark.parametrize(
    "text, encoded, encoding",
    [
        ("send to dana%40partner.example now", "dana%40partner.example", "url"),
        ("Reply to dana=40partner.example please", "dana=40partner.example", "qp"),
        ("card 4111 1111 11=\n11 1111 split by a soft line break", None, "qp"),
        (
            "blob " + base64.b64encode(b"contact dana@partner.example").decode(),
            base64.b64encode(b"contact dana@partner.example").decode(),
            "base64",
        ),
    ],
)
def test_encoded_content_is_decoded_and_pointed_at_as_sent(text, encoded, encoding):
    hits = [f for f in SCANNER.scan_text(text) if f.encoding == encoding]
    assert hits, SCANNER.scan_text(text)
    if encoded is not None:
        assert text[hits[0].start : hits[0].end] == encoded


def test_findings_describe_without_values():
    [finding] = SCANNER.scan({"to": "bob@example.com"})
    assert finding.describe() == {"type": "EMAIL_ADDRESS", "path": "$.to", "encoding": None}
    assert "bob" not in repr(finding.describe())


# ------------------------------------------------------------------ bounded, fail closed


def test_pathological_email_input_is_linear():
    dotted = "a." * 20_000 + "@example.com"
    started = time.monotonic()
    SCANNER.scan_text(dotted)
    assert time.monotonic() - started < 2.0


def test_long_digit_runs_and_binary_are_cheap():
    for text in ("1" * 100_000, "\x00\xff" * 50_000, "=" * 100_000, "%" * 100_000):
        started = time.monotonic()
        SCANNER.scan_text(text)
        assert time.monotonic() - started < 3.0, repr(text[:5])


@pytest.mark.parametrize(
    "payload, scanner",
    [
        ("x" * 2_000_001, Scanner(max_chars=2_000_000)),
        ({"a": [{"b": [{}]}] * 1}, Scanner(max_depth=2)),
        ({f"k{i}": "v" for i in range(50)}, Scanner(max_leaves=40)),
        ({"a": object()}, Scanner()),
    ],
)
def test_payloads_that_cannot_be_fully_scanned_fail_closed(payload, scanner):
    with pytest.raises(ScanIncomplete):
        scanner.scan(payload)


def test_a_scan_that_runs_out_of_time_fails_closed():
    with pytest.raises(ScanIncomplete):
        Scanner(time_budget=0.000_001).scan({"a": "alice@example.com " * 2000})


def test_importing_agentguard_does_not_load_presidio():
    code = "import sys, agentguard, agentguard.dlp; print('presidio_analyzer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_entropy():
    assert entropy("aaaa") == 0
    assert entropy("abcd") == 2


def test_every_secret_type_the_policy_knows_has_a_recognizer():
    from agentguard.dlp.entities import SECRET_TYPES
    from agentguard.dlp.recognizers import SECRET_ENTITIES

    assert set(SECRET_ENTITIES) == set(SECRET_TYPES)


# ------------------------------------------------------------------ recognizer fixes
# Each: the leak it catches, and a hard negative it must not flag.

KEY_ID = "AKIAZ3MQ7RTX9PLK2WQE"
AWS_SECRET = "Jx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4uI7oR"


def test_base64_value_is_scanned_with_its_name():
    """A Kubernetes Secret's `data:` value decodes to a bare key; its name is the context."""
    encoded = base64.b64encode(AWS_SECRET.encode()).decode()
    text = f"kind: Secret\ndata:\n  aws_secret_access_key: {encoded}\n"
    assert ("AWS_SECRET_ACCESS_KEY", encoded) in texts(text)
    # the same bytes under a harmless name are no AWS key
    other = f"kind: ConfigMap\ndata:\n  build_id: {encoded}\n"
    assert not [e for e, _ in texts(other) if e == "AWS_SECRET_ACCESS_KEY"]


@pytest.mark.parametrize(
    "text, value",
    [
        ("SESSION_SECRET=tfm0=yjd*1p_&st8()9da(aah0a9d+ss3", "tfm0=yjd*1p_&st8()9da(aah0a9d+ss3"),
        ("--password z^zf3$w+7af)+!h5=pzrlm&7r-8p2h+5x2wc", "z^zf3$w+7af)+!h5=pzrlm&7r-8p2h+5x2wc"),
        ('-H "X-Secret-Token: 2o(ncvz&4(o5z%_*&mxt-m9zu2"', "2o(ncvz&4(o5z%_*&mxt-m9zu2"),
    ],
)
def test_unquoted_secret_runs_on_over_ampersand(text, value):
    assert ("GENERIC_SECRET", value) in texts(text)


def test_query_parameter_after_a_token_is_not_part_of_it():
    text = "GET /export?token=Qm9vT2xlYW5zMTIzNDU2Nzg5&page=2&sort=asc"
    assert ("GENERIC_SECRET", "Qm9vT2xlYW5zMTIzNDU2Nzg5") in texts(text)


@pytest.mark.parametrize(
    "text, value",
    [
        (
            "SENDGRID_API_KEY=SG.nd9p4kLMi30UuE5IH2VxlA.PTq8cqLpQZgN3nlPkXuJX33o59btIhBY4e1",
            "SG.nd9p4kLMi30UuE5IH2VxlA.PTq8cqLpQZgN3nlPkXuJX33o59btIhBY4e1",
        ),
        ("define('AUTH_KEY', '~ntQMXnCxO*me~_{7=yZGroh');", "~ntQMXnCxO*me~_{7=yZGroh"),
        (
            "machine api.example.org\n  login ci\n  password Z2eZ7TMyo1fO1NxdsC4lfS2NIu9n\n",
            "Z2eZ7TMyo1fO1NxdsC4lfS2NIu9n",
        ),
    ],
)
def test_dotted_tokens_tilde_values_and_netrc_passwords_are_secrets(text, value):
    assert ("GENERIC_SECRET", value) in texts(text)


@pytest.mark.parametrize(
    "text",
    [
        "credential = ClientSecretCredential(\n    tenant_id=tid,\n)",
        "secret_key = settings.SECRET_KEY",
        "token = os.environ.get(",
        "api_key = self.config.apiKeyV2",
        "password = ~/.config/app/password.txt",
        "DATABASE_URL=postgresql://user:password@localhost:5432/mydb",
        "machine github.com login ci password changeme",
    ],
)
def test_code_calls_references_and_example_passwords_are_not_secrets(text):
    assert not [e for e, _ in texts(text) if e in ("GENERIC_SECRET", "URL_PASSWORD")]


def test_url_password_before_a_bracketed_ipv6_host():
    text = "MYSQL_URL='mysql://root:VVA-AjcpGfbWKPe_6f@[f15f:96ea:8a18::652]:3306/app'"
    assert ("URL_PASSWORD", "VVA-AjcpGfbWKPe_6f") in texts(text)


def test_encoded_at_sign_in_a_url_password_is_no_email_address():
    text = "redis_url = 'redis://:tNw8y%40fZSGwFSR66v0@cache-6.stg.example.com:6379/1'"
    found_ = texts(text)
    assert not [e for e, _ in found_ if e == "EMAIL_ADDRESS"]
    assert ("URL_PASSWORD", "tNw8y%40fZSGwFSR66v0") in found_
    # an address in a query string is still one
    assert ("EMAIL_ADDRESS", "jane.doe@example.com") in texts(
        "https://crm.example.com?email=jane.doe@example.com"
    )


def test_an_ssn_beside_a_phone_word_stays_an_ssn():
    text = '{"phone": "(04398) 74927", "ssn": "313-05-4808"}'
    assert ("US_SSN", "313-05-4808") in texts(text)
    assert ("PHONE_NUMBER", "313-05-4808") not in texts(text)


def test_led_rules_match_like_a_full_scan_on_non_ascii_text():
    """Lowercasing can change the length of a text (`İ`); the rule then scans the plain way."""
    value = "Zq8w3Rt5Yp2Lk9Mn4Bv7"
    for text in (f"İİ api_key={value}", f"API_KEY={value}", f"ﬁ Api-Key: {value}"):
        assert ("GENERIC_SECRET", value) in texts(text), text


def _unescape_reference(text: str, base: int, mark: str, *, plus: bool) -> tuple[str, list[int]]:
    """The character-by-character decoder the regex-based one replaced."""
    hexd = set("0123456789abcdefABCDEF")
    out: list[str] = []
    offsets: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        pair = text[i + 1 : i + 3]
        escape = c == mark and len(pair) == 2 and set(pair) <= hexd
        if escape and mark == "=" and i + 3 < n and text[i + 3] in hexd:
            escape = False
        if escape:
            out.append(chr(int(pair, 16)))
            offsets.append(base + i)
            i += 3
            continue
        if mark == "=" and c == "=" and text[i + 1 : i + 3] == "\r\n":
            i += 3
            continue
        if mark == "=" and c == "=" and text[i + 1 : i + 2] == "\n":
            i += 2
            continue
        out.append(" " if plus and c == "+" else c)
        offsets.append(base + i)
        i += 1
    offsets.append(base + i)
    return "".join(out), offsets


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("%=+aF09Gz\r\n &")), max_size=40),
    st.sampled_from(["%", "="]),
    st.integers(0, 50),
)
def test_unescape_matches_the_reference_decoder(text, mark, base):
    plus = mark == "%"
    assert _scan._unescape(text, base, mark, plus=plus) == _unescape_reference(
        text, base, mark, plus=plus
    )


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("%2F4+=ab &\"'<>\n\u00a0")), max_size=60))
def test_url_tokens_are_the_tokens_with_escapes(text):
    expected = [
        (m.start(), m.end())
        for m in _scan._TOKEN.finditer(text)
        if _scan._PERCENT.search(m.group())
        or ("+" in m.group() and _scan._FORM_PLUS.search(m.group()))
    ]
    got = [
        (a, b)
        for a, b in _scan._url_tokens(text)
        if _scan._PERCENT.search(text[a:b])
        or ("+" in text[a:b] and _scan._FORM_PLUS.search(text[a:b]))
    ]
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=48), st.booleans())
def test_b64_text_decodes_what_base64_encodes(data, urlsafe):
    raw = (base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)).decode()
    raw = raw.rstrip("=") if urlsafe else raw
    expected = None
    try:
        decoded = data.decode("utf-8")
        ok = sum(c.isprintable() or c in "\r\n\t" for c in decoded)
        expected = decoded if decoded and ok / len(decoded) > 0.95 else None
    except UnicodeDecodeError:
        pass
    assert _scan._b64_text(raw) == expected


# ------------------------------------------------------------------ round 2: more contexts
#
# Secrets in contexts the first rules missed (held-out round 1): XML elements, SQL password
# clauses, connection strings, a name and its value in separate fields, AWS secrets known by
# their context; each with a hard negative beside it.

PW = "Zx9T2mQ4rL7vB1nK8pZ3cW6y"
AWS = "Jx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4uI7oR"
KEY_ID = "AKIAZ3MQ7RTX9PLK2WQE"


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        (f"<wsse:Password>{PW}</wsse:Password>", "GENERIC_SECRET", PW),
        (f'<password type="text">{PW}</password>', "GENERIC_SECRET", PW),
        (f"<settings><apiKey>{PW}</apiKey></settings>", "GENERIC_SECRET", PW),
        (f"<ClientSecret>\n{PW}</ClientSecret>", None, None),  # value not on the tag's line
        (f"CREATE USER app WITH PASSWORD '{PW}';", "GENERIC_SECRET", PW),
        (f'ALTER USER app IDENTIFIED BY "{PW}";', "GENERIC_SECRET", PW),
        (f"alter user app identified by {PW};", "GENERIC_SECRET", PW),
        (f"CREATE LOGIN app WITH PASSWORD = '{PW}';", "GENERIC_SECRET", PW),
        (f"Server=tcp:db,1433;User ID=app;Password={PW};Encrypt=True;", "GENERIC_SECRET", PW),
        (f"Driver={{ODBC}};Server=db;Uid=app;Pwd={PW};", "GENERIC_SECRET", PW),
        (f'{{"key": "X-Auth-Token", "value": "{PW}"}}', "GENERIC_SECRET", PW),
        (f'{{"name": "api_key",\n      "value": "{PW}"}}', "GENERIC_SECRET", PW),
        (f'env:\n  - name: DB_PASSWORD\n    value: "{PW}"\n', "GENERIC_SECRET", PW),
        (f'<add key="SmtpPassword" value="{PW}" />', "GENERIC_SECRET", PW),
        (f"$config['smtp_pass'] = '{PW}';", "GENERIC_SECRET", PW),
        (f'os.environ["NPM_TOKEN"] = "{PW}"', "GENERIC_SECRET", PW),
        (f"- **Password:** `{PW}`", "GENERIC_SECRET", PW),
        (f"| API token | `{PW}` |", "GENERIC_SECRET", PW),
        (f"GET /v1/export?auth={PW}&page=2", "GENERIC_SECRET", PW),
        (f"<SecretAccessKey>{AWS}</SecretAccessKey>", "AWS_SECRET_ACCESS_KEY", AWS),
        (f"* Aws secret access key: `{AWS}`", "AWS_SECRET_ACCESS_KEY", AWS),
        (f'- name: AWS_SECRET_ACCESS_KEY\n  value: "{AWS}"', "AWS_SECRET_ACCESS_KEY", AWS),
        (f'os.environ["AWS_SECRET_KEY"] = "{AWS}"', "AWS_SECRET_ACCESS_KEY", AWS),
        (
            f'provider "aws" {{\n  region = "eu-west-1"\n  secret_key = "{AWS}"\n}}',
            "AWS_SECRET_ACCESS_KEY",
            AWS,
        ),
        (f'access_key = "{KEY_ID}"\nsecret_key = "{AWS}"', "AWS_SECRET_ACCESS_KEY", AWS),
        (f"access key {KEY_ID} and secret {AWS}, rotate it", "AWS_SECRET_ACCESS_KEY", AWS),
        (f"{KEY_ID},{AWS}", "AWS_SECRET_ACCESS_KEY", AWS),
    ],
)
def test_secrets_in_more_contexts(text, entity, value):
    secrets = [(e, v) for e, v in texts(text) if e not in ("AWS_ACCESS_KEY_ID",)]
    if entity is None:
        assert not secrets
    else:
        assert (entity, value) in secrets


@pytest.mark.parametrize(
    "text",
    [
        "<password>${DB_PASSWORD}</password>",
        "<password>{{ .Values.db.password }}</password>",
        "<password>changeme</password>",
        '<xs:element name="password" type="xs:string"/><password/>',
        "<!-- <password>...</password> --><tokenEndpoint>https://login.example.com/t</tokenEndpoint>",
        "<passwordPolicy>RequireUppercaseAndDigits</passwordPolicy>",
        "CREATE USER app WITH PASSWORD 'changeme';",
        "ALTER USER app IDENTIFIED BY '${DB_PASSWORD}';",
        "ALTER USER app IDENTIFIED BY DEFAULT;",
        "SELECT password_hash FROM users WHERE password_reset_at IS NULL;",
        "Server=db;User ID=app;Password=${DB_PASSWORD};",
        '{"key": "api_key", "value": ""}',
        '{"key": "Content-Type", "value": "application/json"}',
        '{"name": "token_type", "value": "bearer"}',
        '{"key": "api_key", "value": "{{apiKey}}"}',
        '- name: FEATURE_TOKENS\n  value: "true"\n',
        "- name: DB_PASSWORD\n  valueFrom:\n    secretKeyRef:\n"
        "      name: db\n      key: password\n",
        "- name: API_KEY_HEADER\n  value: X-Api-Key-Authorization\n",
        "MongoServerError: bad auth : Authentication failed.",
        "jdbc:mysql://auth-4.prod.example.com:3306/shop?user=admin",
        "the bypass=ExperimentalFeatureOnly flag, compass: NorthEastByEast",
        'provider "aws" {\n  secret_key = var.aws_secret_key\n}',
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        # a git SHA and a 40-char hex digest next to a key id are not AWS secrets
        f"{KEY_ID} commit 3f786850e387550fdab836ed7e6dc881de23001b",
        # a 40-character base64 value with no AWS context
        f"checksum: {AWS}",
    ],
)
def test_hard_negatives_in_more_contexts(text):
    assert not [e for e, _ in texts(text) if e not in ("AWS_ACCESS_KEY_ID", "URL")]


def test_documented_example_keys_are_not_secrets():
    azurite = (
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    )
    text = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={azurite};"
    assert not [e for e, _ in texts(text) if e == "AZURE_STORAGE_KEY"]


def test_loopback_and_version_numbers_are_no_ip_addresses():
    text = "BlobEndpoint=http://127.0.0.1:10000/ Mozilla/5.0 (X11; rv:1.9.7.20) from 203.0.113.7"
    assert [v for e, v in texts(text) if e == "IP_ADDRESS"] == ["203.0.113.7"]


_SECRETISH = st.text(
    alphabet=st.sampled_from(list("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")),
    min_size=16,
    max_size=40,
).filter(lambda v: entropy(v) >= 3.5 and any(c.isdigit() for c in v))
_SECRET_NAMES = st.sampled_from(
    ["password", "Password", "db_password", "apiKey", "API_KEY", "clientSecret", "auth_token"]
)


@settings(max_examples=150, deadline=None)
@given(
    _SECRET_NAMES,
    _SECRETISH,
    st.sampled_from(["", "wsse:", "ns1:"]),
    st.sampled_from(["", ' type="PasswordText"', " xml:lang='en'"]),
    st.sampled_from(["", " ", "  "]),
)
def test_xml_element_values_are_found_whole(name, value, prefix, attrs, pad):
    text = f"<root>\n  <{prefix}{name}{attrs}>{pad}{value}{pad}</{prefix}{name}>\n</root>"
    assert ("GENERIC_SECRET", value) in texts(text)
    masked = text.replace(value, "${" + name.upper() + "}")
    assert not [e for e, _ in texts(masked) if e == "GENERIC_SECRET"]


@settings(max_examples=150, deadline=None)
@given(
    _SECRET_NAMES,
    _SECRETISH,
    st.sampled_from(["key", "name"]),
    st.sampled_from([None, 1, 2, 4, 8]),
)
def test_json_name_value_pairs_are_found(name, value, field, indent):
    obj = [{field: "Accept", "value": "application/json"}, {field: name, "value": value}]
    text = json.dumps({"header": obj}, indent=indent)
    assert ("GENERIC_SECRET", value) in texts(text)
    obj[1]["value"] = ""
    assert not [e for e, _ in texts(json.dumps({"header": obj}, indent=indent))]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["DB_PASSWORD", "API_KEY", "SESSION_SECRET", "GITHUB_TOKEN_X"]),
    _SECRETISH,
    st.integers(0, 12),
    st.sampled_from(['"', "'", ""]),
)
def test_yaml_env_list_values_are_found(name, value, indent, quote):
    pad = " " * indent
    text = f"{pad}env:\n{pad}  - name: {name}\n{pad}    value: {quote}{value}{quote}\n"
    assert ("GENERIC_SECRET", value) in texts(text)
    harmless = text.replace(f"{quote}{value}{quote}", '"true"')
    assert not texts(harmless)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(["the", "key", "rotate", "bucket", "eu-west-1", "\n", "  "]), max_size=30
    ),
    st.booleans(),
)
def test_aws_secret_beside_a_key_id_is_found_only_near_it(filler, before):
    gap = " ".join(filler)
    text = f"{KEY_ID} {gap} {AWS}" if before else f"{AWS} {gap} {KEY_ID}"
    got = ("AWS_SECRET_ACCESS_KEY", AWS) in texts(text)
    distance = len(gap) + 2
    if distance <= 80:
        assert got
    elif distance > 80 + 40 + 256:
        assert not got


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["WITH PASSWORD", "with password", "IDENTIFIED BY", "identified by"]),
    _SECRETISH,
    st.sampled_from(["'", '"']),
)
def test_sql_password_clauses_are_found(clause, value, quote):
    text = f"CREATE USER app {clause} {quote}{value}{quote};"
    assert ("GENERIC_SECRET", value) in texts(text)
    assert not texts(f"CREATE USER app {clause} {quote}changeme{quote};")


# ------------------------------------------------------------------ round 3 (held-out round 2)


@pytest.mark.parametrize(
    ("text", "entity", "value"),
    [
        (f'os.Setenv("SMTP_PASSWORD", "{PW}")', "GENERIC_SECRET", PW),
        (f"putenv('API_KEY', '{PW}');", "GENERIC_SECRET", PW),
        (f'os.environ.setdefault("SECRET_KEY", "{PW}")', "GENERIC_SECRET", PW),
        (f'std::env::set_var("GITHUB_TOKEN_X", "{PW}");', "GENERIC_SECRET", PW),
        (
            f"[Environment]::SetEnvironmentVariable('DB_PASSWORD', '{PW}', 'Machine')",
            "GENERIC_SECRET",
            PW,
        ),
        (f'os.Setenv("AWS_SECRET_KEY", "{AWS}")', "AWS_SECRET_ACCESS_KEY", AWS),
        (f"> password is {PW}\nthanks, that fixed it", "GENERIC_SECRET", PW),
        (f"the password is `{PW}`.", "GENERIC_SECRET", PW),
        (f"Hi, the new API key is {PW}. Rotate it after the demo.", "GENERIC_SECRET", PW),
        (
            "the admin password was af6298cd64f1596e44417cb7, sorry",
            "GENERIC_SECRET",
            "af6298cd64f1596e44417cb7",
        ),
        (f"password: {PW}", "GENERIC_SECRET", PW),
        # a value on the key's own line is still found under a parent key
        (f"secrets:\n  dbPassword: {PW}\n", "GENERIC_SECRET", PW),
        (f"auth:\n  existingSecret: db-credentials\n  password: {PW}\n", "GENERIC_SECRET", PW),
    ],
)
def test_setter_calls_prose_and_nested_yaml_values_are_secrets(text, entity, value):
    secrets = [(e, v) for e, v in texts(text) if e != "AWS_ACCESS_KEY_ID"]
    assert (entity, value) in secrets


@pytest.mark.parametrize(
    "text",
    [
        # a YAML parent key: its value is the nested mapping on the next lines
        "secrets:\n  storageConnectionString: DefaultEndpointsProtocol=https;AccountName=x\n",
        "postgresql:\n  auth:\n    secretKeys:\n      userPasswordKey: password\n",
        "api_token:\n  enabled: true\n",
        # references to a secret kept elsewhere
        "postgresql:\n  auth:\n    existingSecret: db-credentials\n",
        "existing_secret: prod-db-credentials-v2",
        "tls:\n  secretName: ingress-tls-prod-2024\n",
        "envFrom:\n  - secretRef:\n      name: app-env\n",
        "valueFrom:\n  secretKeyRef:\n    name: db-creds\n    key: password\n",
        "DB_PASSWORD_FILE=/run/secrets/db_password",
        "LoadCredential=db-password:/etc/credstore/db-password",
        "SetCredentialEncrypted=api-token:/etc/credstore.encrypted/api-token",
        "db_password: vault:secret/data/prod/db#password",
        "api_key: arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/api-AbC123",
        "TOKEN_SECRET_ARN=arn:aws:secretsmanager:eu-west-1:123456789012:secret:x-Q1w2E3",
        # code paths and calls
        'let token = std::env::var("GITHUB_TOKEN")?;',
        "$password = Config::get('database.password');",
        'secret = ::std::env::var_os("APP_SECRET")',
        "password: Secrets::DbPassword",
        'os.Setenv("API_KEY", os.Getenv("UPSTREAM_API_KEY"))',
        'os.Setenv("TOKEN_TTL", "3600")',
        'os.Setenv("LOG_LEVEL", "Zx9T2mQ4rL7vB1nK8pZ3cW6y")',  # not a secret's name
        'putenv("API_KEY", "${API_KEY}")',
        # prose about a password, without it
        "the password is case-sensitive and the token is short-lived.",
        "I rotated the DB password, the new one is in 1Password under 'prod-db'.",
        "the password is incorrect, please reset it",
        "the token is ${GITHUB_TOKEN} in CI",
        "our api key is stored-in-the-team-vault now",
    ],
)
def test_parent_keys_secret_references_and_code_paths_are_not_secrets(text):
    assert not [e for e, _ in texts(text) if e == "GENERIC_SECRET"]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["os.Setenv", "putenv", "os.environ.setdefault", "std::env::set_var"]),
    st.sampled_from(["DB_PASSWORD", "API_KEY", "SESSION_SECRET", "smtp_pass", "AuthToken"]),
    _SECRETISH,
    st.sampled_from(['"', "'"]),
    st.sampled_from(["", " ", "  "]),
)
def test_setter_call_values_are_found(call, name, value, quote, pad):
    text = f"{call}({pad}{quote}{name}{quote},{pad}{quote}{value}{quote}{pad})"
    assert ("GENERIC_SECRET", value) in texts(text)
    harmless = text.replace(value, "${" + name.upper() + "}")
    assert not [e for e, _ in texts(harmless) if e == "GENERIC_SECRET"]
    other = text.replace(name, "LOG_LEVEL")
    assert not [e for e, _ in texts(other) if e == "GENERIC_SECRET"]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["password", "Password", "passphrase", "token", "secret", "API key"]),
    st.sampled_from(["is", "was", "is now", "changed to"]),
    _SECRETISH,
    st.sampled_from(["", "`", '"', "'"]),
    st.sampled_from(["", ".", ",", "!"]),
)
def test_values_quoted_in_prose_are_found(name, verb, value, quote, end):
    text = f"Hi team, the staging {name} {verb} {quote}{value}{quote}{end} Thanks"
    assert ("GENERIC_SECRET", value) in texts(text)
    for word in ("case-sensitive", "incorrect", "${DB_PASSWORD}", "expired"):
        assert not texts(text.replace(value, word)), word


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["secrets", "apiToken", "password", "credentials", "auth_key"]),
    st.sampled_from(["dbPassword", "storageConnectionString", "enabled", "githubToken"]),
    _SECRETISH,
    st.integers(1, 8),
)
def test_a_yaml_parent_key_is_not_an_assignment(parent, child, value, indent):
    pad = " " * indent
    text = f"{parent}:\n{pad}{child}: {value}\n"
    got = [(e, v) for e, v in texts(text) if e == "GENERIC_SECRET"]
    assert all(v == value for _, v in got)  # never the child key for the parent's value
    if child in ("dbPassword", "githubToken"):
        assert got


# ------------------------------------------------------------------ round 4: calls, names, shapes

HEX32 = "2b33be27de9042c10883e8cef186ac8f"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # a call or a cmdlet on the right-hand side wraps the value
        (f"$pass = ConvertTo-SecureString '{PW}' -AsPlainText -Force", PW),
        (f'$password = ConvertTo-SecureString -String "{PW}" -AsPlainText', PW),
        (f'const apiKey = Buffer.from("{PW}", "utf8");', PW),
        (f'db_password = base64decode("{PW}")', PW),
        (f'secret = new SecretString("{PW}");', PW),
        (f"API_TOKEN = SecretStr('{PW}')", PW),
        # a call named for a secret takes it
        (f'masterUserPassword: SecretValue.unsafePlainText("{PW}"),', PW),
        (
            "credentials=Credentials.from_password("
            f'"admin", SecretValue.unsafe_plain_text("{PW}"))',
            PW,
        ),
        # names that hold a random secret
        (f"      - routing_key: {HEX32}\n        severity: critical\n", HEX32),
        (f'integration_key = "{HEX32}"', HEX32),
        (f"PAGERDUTY_SERVICE_KEY={HEX32}", HEX32),
        (f"license_key: {PW}", PW),
        # a random value holding `XXxxx` is no placeholder
        (
            'admin_passwd = "WbmsTCNJUqfaHVz78s37dzxpGFdXXxxxd4X"',
            "WbmsTCNJUqfaHVz78s37dzxpGFdXXxxxd4X",
        ),
        # two mixed-case random runs joined by a dot are no code reference
        ("DB_PASSWORD=GpfmLUvQOoMW93Iu.ZHlnN02", "GpfmLUvQOoMW93Iu.ZHlnN02"),
        # prose without `is`
        (f"Tim commented: used password {PW} to reproduce, works now.", PW),
        (f"try the token '{PW}' instead", PW),
    ],
)
def test_wrapped_values_weak_key_names_and_random_runs_are_secrets(text, value):
    assert ("GENERIC_SECRET", value) in texts(text)
    # the cmdlet or call itself is never the value
    assert all(v == value for e, v in texts(text) if e == "GENERIC_SECRET")


@pytest.mark.parametrize(
    "text",
    [
        # calls that look a secret up by name, and cmdlets without a literal
        "$pass = ConvertTo-SecureString $plain -AsPlainText -Force",
        "$pass = Read-Host -AsSecureString 'Enter the password'",
        "$token = Get-Secret -Name GitHubToken -AsPlainText",
        'const dbPassword = config.requireSecret("dbPassword");',
        'const apiToken = config.getSecret("apiToken");',
        'password = getpass.getpass("Database password: ")',
        'SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY")',
        "token = getSecret('prod/api-token')",
        'password: SecretValue.secretsManager("arn:aws:secretsmanager:eu-west-1:1:secret:x")',
        'storePassword System.getenv("STORE_PASSWORD")',
        'api_key = Buffer.from("application/json")',
        # weak key names with values that are not random
        "routing_key: orders.created",
        'channel.basic_publish(exchange="", routing_key="task_queue_primary", body=msg)',
        "service_key: billing-service-v2",
        "routing_key_file: /etc/alertmanager/pd_key",
        "access_key: ${ACCESS_KEY}",
        "client_key: /etc/ssl/private/client.key",
        # placeholders and code references stay what they were
        "DB_PASSWORD=XXXXXXXXXXXXXXXX",
        "api_key: your_api_key_here",
        "TOKEN=sk_test_EXAMPLE_example",
        "password = settings.DATABASE_PASSWORD",
        "secret = app.config.SecretKeyValue",
        # prose about using a password, without one
        "used password authentication instead of keys",
        "try the token endpoint first, then retry",
    ],
)
def test_lookup_calls_weak_names_and_word_values_are_not_secrets(text):
    assert not [e for e, _ in texts(text) if e == "GENERIC_SECRET"]


_RANDOM = _SECRETISH.filter(lambda v: not _identifier(v))


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["$pass", "$password", "apiKey", "DB_PASSWORD", "client_secret"]),
    st.sampled_from(
        [
            "ConvertTo-SecureString {q}{v}{q} -AsPlainText",
            "ConvertTo-SecureString -String {q}{v}{q}",
            "Buffer.from({q}{v}{q})",
            "base64decode({q}{v}{q})",
            "new SecretString({q}{v}{q})",
            "b64decode( {q}{v}{q} )",
        ]
    ),
    _RANDOM,
    st.sampled_from(['"', "'"]),
    st.sampled_from([" = ", ": ", "="]),
)
def test_values_wrapped_in_a_call_are_found(name, call, value, quote, sep):
    text = name + sep + call.format(q=quote, v=value) + "\n"
    got = [v for e, v in texts(text) if e == "GENERIC_SECRET"]
    assert got == [value]
    for looked_up in ("DB_PASSWORD", "dbPassword", "prod/api-token", "${API_TOKEN}"):
        masked = text.replace(value, looked_up)
        assert not [e for e, _ in texts(masked) if e == "GENERIC_SECRET"], looked_up


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["routing_key", "integration_key", "service_key", "ROUTING_KEY", "licenseKey"]),
    st.one_of(
        st.text(alphabet=st.sampled_from(list("0123456789abcdef")), min_size=32, max_size=32),
        _RANDOM,
    ),
    st.sampled_from([": ", " = ", "="]),
    st.sampled_from(["", '"', "'"]),
)
def test_weak_key_names_with_random_values_are_found(name, value, sep, quote):
    if value.isdigit() or value.isalpha() or entropy(value) < 3.3:
        return
    text = f"{name}{sep}{quote}{value}{quote}\n"
    assert ("GENERIC_SECRET", value) in texts(text)
    for word in ("orders.created", "billing-service", "task_queue_primary", "${ROUTING_KEY}"):
        assert not [e for e, _ in texts(text.replace(value, word)) if e == "GENERIC_SECRET"], word


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["get", "Secret", "Value", "password", "HTTP", "Client", "config", "DB", "env", "Key"]
        ),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from(["", "_", "."]),
    st.sampled_from(["", "2", "V2", "3"]),
)
def test_identifiers_of_words_are_natural(words, joiner, suffix):
    name = joiner.join(words) + suffix
    assert all(_natural(seg) for seg in name.split("."))
    assert _identifier(name)


@settings(max_examples=200, deadline=None)
@given(_RANDOM.map(lambda v: v.replace("x", "k").replace("X", "K")))
def test_placeholder_words_count_only_in_one_case(value):
    # `xxxx` / `XXXX` mark a placeholder; a mixed-case run of x (`XXxxx`) in a random value not
    assert _not_placeholder(value[:6] + "XXxxx" + value[6:])
    assert not _not_placeholder(value[:6] + "xxxx" + value[6:])
    assert not _not_placeholder(value[:6] + "XXXX" + value[6:])
