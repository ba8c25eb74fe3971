"""`agentguard`: lint policies, export the policy JSON Schema, verify audit logs, list consent
ledger entries, scan sample payloads for DLP, run the demo."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentguard.policy.lint import has_errors, lint_policy
from agentguard.policy.model import Policy


def _load_tools(spec: str) -> dict[str, dict[str, Any]]:
    """`module:attribute` naming a list of LangChain tools → their argument JSON Schemas."""
    from agentguard.checks.schema import tool_json_schema

    module_name, _, attr = spec.partition(":")
    if not attr:
        raise SystemExit(f"--tools takes module:attribute, got {spec!r}")
    obj = getattr(importlib.import_module(module_name), attr)
    tools = obj() if callable(obj) and not isinstance(obj, list) else obj
    return {t.name: tool_json_schema(t) for t in tools}


def _cmd_lint(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.exists():
        print(f"error: {path}: no such file", file=sys.stderr)
        return 2
    schemas = _load_tools(args.tools) if args.tools else None
    findings = lint_policy(path, tool_schemas=schemas)
    for f in findings:
        print(f"{path}: {f}")
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    print(f"{path}: {errors} error(s), {warnings} warning(s)")
    if has_errors(findings) or (args.strict and findings):
        return 1
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(policy_json_schema(), indent=2, sort_keys=True) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def policy_json_schema() -> dict[str, Any]:
    """The policy file format as JSON Schema, for editor completion and CI checks."""
    schema = Policy.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "agentguard policy"
    return schema


def _cmd_demo(args: argparse.Namespace) -> int:
    from agentguard.demo.run import run_demo

    return run_demo(sys.stdout, Path(args.workdir) if args.workdir else None)


def build_parser() -> argparse.ArgumentParser:
    from agentguard.approvals.ledger_cli import add_consent_commands
    from agentguard.audit.cli import add_audit_commands
    from agentguard.dlp.cli import add_dlp_commands
    from agentguard.killswitch_cli import add_kill_commands
    from agentguard.mcp.cli import add_mcp_commands

    parser = argparse.ArgumentParser(prog="agentguard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    policy = sub.add_parser("policy", help="policy files").add_subparsers(
        dest="policy_command", required=True
    )
    lint = policy.add_parser("lint", help="check a policy file; non-zero exit on errors")
    lint.add_argument("file")
    lint.add_argument("--strict", action="store_true", help="warnings fail too")
    lint.add_argument("--tools", help="module:attribute of your tools, to cross-check arguments")
    lint.set_defaults(func=_cmd_lint)
    schema = policy.add_parser("schema", help="print the policy file's JSON Schema")
    schema.add_argument("-o", "--output")
    schema.set_defaults(func=_cmd_schema)

    add_audit_commands(sub)
    add_consent_commands(sub)
    add_kill_commands(sub)
    add_mcp_commands(sub)
    add_dlp_commands(sub)

    demo = sub.add_parser("demo", help="run the offline demo")
    demo.add_argument("--workdir", help="where the demo writes its audit log")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
