"""`agentguard audit verify|show`: check or inspect a stored audit log from the shell.

Exit codes are meant for scripts and CI: 0 intact, 1 tampered, 2 could not check (missing file,
missing or unusable key, unreadable log).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sqlite3
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agentguard.audit.chain import verify_events
from agentguard.audit.keys import parse_key
from agentguard.audit.sinks import read_events

__all__ = ["DEFAULT_KEY_ENV", "add_audit_commands", "cmd_show", "cmd_verify", "decode_key"]

DEFAULT_KEY_ENV = "AGENTGUARD_AUDIT_KEY"


class _UsageError(Exception):
    """A condition that prevents checking at all (exit 2), as opposed to a failed check."""


def decode_key(text: str, source: str) -> bytes:
    """Key bytes from `hex:<hex>`, `base64:<b64>` or plain text (UTF-8), as stored in env/file."""
    try:
        return parse_key(text, source)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def _load_key(args: argparse.Namespace) -> bytes:
    key_file: Path | None = args.key_file
    if key_file is not None:
        try:
            text = key_file.read_bytes().decode("utf-8")
        except OSError as exc:
            raise _UsageError(f"cannot read key file {key_file}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise _UsageError(
                f"key file {key_file} is not UTF-8 text; store the key as hex:<hex> or base64:<b64>"
            ) from None
        return decode_key(text, f"key file {key_file}")
    env_name: str = args.key_env
    value = os.environ.get(env_name)
    if value is None or not value.strip():
        raise _UsageError(f"no audit key: set ${env_name} or pass --key-file")
    return decode_key(value, f"${env_name}")


def _parse_head(text: str) -> tuple[int, str]:
    seq_text, sep, hash_text = text.partition(":")
    try:
        seq = int(seq_text)
    except ValueError:
        seq = -1
    if not sep or seq < 0 or not hash_text:
        raise argparse.ArgumentTypeError(
            f"expected SEQ:HASH, e.g. 41:hmac-sha256:ab12..., got {text!r}"
        )
    return seq, hash_text


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _error(command: str, message: str) -> int:
    print(f"agentguard audit {command}: error: {message}", file=sys.stderr)
    return 2


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise _UsageError(f"audit log not found: {path}")


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify a log; print one OK/TAMPERED line to stdout."""
    path: Path = args.path
    try:
        _check_exists(path)
        key = _load_key(args)
        report = verify_events(read_events(path), key, expect_head=args.expect_head)
    except _UsageError as exc:
        return _error("verify", str(exc))
    except (OSError, sqlite3.Error) as exc:
        return _error("verify", f"cannot read {path}: {exc}")
    if report.ok:
        if report.head is None:
            print("OK: 0 events, chain intact, empty log")
        else:
            seq, head_hash = report.head
            print(f"OK: {report.count} events, chain intact, head seq={seq} hash={head_hash}")
        return 0
    seq_text = "?" if report.first_bad_seq is None else str(report.first_bad_seq)
    print(f"TAMPERED: event #{report.first_bad_index} (seq {seq_text}): {report.reason}")
    return 1


def _tail(records: Iterable[dict[str, Any]], last: int | None) -> Iterable[dict[str, Any]]:
    return records if last is None else collections.deque(records, maxlen=last)


def cmd_show(args: argparse.Namespace) -> int:
    """Print stored records as JSON lines, unverified."""
    path: Path = args.path
    try:
        _check_exists(path)
        for record in _tail(read_events(path), args.last):
            print(json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    except _UsageError as exc:
        return _error("show", str(exc))
    except (OSError, sqlite3.Error) as exc:
        return _error("show", f"cannot read {path}: {exc}")
    return 0


def add_audit_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `audit verify` and `audit show` on a parent parser's subcommands."""
    audit = subparsers.add_parser(
        "audit", help="verify or inspect a tamper-evident audit log", description=__doc__
    )
    commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)

    verify = commands.add_parser(
        "verify",
        help="check the hash chain of an audit log",
        description="Exit 0 if the chain is intact, 1 if tampered, 2 if it could not be checked.",
    )
    verify.add_argument("path", type=Path, metavar="PATH", help=".jsonl/.log or .sqlite/.db log")
    verify.add_argument(
        "--key-env",
        default=DEFAULT_KEY_ENV,
        metavar="NAME",
        help=f"environment variable holding the key (default {DEFAULT_KEY_ENV}); "
        "plain text, hex:<hex> or base64:<b64>",
    )
    verify.add_argument(
        "--key-file", type=Path, metavar="FILE", help="read the key from FILE instead"
    )
    verify.add_argument(
        "--expect-head",
        type=_parse_head,
        metavar="SEQ:HASH",
        help="a head recorded earlier (AuditLog.head()); detects a truncated tail",
    )
    verify.set_defaults(func=cmd_verify)

    show = commands.add_parser("show", help="print audit events as JSON lines (unverified)")
    show.add_argument("path", type=Path, metavar="PATH", help=".jsonl/.log or .sqlite/.db log")
    show.add_argument("--last", type=_non_negative, metavar="N", help="only the last N events")
    show.set_defaults(func=cmd_show)
