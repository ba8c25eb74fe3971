"""agentguard behind a real `langgraph dev` server (offline, in-memory runtime).

Starts `langgraph dev`, each server in its own temporary folder, with the repository's
`langgraph.json` (paths made absolute; graphs in
`examples/studio_graphs.py`, demo auth in `examples/studio_auth.py`, memory store in
`examples/studio_store.py`) and drives it with `langgraph_sdk`. Identity must come from the
server's auth handler, never from the run `context` the client writes. A call that needs
approval pauses the run with an interrupt; only an answer with a signed approval assertion
resumes it. Memory is scoped to the authenticated user, on the HTTP store API and in runs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import langgraph_api  # noqa: F401 - the dev extra's langgraph-cli[inmem]; missing = broken install
import pytest
from langgraph_sdk import get_sync_client
from langgraph_sdk.client import SyncLangGraphClient
from langgraph_sdk.errors import APIStatusError

from agentguard import args_digest as digest

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).with_name("langgraph")
ALICE = "alice-demo-token"  # acme, team sales
BOB = "bob-demo-token"  # acme, team sales: alice's teammate
DANA = "dana-demo-token"  # globex
ALICE_GLOBEX = "alice-globex-demo-token"  # another user called alice, in globex
START_TIMEOUT = 60.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")
API_LINE = re.compile(r"API:\s*http://127\.0\.0\.1:(\d+)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _server_env(approvals_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "AGENTGUARD_AUDIT", "AGENTGUARD_STORE"))
        and k != "LANGGRAPH_API_KEY"
    }
    env.update(
        AGENTGUARD_APPROVALS_PATH=str(approvals_path),  # outside the project: no hot reload
        LANGGRAPH_NO_VERSION_CHECK="true",
        LANGSMITH_TRACING="false",
        LANGGRAPH_DISABLE_FILE_PERSISTENCE="true",
        TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="",
        PYTHONUNBUFFERED="1",
    )
    return env


def _log_port(log: Path) -> int | None:
    try:
        text = ANSI.sub("", log.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return None
    found = API_LINE.findall(text)
    return int(found[-1]) if found else None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except ProcessLookupError:
            pass
    # the uvicorn worker shares the group; make sure nothing of it survives
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def approvals_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's consent ledger + approval store, shared by the server and the test."""
    return tmp_path_factory.mktemp("approvals") / "approvals.sqlite3"


@pytest.fixture(scope="module")
def studio(approvals_path: Path) -> Iterator[ModuleType]:
    """`examples/studio_graphs.py`, for `sign_answer` (same key as the server's)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AGENTGUARD_APPROVALS_PATH", str(approvals_path))
        spec = importlib.util.spec_from_file_location(
            "studio_graphs_under_test", ROOT / "examples" / "studio_graphs.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    yield module


def _config_in(folder: Path) -> Path:
    """The repository's `langgraph.json` with absolute paths, written into `folder`."""
    config = json.loads((ROOT / "langgraph.json").read_text())

    def absolute(ref: str) -> str:
        return str(ROOT / ref) if ref.startswith("./") or ref == "." else ref

    config["dependencies"] = [absolute(d) for d in config["dependencies"]]
    config["graphs"] = {name: absolute(ref) for name, ref in config["graphs"].items()}
    for section in ("auth", "store"):
        if section in config:
            config[section]["path"] = absolute(config[section]["path"])
    path = folder / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


