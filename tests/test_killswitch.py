"""The kill switch stops exactly the calls in its scope, on every backend, and fails closed.

Redis tests use the real server of tests/services.py, each under its own key prefix.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentguard.killswitch as ks_module
from agentguard.cli import main
from agentguard.context import Principal
from agentguard.errors import ConfigurationError
from agentguard.killswitch import (
    Engagement,
    FileKillSwitch,
    KillSwitch,
    KillSwitchError,
    MemoryKillSwitch,
    RedisKillSwitch,
    Scope,
    open_kill_switch,
)

ENV = "AGENTGUARD_KILL_SWITCH"


def principal(tenant: str = "t1", agent_id: str | None = "a1") -> Principal:
    return Principal(tenant=tenant, user="u1", role="employee", agent_id=agent_id)


def free_port() -> int:
    """A port nobody listens on (bound, then released, by us)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def assert_fails_closed(found: Engagement | None, exc_name: str | None = None) -> None:
    assert found is not None
    assert found.scope == "global"
    assert found.value is None
    assert found.reason.startswith("kill switch unavailable: ")
    if exc_name is not None:
        assert found.reason == f"kill switch unavailable: {exc_name}"


@dataclass
class Backend:
    """Opens kill switches on one backend: `fresh()` a new, empty store; `again()` another
    instance on the store the last `fresh()` made (what a second process would see)."""

    name: str
    fresh: Callable[[], KillSwitch]
    again: Callable[[], KillSwitch]


def _memory() -> Backend:
    current: list[KillSwitch] = []

    def fresh() -> KillSwitch:
        current.append(MemoryKillSwitch())
        return current[-1]

    return Backend("memory", fresh, lambda: current[-1])


def _file(tmp_path: Path) -> Backend:
    paths: list[Path] = []

    def fresh() -> KillSwitch:
        paths.append(tmp_path / f"kill-{uuid.uuid4().hex}.json")
        return FileKillSwitch(paths[-1])

    return Backend("file", fresh, lambda: FileKillSwitch(paths[-1]))


def _redis(url: str) -> Backend:
    prefixes: list[str] = []

    def fresh() -> KillSwitch:
        prefixes.append(f"test:kill:{uuid.uuid4().hex}")
        return RedisKillSwitch(url, prefix=prefixes[-1])

    return Backend("redis", fresh, lambda: RedisKillSwitch(url, prefix=prefixes[-1]))


@pytest.fixture(params=["memory", "file", pytest.param("redis", marks=pytest.mark.services)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        return _memory()
    if request.param == "file":
        return _file(tmp_path)
    return _redis(request.getfixturevalue("redis_url"))


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.services)])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        return _file(tmp_path)
    return _redis(request.getfixturevalue("redis_url"))


@pytest.fixture
def switch(backend: Backend) -> KillSwitch:
    return backend.fresh()


# --- behaviour, on every backend ---------------------------------------------------------------

CALLS: list[tuple[str, Principal, str]] = [
    ("t1/a1/send_email", principal("t1", "a1"), "send_email"),
    ("t1/a1/search", principal("t1", "a1"), "search"),
    ("t1/a2/send_email", principal("t1", "a2"), "send_email"),
    ("t1/-/send_email", principal("t1", None), "send_email"),
    ("t2/a1/search", principal("t2", "a1"), "search"),
    ("t2/a2/search", principal("t2", "a2"), "search"),
    ("t2/-/wire_funds", principal("t2", None), "wire_funds"),
]


def test_is_a_kill_switch(switch: KillSwitch) -> None:
    assert isinstance(switch, KillSwitch)


def test_nothing_engaged(switch: KillSwitch) -> None:
    for _, who, tool in CALLS:
        assert switch.engaged(who, tool) is None
    assert switch.status() == []


@pytest.mark.parametrize(
    ("scope", "value", "stopped"),
    [
        ("global", None, {name for name, _, _ in CALLS}),
        (
            "tenant",
            "t1",
            {"t1/a1/send_email", "t1/a1/search", "t1/a2/send_email", "t1/-/send_email"},
        ),
        ("tool", "send_email", {"t1/a1/send_email", "t1/a2/send_email", "t1/-/send_email"}),
        ("agent", "a1", {"t1/a1/send_email", "t1/a1/search", "t2/a1/search"}),
        ("tenant", "a1", set()),  # a value names one scope only: no tenant is called "a1"
        ("agent", "t1", set()),
    ],
)
def test_each_scope_stops_exactly_its_calls(
    switch: KillSwitch, scope: Scope, value: str | None, stopped: set[str]
) -> None:
    engaged = switch.engage(scope, value, reason="incident 42", by="oncall")
    for name, who, tool in CALLS:
        found = switch.engaged(who, tool)
        if name in stopped:
            assert found == engaged, name
        else:
            assert found is None, name


