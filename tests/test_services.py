"""Smoke tests for the real servers of tests/services.py, and LangGraph's checkpointers on them."""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import psycopg
import pytest
import redis
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

pytestmark = pytest.mark.services


def test_postgres_select_one(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://") and "@127.0.0.1:" in postgres_url
    with psycopg.connect(postgres_url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.host == "127.0.0.1"
        assert conn.info.dbname == "agentguard_test"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


def test_redis_ping_and_atomic_set_nx(redis_url: str, redis_client: redis.Redis) -> None:
    assert redis_url.startswith("redis://127.0.0.1:") and redis_url.endswith("/0")
    assert redis_client.ping() is True
    key = f"agentguard:test:replay:{uuid.uuid4().hex}"
    assert redis_client.set(key, 1, nx=True, ex=30) is True
    assert redis_client.set(key, 1, nx=True, ex=30) is None  # the replay is refused
    assert 0 < redis_client.ttl(key) <= 30


class Counter(TypedDict):
    count: int
    log: Annotated[list[str], operator.add]


def _graph(checkpointer: BaseCheckpointSaver[Any]) -> Any:
    def step(state: Counter) -> dict[str, Any]:
        n = state["count"] + 1
        return {"count": n, "log": [f"step {n}"]}

    builder = StateGraph(Counter)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    return builder.compile(checkpointer=checkpointer)


def _check_persistence(open_saver: Callable[[], AbstractContextManager[Any]]) -> str:
    """Two runs on one thread with one saver, then a NEW saver (new connection) reads them."""
    thread_id = f"thread-{uuid.uuid4().hex}"
    config: dict[str, Any] = {"configurable": {"thread_id": thread_id}}

    with open_saver() as saver:
        saver.setup()
        graph = _graph(saver)
        assert graph.invoke({"count": 0, "log": []}, config) == {"count": 1, "log": ["step 1"]}
        # The second run starts from the stored state: `count` is not in its input.
        second = graph.invoke({"log": ["again"]}, config)
        assert second == {"count": 2, "log": ["step 1", "again", "step 2"]}
        checkpoint_id = graph.get_state(config).config["configurable"]["checkpoint_id"]

    with open_saver() as fresh:  # as if from another process
        stored = fresh.get_tuple(config)
        assert stored is not None
        assert stored.config["configurable"]["checkpoint_id"] == checkpoint_id
        assert stored.checkpoint["channel_values"]["count"] == 2
        graph = _graph(fresh)
        assert graph.get_state(config).values == second
        assert graph.invoke({"log": []}, config)["count"] == 3
    return thread_id


def test_langgraph_postgres_saver_persists_across_connections(postgres_url: str) -> None:
    thread_id = _check_persistence(lambda: PostgresSaver.from_conn_string(postgres_url))
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread_id,)
        ).fetchone()
    assert row is not None and row[0] >= 3


def test_langgraph_sqlite_saver_persists_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite3"
    _check_persistence(lambda: SqliteSaver.from_conn_string(str(path)))
    assert path.stat().st_size > 0
