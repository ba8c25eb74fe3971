"""ScopedStore: tenants, teams and users never see each other's memory, on every backend."""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test
from langgraph.store.base import BaseStore, InvalidNamespaceError
from langgraph.store.memory import InMemoryStore
from langgraph.store.postgres import PostgresStore
from langgraph.store.sqlite import SqliteStore

from agentguard import Principal
from agentguard.errors import ConfigurationError, GuardError
from agentguard.memory import ScopedStore, ScopeError, encode_ident
from agentguard.policy.model import MemorySettings

from ..services import fresh_schema

REFUSED = (ScopeError, InvalidNamespaceError)  # the latter: LangGraph's own label check

BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.services)]


def who(tenant: str, user: str, team: str | None = "red") -> Principal:
    return Principal(tenant=tenant, user=user, role="member", team=team)


@contextlib.contextmanager
def open_backend(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[BaseStore]:
    if kind == "memory":
        yield InMemoryStore()
    elif kind == "sqlite":
        with SqliteStore.from_conn_string(str(tmp_path / "mem.sqlite")) as store:
            store.setup()
            yield store
    else:
        base_url: str = request.getfixturevalue("postgres_url")
        with (
            fresh_schema(base_url, "memory") as (url, _),
            PostgresStore.from_conn_string(url) as store,
        ):
            store.setup()
            yield store


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseStore]:
    with open_backend(request.param, tmp_path, request) as s:
        yield s


def scoped(scope: str, namespace: Any) -> Any:
    """A caller's namespace under a scope (malformed inputs kept malformed)."""
    return (scope, *namespace) if isinstance(namespace, tuple) else namespace


def keys(items: list[Any]) -> set[tuple[tuple[str, ...], str]]:
    return {(tuple(i.namespace), i.key) for i in items}


# ---------------------------------------------------------------------------- boundaries


def test_user_memory_is_private_to_the_user(store: BaseStore) -> None:
    alice = ScopedStore(store, who("acme", "alice"))
    bob = ScopedStore(store, who("acme", "bob"))  # same tenant, same team
    alice.put(("user", "notes"), "k", {"secret": "alice's"})

    got = alice.get(("user", "notes"), "k")
    assert got is not None and got.value == {"secret": "alice's"}
    assert got.namespace == ("user", "notes")  # no tenant/user ids leak back
    assert bob.get(("user", "notes"), "k") is None
    assert bob.search(("user",)) == []
    assert bob.list_namespaces(prefix=("user",)) == []
    assert bob.search(("team",)) == [] and bob.search(("tenant",)) == []
    assert alice.list_namespaces(prefix=("user",)) == [("user", "notes")]
    assert keys(alice.search(("user",))) == {(("user", "notes"), "k")}


def test_team_memory_is_shared_within_the_team_only(store: BaseStore) -> None:
    alice = ScopedStore(store, who("acme", "alice", "red"))
    bob = ScopedStore(store, who("acme", "bob", "red"))
    carol = ScopedStore(store, who("acme", "carol", "blue"))
    alice.put(("team", "plans"), "q3", {"goal": "ship"})

    got = bob.get(("team", "plans"), "q3")
    assert got is not None and got.value == {"goal": "ship"} and got.namespace == ("team", "plans")
    assert keys(bob.search(("team",))) == {(("team", "plans"), "q3")}
    assert carol.get(("team", "plans"), "q3") is None
    assert carol.search(("team",)) == [] and carol.list_namespaces(prefix=("team",)) == []
    # team memory does not show up as anybody's user memory or as tenant memory
    assert bob.search(("user",)) == [] and alice.search(("tenant",)) == []