def test_most_general_engagement_is_reported_first(switch: KillSwitch) -> None:
    who = principal("t1", "a1")
    switch.engage("tool", "send_email", reason="tool")
    switch.engage("agent", "a1", reason="agent")
    switch.engage("tenant", "t1", reason="tenant")
    switch.engage("global", reason="global")
    order = []
    for scope, value in [
        ("global", None),
        ("tenant", "t1"),
        ("agent", "a1"),
        ("tool", "send_email"),
    ]:
        found = switch.engaged(who, "send_email")
        assert found is not None
        order.append(found.scope)
        assert switch.release(scope, value)  # type: ignore[arg-type]
    assert order == ["global", "tenant", "agent", "tool"]
    assert switch.engaged(who, "send_email") is None


def test_release(switch: KillSwitch) -> None:
    who = principal()
    switch.engage("tenant", "t1", reason="r")
    assert switch.release("tenant", "t1") is True
    assert switch.engaged(who, "send_email") is None
    assert switch.release("tenant", "t1") is False
    assert switch.release("global") is False
    assert switch.release("tool", "never-engaged") is False


def test_status_lists_engagements_in_order(switch: KillSwitch) -> None:
    switch.engage("tool", "wire_funds", reason="fraud", by="alice")
    switch.engage("tenant", "t2", reason="breach")
    switch.engage("tenant", "t1", reason="breach")
    switch.engage("global", reason="all stop", by="bob")
    switch.engage("agent", "a1", reason="looping")
    status = switch.status()
    assert [(e.scope, e.value) for e in status] == [
        ("global", None),
        ("tenant", "t1"),
        ("tenant", "t2"),
        ("agent", "a1"),
        ("tool", "wire_funds"),
    ]
    assert status[0].reason == "all stop"
    assert status[0].engaged_by == "bob"
    assert status[-1].engaged_by == "alice"
    assert all(e.engaged_at > 0 for e in status)


def test_engaging_again_replaces_the_engagement(switch: KillSwitch) -> None:
    switch.engage("tenant", "t1", reason="first")
    second = switch.engage("tenant", "t1", reason="second", by="carol")
    assert switch.status() == [second]
    assert switch.engaged(principal(), "x") == second


def test_engagement_round_trips_through_the_store(switch: KillSwitch) -> None:
    made = switch.engage("agent", "agent with spaces: and colons", reason="ünïcode réason")
    assert switch.engaged(principal(agent_id="agent with spaces: and colons"), "x") == made
    assert switch.status() == [made]


@pytest.mark.parametrize(
    ("scope", "value", "reason", "by"),
    [
        ("planet", "earth", "r", None),
        ("Tenant", "t1", "r", None),
        ("global", "t1", "r", None),
        ("global", "", "r", None),
        ("tenant", None, "r", None),
        ("tenant", "", "r", None),
        ("tenant", "   ", "r", None),
        ("tool", "x" * 257, "r", None),
        ("agent", "a\n1", "r", None),
        ("agent", "a\x001", "r", None),
        ("tenant", "t\u202e1", "r", None),  # a bidi override hides what an operator reads
        ("tenant", 42, "r", None),
        ("tenant", "t1", "", None),
        ("tenant", "t1", "  ", None),
        ("tenant", "t1", "r" * 501, None),
        ("tenant", "t1", "line\nbreak", None),
        ("tenant", "t1", "r", ""),
        ("tenant", "t1", "r", "bad\x1bwho"),
    ],
)
def test_validation(
    switch: KillSwitch, scope: str, value: object, reason: str, by: str | None
) -> None:
    with pytest.raises(ValueError):
        switch.engage(scope, value, reason=reason, by=by)  # type: ignore[arg-type]
    assert switch.status() == []


def test_limits_are_inclusive(switch: KillSwitch) -> None:
    switch.engage("tool", "x" * 256, reason="r" * 500)
    assert switch.engaged(principal(), "x" * 256) is not None


