"""The long-term memory store for `langgraph dev` (`"store"` in `langgraph.json`).

A LangGraph server has one store for every user, and by default any client with a token can
read and write any namespace of it through the HTTP store API, and any graph node can too.
`guarded_store` wraps the backend in `agentguard.memory.GuardedStore`, which decides the scope
per operation from the user the server's auth handler authenticated (`FromServerAuth`):

- on the HTTP store API (`client.store.put_item(["user", "prefs"], ...)`), from the request's
  authenticated user;
- inside a run (a tool's `ToolRuntime.store` / `InjectedStore`), from the run's authenticated
  user, which the server sets itself; a client's run `context` or `config` never counts.

Namespaces start with a scope, `("user", ...)`, `("team", ...)` or `("tenant", ...)`, and land
under that user's, team's or tenant's own physical prefix, so two tenants (or two users) using
the same namespace never meet. No authenticated user: the operation is refused.

Backend: an `InMemoryStore` (lost on restart), or SQLite when `AGENTGUARD_STORE_PATH` names a
file. Keep that file OUTSIDE the project folder: `langgraph dev` reloads on every write there.
Policy (its `memory` section) and audit log are the studio graphs' (`studio_graphs.py`), so
memory events join the same hash chain as the guard's decisions.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore

from agentguard.identity import FromServerAuth
from agentguard.memory import GuardedStore

log = logging.getLogger("agentguard.studio")

STORE_PATH_ENV = "AGENTGUARD_STORE_PATH"
_HERE = Path(__file__).resolve().parent
_GRAPHS = _HERE / "studio_graphs.py"


def _studio_graphs() -> ModuleType:
    """`studio_graphs.py`: the copy already imported in this process, else a fresh import.

    `langgraph dev` calls the store factory before it imports the graphs and imports files by
    path under names of its own; `studio_graphs.py` makes its copies share one audit log.
    """
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == _GRAPHS and hasattr(module, "AUDIT"):
            return module
    name = "agentguard_studio_graphs"
    spec = importlib.util.spec_from_file_location(name, _GRAPHS)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {_GRAPHS}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic resolves the module's annotations through it
    spec.loader.exec_module(module)
    return module


def _backend() -> BaseStore:
    path = os.environ.get(STORE_PATH_ENV, "").strip()
    if not path:
        return InMemoryStore()
    if Path(path).resolve().is_relative_to(_HERE.parent):
        log.warning(
            "agentguard studio: %s=%s is inside the project folder; `langgraph dev` reloads "
            "on every write there",
            STORE_PATH_ENV,
            path,
        )
    stack = contextlib.ExitStack()
    atexit.register(stack.close)
    store = stack.enter_context(SqliteStore.from_conn_string(path))
    store.setup()
    return store


@functools.cache
def guarded_store() -> GuardedStore:
    """The store factory `langgraph.json` names: the backend, scoped per operation to the
    server's authenticated user.

    One store per process: the server may call the factory once per thread, and two
    `InMemoryStore`s would each hold half of the memory.
    """
    studio = _studio_graphs()
    return GuardedStore(
        _backend(),
        identity=FromServerAuth(),
        settings=studio.POLICY,
        audit=studio.record_memory_event,
        # The server refuses blocking calls on its event loop; a SQLite audit log or store
        # blocks, so async operations run on a worker thread (identity travels with them).
        blocking=True,
    )


def main() -> None:
    """What the server does per request, in-process: each user gets their own memory."""
    from agentguard.errors import IdentityError
    from agentguard.identity import CallContext

    users = {
        "alice": {"identity": "alice", "tenant": "acme", "team": "sales", "role": "employee"},
        "bob": {"identity": "bob", "tenant": "acme", "team": "sales", "role": "employee"},
        "dana": {"identity": "dana", "tenant": "globex", "team": "ops", "role": "admin"},
    }
    store = guarded_store()

    def as_(name: str) -> BaseStore:  # the server does this from its authenticated user
        return store.scoped(CallContext(server_user=users[name], on_server=True))

    for name in users:
        as_(name).put(("user", "prefs"), "lang", {"by": name})
    as_("alice").put(("tenant", "faq"), "hours", {"text": "9-5"})
    for name in users:
        mine = as_(name).get(("user", "prefs"), "lang")
        faq = as_(name).get(("tenant", "faq"), "hours")
        print(
            f"{name}: ('user', 'prefs') holds {mine.value if mine else None}; "
            f"('tenant', 'faq') holds {faq.value if faq else None}"
        )
    try:
        store.get(("user", "prefs"), "lang")  # no authenticated user here
    except IdentityError as exc:
        print(f"nobody: refused ({exc})")


if __name__ == "__main__":
    main()
