"""Single-use means single use: in one process, and across replicas sharing a real Redis."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from agentguard.approvals.assertions import (
    ApprovalAssertionVerifier,
    ApprovalSigner,
    Binding,
    InvalidAssertion,
)
from agentguard.replay import InMemoryReplayStore, RedisReplayStore, ReplayStore

SECRET = b"s" * 32
BINDING = Binding(
    tool="send_email",
    args_digest="sha256:" + "0" * 64,
    principal_user="alice",
    tenant="acme",
    thread_id="t-1",
    policy_version="v1",
    call_id="call-1",
)


@pytest.fixture
def redis_store(redis_url: str, request: pytest.FixtureRequest) -> RedisReplayStore:
    return RedisReplayStore.from_url(redis_url, prefix=f"test:{request.node.name}:")


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> ReplayStore:
    if request.param == "memory":
        return InMemoryReplayStore()
    return request.getfixturevalue("redis_store")  # type: ignore[no-any-return]


def test_first_use_wins_then_refused(store: ReplayStore) -> None:
    assert store.add_if_absent("k", 30) is True
    assert store.add_if_absent("k", 30) is False
    assert store.add_if_absent("other", 30) is True


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan")])
def test_bad_ttl_is_refused(store: ReplayStore, ttl: float) -> None:
    with pytest.raises(ValueError):
        store.add_if_absent("k", ttl)


def test_entries_expire_after_their_ttl(redis_store: RedisReplayStore) -> None:
    assert redis_store.add_if_absent("short", 0.05)
    time.sleep(0.15)
    assert redis_store.add_if_absent("short", 0.05)


def test_fifty_concurrent_first_uses_exactly_one_wins(store: ReplayStore) -> None:
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def use() -> None:
        start.wait()
        ok = store.add_if_absent("race", 30)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=use) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 49 + [True]


def test_unreachable_redis_raises_so_callers_refuse() -> None:
    store = RedisReplayStore.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    with pytest.raises(redis.ConnectionError):
        store.add_if_absent("k", 30)


def test_approval_replayed_on_another_replica_is_refused(redis_url: str) -> None:
    signer = ApprovalSigner(SECRET, kid="k1", algorithm="HS256")
    token = signer.sign(
        approver="bob", approver_role="admin", tenant="acme", decision="approve", binding=BINDING
    )

    def replica() -> ApprovalAssertionVerifier:
        shared = RedisReplayStore.from_url(redis_url, prefix="test:replicas:")
        return ApprovalAssertionVerifier({"k1": SECRET}, algorithms=["HS256"], replay_store=shared)

    first, second = replica(), replica()
    assert first.verify(token, expected=BINDING).approver == "bob"
    with pytest.raises(InvalidAssertion) as exc:
        second.verify(token, expected=BINDING)
    assert exc.value.code == "replayed"


def test_a_prefix_is_required() -> None:
    from agentguard import ConfigurationError

    client: Any = object()
    with pytest.raises(ConfigurationError):
        RedisReplayStore(client, prefix="")