def test_tenant_memory_is_shared_in_the_tenant_and_isolated_across_tenants(
    store: BaseStore,
) -> None:
    a = ScopedStore(store, who("acme", "alice"))
    a2 = ScopedStore(store, who("acme", "zed", "blue"))
    other = ScopedStore(store, who("globex", "alice"))  # same user id, another tenant
    a.put(("tenant", "faq"), "hours", {"open": "9-5"})
    a.put(("user", "notes"), "k", {"v": 1})
    a.put(("team", "plans"), "k", {"v": 2})

    assert keys(a2.search(("tenant",))) == {(("tenant", "faq"), "hours")}
    for scope in ("user", "team", "tenant"):
        assert other.search((scope,)) == []
        assert other.list_namespaces(prefix=(scope,)) == []
    assert other.list_namespaces() == []
    assert other.get(("user", "notes"), "k") is None
    assert other.get(("team", "plans"), "k") is None
    assert other.get(("tenant", "faq"), "hours") is None


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a.b", "c"), ("a", "b.c")),
        (("a/b", "c"), ("a", "b/c")),
        (("acme", "ünï"), ("acme", "~c3bc6ec3af")),
        (("acme", "~616c696365"), ("acme", "alice")),
        (("t", "u x"), ("t", "u_x")),
    ],
)
def test_tricky_ids_never_collide(
    store: BaseStore, first: tuple[str, str], second: tuple[str, str]
) -> None:
    one = ScopedStore(store, who(*first, team="x.y"))
    two = ScopedStore(store, who(*second, team="x"))
    scopes = ["user", "team"] + ([] if first[0] == second[0] else ["tenant"])
    for scope in scopes:
        one.put((scope, "n"), "k", {"owner": "one"})
        assert two.get((scope, "n"), "k") is None
        assert two.search((scope,)) == []
        two.put((scope, "n"), "k", {"owner": "two"})
        got = one.get((scope, "n"), "k")
        assert got is not None and got.value == {"owner": "one"}


def test_encode_ident_is_injective_and_store_safe() -> None:
    ids = ["a", "a.b", "~61", "a b", "ü", "x/y", "A", "-_", "~", "~7e"]
    encoded = [encode_ident(i) for i in ids]
    assert len(set(encoded)) == len(ids)
    for e in encoded:
        assert e and "." not in e and "*" not in e
    assert encode_ident("alice") == "alice"


def test_returned_items_are_copies(store: BaseStore) -> None:
    mem = ScopedStore(store, who("acme", "alice"))
    value: dict[str, Any] = {"list": [1, 2], "nested": {"a": 1}}
    mem.put(("user", "n"), "k", value)
    value["list"].append("caller mutated after put")

    got = mem.get(("user", "n"), "k")
    assert got is not None
    got.value["list"].append(3)
    got.value["nested"]["a"] = "changed"
    found = mem.search(("user",))
    found[0].value["nested"]["b"] = 2

    again = mem.get(("user", "n"), "k")
    assert again is not None and again.value == {"list": [1, 2], "nested": {"a": 1}}


def test_team_scope_without_a_team_is_refused(store: BaseStore) -> None:
    loner = ScopedStore(store, who("acme", "alice", team=None))
    with pytest.raises(ScopeError):
        loner.put(("team", "n"), "k", {"v": 1})
    with pytest.raises(ScopeError):
        loner.get(("team", "n"), "k")
    with pytest.raises(ScopeError):
        loner.search(("team",))
    with pytest.raises(ScopeError):
        loner.list_namespaces(prefix=("team",))
    with pytest.raises(ScopeError, match="scope"):
        loner.put(("everyone", "n"), "k", {"v": 1})
    with pytest.raises(ScopeError, match="scope"):
        loner.put(("notes",), "k", {"v": 1})  # unscoped, as plain LangGraph code would write
    with pytest.raises(ScopeError, match="scope"):
        loner.search(())
    assert loner.list_namespaces() == []  # only the scopes the principal has
    assert issubclass(ScopeError, GuardError)


@pytest.mark.parametrize(
    "namespace",
    [
        ("a.b",),
        ("",),
        ("*",),
        ("a", "x" * 129),
        ("bad\nlabel",),
        ("bidi\u202e",),
        ("nul\x00",),
        tuple("abcdefghi"),  # 9 labels
        ["list", "not", "tuple"],
        ("ok", 3),
    ],
)
def test_malformed_namespaces_are_refused(store: BaseStore, namespace: Any) -> None:
    mem = ScopedStore(store, who("acme", "alice"))
    with pytest.raises(REFUSED):
        mem.put(scoped("user", namespace), "k", {"v": 1})
    with pytest.raises(REFUSED):
        mem.get(scoped("user", namespace), "k")
    with pytest.raises(REFUSED):
        mem.search(scoped("user", namespace))
    with pytest.raises(REFUSED):
        mem.list_namespaces(prefix=scoped("user", namespace))
    assert mem.search(("user",)) == []


