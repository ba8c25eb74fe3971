"""`agentguard dlp scan`: what DLP finds in a payload, and what a policy would do with it.

For policy authors and reviewers: run a sample payload (a tool call's arguments as JSON, or
plain text with `--text`) through the same scanner the guard uses, offline. It prints types,
field paths and encodings, never the values, so its output can go into a ticket or a CI log.
With `--policy` and `--tool` it also prints the action the policy takes on each finding and
the call's outcome.

Exit codes: 0 nothing found that the policy acts on, 1 something found, 2 usage error (or the
payload could not be scanned, which the guard would refuse).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agentguard.errors import GuardError

__all__ = ["add_dlp_commands"]


def _read(source: str) -> str:
    if source == "-":
        return sys.stdin.read()
    return Path(source).read_text(encoding="utf-8")


def _cmd_scan(args: argparse.Namespace) -> int:
    from agentguard.dlp.scan import Scanner

    if bool(args.policy) != bool(args.tool):
        print("error: --policy and --tool go together", file=sys.stderr)
        return 2
    try:
        raw = _read(args.file)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    payload: Any = raw
    if not args.text:
        from agentguard._strict_json import loads_strict

        try:
            payload = loads_strict(raw)
        except ValueError as exc:
            print(f"error: not strict JSON ({exc}); use --text for plain text", file=sys.stderr)
            return 2
    check = tool_policy = policy = None
    if args.policy:
        from agentguard.checks.dlp import DlpCheck
        from agentguard.context import Principal
        from agentguard.guard import CheckInput
        from agentguard.identity import CallContext
        from agentguard.policy import load_policy

        try:
            policy = load_policy(args.policy)
        except GuardError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        tool_policy = policy.tools.get(args.tool)
        if tool_policy is None:
            print(f"error: the policy has no tool {args.tool!r}", file=sys.stderr)
            return 2
        if not isinstance(payload, dict):
            print(
                "error: with --policy the payload is a tool call's arguments (a JSON object)",
                file=sys.stderr,
            )
            return 2
        check = DlpCheck(policy.dlp)
        scanner = check.scanner
    else:
        scanner = Scanner()
    try:
        findings = scanner.scan(payload)
    except GuardError as exc:  # ScanIncomplete: the guard would refuse the call
        print(f"incomplete: {exc} (the guard refuses such a call: dlp.incomplete)")
        return 2
    actions = []
    for f in findings:
        action = check.action(tool_policy, f) if check and tool_policy else None
        actions.append(action)
        described = f.describe()
        line = f"{described['type']:<24} {described['path']}"
        if described.get("encoding") not in (None, "plain"):
            line += f"  ({described['encoding']})"
        if action is not None:
            line += f"  -> {action}"
        print(line)
    if check is not None and tool_policy is not None and policy is not None:
        if not check.applies(tool_policy):
            print(f"{args.tool}: not scanned by this policy (not egress; see dlp.scan)")
            return 0
        # the guard's own decision on these arguments, not a re-telling of it
        result = check.evaluate(
            CheckInput(
                Principal(tenant="cli", user="dlp-scan", role="cli"),
                args.tool,
                tool_policy,
                policy,
                payload,
                CallContext(thread_id="dlp-scan"),
            )
        )
        if result.denials:
            outcome = f"refused ({result.denials[0].code})"
        elif result.approval is not None:
            outcome = f"paused for approval ({result.approval.kind.value})"
        elif result.args is not None:
            outcome = "runs with the findings rewritten"
        else:
            outcome = "runs unchanged"
        print(f"{args.tool}: {outcome}")
        return 1 if any(a != "allow" for a in actions) else 0
    print(f"{len(findings)} finding(s)")
    return 1 if findings else 0


def add_dlp_commands(sub: Any) -> None:
    dlp = sub.add_parser("dlp", help="data loss prevention").add_subparsers(
        dest="dlp_command", required=True
    )
    scan = dlp.add_parser(
        "scan", help="what DLP finds in a payload (types and fields, never values)"
    )
    scan.add_argument("file", help="a JSON payload (a tool call's arguments), or - for stdin")
    scan.add_argument("--text", action="store_true", help="the input is plain text, not JSON")
    scan.add_argument("--policy", help="a policy file, to show the action on each finding")
    scan.add_argument("--tool", help="the tool whose rules apply (with --policy)")
    scan.set_defaults(func=_cmd_scan)