@contextlib.contextmanager
def _langgraph_dev(log: Path, env: dict[str, str]) -> Iterator[str]:
    """`langgraph dev` from the repository root; yields its base URL, stops it on exit."""
    if not CLI.exists():
        pytest.fail(f"{CLI} not installed: run `make test` (dev extra langgraph-cli[inmem])")
    port = _free_port()
    cmd = [
        str(CLI),
        "dev",
        "--no-browser",
        "--no-reload",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--config",
        str(_config_in(log.parent)),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            # Each server in its own folder: the in-memory runtime reloads runs it finds in
            # `.langgraph_api/` of its working directory, so a server started in the
            # repository would pick up, and run again, runs another server left there.
            cwd=log.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    actual = port
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited ({proc.returncode}):\n{log.read_text()[-4000:]}")
            actual = _log_port(log) or port  # the CLI may pick another port silently
            try:
                if httpx.get(f"http://127.0.0.1:{actual}/ok", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev not up in {START_TIMEOUT}s:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)
        yield f"http://127.0.0.1:{actual}"
    finally:
        _stop(proc)
        deadline = time.monotonic() + 10
        while _listening(actual) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(actual), f"something still listens on port {actual}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, approvals_path: Path) -> Iterator[str]:
    """The repository's `langgraph.json`, memory in the store factory's default InMemoryStore."""
    log = tmp_path_factory.mktemp("langgraph_dev") / "server.log"
    with _langgraph_dev(log, _server_env(approvals_path)) as url:
        yield url


def _run(
    url: str, token: str, graph: str, text: str, context: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    client = get_sync_client(url=url, api_key=None, headers={"Authorization": f"Bearer {token}"})
    thread = client.threads.create()
    assert thread["metadata"].get("owner") == token.split("-")[0]  # stamped by the auth handler
    client.runs.wait(
        thread["thread_id"],
        graph,
        input={"messages": [{"role": "user", "content": text}]},
        context=context,
    )
    state = client.threads.get_state(thread["thread_id"])
    return list(state["values"]["messages"])


def _tool_message(messages: list[dict[str, Any]]) -> dict[str, Any]:
    tools = [m for m in messages if m["type"] == "tool"]
    assert len(tools) == 1, messages
    assert messages[-1]["type"] == "ai"
    assert messages[-1]["content"] == f"tool said: {tools[0]['content']}"
    return tools[0]


def _call(contact_id: str) -> str:
    return f'call get_contact {{"contact_id": "{contact_id}"}}'


def test_own_tenant_contact_runs(server: str) -> None:
    tool = _tool_message(_run(server, ALICE, "server_agent", _call("c-101")))
    assert tool["status"] == "success"
    assert "Bob Lee" in tool["content"] and "bob.lee@acme.example" in tool["content"]


def test_other_tenant_contact_refused(server: str) -> None:
    tool = _tool_message(_run(server, ALICE, "server_agent", _call("c-900")))
    assert tool["status"] == "error"
    assert "[tenant]" in tool["content"] and "not in your tenant" in tool["content"]
    assert "Dana Wu" not in tool["content"]


def test_forged_context_does_not_change_identity(server: str) -> None:
    forged = {"principal": {"tenant": "globex", "user": "dana", "role": "admin"}}
    tool = _tool_message(_run(server, ALICE, "server_agent", _call("c-900"), context=forged))
    assert tool["status"] == "error"
    assert "not in your tenant" in tool["content"]
    assert "Dana Wu" not in tool["content"]


def test_other_tenant_admin_gets_own_contact(server: str) -> None:
    tool = _tool_message(_run(server, DANA, "server_agent", _call("c-900")))
    assert tool["status"] == "success"
    assert "Dana Wu" in tool["content"]


@pytest.mark.parametrize(
    "context",
    [None, {"principal": {"tenant": "acme", "user": "alice", "role": "employee"}}],
    ids=["no-context", "context-principal"],
)
def test_from_context_refuses_on_server(server: str, context: dict[str, Any] | None) -> None:
    tool = _tool_message(_run(server, ALICE, "naive_agent", _call("c-101"), context=context))
    assert tool["status"] == "error"
    assert "run context is written by the client" in tool["content"]
    assert "Bob Lee" not in tool["content"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}])
def test_missing_or_unknown_token_rejected(server: str, headers: dict[str, str]) -> None:
    client = get_sync_client(url=server, api_key=None, headers=headers)
    with pytest.raises(APIStatusError) as info:
        client.threads.create()
    assert info.value.status_code in (401, 403)


def test_threads_are_scoped_to_their_owner(server: str) -> None:
    dana = get_sync_client(url=server, api_key=None, headers={"Authorization": f"Bearer {DANA}"})
    alice = get_sync_client(url=server, api_key=None, headers={"Authorization": f"Bearer {ALICE}"})
    thread = dana.threads.create()
    with pytest.raises(APIStatusError) as info:
        alice.threads.get(thread["thread_id"])
    assert info.value.status_code in (403, 404)
    assert thread["thread_id"] not in {t["thread_id"] for t in alice.threads.search(limit=100)}