@pytest.mark.parametrize(
    ("scope", "value"), [("planet", "x"), ("global", "x"), ("tenant", None), ("tool", "a\tb")]
)
def test_release_validates_too(switch: KillSwitch, scope: str, value: str | None) -> None:
    with pytest.raises(ValueError):
        switch.release(scope, value)  # type: ignore[arg-type]


# --- shared stores: what one instance writes, another sees at once -----------------------------


def test_instances_on_one_store_see_each_others_changes(shared_backend: Backend) -> None:
    agent = shared_backend.fresh()
    operator = shared_backend.again()
    who = principal()
    assert agent.engaged(who, "send_email") is None  # the file backend caches this answer
    made = operator.engage("tenant", "t1", reason="breach")
    assert agent.engaged(who, "send_email") == made
    assert agent.status() == [made]
    # Same-size rewrites in quick succession (a cached inode may be reused) are still seen.
    current = "t1"
    for tenant in ("t2", "t3", "t1"):
        assert operator.release("tenant", current)
        operator.engage("tenant", tenant, reason="breach")
        assert agent.engaged(principal(current), "x") is None
        assert agent.engaged(principal(tenant), "x") is not None
        current = tenant
    assert agent.release("tenant", "t1")
    assert operator.engaged(who, "send_email") is None


def test_concurrent_writers_lose_nothing(shared_backend: Backend) -> None:
    first = shared_backend.fresh()
    switches = [first] + [shared_backend.again() for _ in range(15)]
    start = threading.Barrier(len(switches))

    def engage(i: int) -> None:
        start.wait()
        switches[i].engage("tenant", f"tenant-{i:02d}", reason="r")

    threads = [threading.Thread(target=engage, args=(i,)) for i in range(len(switches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e.value for e in first.status()] == [f"tenant-{i:02d}" for i in range(16)]


# --- file backend ------------------------------------------------------------------------------


def test_file_is_read_again_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kill.json"
    FileKillSwitch(path).engage("tool", "wire_funds", reason="r")
    reads = []
    real_parse = ks_module._parse_file

    def counting_parse(raw: bytes) -> object:
        reads.append(1)
        return real_parse(raw)

    monkeypatch.setattr(ks_module, "_parse_file", counting_parse)
    agent = FileKillSwitch(path)
    for _ in range(100):
        assert agent.engaged(principal(), "wire_funds") is not None
    assert len(reads) == 1
    FileKillSwitch(path).engage("tool", "send_email", reason="r")
    assert agent.engaged(principal(), "send_email") is not None
    assert len(reads) == 3  # the writer's read, then the agent's


def test_a_write_always_moves_the_file_signature(tmp_path: Path) -> None:
    """Two writes in one timestamp tick, same size, recycled inode: readers must still see it."""
    path = tmp_path / "kill.json"
    agent, operator = FileKillSwitch(path), FileKillSwitch(path)
    operator.engage("tenant", "aa", reason="r")
    future = os.stat(path).st_mtime_ns + 10**12  # as if the clock stepped back after writing
    os.utime(path, ns=(future, future))
    assert agent.engaged(principal("aa"), "x") is not None
    operator.release("tenant", "aa")
    assert os.stat(path).st_mtime_ns == future + 1
    assert agent.engaged(principal("aa"), "x") is None


def test_missing_file_means_nothing_engaged(tmp_path: Path) -> None:
    assert FileKillSwitch(tmp_path / "none.json").engaged(principal(), "x") is None
    assert FileKillSwitch(tmp_path / "no" / "dir.json").engaged(principal(), "x") is None
    path = tmp_path / "kill.json"
    switch = FileKillSwitch(path)
    switch.engage("global", reason="r")
    assert switch.engaged(principal(), "x") is not None
    path.unlink()
    assert switch.engaged(principal(), "x") is None


def test_writes_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "kill.json"
    switch = FileKillSwitch(path)
    for i in range(5):
        switch.engage("tenant", f"t{i}", reason="r")
    switch.release("tenant", "t0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kill.json", "kill.json.lock"]
    doc = json.loads(path.read_text())
    assert doc["version"] == 1
    assert [e["value"] for e in doc["engagements"]] == ["t1", "t2", "t3", "t4"]


def test_file_mode_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "kill.json"
    switch = FileKillSwitch(path)
    switch.engage("global", reason="r")
    path.chmod(0o640)
    switch.release("global")
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "",
        "[]",
        '{"engagements": {}}',
        '{"version": 2, "engagements": []}',
        '{"engagements": [{"scope": "planet", "value": "x", "reason": "r"}]}',
        '{"engagements": [{"scope": "tenant", "value": "t9", "reason": ""}]}',
        '{"engagements": [{"scope": "global", "value": null, "reason": "r", "engaged_at": "x"}]}',
        '{"engagements": [{"scope": "global", "reason": "r", "engaged_at": 1e999}]}',
        '{"engagements": [{"scope": "global", "reason": "r", "engaged_at": 1' + "0" * 400 + "}]}",
        '{"engagements": [42]}',
    ],
)
def test_corrupt_file_fails_closed(tmp_path: Path, content: str) -> None:
    path = tmp_path / "kill.json"
    path.write_text(content)
    switch = FileKillSwitch(path)
    assert_fails_closed(switch.engaged(principal("t1"), "x"), "KillSwitchError")
    with pytest.raises(KillSwitchError):
        switch.status()
    with pytest.raises(KillSwitchError):  # a writer must not paper over what it cannot read
        switch.engage("tenant", "t1", reason="r")
    assert path.read_text() == content


