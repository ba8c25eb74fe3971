"""`agentguard policy lint`: the mistakes that load fine but would surprise you in production."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentguard.errors import PolicyError
from agentguard.policy.loader import parse_policy_text, policy_from_mapping
from agentguard.policy.model import Confirmation, Policy, Risk, ToolPolicy
from agentguard.policy.scopes import missing_scopes

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.where}: {self.message}"


def lint_policy(
    source: str | Path | Mapping[str, Any] | Policy,
    *,
    tool_schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Finding]:
    """All findings for a policy; `tool_schemas` (tool name → JSON Schema) adds cross-checks."""
    try:
        policy = _load(source)
    except PolicyError as exc:
        where = str(exc).split("\n", 1)[0].rstrip(":")
        if not exc.problems:
            return [Finding("error", where, "cannot load policy")]
        return [_problem_finding(p) for p in exc.problems]
    findings: list[Finding] = _lint_dlp(policy)
    for name, tool in policy.tools.items():
        findings.extend(_lint_tool(policy, name, tool))
    if tool_schemas is not None:
        findings.extend(_lint_against_tools(policy, tool_schemas))
    return findings


def _load(source: str | Path | Mapping[str, Any] | Policy) -> Policy:
    if isinstance(source, Policy):
        return source
    if isinstance(source, Mapping):
        return policy_from_mapping(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot read policy ({exc})") from None
    return policy_from_mapping(parse_policy_text(text, str(path)), str(path))


def _problem_finding(problem: str) -> Finding:
    where, _, message = problem.partition(": ")
    return Finding("error", where, message or problem)


_RECIPIENT_ARGS = frozenset({"to", "cc", "bcc", "recipient", "recipients", "email", "reply_to"})


def _lint_dlp(policy: Policy) -> list[Finding]:
    from agentguard.dlp.entities import SECRET_TYPES

    out: list[Finding] = []
    dlp = policy.dlp
    if not dlp.enabled:
        out.append(
            Finding("warning", "dlp.enabled", "false: nothing that leaves is scanned for data")
        )
        return out
    leaking = sorted(t for t in SECRET_TYPES if dlp.entities.get(t) == "allow")
    if leaking:
        out.append(
            Finding("warning", "dlp.entities", f"secrets allowed to leave: {', '.join(leaking)}")
        )
    for stage in ("results", "answers"):
        shown = sorted(t for t in SECRET_TYPES if getattr(dlp, stage).entities.get(t) == "allow")
        if getattr(dlp, stage).scan and shown:
            out.append(
                Finding(
                    "warning",
                    f"dlp.{stage}.entities",
                    f"secrets passed through unredacted: {', '.join(shown)}",
                )
            )
    for name, tool in policy.tools.items():
        if not (tool.egress or dlp.scan == "all") or tool.dlp.scan is False:
            continue
        for arg, constraint in tool.args.items():
            if arg.lower() not in _RECIPIENT_ARGS or constraint.format == "email":
                continue
            ruled = any(p == arg or p.startswith((f"{arg}[", f"{arg}.")) for p in tool.dlp.fields)
            if not ruled and dlp.entities.get("EMAIL_ADDRESS") == "approve":
                out.append(
                    Finding(
                        "warning",
                        f"tools.{name}.args.{arg}",
                        "looks like a recipient but is neither `format: email` nor given a "
                        "`dlp.fields` rule: every address in it will need approval",
                    )
                )
    return out


def _lint_tool(policy: Policy, name: str, tool: ToolPolicy) -> list[Finding]:
    out: list[Finding] = []
    at = f"tools.{name}"
    if tool.risk in (Risk.HIGH, Risk.CRITICAL) and tool.confirmation is Confirmation.NONE:
        severity: Severity = "error" if tool.risk is Risk.CRITICAL else "warning"
        out.append(
            Finding(
                severity,
                at,
                f"risk '{tool.risk.value}' with confirmation 'none': no human sees this call "
                "unless a role's max_risk is lower",
            )
        )
    if "approve" not in tool.approval.decisions and "edit" not in tool.approval.decisions:
        out.append(
            Finding(
                "warning",
                f"{at}.approval.decisions",
                "neither 'approve' nor 'edit' is allowed: a call that needs approval never runs",
            )
        )
    if tool.approval.max_grant_seconds and tool.confirmation is Confirmation.FOUR_EYES:
        out.append(
            Finding(
                "warning",
                f"{at}.approval.max_grant_seconds",
                "four_eyes approvals never create grants; this setting has no effect",
            )
        )
    if tool.taint == "allow" and (tool.egress or tool.destructive):
        out.append(
            Finding(
                "warning",
                f"{at}.taint",
                "'allow' on an egress or destructive tool: values planted in untrusted content "
                "can steer it with no human seeing",
            )
        )
    if tool.output_trust.value == "trusted" and tool.egress:
        out.append(
            Finding(
                "warning",
                f"{at}.output_trust",
                "an egress tool's results marked trusted: what comes back from outside is "
                "shown to the model as instructions-capable text",
            )
        )
    if tool.roles == []:
        out.append(Finding("warning", f"{at}.roles", "empty list: no role can ever call this tool"))
    if tool.tenants == []:
        out.append(Finding("warning", f"{at}.tenants", "empty list: no tenant can call this tool"))
    if (
        tool.risk is not Risk.FORBIDDEN_FOR_AI
        and tool.confirmation is not Confirmation.NOT_ALLOWED_FOR_AI
    ):
        roles = tool.roles if tool.roles is not None else list(policy.roles)
        callers = [
            r
            for r in roles
            if r in policy.roles
            and not missing_scopes(policy.roles[r].scopes, tool.scopes)
            and policy.roles[r].approval_ceiling.rank >= tool.risk.rank
        ]
        if roles and not callers:
            out.append(
                Finding(
                    "warning",
                    at,
                    "no role can ever call this tool (scopes not granted or risk above every "
                    "role's approval_ceiling)",
                )
            )
    for arg, c in tool.args.items():
        if c.enum is not None:
            where = f"{at}.args.{arg}"
            live = [v for v in c.enum if _enum_value_fits(v, c.pattern, c.min_length, c.max_length)]
            if not live:
                out.append(Finding("error", where, "no enum value satisfies the other bounds"))
            elif len(live) < len(c.enum):
                dead = [v for v in c.enum if v not in live]
                out.append(Finding("warning", where, f"enum values that can never match: {dead}"))
    seen = set()
    for i, rule in enumerate(tool.resources):
        key = (rule.path, rule.type)
        if key in seen:
            out.append(Finding("warning", f"{at}.resources[{i}]", "duplicate resource rule"))
        seen.add(key)
        if rule.type == "tenant" and "grant" in rule.checks:
            out.append(
                Finding("warning", f"{at}.resources[{i}]", "'grant' on type 'tenant' is unusual")
            )
    return out


def _enum_value_fits(
    value: Any, pattern: str | None, min_length: int | None, max_length: int | None
) -> bool:
    if not isinstance(value, str):
        return pattern is None and min_length is None and max_length is None
    if pattern is not None and not re.search(pattern, value):
        return False
    if min_length is not None and len(value) < min_length:
        return False
    return not (max_length is not None and len(value) > max_length)


def _lint_against_tools(
    policy: Policy, tool_schemas: Mapping[str, Mapping[str, Any]]
) -> list[Finding]:
    out: list[Finding] = []
    for name in tool_schemas:
        if name not in policy.tools:
            out.append(
                Finding("warning", f"tools.{name}", "registered tool has no policy: always refused")
            )
    for name, tool in policy.tools.items():
        schema = tool_schemas.get(name)
        if schema is None:
            out.append(Finding("warning", f"tools.{name}", "no registered tool has this name"))
            continue
        props = set((schema.get("properties") or {}).keys())
        for arg in tool.args:
            if arg.split(".")[0] not in props:
                out.append(
                    Finding("error", f"tools.{name}.args.{arg}", "the tool has no such argument")
                )
        for i, rule in enumerate(tool.resources):
            top = rule.path.split(".")[0].removesuffix("[*]")
            if top not in props:
                out.append(
                    Finding(
                        "error",
                        f"tools.{name}.resources[{i}].path",
                        f"the tool has no argument '{top}'",
                    )
                )
    return out


def has_errors(findings: Sequence[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