# -- human approval: a paused call, answered through the API -------------------------------

EMAIL = {"to": "bob.lee@acme.example", "subject": "Q4", "body": "See you Monday."}
GRAPHS = ["server_agent", "toolnode_agent"]


def _client(url: str, token: str = ALICE) -> SyncLangGraphClient:
    return get_sync_client(url=url, api_key=None, headers={"Authorization": f"Bearer {token}"})


def _paused(client: SyncLangGraphClient, graph: str) -> tuple[str, dict[str, Any]]:
    """A fresh thread whose run paused on `send_email`; (thread id, the pending interrupt)."""
    thread_id = client.threads.create()["thread_id"]
    ask: Any = {"messages": [{"role": "user", "content": f"call send_email {json.dumps(EMAIL)}"}]}
    out = client.runs.wait(thread_id, graph, input=ask)
    assert isinstance(out, dict) and out.get("__interrupt__"), out
    assert client.threads.get(thread_id)["status"] == "interrupted"
    return thread_id, _pending(client, thread_id)


def _pending(client: SyncLangGraphClient, thread_id: str) -> dict[str, Any]:
    state = client.threads.get_state(thread_id)
    pending = list(state["interrupts"])
    assert len(pending) == 1, state
    assert [i["id"] for t in state["tasks"] for i in t["interrupts"]] == [pending[0]["id"]]
    return dict(pending[0])


def _resume(
    client: SyncLangGraphClient, thread_id: str, graph: str, interrupt_id: str, answer: Any
) -> list[dict[str, Any]]:
    out = client.runs.wait(thread_id, graph, command={"resume": {interrupt_id: answer}})
    assert isinstance(out, dict) and "__interrupt__" not in out, out
    assert client.threads.get(thread_id)["status"] == "idle"
    return _messages(client, thread_id)


def _messages(client: SyncLangGraphClient, thread_id: str) -> list[dict[str, Any]]:
    values = client.threads.get_state(thread_id)["values"]
    assert isinstance(values, dict)
    return list(values["messages"])


def _as_alice(studio: ModuleType, request: dict[str, Any], decision: str, **kw: Any) -> Any:
    return studio.sign_answer(
        request, decision, approver="alice", approver_role="employee", tenant="acme", **kw
    )


@pytest.mark.parametrize("graph", GRAPHS)
def test_paused_call_shows_what_binds_it(server: str, graph: str) -> None:
    client = _client(server)
    thread_id, pending = _paused(client, graph)
    value = pending["value"]
    [request] = value["action_requests"]
    assert request["name"] == "send_email" and request["args"] == EMAIL
    meta = request["agentguard"]
    assert meta["confirmation"] == "confirm" and meta["risk"] == "medium"
    assert meta["principal"] == {
        "tenant": "acme",
        "user": "alice",
        "role": "employee",
        "agent": None,
    }
    assert meta["thread_id"] == thread_id and meta["binding"]["thread_id"] == thread_id
    assert meta["binding"]["tool"] == "send_email"
    assert meta["binding"]["args_digest"] == meta["args_digest"]
    assert meta["binding"]["policy_version"] == meta["policy_version"] == "crm-demo-2026-11+studio"
    assert meta["signed_assertion_required"] is True
    assert datetime.fromisoformat(meta["expires_at"]) > datetime.fromisoformat(meta["created_at"])
    assert value["review_configs"] == [
        {"action_name": "send_email", "allowed_decisions": ["approve", "edit", "reject", "respond"]}
    ]
    assert "response_schema" in pending  # the server publishes what an answer must look like