def test_file_corrupted_after_a_good_read_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "kill.json"
    switch = FileKillSwitch(path)
    switch.engage("tool", "x", reason="r")
    assert switch.engaged(principal(), "y") is None
    path.write_bytes(b"\xff\xfe garbage")
    assert_fails_closed(switch.engaged(principal(), "y"))


def test_unreadable_path_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    assert_fails_closed(FileKillSwitch(tmp_path / "adir").engaged(principal(), "x"))
    (tmp_path / "afile").write_text("x")
    assert_fails_closed(
        FileKillSwitch(tmp_path / "afile" / "kill.json").engaged(principal(), "x"),
        "NotADirectoryError",
    )


def test_hand_written_file_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "kill.json"
    path.write_text('{"engagements": [{"scope": "tenant", "value": "t1", "reason": "by hand"}]}')
    found = FileKillSwitch(path).engaged(principal("t1"), "x")
    assert found == Engagement("tenant", "t1", "by hand", 0.0, None)


# --- Redis backend -----------------------------------------------------------------------------


@pytest.mark.services
def test_redis_on_a_closed_port_fails_closed() -> None:
    switch = RedisKillSwitch(f"redis://127.0.0.1:{free_port()}/0")
    assert_fails_closed(switch.engaged(principal(), "x"), "ConnectionError")
    with pytest.raises(redis.ConnectionError):
        switch.engage("global", reason="r")
    with pytest.raises(redis.ConnectionError):
        switch.status()


@pytest.mark.services
def test_redis_takes_a_client(redis_url: str) -> None:
    prefix = f"test:kill:{uuid.uuid4().hex}"
    for client in (
        redis.Redis.from_url(redis_url),
        redis.Redis.from_url(redis_url, decode_responses=True),
    ):
        switch = RedisKillSwitch(client, prefix=prefix)
        made = switch.engage("agent", "a1", reason="r")
        assert switch.engaged(principal(), "x") == made
        assert switch.status() == [made]
        assert switch.release("agent", "a1")
        client.close()