@pytest.mark.parametrize("key", ["", "x" * 513, "a\nb", "rtl\u202eoverride"])
def test_malformed_keys_are_refused(key: Any) -> None:
    mem = ScopedStore(InMemoryStore(), who("acme", "alice"))
    with pytest.raises(ScopeError):
        mem.put(("user", "n"), key, {"v": 1})


@pytest.mark.parametrize("value", [["not", "a", "dict"], {"f": float("nan")}, {"o": object()}])
def test_non_json_values_are_refused(value: Any) -> None:
    mem = ScopedStore(InMemoryStore(), who("acme", "alice"))
    with pytest.raises(ScopeError):
        mem.put(("user", "n"), "k", value)


def test_limits_labels_and_depth(store: BaseStore) -> None:
    mem = ScopedStore(store, who("acme", "alice"))
    deep = tuple(f"l{i}" for i in range(8))
    mem.put(("user", *deep), "k", {"v": 1})
    mem.put(("user", "a", "b"), "k", {"v": 2})
    assert mem.list_namespaces(prefix=("user",), max_depth=2) == [("user", "a"), ("user", "l0")]
    assert mem.list_namespaces(prefix=("user",), max_depth=1) == [("user",)]
    assert mem.list_namespaces(prefix=("user", "a")) == [("user", "a", "b")]
    assert mem.list_namespaces(suffix=("b",)) == [("user", "a", "b")]
    assert keys(mem.search(("user", "a"))) == {(("user", "a", "b"), "k")}
    assert keys(mem.search(("user",), filter={"v": 1})) == {(("user", *deep), "k")}
    assert len(mem.search(("user",), limit=1)) == 1
    assert len(mem.search(("user",), limit=1, offset=1)) == 1
    with pytest.raises(ScopeError):
        mem.put(("user", *deep, "one-too-many"), "k", {"v": 1})
    with pytest.raises(ScopeError):
        mem.search(("user",), limit=-1)
    with pytest.raises(ScopeError):
        mem.list_namespaces(prefix=("user",), max_depth=0)


def test_listing_without_a_prefix_covers_every_scope_of_the_caller_only(store: BaseStore) -> None:
    alice = ScopedStore(store, who("acme", "alice", "red"))
    bob = ScopedStore(store, who("acme", "bob", "blue"))
    alice.put(("user", "notes"), "k", {"v": 1})
    alice.put(("team", "plans"), "k", {"v": 1})
    alice.put(("tenant", "faq"), "k", {"v": 1})
    bob.put(("user", "bobs"), "k", {"v": 1})
    bob.put(("team", "blue-plans"), "k", {"v": 1})
    assert alice.list_namespaces() == [("team", "plans"), ("tenant", "faq"), ("user", "notes")]
    assert alice.list_namespaces(limit=1, offset=1) == [("tenant", "faq")]
    assert bob.list_namespaces() == [("team", "blue-plans"), ("tenant", "faq"), ("user", "bobs")]


@pytest.mark.parametrize(
    "value",
    [
        {"deep": functools.reduce(lambda acc, _: [acc], range(40), [])},
        {"wide": list(range(20_000))},
    ],
)
def test_oversized_values_are_refused(value: Any) -> None:
    mem = ScopedStore(InMemoryStore(), who("acme", "alice"))
    with pytest.raises(ScopeError):
        mem.put(("user", "n"), "k", value)
    assert mem.search(("user",)) == []


def test_ttl(store: BaseStore) -> None:
    mem = ScopedStore(store, who("acme", "alice"))
    if not store.supports_ttl:
        # memory meant to expire that silently would not is refused
        with pytest.raises((ConfigurationError, NotImplementedError)):
            mem.put(("user", "n"), "k", {"v": 1}, ttl=5)
    else:
        mem.put(("user", "n"), "k", {"v": 1}, ttl=5)
        assert mem.get(("user", "n"), "k") is not None
        with pytest.raises(ScopeError):
            mem.put(("user", "n"), "k", {"v": 1}, ttl=-1)


