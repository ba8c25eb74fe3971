"""`agentguard kill engage|release|status`: flip the kill switch from the shell.

The target is a kill switch file (shared by the agents of one host) or a `redis://` URL,
given with `--target` or in `$AGENTGUARD_KILL_SWITCH` (the variable the agents can read
too, so operator and agents agree on where the switch is). Engaging prints where it wrote: a
mistyped path would otherwise stop nothing, silently.

Exit codes: 0 done, 1 release found nothing engaged there, 2 usage error or the kill switch
could not be reached.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from agentguard.errors import GuardError
from agentguard.killswitch import (
    DEFAULT_REDIS_PREFIX,
    Engagement,
    FileKillSwitch,
    KillSwitch,
    Scope,
    is_redis_url,
    open_kill_switch,
)

__all__ = ["TARGET_ENV", "add_kill_commands", "cmd_engage", "cmd_release", "cmd_status"]

TARGET_ENV = "AGENTGUARD_KILL_SWITCH"


_Action = Callable[[KillSwitch, str, argparse.Namespace], int]


class _UsageError(Exception):
    """The command cannot run at all (exit 2)."""


def _where(target: str) -> str:
    """The target for messages; a URL without its credentials, which may carry a password."""
    if not is_redis_url(target):
        return str(Path(target).resolve())
    parts = urlsplit(target)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a valid port: say less rather than fail while reporting
        port = ""
    return f"{parts.scheme}://{parts.hostname or 'localhost'}{port}{parts.path}"


def _target(args: argparse.Namespace) -> str:
    target: str | None = args.target or os.environ.get(TARGET_ENV)
    if not target or not target.strip():
        raise _UsageError(f"no kill switch target: pass --target or set ${TARGET_ENV}")
    return target


def _scope(args: argparse.Namespace) -> tuple[Scope, str | None]:
    if args.scope_global:
        return "global", None
    for scope in ("tenant", "tool", "agent"):
        value: str | None = getattr(args, f"scope_{scope}")
        if value is not None:
            return scope, value
    raise _UsageError("give one of --global, --tenant, --tool, --agent")  # pragma: no cover


def _operator() -> str | None:
    """Who to record when `--by` is not given: the OS login, if there is one."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name (e.g. a container without a passwd entry)
        return None


def _backend_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "could not reach the kill switch", redis-py's when installed."""
    errors: tuple[type[BaseException], ...] = (OSError, GuardError, ImportError)
    try:
        import redis
    except ImportError:  # pragma: no cover - depends on the installation
        return errors
    return (*errors, redis.RedisError)


def _error(command: str, message: str) -> int:
    print(f"agentguard kill {command}: error: {message}", file=sys.stderr)
    return 2


def _cell(value: str) -> str:
    """Escape what a terminal would interpret (stored records are validated, but be sure)."""
    return value if value.isprintable() else value.encode("unicode_escape").decode("ascii")


def _since(epoch: float) -> str:
    try:
        at = datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):  # a hand-edited file may hold anything
        return str(epoch)
    return at.replace("+00:00", "Z")


def _line(e: Engagement) -> str:
    by = f" by {_cell(e.engaged_by)}" if e.engaged_by else ""
    return f"{_cell(e.describe())}: {_cell(e.reason)} (since {_since(e.engaged_at)}{by})"


def _run(command: str, args: argparse.Namespace, action: _Action) -> int:
    try:
        target = _target(args)
    except _UsageError as exc:
        return _error(command, str(exc))
    try:
        return action(open_kill_switch(target, redis_prefix=args.prefix), target, args)
    except (_UsageError, ValueError) as exc:  # ValueError: an invalid scope value or reason
        return _error(command, str(exc))
    except _backend_errors() as exc:
        return _error(command, f"cannot use the kill switch at {_where(target)}: {exc}")


def _engage(switch: KillSwitch, target: str, args: argparse.Namespace) -> int:
    scope, value = _scope(args)
    by: str | None = args.by if args.by is not None else _operator()
    engagement = switch.engage(scope, value, reason=args.reason, by=by)
    print(f"engaged {_cell(engagement.describe())} at {_where(target)}")
    return 0


def _release(switch: KillSwitch, target: str, args: argparse.Namespace) -> int:
    scope, value = _scope(args)
    name = scope if value is None else f"{scope} {value!r}"
    if switch.release(scope, value):
        print(f"released {_cell(name)} at {_where(target)}")
        return 0
    print(f"nothing engaged for {_cell(name)} at {_where(target)}")
    return 1


def _status(switch: KillSwitch, target: str, args: argparse.Namespace) -> int:
    engagements = switch.status()
    if args.json:
        for e in engagements:
            print(json.dumps(e.to_dict(), sort_keys=True, ensure_ascii=False))
        return 0
    for e in engagements:
        print(_line(e))
    if not engagements:
        missing = isinstance(switch, FileKillSwitch) and not switch.path.exists()
        note = " (the file does not exist yet)" if missing else ""
        print(f"nothing engaged at {_where(target)}{note}")
    return 0


def cmd_engage(args: argparse.Namespace) -> int:
    """Engage one scope; prints what and where."""
    return _run("engage", args, _engage)


def cmd_release(args: argparse.Namespace) -> int:
    """Release one scope; exit 1 when it was not engaged."""
    return _run("release", args, _release)


def cmd_status(args: argparse.Namespace) -> int:
    """List engagements, as lines or (`--json`) one JSON object per line."""
    return _run("status", args, _status)


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        metavar="T",
        help=f"kill switch file or redis:// URL (default ${TARGET_ENV})",
    )
    parser.add_argument(
        "--prefix",
        default=DEFAULT_REDIS_PREFIX,
        metavar="P",
        help=f"Redis key prefix the agents use (default {DEFAULT_REDIS_PREFIX})",
    )


def _add_scope(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--global", dest="scope_global", action="store_true", help="every tool call")
    group.add_argument("--tenant", dest="scope_tenant", metavar="X", help="one tenant's calls")
    group.add_argument("--tool", dest="scope_tool", metavar="X", help="every call of one tool")
    group.add_argument(
        "--agent", dest="scope_agent", metavar="X", help="one agent's calls (Principal.agent_id)"
    )


def add_kill_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `kill engage`, `kill release` and `kill status` on a parent parser."""
    kill = subparsers.add_parser(
        "kill",
        help="stop agents' tool calls now: engage, release or show the kill switch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = kill.add_subparsers(dest="kill_command", metavar="COMMAND", required=True)

    engage = commands.add_parser(
        "engage",
        help="stop every call in one scope",
        description="Stop every tool call in one scope. Exit 0 engaged, 2 could not engage.",
    )
    _add_target(engage)
    _add_scope(engage)
    engage.add_argument("--reason", required=True, metavar="R", help="why (shown to callers)")
    engage.add_argument("--by", metavar="WHO", help="who engaged it (default: your login)")
    engage.set_defaults(func=cmd_engage)

    release = commands.add_parser(
        "release",
        help="lift one engagement",
        description="Lift one engagement. Exit 0 released, 1 nothing was engaged, 2 error.",
    )
    _add_target(release)
    _add_scope(release)
    release.set_defaults(func=cmd_release)

    status = commands.add_parser(
        "status",
        help="list engagements",
        description="List engagements, most general first. Exit 0 listed, 2 could not list.",
    )
    _add_target(status)
    status.add_argument("--json", action="store_true", help="one JSON object per line")
    status.set_defaults(func=cmd_status)
