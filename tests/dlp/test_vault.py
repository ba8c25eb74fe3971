"""The pseudonym vault: the same behaviour from the memory, SQLite and PostgreSQL backends."""

from __future__ import annotations

import base64
import random
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentguard.dlp.errors import ScanIncomplete
from agentguard.dlp.vault import (
    TOKEN_RE,
    MemoryPseudonymVault,
    PostgresPseudonymVault,
    PseudonymVault,
    SqlitePseudonymVault,
    VaultError,
    VaultFull,
    VaultUnavailable,
    open_vault,
    owned_scope,
    tokens_in,
    vault_key_from_env,
)

from ..services import fresh_schema

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
T0 = 1_700_000_000.5
TTL = 3600.0
EMAIL = "EMAIL_ADDRESS"
PHONE = "PHONE_NUMBER"


class Clock:
    """An injected clock every vault of one test shares."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


Factory = Callable[..., PseudonymVault]


# ---------------------------------------------------------------------------- backends


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    with fresh_schema(postgres_url, "vault") as (url, _):
        yield url


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _factory(kind: str, request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Factory:
    """Opens a vault on the same storage each time it is called (a restart, or another replica,
    for the SQL backends; the one shared instance for memory)."""
    opened: list[PseudonymVault] = []
    shared: list[MemoryPseudonymVault] = []

    def make(**overrides: Any) -> PseudonymVault:
        options: dict[str, Any] = {"ttl": TTL, "clock": clock, **overrides}
        vault: PseudonymVault
        if kind == "memory":
            options.pop("key", None)
            if not shared:
                shared.append(MemoryPseudonymVault(**options))
            return shared[0]
        options.setdefault("key", KEY)
        if kind == "sqlite":
            vault = SqlitePseudonymVault(tmp_path / "vault.db", **options)
        else:
            vault = PostgresPseudonymVault(request.getfixturevalue("pg_url"), **options)
        opened.append(vault)
        return vault

    def close_all() -> None:
        for vault in [*opened, *shared]:
            vault.close()

    request.addfinalizer(close_all)
    return make


ALL = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.services)]
SQL = ["sqlite", pytest.param("postgres", marks=pytest.mark.services)]


@pytest.fixture(params=ALL)
def factory(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Factory:
    return _factory(request.param, request, tmp_path, clock)


@pytest.fixture(params=SQL)
def sql_factory(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Factory:
    return _factory(request.param, request, tmp_path, clock)


@pytest.fixture
def vault(factory: Factory) -> PseudonymVault:
    return factory()


def number(token: str) -> int:
    match = TOKEN_RE.fullmatch(token)
    assert match is not None, token
    return int(match.group(2))


# ------------------------------------------------------------------------- behaviour


def test_same_value_same_token_different_values_different_tokens(vault: PseudonymVault) -> None:
    a = vault.token("t1", EMAIL, "ann@example.com")
    assert a == "<EMAIL_ADDRESS_1>"
    assert vault.token("t1", EMAIL, "ann@example.com") == a
    b = vault.token("t1", EMAIL, "bob@example.com")
    assert b == "<EMAIL_ADDRESS_2>"
    # numbering is per scope, not per entity; the same text as another entity is another value
    assert vault.token("t1", PHONE, "ann@example.com") == "<PHONE_NUMBER_3>"
    assert vault.values("t1", [a, b, "<PHONE_NUMBER_3>"]) == {
        a: "ann@example.com",
        b: "bob@example.com",
        "<PHONE_NUMBER_3>": "ann@example.com",
    }
    text = f"Write to {a} and {b}, cc {a}; <EMAIL_ADDRESS_9> and <x_1> stay."
    assert vault.reveal("t1", text) == (
        "Write to ann@example.com and bob@example.com, cc ann@example.com; "
        "<EMAIL_ADDRESS_9> and <x_1> stay."
    )


def test_values_ignores_unknown_and_malformed_tokens(vault: PseudonymVault) -> None:
    tok = vault.token("t1", EMAIL, "ann@example.com")
    asked = [tok, tok, "<EMAIL_ADDRESS_2>", "EMAIL_ADDRESS_1", "<email_1>", "", "<A_0>"]
    assert vault.values("t1", asked) == {tok: "ann@example.com"}
    assert vault.values("t1", []) == {}
    assert vault.values("unknown-scope", [tok]) == {}
    with pytest.raises(TypeError):
        vault.values("t1", tok)  # one string is not a collection of tokens


def test_scopes_are_isolated(vault: PseudonymVault) -> None:
    a = vault.token("alice/t1", EMAIL, "ann@example.com")
    # another scope cannot look the token up, nor reveal it
    assert vault.values("bob/t1", [a]) == {}
    assert vault.reveal("bob/t1", f"to {a}") == f"to {a}"
    # it numbers on its own; its token of the same number is its own value
    b = vault.token("bob/t1", EMAIL, "bea@example.com")
    assert b == a == "<EMAIL_ADDRESS_1>"
    assert vault.values("bob/t1", [b]) == {b: "bea@example.com"}
    assert vault.values("alice/t1", [a]) == {a: "ann@example.com"}
    # the same value in another scope gets that scope's token, the lookup never crosses scopes
    assert vault.token("bob/t1", EMAIL, "ann@example.com") == "<EMAIL_ADDRESS_2>"


def test_bad_arguments_are_refused(vault: PseudonymVault) -> None:
    for entity in ("email", "E", "1EMAIL", "EMAIL-ADDRESS", "A" * 65, ""):
        with pytest.raises(ValueError):
            vault.token("t1", entity, "x")
    with pytest.raises(ValueError):
        vault.token("", EMAIL, "x")
    with pytest.raises(TypeError):
        vault.token("t1", EMAIL, 42)  # type: ignore[arg-type]


def test_ttl_counts_from_the_last_tokenization(vault: PseudonymVault, clock: Clock) -> None:
    tok = vault.token("t1", EMAIL, "ann@example.com")
    clock.now += TTL - 1
    assert vault.values("t1", [tok]) == {tok: "ann@example.com"}  # reading does not refresh
    assert vault.token("t1", EMAIL, "ann@example.com") == tok  # tokenizing does
    clock.now += TTL - 1
    assert vault.values("t1", [tok]) == {tok: "ann@example.com"}
    clock.now += 1
    assert vault.values("t1", [tok]) == {}
    assert vault.reveal("t1", f"to {tok}") == f"to {tok}"
    # an expired value is gone: it comes back under a new number, the old one is not reused
    again = vault.token("t1", EMAIL, "ann@example.com")
    assert again == "<EMAIL_ADDRESS_2>"
    assert vault.values("t1", [tok, again]) == {again: "ann@example.com"}


def test_values_expire_one_by_one(vault: PseudonymVault, clock: Clock) -> None:
    first = vault.token("t1", EMAIL, "ann@example.com")
    clock.now += TTL / 2
    second = vault.token("t1", EMAIL, "bob@example.com")
    clock.now += TTL / 2
    assert vault.values("t1", [first, second]) == {second: "bob@example.com"}
    assert vault.token("t1", EMAIL, "cid@example.com") == "<EMAIL_ADDRESS_3>"


def test_max_values_gives_vault_full(factory: Factory, clock: Clock) -> None:
    vault = factory(max_values=3)
    tokens = [vault.token("t1", EMAIL, f"u{i}@example.com") for i in range(3)]
    with pytest.raises(VaultFull) as caught:
        vault.token("t1", EMAIL, "u3@example.com")
    assert isinstance(caught.value, ScanIncomplete)  # the DLP check refuses the call
    assert vault.token("t1", EMAIL, "u0@example.com") == tokens[0]  # known values still work
    assert vault.token("t2", EMAIL, "u3@example.com") == "<EMAIL_ADDRESS_1>"  # per scope
    assert len(vault.values("t1", tokens)) == 3
    clock.now += TTL + 1  # expired values make room again; numbers go on
    assert vault.token("t1", EMAIL, "u3@example.com") == "<EMAIL_ADDRESS_4>"


def test_forget_erases_one_scope(vault: PseudonymVault) -> None:
    a = vault.token("t1", EMAIL, "ann@example.com")
    vault.token("t1", PHONE, "+1 555 0100")
    b = vault.token("t2", EMAIL, "bob@example.com")
    assert vault.forget("t1") == 2
    assert vault.values("t1", [a, "<PHONE_NUMBER_2>"]) == {}
    assert vault.reveal("t1", a) == a
    assert vault.values("t2", [b]) == {b: "bob@example.com"}
    assert vault.forget("t1") == 0
    assert vault.forget("never-seen") == 0


def test_forget_owner_erases_every_scope_of_one_owner(factory: Factory) -> None:
    """Right to erasure for a user: every thread's pseudonyms at once, nobody else's; a
    second instance (a restart, another replica) sees them gone too."""
    vault = factory()
    alice = [owned_scope("acme/alice", f"t{i}") for i in range(3)]
    bob = owned_scope("acme/bob", "t0")
    tokens = [vault.token(scope, EMAIL, f"alice{i}@example.com") for i, scope in enumerate(alice)]
    vault.token(alice[0], PHONE, "+1 555 0100")
    kept = vault.token(bob, EMAIL, "bob@example.com")
    vault.token("unowned", EMAIL, "x@example.com")
    assert vault.forget_owner("acme/alice") == 4
    again = factory()
    for view in (vault, again):
        for scope, token in zip(alice, tokens, strict=True):
            assert view.values(scope, [token]) == {}
        assert view.values(bob, [kept]) == {kept: "bob@example.com"}
        assert view.values("unowned", ["<EMAIL_ADDRESS_1>"]) == {
            "<EMAIL_ADDRESS_1>": "x@example.com"
        }
    assert vault.forget_owner("acme/alice") == 0
    # numbering starts again for an erased owner's scope: nothing left to confuse it with
    assert vault.token(alice[0], EMAIL, "new@example.com") == "<EMAIL_ADDRESS_1>"
    with pytest.raises(ValueError):
        owned_scope("two\nlines", "t")


def test_forget_counts_only_live_values(vault: PseudonymVault, clock: Clock) -> None:
    vault.token("t1", EMAIL, "ann@example.com")
    clock.now += TTL / 2
    vault.token("t1", EMAIL, "bob@example.com")
    clock.now += TTL / 2
    assert vault.forget("t1") == 1


def test_reveal_does_not_expand_a_value_that_looks_like_a_token(vault: PseudonymVault) -> None:
    first = vault.token("t1", EMAIL, "ann@example.com")
    tricky = vault.token("t1", "SECRET", f"see {first}>")
    assert vault.reveal("t1", f"<{tricky}{first}>") == f"<see {first}>ann@example.com>"


def test_odd_strings_round_trip(vault: PseudonymVault) -> None:
    for value in ("", "\x00nul", "lone \ud800 surrogate", "é" * 1000, "<A_1>", "x" * 100_000):
        tok = vault.token("t1", "VALUE", value)
        assert vault.values("t1", [tok]) == {tok: value}
        assert vault.reveal("t1", tok) == value
    odd_scope = "tenant/\x00/ü/\ud800"
    tok = vault.token(odd_scope, EMAIL, "ann@example.com")
    assert vault.values(odd_scope, [tok]) == {tok: "ann@example.com"}


def test_many_tokens_in_one_lookup(vault: PseudonymVault) -> None:
    tokens = [vault.token("t1", EMAIL, f"u{i}@example.com") for i in range(1200)]
    found = vault.values("t1", tokens)
    assert found == {t: f"u{i}@example.com" for i, t in enumerate(tokens)}


def test_a_vault_is_a_pseudonym_vault(vault: PseudonymVault) -> None:
    assert isinstance(vault, PseudonymVault)


# ------------------------------------------------------- restart, replicas, concurrency


def test_another_instance_sees_the_tokens(sql_factory: Factory) -> None:
    first = sql_factory()
    a = first.token("t1", EMAIL, "ann@example.com")
    replica = sql_factory()  # another replica, while the first still runs
    assert replica.values("t1", [a]) == {a: "ann@example.com"}
    assert replica.token("t1", EMAIL, "ann@example.com") == a
    b = replica.token("t1", EMAIL, "bob@example.com")
    assert b == "<EMAIL_ADDRESS_2>"
    assert first.reveal("t1", f"{a},{b}") == "ann@example.com,bob@example.com"
    first.close()
    replica.close()
    restarted = sql_factory()  # after a restart
    assert restarted.values("t1", [a, b]) == {a: "ann@example.com", b: "bob@example.com"}
    assert restarted.token("t1", EMAIL, "cid@example.com") == "<EMAIL_ADDRESS_3>"
    assert restarted.forget("t1") == 3
    assert sql_factory().values("t1", [a]) == {}


def test_concurrent_tokenization_is_consistent_and_unique(factory: Factory) -> None:
    """8 threads on two instances (two processes' view of one file or database) tokenize
    overlapping values in two scopes, in different orders, all at once."""
    vaults = [factory(), factory()]
    shared_values = [f"shared{i}@example.com" for i in range(25)]
    scopes = ("alice/t1", "bob/t1")
    barrier = threading.Barrier(8)
    results: list[list[tuple[str, str, str]]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            vault = vaults[worker % 2]
            rng = random.Random(worker)
            todo = [(s, v) for s in scopes for v in shared_values]
            todo += [(s, f"only{worker}-{i}@example.com") for s in scopes for i in range(5)]
            rng.shuffle(todo)
            barrier.wait()
            for scope, value in todo:
                results[worker].append((scope, value, vault.token(scope, EMAIL, value)))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    by_value: dict[tuple[str, str], set[str]] = {}
    for rows in results:
        for scope, value, tok in rows:
            by_value.setdefault((scope, value), set()).add(tok)
    assert all(len(toks) == 1 for toks in by_value.values()), "one value, several tokens"
    for scope in scopes:
        tokens = {next(iter(t)): v for (s, v), t in by_value.items() if s == scope}
        expected = len(shared_values) + 8 * 5
        assert len(tokens) == expected  # different values never share a token
        assert sorted(number(t) for t in tokens) == list(range(1, expected + 1))
        for vault in vaults:
            assert vault.values(scope, list(tokens)) == tokens


# ---------------------------------------------------------------- at rest: no plaintext


SECRET_VALUES = ("ann.secret@example.com", "4111 1111 1111 1111", "zürich-ü-value")
SECRET_SCOPE = "tenant-acme/user-alice/thread-visible"


def _fill(vault: PseudonymVault) -> list[str]:
    return [vault.token(SECRET_SCOPE, EMAIL, v) for v in SECRET_VALUES]


def _assert_absent(blob: bytes) -> None:
    for plain in (*SECRET_VALUES, SECRET_SCOPE):
        for encoded in (plain.encode(), plain.encode("utf-16-le"), plain.encode().hex().encode()):
            assert encoded not in blob, plain


def test_sqlite_file_holds_no_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "vault.db"
    vault = SqlitePseudonymVault(path, key=KEY)
    tokens = _fill(vault)
    files = [p for p in tmp_path.iterdir() if p.name.startswith("vault.db")]
    assert {p.name for p in files} >= {"vault.db", "vault.db-wal"}
    _assert_absent(b"".join(p.read_bytes() for p in files))
    assert vault.values(SECRET_SCOPE, tokens) == dict(zip(tokens, SECRET_VALUES, strict=True))
    vault.close()  # checkpoints the WAL into the main file
    _assert_absent(b"".join(p.read_bytes() for p in tmp_path.iterdir()))
    assert path.stat().st_mode & 0o077 == 0  # owner only


@pytest.mark.services
def test_postgres_rows_hold_no_plaintext(pg_url: str) -> None:
    vault = PostgresPseudonymVault(pg_url, key=KEY)
    try:
        tokens = _fill(vault)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            dump = "\n".join(
                str(row[0])
                for table in ("pseudonym_values", "pseudonym_scopes", "pseudonym_meta")
                for row in conn.execute(f"SELECT t::text FROM {table} t").fetchall()
            )
        assert dump.count("<EMAIL_ADDRESS_") == 3
        _assert_absent(dump.encode())
        assert vault.values(SECRET_SCOPE, tokens) == dict(zip(tokens, SECRET_VALUES, strict=True))
    finally:
        vault.close()


# -------------------------------------------------------------- keys, tampering, outages


def _sql(vault: PseudonymVault, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run raw SQL on a vault's own storage (as an attacker with database access would)."""
    if isinstance(vault, SqlitePseudonymVault):
        with sqlite3.connect(vault.path) as conn:
            return conn.execute(statement, params).fetchall()
    assert isinstance(vault, PostgresPseudonymVault)
    with psycopg.connect(vault._pg.conninfo, autocommit=True) as conn:
        cursor = conn.execute(statement.replace("?", "%s"), params)
        return cursor.fetchall() if cursor.description else []


def test_wrong_key_is_refused(sql_factory: Factory) -> None:
    vault = sql_factory()
    tok = vault.token("t1", EMAIL, "ann@example.com")
    with pytest.raises(VaultUnavailable, match="key"):
        sql_factory(key=OTHER_KEY)  # refused at once: it would hand out second tokens
    # without the key check row, reading under the wrong key still fails closed
    _sql(vault, "DELETE FROM pseudonym_meta")
    wrong = sql_factory(key=OTHER_KEY)
    # the wrong key does not even find the scope; point its scope id at the row to force a read
    wrong_sid = wrong._sealer.scope_id("t1")  # type: ignore[attr-defined]
    _sql(vault, "UPDATE pseudonym_values SET scope_id = ?", (wrong_sid,))
    with pytest.raises(VaultUnavailable, match="decrypt"):
        wrong.values("t1", [tok])


def test_a_short_or_missing_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32"):
        SqlitePseudonymVault(tmp_path / "v.db", key=b"x" * 31)
    with pytest.raises(TypeError):
        SqlitePseudonymVault(tmp_path / "v.db", key="k" * 40)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key="):
        open_vault(str(tmp_path / "v.db"))


def test_a_ciphertext_moved_to_another_row_does_not_decrypt(sql_factory: Factory) -> None:
    vault = sql_factory()
    a1 = vault.token("t1", EMAIL, "ann@example.com")
    a2 = vault.token("t1", EMAIL, "bob@example.com")
    b1 = vault.token("t2", EMAIL, "cid@example.com")
    assert a1 == b1
    rows = {
        (bytes(sid), tok): bytes(sealed)
        for sid, tok, sealed in _sql(vault, "SELECT scope_id, token, sealed FROM pseudonym_values")
    }
    sid = {scope: bytes(vault._sealer.scope_id(scope)) for scope in ("t1", "t2")}  # type: ignore[attr-defined]

    def set_sealed(scope: str, tok: str, sealed: bytes) -> None:
        _sql(
            vault,
            "UPDATE pseudonym_values SET sealed = ? WHERE scope_id = ? AND token = ?",
            (sealed, sid[scope], tok),
        )

    # another scope's ciphertext of the same token
    set_sealed("t2", b1, rows[(sid["t1"], a1)])
    with pytest.raises(VaultUnavailable):
        vault.values("t2", [b1])
    set_sealed("t2", b1, rows[(sid["t2"], b1)])
    assert vault.values("t2", [b1]) == {b1: "cid@example.com"}
    # another row's ciphertext in the same scope
    set_sealed("t1", a1, rows[(sid["t1"], a2)])
    with pytest.raises(VaultUnavailable):
        vault.reveal("t1", f"to {a1}")
    # one flipped bit, or a truncated row
    good = rows[(sid["t1"], a1)]
    for bad in (good[:-1] + bytes([good[-1] ^ 1]), good[:5], b""):
        set_sealed("t1", a1, bad)
        with pytest.raises(VaultUnavailable):
            vault.values("t1", [a1])
    set_sealed("t1", a1, good)
    assert vault.values("t1", [a1, a2]) == {a1: "ann@example.com", a2: "bob@example.com"}


def test_expired_rows_are_purged_opportunistically(sql_factory: Factory, clock: Clock) -> None:
    vault = sql_factory()
    for i in range(100):
        vault.token(f"old-{i}", EMAIL, f"u{i}@example.com")
    clock.now += TTL + 1
    vault.token("new", EMAIL, "x@example.com")  # one call purges a bounded batch

    def count(table: str) -> int:
        return int(_sql(vault, f"SELECT count(*) FROM {table}")[0][0])

    assert count("pseudonym_values") == 100 - 64 + 1
    vault.token("new", EMAIL, "y@example.com")  # the next write purges the next batch
    assert count("pseudonym_values") == 2
    # the counters stay (no PII in them), so an old token is never handed to a new value
    assert count("pseudonym_scopes") == 101
    assert vault.token("old-0", EMAIL, "other@example.com") == "<EMAIL_ADDRESS_2>"


def test_a_value_used_again_soon_needs_no_write_yet_lives_on(
    sql_factory: Factory, clock: Clock
) -> None:
    """Re-using a pseudonym within a tenth of its TTL writes nothing (no fsync per use); it
    still lives at least 0.9 x TTL after its last use, and a later use extends it."""
    vault = sql_factory()
    token = vault.token("t", EMAIL, "ann@example.com")
    (before,) = _sql(vault, "SELECT expires_at FROM pseudonym_values")
    clock.now += TTL * 0.05
    assert vault.token("t", EMAIL, "ann@example.com") == token
    assert _sql(vault, "SELECT expires_at FROM pseudonym_values") == [before]
    clock.now += TTL * 0.9  # 0.95 TTL since the first use, 0.9 since the last
    assert vault.values("t", [token]) == {token: "ann@example.com"}
    assert vault.token("t", EMAIL, "ann@example.com") == token  # 0.05 TTL left: refreshed
    clock.now += TTL * 0.5
    assert vault.values("t", [token]) == {token: "ann@example.com"}


def test_sqlite_unusable_file_raises_vault_unavailable(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(VaultUnavailable):
        SqlitePseudonymVault(bad, key=KEY)
    with pytest.raises(VaultUnavailable):
        SqlitePseudonymVault(tmp_path, key=KEY)  # a folder
    vault = SqlitePseudonymVault(tmp_path / "ok.db", key=KEY)
    vault.close()
    with pytest.raises(VaultUnavailable):
        vault.token("t1", EMAIL, "ann@example.com")


@pytest.mark.services
def test_postgres_unreachable_raises_vault_unavailable() -> None:
    with pytest.raises(VaultUnavailable) as caught:
        PostgresPseudonymVault("postgresql://postgres@127.0.0.1:1/x?connect_timeout=2", key=KEY)
    assert isinstance(caught.value, ScanIncomplete)


@pytest.mark.services
def test_postgres_reconnects_after_a_broken_connection(pg_url: str) -> None:
    vault = PostgresPseudonymVault(pg_url, key=KEY)
    try:
        a = vault.token("t1", EMAIL, "ann@example.com")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (vault._pg.get().info.backend_pid,))
        with pytest.raises(VaultUnavailable):  # the call that hits the failure fails closed
            vault.token("t1", EMAIL, "bob@example.com")
        assert vault.values("t1", [a]) == {a: "ann@example.com"}  # the next one reconnects
        assert vault.token("t1", EMAIL, "bob@example.com") == "<EMAIL_ADDRESS_2>"
    finally:
        vault.close()
    with pytest.raises(VaultUnavailable):
        vault.values("t1", [a])


@pytest.mark.services
def test_postgres_schema_is_created_once(pg_url: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            barrier.wait()
            PostgresPseudonymVault(pg_url, key=KEY).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT to_regclass('pseudonym_values'), to_regclass('pseudonym_scopes'),"
            " to_regclass('pseudonym_meta'), to_regclass('pseudonym_values_expiry')"
        ).fetchone()
    assert row is not None and None not in row


# ------------------------------------------------------------------- memory specifics


def test_memory_forgets_the_least_recently_used_scope_first() -> None:
    vault = MemoryPseudonymVault(max_scopes=2)
    a = vault.token("a", EMAIL, "a@example.com")
    b = vault.token("b", EMAIL, "b@example.com")
    vault.token("a", EMAIL, "a@example.com")  # a is used again: b is now the oldest
    vault.token("c", EMAIL, "c@example.com")
    assert vault.values("b", [b]) == {}
    assert vault.values("a", [a]) == {a: "a@example.com"}
    # b comes back: its values are gone, its numbers go on
    assert vault.token("b", EMAIL, "b2@example.com") == "<EMAIL_ADDRESS_2>"
    with pytest.raises(ValueError):
        MemoryPseudonymVault(max_scopes=0)


# ----------------------------------------------------------- tokens, keys, open_vault


def test_tokens_in_finds_distinct_tokens_in_order() -> None:
    text = "<BB_2> <EMAIL_ADDRESS_1> <<BB_2>> <AA_0> <a_1> <B_1> <XX_1234567890> <US_SSN_12>"
    assert tokens_in(text) == ["<BB_2>", "<EMAIL_ADDRESS_1>", "<US_SSN_12>"]
    assert tokens_in("no tokens") == []
    assert TOKEN_RE.fullmatch("<" + "A" * 64 + "_999999999>")
    assert not TOKEN_RE.fullmatch("<" + "A" * 65 + "_1>")


def test_vault_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = bytes(range(40))
    for encoded in (
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        f"  {raw.hex()}\n",
    ):
        monkeypatch.setenv("AGENTGUARD_VAULT_KEY", encoded)
        assert vault_key_from_env() == raw
    monkeypatch.setenv("MY_KEY", base64.b64encode(raw[:32]).decode())
    assert vault_key_from_env("MY_KEY") == raw[:32]
    monkeypatch.delenv("AGENTGUARD_VAULT_KEY")
    with pytest.raises(ValueError, match="AGENTGUARD_VAULT_KEY is not set"):
        vault_key_from_env()
    for bad, message in (("", "not set"), ("ab" * 31, "31 bytes"), ("not a key!", "neither")):
        monkeypatch.setenv("AGENTGUARD_VAULT_KEY", bad)
        with pytest.raises(ValueError, match=message):
            vault_key_from_env()


def test_errors_fail_closed() -> None:
    assert issubclass(VaultError, ScanIncomplete)
    assert issubclass(VaultFull, VaultError)
    assert issubclass(VaultUnavailable, VaultError)


def test_open_vault_picks_the_backend(tmp_path: Path) -> None:
    memory = open_vault("memory")
    assert isinstance(memory, MemoryPseudonymVault)
    for target in (tmp_path / "a.db", str(tmp_path / "b.db")):
        vault = open_vault(target, key=KEY)
        assert isinstance(vault, SqlitePseudonymVault)
        vault.close()


@pytest.mark.services
def test_open_vault_postgres_urls(pg_url: str) -> None:
    for url in (pg_url, "postgres://" + pg_url.removeprefix("postgresql://")):
        vault = open_vault(url, key=KEY)
        assert isinstance(vault, PostgresPseudonymVault)
        vault.close()


# -------------------------------------------------------------------------- property

token_like = st.builds(
    lambda entity, n: f"<{entity}_{n}>",
    st.sampled_from([EMAIL, PHONE, "VALUE", "A_1"]),
    st.integers(min_value=0, max_value=30),
)
texts = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.text(alphabet="<>_AEV19 ", max_size=20),
        token_like,
        st.text(alphabet=st.characters(codec=None, categories=["Cs", "Cc", "Lo"]), max_size=5),
    ),
    max_size=6,
).map("".join)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(texts, min_size=1, max_size=4), other=texts)
def test_property_reveal_round_trips(factory: Factory, values: list[str], other: str) -> None:
    vault = factory()
    scope = f"prop-{uuid.uuid4().hex}"
    tokens = [vault.token(scope, "VALUE", v) for v in values]
    for tok, value in zip(tokens, values, strict=True):
        assert vault.reveal(scope, tok) == value
        assert vault.reveal(scope, f"[{tok}|{tok}]") == f"[{value}|{value}]"
    assert vault.reveal(scope, "".join(tokens)) == "".join(values)
    # text with no token this scope knows is left exactly as it was
    assert vault.reveal(f"empty-{uuid.uuid4().hex}", other) == other
    known = set(tokens)
    if not known.intersection(tokens_in(other)):
        assert vault.reveal(scope, other) == other
