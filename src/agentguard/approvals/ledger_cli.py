"""`agentguard consent list`: review recorded human decisions from the shell.

Listing never creates or changes anything: a SQLite ledger is opened read-only (a missing file
is an error, not an empty ledger, so a typo cannot pass for "no approvals"), and a PostgreSQL
connection is put in read-only mode without creating the table.

Exit codes: 0 listed (possibly nothing), 2 could not list (missing file, unreachable database,
not a consent ledger).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from datetime import datetime
from typing import Any

from agentguard.approvals.ledger import (
    MAX_QUERY_LIMIT,
    ConsentEntry,
    is_postgres_url,
    open_ledger,
)
from agentguard.errors import GuardError

__all__ = ["add_consent_commands", "cmd_list"]

_COLUMNS = (
    "decided_at",
    "tenant",
    "user",
    "tool",
    "decision",
    "method",
    "approvers",
    "risk",
    "expires_at",
    "consent_id",
)


def _aware(text: str) -> datetime:
    """An ISO-8601 instant with an offset (or `Z`); a naive one would be an ambiguous bound."""
    value = text.strip()
    if value.endswith(("Z", "z")):  # Python 3.10's fromisoformat does not accept "Z"
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 date/time: {text!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"give a timezone, e.g. {text}Z or {text}+00:00 (got a naive time)"
        )
    return parsed


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_QUERY_LIMIT:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 1 to {MAX_QUERY_LIMIT}, got {text!r}"
        )
    return value


def _cell(value: str) -> str:
    """Escape control characters: ledger fields come from agents and users, not from us."""
    return value if value.isprintable() else value.encode("unicode_escape").decode("ascii")


def _row(entry: ConsentEntry) -> tuple[str, ...]:
    return tuple(
        _cell(v)
        for v in (
            entry.decided_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            entry.tenant,
            entry.user,
            entry.tool,
            entry.decision,
            entry.method,
            ",".join(entry.approvers) + (f" ({entry.approver_role})" if entry.approver_role else "")
            or "-",
            entry.risk,
            entry.expires_at.isoformat(timespec="seconds").replace("+00:00", "Z")
            if entry.expires_at
            else "-",
            entry.consent_id,
        )
    )


def _print_table(entries: list[ConsentEntry]) -> None:
    rows = [_row(e) for e in entries]
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(_COLUMNS)]
    for row in [_COLUMNS, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        print("(no matching consent entries)")


def _backend_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "could not read the ledger", psycopg's only when it is installed."""
    errors: tuple[type[BaseException], ...] = (OSError, sqlite3.Error, GuardError, ImportError)
    try:
        import psycopg
    except ImportError:
        return errors
    return (*errors, psycopg.Error)


def _error(message: str) -> int:
    print(f"agentguard consent list: error: {message}", file=sys.stderr)
    return 2


def cmd_list(args: argparse.Namespace) -> int:
    """Print matching entries, newest first, as a table or (`--json`) as JSON lines."""
    target: str = args.ledger
    where = "PostgreSQL ledger" if is_postgres_url(target) else target
    filters: dict[str, Any] = {
        "tenant": args.tenant,
        "user": args.user,
        "tool": args.tool,
        "since": args.since,
        "until": args.until,
        "limit": args.limit,
    }
    try:
        ledger = open_ledger(target, readonly=True)
    except FileNotFoundError:
        return _error(f"consent ledger not found: {target}")
    except _backend_errors() as exc:
        # The URL may carry a password: name the backend, not the target.
        return _error(f"cannot open {where}: {exc}")
    try:
        entries = ledger.query(**filters)
    except _backend_errors() as exc:
        return _error(f"cannot read {where} (is it a consent ledger?): {exc}")
    finally:
        ledger.close()
    if args.json:
        for entry in entries:
            print(entry.model_dump_json())
    else:
        _print_table(entries)
    return 0


def add_consent_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `consent list` on a parent parser's subcommands."""
    consent = subparsers.add_parser(
        "consent", help="review the consent ledger of human approvals", description=__doc__
    )
    commands = consent.add_subparsers(dest="consent_command", metavar="COMMAND", required=True)
    listing = commands.add_parser(
        "list",
        help="list recorded decisions, newest first",
        description="List consent entries, newest first. Exit 0 listed, 2 could not list.",
    )
    listing.add_argument("ledger", metavar="LEDGER", help="SQLite file, or a postgresql:// URL")
    listing.add_argument("--tenant", metavar="T", help="only this tenant")
    listing.add_argument("--user", metavar="U", help="only decisions made for this user")
    listing.add_argument("--tool", metavar="X", help="only this tool")
    listing.add_argument(
        "--since", type=_aware, metavar="ISO", help="decided at or after, e.g. 2025-01-31T00:00Z"
    )
    listing.add_argument("--until", type=_aware, metavar="ISO", help="decided before")
    listing.add_argument(
        "--limit",
        type=_limit,
        default=100,
        metavar="N",
        help=f"at most N entries (default 100, max {MAX_QUERY_LIMIT})",
    )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=cmd_list)