@pytest.mark.parametrize("graph", GRAPHS)
def test_signed_approve_runs_the_call(server: str, studio: ModuleType, graph: str) -> None:
    client = _client(server)
    thread_id, pending = _paused(client, graph)
    request = pending["value"]["action_requests"][0]
    messages = _resume(
        client, thread_id, graph, pending["id"], _as_alice(studio, request, "approve")
    )
    tool = _tool_message(messages)
    assert tool["status"] == "success"
    assert tool["content"].startswith("queued message #")
    assert tool["content"].endswith(f"to {EMAIL['to']}: {EMAIL['subject']}")


@pytest.mark.parametrize("graph", GRAPHS)
def test_personal_data_in_a_paused_call_reaches_studio_as_a_pseudonym(
    server: str, studio: ModuleType, graph: str
) -> None:
    """The interrupt is what Studio shows and the checkpoint keeps: an address that needs a
    yes is there as a pseudonym; the approved call sends the address itself."""
    client = _client(server)
    email = {**EMAIL, "subject": "Intro: carol.diaz@partner.example"}
    thread_id = client.threads.create()["thread_id"]
    ask: Any = {"messages": [{"role": "user", "content": f"call send_email {json.dumps(email)}"}]}
    client.runs.wait(thread_id, graph, input=ask)
    pending = _pending(client, thread_id)
    [request] = pending["value"]["action_requests"]
    assert request["args"] == {**email, "subject": "Intro: <EMAIL_ADDRESS_1>"}
    assert "carol.diaz" not in json.dumps(pending)
    meta = request["agentguard"]
    assert meta["dlp_findings"] == [
        {"path": "$.subject", "entity": "EMAIL_ADDRESS", "action": "approve"}
    ]
    assert meta["binding"]["args_digest"] == digest(email)  # binds to the real call
    messages = _resume(
        client, thread_id, graph, pending["id"], _as_alice(studio, request, "approve")
    )
    tool = _tool_message(messages)
    assert tool["status"] == "success"
    assert tool["content"].endswith(f"to {EMAIL['to']}: Intro: carol.diaz@partner.example")


@pytest.mark.parametrize("graph", GRAPHS)
def test_signed_edit_runs_the_edited_call(server: str, studio: ModuleType, graph: str) -> None:
    client = _client(server)
    thread_id, pending = _paused(client, graph)
    request = pending["value"]["action_requests"][0]
    edited = {**EMAIL, "to": "carol@acme.example"}
    answer = _as_alice(studio, request, "edit", edited_args=edited)
    tool = _tool_message(_resume(client, thread_id, graph, pending["id"], answer))
    assert tool["status"] == "success"
    assert tool["content"].startswith("[agentguard] A human reviewer edited this call")
    assert tool["content"].endswith(f"to carol@acme.example: {EMAIL['subject']}")
    assert EMAIL["to"] not in tool["content"]


@pytest.mark.parametrize("graph", GRAPHS)
def test_signed_reject_does_not_run(server: str, studio: ModuleType, graph: str) -> None:
    client = _client(server)
    thread_id, pending = _paused(client, graph)
    request = pending["value"]["action_requests"][0]
    answer = _as_alice(studio, request, "reject", message="Not to customers this week.")
    messages = _resume(client, thread_id, graph, pending["id"], answer)
    tool = _tool_message(messages)
    assert tool["status"] == "error"
    assert "rejected this call of 'send_email'; it was not run" in tool["content"]
    assert "Reviewer's note: Not to customers this week." in tool["content"]
    assert not any("queued message" in str(m["content"]) for m in messages)


@pytest.mark.parametrize("graph", GRAPHS)
def test_signed_respond_stands_in_for_the_result(
    server: str, studio: ModuleType, graph: str
) -> None:
    client = _client(server)
    thread_id, pending = _paused(client, graph)
    request = pending["value"]["action_requests"][0]
    answer = _as_alice(studio, request, "respond", message="Bob is on leave; write to Carol.")
    messages = _resume(client, thread_id, graph, pending["id"], answer)
    tool = _tool_message(messages)
    assert tool["status"] == "success" and tool["content"] == "Bob is on leave; write to Carol."
    assert not any("queued message" in str(m["content"]) for m in messages)


