"""One autocommit PostgreSQL connection that heals after a failure, shared by the stores.

A broken connection is replaced on the next use; the call that hit the failure has raised
already, so the caller failed closed rather than retrying a write it cannot see the end of.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["HealingConnection"]


class HealingConnection:
    """`get()` the live connection (reconnecting once after the last one broke)."""

    def __init__(self, conninfo: str, *, owner: str, readonly: bool = False) -> None:
        try:
            import psycopg
        except ImportError:
            raise ImportError(f"{owner} needs psycopg 3: install agentguard[postgres]") from None
        self.psycopg: Any = psycopg
        self.conninfo = conninfo
        self._readonly = readonly
        self._conn: Connection[tuple[Any, ...]] = self._connect()

    def _connect(self) -> Connection[tuple[Any, ...]]:
        conn: Connection[tuple[Any, ...]] = self.psycopg.connect(self.conninfo, autocommit=True)
        if self._readonly:
            conn.read_only = True
        return conn

    def get(self) -> Connection[tuple[Any, ...]]:
        if self._conn.broken or self._conn.closed:
            self._conn.close()
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        self._conn.close()