def test_bad_construction_is_refused() -> None:
    with pytest.raises(ValueError):
        MemorySettings(prefix="langgraph")
    with pytest.raises(ValueError):
        MemorySettings(prefix="a.b")
    with pytest.raises(ConfigurationError):
        ScopedStore({}, who("a", "b"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ScopedStore(InMemoryStore(), {"tenant": "a", "user": "b"})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="twice"):
        ScopedStore(ScopedStore(InMemoryStore(), who("a", "b")), who("a", "b"))


async def test_async_variants(store: BaseStore) -> None:
    alice = ScopedStore(store, who("acme", "alice"))
    bob = ScopedStore(store, who("acme", "bob"))
    await alice.aput(("user", "n"), "k", {"v": [1]})
    await alice.aput(("team", "t"), "k", {"v": 2})
    got = await alice.aget(("user", "n"), "k")
    assert got is not None and got.value == {"v": [1]} and got.namespace == ("user", "n")
    got.value["v"].append(2)
    again = await alice.aget(("user", "n"), "k")
    assert again is not None and again.value == {"v": [1]}
    assert await bob.aget(("user", "n"), "k") is None
    assert keys(await alice.asearch(("user",))) == {(("user", "n"), "k")}
    assert await bob.asearch(("user",)) == []
    assert keys(await bob.asearch(("team",))) == {(("team", "t"), "k")}
    assert await alice.alist_namespaces(prefix=("user",)) == [("user", "n")]
    assert await bob.alist_namespaces(prefix=("user",)) == []
    await alice.adelete(("user", "n"), "k")
    assert await alice.aget(("user", "n"), "k") is None
    with pytest.raises(REFUSED):
        await alice.aput(("user", "a.b"), "k", {"v": 1})


# ---------------------------------------------------------------------------- property

TENANTS = ["acme", "acme.x"]
TEAMS = ["red", "r.ed"]
USERS = ["alice", "bob", "b.c"]
PRINCIPALS = [who(t, u, team) for t in TENANTS for team in TEAMS for u in USERS] + [
    who("acme", "alice", team=None)
]
NAMESPACES = [(), ("notes",), ("notes", "work"), ("prefs",), ("notes", "home")]
PREFIXES = [(), ("notes",), ("prefs",), ("nope",)]
SCOPE_NAMES = ["user", "team", "tenant"]


def scope_key(p: Principal, scope: str) -> tuple[str | None, ...]:
    """The model's idea of which physical scope a (principal, scope) pair addresses."""
    if scope == "user":
        return ("user", p.tenant, p.user)
    if scope == "team":
        return ("team", p.tenant, p.team)
    return ("tenant", p.tenant)


def run_model(make_store: Callable[[], BaseStore], max_examples: int, steps: int) -> None:
    class Memory(RuleBasedStateMachine):
        """Random operations by several principals, checked against a plain dict."""

        @initialize()
        def fresh(self) -> None:
            prefix = "p" + uuid.uuid4().hex[:12]  # a fresh world per example
            store = make_store()
            settings = MemorySettings(prefix=prefix)
            self.mems = [ScopedStore(store, p, settings=settings) for p in PRINCIPALS]
            self.model: dict[Any, dict[tuple[tuple[str, ...], str], dict[str, Any]]] = {}

        def target(self, i: int, scope: str) -> tuple[ScopedStore, Any]:
            p = PRINCIPALS[i]
            missing = scope == "team" and p.team is None
            return self.mems[i], (None if missing else scope_key(p, scope))

        @rule(
            i=st.integers(0, len(PRINCIPALS) - 1),
            scope=st.sampled_from(SCOPE_NAMES),
            ns=st.sampled_from(NAMESPACES),
            key=st.sampled_from(["k1", "k2"]),
            n=st.integers(0, 2),
        )
        def put(self, i: int, scope: Any, ns: tuple[str, ...], key: str, n: int) -> None:
            mem, sk = self.target(i, scope)
            value = {"n": n, "by": i}
            if sk is None:
                with pytest.raises(ScopeError):
                    mem.put((scope, *ns), key, value)
                return
            mem.put((scope, *ns), key, value)
            self.model.setdefault(sk, {})[(ns, key)] = dict(value)
            value["n"] = "mutated by caller"  # the store kept its own copy

        @rule(
            i=st.integers(0, len(PRINCIPALS) - 1),
            scope=st.sampled_from(SCOPE_NAMES),
            ns=st.sampled_from(NAMESPACES),
            key=st.sampled_from(["k1", "k2"]),
        )
        def get(self, i: int, scope: Any, ns: tuple[str, ...], key: str) -> None:
            mem, sk = self.target(i, scope)
            if sk is None:
                with pytest.raises(ScopeError):
                    mem.get((scope, *ns), key)
                return
            got = mem.get((scope, *ns), key)
            expected = self.model.get(sk, {}).get((ns, key))
            if expected is None:
                assert got is None
            else:
                assert got is not None and got.value == expected and got.namespace == (scope, *ns)
                got.value["n"] = "mutated by caller"  # must not reach the store
                again = mem.get((scope, *ns), key)
                assert again is not None and again.value == expected

        @rule(
            i=st.integers(0, len(PRINCIPALS) - 1),
            scope=st.sampled_from(SCOPE_NAMES),
            ns=st.sampled_from(NAMESPACES),
            key=st.sampled_from(["k1", "k2"]),
        )
        def delete(self, i: int, scope: Any, ns: tuple[str, ...], key: str) -> None:
            mem, sk = self.target(i, scope)
            if sk is None:
                with pytest.raises(ScopeError):
                    mem.delete((scope, *ns), key)
                return
            mem.delete((scope, *ns), key)
            self.model.get(sk, {}).pop((ns, key), None)

        @rule(
            i=st.integers(0, len(PRINCIPALS) - 1),
            scope=st.sampled_from(SCOPE_NAMES),
            prefix=st.sampled_from(PREFIXES),
            n=st.none() | st.integers(0, 2),
        )
        def search(self, i: int, scope: Any, prefix: tuple[str, ...], n: int | None) -> None:
            mem, sk = self.target(i, scope)
            flt = None if n is None else {"n": n}
            if sk is None:
                with pytest.raises(ScopeError):
                    mem.search((scope, *prefix), filter=flt)
                return
            found = mem.search((scope, *prefix), filter=flt, limit=1000)
            got = sorted((tuple(it.namespace), it.key, repr(it.value)) for it in found)
            for it in found:
                it.value["n"] = "mutated by caller"
            expected = sorted(
                ((scope, *ns), key, repr(v))
                for (ns, key), v in self.model.get(sk, {}).items()
                if ns[: len(prefix)] == prefix and (n is None or v["n"] == n)
            )
            assert got == expected

        @rule(
            i=st.integers(0, len(PRINCIPALS) - 1),
            scope=st.sampled_from(SCOPE_NAMES),
            prefix=st.sampled_from(PREFIXES),
        )
        def list_namespaces(self, i: int, scope: Any, prefix: tuple[str, ...]) -> None:
            mem, sk = self.target(i, scope)
            if sk is None:
                with pytest.raises(ScopeError):
                    mem.list_namespaces(prefix=(scope, *prefix))
                return
            got = set(mem.list_namespaces(prefix=(scope, *prefix), limit=1000))
            live = {
                (scope, *ns) for (ns, _k) in self.model.get(sk, {}) if ns[: len(prefix)] == prefix
            }
            assert got == live

        @rule(i=st.integers(0, len(PRINCIPALS) - 1))
        def list_everything(self, i: int) -> None:
            p = PRINCIPALS[i]
            got = set(self.mems[i].list_namespaces(limit=1000))
            live = {
                (scope, *ns)
                for scope in SCOPE_NAMES
                if not (scope == "team" and p.team is None)
                for (ns, _k) in self.model.get(scope_key(p, scope), {})
            }
            assert got == live

    run_state_machine_as_test(
        Memory,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.mark.parametrize(
    ("kind", "examples"),
    [("memory", 100), ("sqlite", 40), pytest.param("postgres", 15, marks=pytest.mark.services)],
)
def test_model_based_isolation(
    kind: str, examples: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    if kind == "memory":
        run_model(InMemoryStore, examples, 30)  # a fresh store per example
    else:
        with open_backend(kind, tmp_path, request) as backend:
            run_model(lambda: backend, examples, 30)  # one store, a fresh prefix per example
    assert time.monotonic() - started < 30