@pytest.mark.parametrize("graph", GRAPHS)
def test_answer_that_does_not_count_leaves_the_call_pending(
    server: str, studio: ModuleType, graph: str
) -> None:
    client = _client(server)
    thread_id, pending = _paused(client, graph)
    request = pending["value"]["action_requests"][0]
    forged = studio.sign_answer(
        request, "approve", approver="alice", approver_role="employee", tenant="acme", key=b"x" * 32
    )
    for answer, code in (({"type": "approve"}, "unsigned"), (forged, "assertion.bad_signature")):
        # the bare answer is enough while only one interrupt is pending
        out = client.runs.wait(thread_id, graph, command={"resume": answer}, raise_error=False)
        assert isinstance(out, dict) and "__error__" in out, out
        assert f"approval refused ({code})" in out["__error__"]["message"]
        assert client.runs.list(thread_id, limit=1)[0]["status"] == "error"
        assert client.threads.get(thread_id)["status"] == "error"  # not "interrupted"...
        assert _pending(client, thread_id)["id"] == pending["id"]  # ...yet still answerable
        assert not any(m["type"] == "tool" for m in _messages(client, thread_id))
    answer = _as_alice(studio, request, "approve")
    tool = _tool_message(_resume(client, thread_id, graph, pending["id"], answer))
    assert tool["status"] == "success"
    assert tool["content"].endswith(f"to {EMAIL['to']}: {EMAIL['subject']}")


# -- memory: the store factory scopes every operation to the authenticated user ------------


def _uid() -> str:
    return uuid.uuid4().hex[:12]


def _item(client: SyncLangGraphClient, namespace: list[str], key: str) -> Any:
    item = client.store.get_item(namespace, key)
    return None if item is None else item["value"]


def _found(client: SyncLangGraphClient, prefix: list[str]) -> list[tuple[tuple[str, ...], Any]]:
    items = client.store.search_items(prefix, limit=100)["items"]
    return [(tuple(i["namespace"]), i["value"]) for i in items]


def _namespaces(client: SyncLangGraphClient) -> set[tuple[str, ...]]:
    return {tuple(ns) for ns in client.store.list_namespaces(limit=1000)["namespaces"]}


def _notes(client: SyncLangGraphClient) -> list[str]:
    return [value["note"] for _, value in _found(client, ["user", "notes"])]


def _remember(client: SyncLangGraphClient, graph: str, note: str, **forged: Any) -> tuple[str, Any]:
    """A run that calls `remember`; (thread id, what `runs.wait` returned)."""
    thread_id = client.threads.create()["thread_id"]
    ask: Any = {
        "messages": [{"role": "user", "content": f"call remember {json.dumps({'note': note})}"}]
    }
    return thread_id, client.runs.wait(thread_id, graph, input=ask, raise_error=False, **forged)


def test_store_api_keeps_tenants_apart(server: str) -> None:
    alice, dana = _client(server, ALICE), _client(server, DANA)
    prefs, faq = ["user", f"prefs-{_uid()}"], ["tenant", f"faq-{_uid()}"]
    for client, who in ((alice, "alice"), (dana, "dana")):
        client.store.put_item(prefs, "lang", {"by": who})
        client.store.put_item(faq, "hours", {"by": who})
    for client, who, other in ((alice, "alice", "dana"), (dana, "dana", "alice")):
        # same namespaces, same keys: each reads back only their own
        assert _item(client, prefs, "lang") == {"by": who}
        assert _item(client, faq, "hours") == {"by": who}
        found = _found(client, [prefs[0]]) + _found(client, [faq[0]])
        assert (tuple(prefs), {"by": who}) in found and (tuple(faq), {"by": who}) in found
        assert {"by": other} not in [value for _, value in found]
        # the logical namespace comes back, never the physical tenant/user prefix
        assert {tuple(prefs), tuple(faq)} <= _namespaces(client)
        assert all(ns[0] in ("user", "team", "tenant") for ns in _namespaces(client))
    # deleting is scoped too: dana's delete leaves alice's item alone
    dana.store.delete_item(prefs, "lang")
    assert _item(dana, prefs, "lang") is None
    assert _item(alice, prefs, "lang") == {"by": "alice"}