@pytest.mark.services
def test_redis_keys_and_one_round_trip(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"test:kill:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    switch = RedisKillSwitch(client, prefix=prefix)
    switch.engage("global", reason="r")
    switch.engage("tenant", "t1", reason="r")
    switch.engage("tool", "a:b", reason="r")
    assert sorted(client.scan_iter(match=f"{prefix}:*")) == [
        f"{prefix}:global".encode(),
        f"{prefix}:tenant:t1".encode(),
        f"{prefix}:tool:a:b".encode(),
    ]
    calls: list[str] = []
    real: Any = client.execute_command

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(client, "execute_command", spy)
    switch.engaged(principal(), "a:b")
    assert calls == ["MGET"]
    client.close()


@pytest.mark.services
def test_redis_status_matches_its_prefix_literally(redis_url: str) -> None:
    base = f"test:kill:{uuid.uuid4().hex}"
    globby = RedisKillSwitch(redis_url, prefix=f"{base}:[a]*")
    plain = RedisKillSwitch(redis_url, prefix=f"{base}:a")
    plain.engage("tenant", "t1", reason="r")
    client = redis.Redis.from_url(redis_url)
    client.set(f"{base}:[a]*:not-a-scope:x", b"ignored")  # not ours: left alone
    assert globby.status() == []
    made = globby.engage("tool", "x", reason="r")
    assert globby.status() == [made]
    client.close()


@pytest.mark.services
@pytest.mark.parametrize(
    "record",
    [
        b"garbage",
        b"\xff",
        json.dumps({"scope": "tenant", "value": "t2", "reason": "r"}).encode(),  # not its key
        json.dumps({"scope": "tenant", "value": "t1"}).encode(),
    ],
)
def test_redis_corrupt_record_fails_closed(redis_url: str, record: bytes) -> None:
    prefix = f"test:kill:{uuid.uuid4().hex}"
    client = redis.Redis.from_url(redis_url)
    client.set(f"{prefix}:tenant:t1", record)
    switch = RedisKillSwitch(redis_url, prefix=prefix)
    assert_fails_closed(switch.engaged(principal("t1"), "x"), "KillSwitchError")
    assert switch.engaged(principal("t2"), "x") is None  # other tenants' keys are fine
    with pytest.raises(KillSwitchError):
        switch.status()
    assert switch.release("tenant", "t1")  # and an operator can clear it
    client.close()


def test_redis_prefix_is_required() -> None:
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisKillSwitch(redis.Redis(), prefix="")


def test_open_kill_switch(tmp_path: Path) -> None:
    assert isinstance(open_kill_switch("redis://127.0.0.1:1/0"), RedisKillSwitch)
    assert isinstance(open_kill_switch("REDISS://127.0.0.1:1/0"), RedisKillSwitch)
    for url in ("unix:///run/redis.sock", "postgresql://db/x", "https://example.com/kill"):
        with pytest.raises(ConfigurationError, match="unsupported kill switch URL"):
            open_kill_switch(url)
    file_switch = open_kill_switch(str(tmp_path / "kill.json"))
    assert isinstance(file_switch, FileKillSwitch)
    assert isinstance(file_switch, KillSwitch)


# --- CLI ---------------------------------------------------------------------------------------


@dataclass
class Target:
    """A CLI target, the extra arguments it needs, and the kill switch the agents would open."""

    target: str
    extra: list[str]
    switch: KillSwitch


@pytest.fixture(params=["file", pytest.param("redis", marks=pytest.mark.services)])
def target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Target:
    monkeypatch.delenv(ENV, raising=False)
    if request.param == "file":
        path = str(tmp_path / "kill.json")
        return Target(path, [], FileKillSwitch(path))
    url: str = request.getfixturevalue("redis_url")
    prefix = f"test:kill:{uuid.uuid4().hex}"
    return Target(url, ["--prefix", prefix], RedisKillSwitch(url, prefix=prefix))


def test_cli_round_trip(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    at = ["--target", target.target, *target.extra]
    engage = ["kill", "engage", *at, "--tenant", "t1", "--reason", "breach 7", "--by", "alice"]
    assert main(engage) == 0
    out = capsys.readouterr().out
    assert out.startswith("engaged tenant 't1' at ")

    found = target.switch.engaged(principal("t1"), "x")
    assert found is not None
    assert (found.scope, found.value, found.reason, found.engaged_by) == (
        "tenant",
        "t1",
        "breach 7",
        "alice",
    )
    assert target.switch.engaged(principal("t2"), "x") is None

    assert main(["kill", "engage", *at, "--tool", "wire_funds", "--reason", "fraud"]) == 0
    capsys.readouterr()
    assert main(["kill", "status", *at]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("tenant 't1': breach 7 (since ")
    assert lines[0].endswith(" by alice)")
    assert lines[1].startswith("tool 'wire_funds': fraud (since ")

    assert main(["kill", "status", *at, "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0] == {
        "scope": "tenant",
        "value": "t1",
        "reason": "breach 7",
        "engaged_by": "alice",
        "engaged_at": found.engaged_at,
    }
    assert [r["value"] for r in records] == ["t1", "wire_funds"]

    assert main(["kill", "release", *at, "--tenant", "t1"]) == 0
    assert capsys.readouterr().out.startswith("released tenant 't1' at ")
    assert target.switch.engaged(principal("t1"), "x") is None
    assert main(["kill", "release", *at, "--tenant", "t1"]) == 1
    assert capsys.readouterr().out.startswith("nothing engaged for tenant 't1' at ")
    assert main(["kill", "release", *at, "--tool", "wire_funds"]) == 0
    capsys.readouterr()
    assert main(["kill", "status", *at]) == 0
    assert capsys.readouterr().out.startswith("nothing engaged at ")


def test_cli_global_and_env_target(
    target: Target, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, target.target)
    assert main(["kill", "engage", *target.extra, "--global", "--reason", "stop everything"]) == 0
    capsys.readouterr()
    found = target.switch.engaged(principal("anyone"), "anything")
    assert found is not None
    assert found.scope == "global"
    assert main(["kill", "release", *target.extra, "--global"]) == 0
    assert target.switch.engaged(principal("anyone"), "anything") is None


@pytest.mark.services
def test_cli_default_prefix_is_the_redis_default(redis_url: str) -> None:
    tool = f"tool-{uuid.uuid4().hex}"  # the default prefix is shared: touch only our own key
    assert main(["kill", "engage", "--target", redis_url, "--tool", tool, "--reason", "r"]) == 0
    try:
        assert RedisKillSwitch(redis_url).engaged(principal(), tool) is not None
    finally:
        assert main(["kill", "release", "--target", redis_url, "--tool", tool]) == 0


def test_cli_status_when_nothing_is_engaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kill.json"
    assert main(["kill", "status", "--target", str(path)]) == 0
    assert capsys.readouterr().out == f"nothing engaged at {path} (the file does not exist yet)\n"
    assert main(["kill", "status", "--target", str(path), "--json"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_by_defaults_to_the_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "operator7")
    path = tmp_path / "kill.json"
    assert main(["kill", "engage", "--target", str(path), "--tool", "x", "--reason", "r"]) == 0
    assert [e.engaged_by for e in FileKillSwitch(path).status()] == ["operator7"]


def test_cli_needs_a_target(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert main(["kill", "status"]) == 2
    assert f"pass --target or set ${ENV}" in capsys.readouterr().err
    assert main(["kill", "engage", "--global", "--reason", "r"]) == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["kill", "engage", "--target", "x", "--reason", "r"],  # no scope
        ["kill", "engage", "--target", "x", "--global", "--tenant", "t", "--reason", "r"],
        ["kill", "engage", "--target", "x", "--global"],  # no reason
        ["kill", "release", "--target", "x"],
        ["kill"],
    ],
)
def test_cli_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_cli_invalid_value_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kill.json"
    assert (
        main(["kill", "engage", "--target", str(path), "--tenant", "a\x1bb", "--reason", "r"]) == 2
    )
    assert "control or format characters" in capsys.readouterr().err
    assert not path.exists()


def test_cli_corrupt_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "kill.json"
    path.write_text("{")
    assert main(["kill", "status", "--target", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.services
def test_cli_unreachable_redis_hides_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://user:s3cret@127.0.0.1:{free_port()}/0"
    assert main(["kill", "status", "--target", url]) == 2
    err = capsys.readouterr().err
    assert "cannot use the kill switch at redis://127.0.0.1:" in err
    assert "s3cret" not in err


# --- property: engaged iff some engagement matches ---------------------------------------------

TENANTS = ["t1", "t2", "t3"]
AGENTS = ["a1", "a2"]
TOOLS = ["send_email", "search", "t1"]  # a tool named like a tenant must not be confused

targets = st.one_of(
    st.just(("global", None)),
    st.tuples(st.just("tenant"), st.sampled_from(TENANTS)),
    st.tuples(st.just("agent"), st.sampled_from(AGENTS)),
    st.tuples(st.just("tool"), st.sampled_from(TOOLS)),
)
calls = st.tuples(
    st.sampled_from(TENANTS), st.sampled_from([*AGENTS, None]), st.sampled_from(TOOLS)
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    engaged=st.lists(targets, max_size=5, unique=True),
    released=st.lists(targets, max_size=2),
    probes=st.lists(calls, min_size=1, max_size=8),
)
def test_engaged_iff_some_engagement_matches(
    backend: Backend,
    engaged: list[tuple[Scope, str | None]],
    released: list[tuple[Scope, str | None]],
    probes: list[tuple[str, str | None, str]],
) -> None:
    switch = backend.fresh()  # a new, empty store for every example
    for scope, value in engaged:
        switch.engage(scope, value, reason=f"{scope} {value}")
    for scope, value in released:
        switch.release(scope, value)
    live = set(engaged) - set(released)
    for tenant, agent, tool in probes:
        wanted = [("global", None), ("tenant", tenant), ("agent", agent), ("tool", tool)]
        matches = [t for t in wanted if t in live and (t[0] != "agent" or agent is not None)]
        found = switch.engaged(principal(tenant, agent), tool)
        if matches:
            assert found is not None
            assert (found.scope, found.value) == matches[0]  # the most general one
        else:
            assert found is None