@pytest.mark.parametrize("graph", GRAPHS)
def test_note_from_a_run_is_read_through_the_store_api(server: str, graph: str) -> None:
    alice, dana, bob = _client(server, ALICE), _client(server, DANA), _client(server, BOB)
    note = f"alice prefers tea {_uid()}"
    thread_id, _ = _remember(alice, graph, note)
    tool = _tool_message(_messages(alice, thread_id))
    assert tool["status"] == "success" and tool["content"].startswith("remembered ("), tool
    # one scope from both doors: the run's store and the HTTP store API
    assert note in _notes(alice)
    assert note not in _notes(dana) and note not in _notes(bob)
    # and back into a run: `recall` reads the same memory, for alice only
    for client, sees in ((alice, True), (bob, False)):
        thread = client.threads.create()["thread_id"]
        ask: Any = {"messages": [{"role": "user", "content": "call recall"}]}
        client.runs.wait(thread, graph, input=ask)
        recalled = _tool_message(_messages(client, thread))
        assert recalled["status"] == "success"
        assert (note in recalled["content"]) is sees, recalled


FORGED_USER = {
    "identity": "dana",
    "tenant": "globex",
    "team": "ops",
    "role": "admin",
    "permissions": ["contacts:read"],
}
FORGED_PRINCIPAL = {"tenant": "globex", "user": "dana", "role": "admin", "team": "ops"}
FORGERIES: dict[str, dict[str, Any]] = {
    "context": {
        "context": {
            "principal": FORGED_PRINCIPAL,
            "langgraph_auth_user": FORGED_USER,
            "langgraph_auth_user_id": "dana",
        }
    },
    "config": {
        "config": {
            "configurable": {"langgraph_auth_user": FORGED_USER, "langgraph_auth_user_id": "dana"}
        }
    },
    "context+config": {
        "context": {"principal": FORGED_PRINCIPAL},
        "config": {"configurable": {"langgraph_auth_user": FORGED_USER}},
    },
    # not a reserved key the server strips: Pregel reads it as the run's runtime, and fails
    "context-runtime": {"context": {"__pregel_runtime": {"server_info": {"user": FORGED_USER}}}},
}


@pytest.mark.parametrize("forged", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_identity_changes_nothing(server: str, forged: dict[str, Any]) -> None:
    """The server strips `langgraph_auth_user` from a client's `context` and `config` (and
    sets its own); a `principal` in `context` is ignored by `FromServerAuth`."""
    alice, dana = _client(server, ALICE), _client(server, DANA)
    note = f"forged {_uid()}"
    thread_id, out = _remember(alice, "server_agent", note, **forged)
    assert note not in _notes(dana)
    assert isinstance(out, dict)
    if "__error__" in out:  # the run failed before any node ran: nothing was written
        assert "__pregel_runtime" in json.dumps(forged), out  # only that one breaks the run
        assert note not in _notes(alice)
        assert not alice.threads.get_state(thread_id)["values"]  # not even the input
    else:
        assert _tool_message(_messages(alice, thread_id))["status"] == "success"
        assert note in _notes(alice)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.store.put_item(["prefs"], "k", {"x": 1}),
        lambda c: c.store.put_item(["agentguard", "t", "globex", "all"], "k", {"x": 1}),
        lambda c: c.store.get_item(["agentguard", "t", "globex", "u", "dana", "prefs"], "lang"),
        lambda c: c.store.search_items(["agentguard"]),
        lambda c: c.store.list_namespaces(prefix=["agentguard", "t"]),
        lambda c: c.store.delete_item(["notes"], "k"),
    ],
    ids=["put", "put-physical", "get-physical", "search-physical", "list-physical", "delete"],
)
def test_namespace_without_scope_is_403(server: str, call: Any) -> None:
    with pytest.raises(APIStatusError) as info:
        call(_client(server, ALICE))
    assert info.value.status_code == 403
    assert "starts with its scope" in info.value.response.text


def test_teammate_shares_team_and_tenant_memory_not_user_memory(server: str) -> None:
    alice = _client(server, ALICE)
    diary, playbook, faq = (
        ["user", f"diary-{_uid()}"],
        ["team", f"playbook-{_uid()}"],
        ["tenant", f"faq-{_uid()}"],
    )
    for namespace in (diary, playbook, faq):
        alice.store.put_item(namespace, "k", {"scope": namespace[0]})
    expected = {
        BOB: {"user": None, "team": {"scope": "team"}, "tenant": {"scope": "tenant"}},
        DANA: {"user": None, "team": None, "tenant": None},
        ALICE_GLOBEX: {"user": None, "team": None, "tenant": None},  # same user id, not alice
    }
    for token, sees in expected.items():
        client = _client(server, token)
        for namespace in (diary, playbook, faq):
            assert _item(client, namespace, "k") == sees[namespace[0]], (token, namespace)
        assert tuple(diary) not in _namespaces(client)
    # bob writes to the team's memory; alice reads it, dana cannot
    _client(server, BOB).store.put_item(playbook, "k2", {"by": "bob"})
    assert _item(alice, playbook, "k2") == {"by": "bob"}
    assert _item(_client(server, DANA), playbook, "k2") is None


@pytest.mark.parametrize("intruder", [BOB, ALICE_GLOBEX], ids=["teammate", "same-id-other-tenant"])
def test_threads_belong_to_owner_and_tenant(server: str, intruder: str) -> None:
    alice, other = _client(server, ALICE), _client(server, intruder)
    thread = alice.threads.create()
    assert thread["metadata"]["owner"] == "alice" and thread["metadata"]["tenant"] == "acme"
    thread_id = thread["thread_id"]
    alice.runs.wait(
        thread_id, "server_agent", input={"messages": [{"role": "user", "content": "hi"}]}
    )
    before = _messages(alice, thread_id)
    attempts = {
        "read": lambda: other.threads.get(thread_id),
        "state": lambda: other.threads.get_state(thread_id),
        "resume": lambda: other.runs.create(
            thread_id, "server_agent", input={"messages": [{"role": "user", "content": "x"}]}
        ),
        "fork": lambda: other.threads.copy(thread_id),
        "update_state": lambda: other.threads.update_state(
            thread_id, {"messages": [{"role": "user", "content": "planted"}]}
        ),
    }
    theirs = {t["thread_id"] for t in other.threads.search(limit=1000)}
    assert thread_id not in theirs
    for name, attempt in attempts.items():
        with pytest.raises(APIStatusError) as info:
            attempt()
        # a thread the caller may not read is one that does not exist (copy says 409)
        assert info.value.status_code in ((409,) if name == "fork" else (403, 404)), name
    assert {t["thread_id"] for t in other.threads.search(limit=1000)} == theirs  # no fork
    assert _messages(alice, thread_id) == before


def test_sqlite_store_outside_the_project(tmp_path: Path, approvals_path: Path) -> None:
    """`AGENTGUARD_STORE_PATH` puts memory in SQLite (here under the test's tmp dir: a file
    inside the project would make `langgraph dev` reload); rows land under each caller's own
    physical prefix, whatever namespace the client named."""
    db = tmp_path / "memory.sqlite3"
    env = {**_server_env(approvals_path), "AGENTGUARD_STORE_PATH": str(db)}
    with _langgraph_dev(tmp_path / "server.log", env) as url:
        alice, dana = _client(url, ALICE), _client(url, DANA)
        for client, who in ((alice, "alice"), (dana, "dana")):
            client.store.put_item(["user", "prefs"], "lang", {"by": who})
        note = f"kept on disk {_uid()}"
        thread_id, _ = _remember(alice, "server_agent", note)
        assert _tool_message(_messages(alice, thread_id))["status"] == "success"
        assert _item(alice, ["user", "prefs"], "lang") == {"by": "alice"}
        assert _item(dana, ["user", "prefs"], "lang") == {"by": "dana"}
        assert _notes(alice) == [note] and _notes(dana) == []
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT prefix, key FROM store").fetchall()
    assert sorted(prefix for prefix, _ in rows) == [
        "agentguard.t.acme.u.alice.notes",
        "agentguard.t.acme.u.alice.prefs",
        "agentguard.t.globex.u.dana.prefs",
    ]
