"""A policy either loads exactly as written or fails loudly: a typo never becomes an allow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentguard import Confirmation, Policy, PolicyError, Risk, load_policy
from agentguard.cli import main, policy_json_schema
from agentguard.policy.lint import lint_policy

from .conftest import POLICY

ROOT = Path(__file__).resolve().parents[1]


def test_yaml_and_python_build_the_same_policy(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps(POLICY))
    assert load_policy(path) == load_policy(POLICY) == Policy.model_validate(POLICY)


def test_default_roles_are_there_out_of_the_box() -> None:
    policy = load_policy({"version": "1"})
    assert set(policy.roles) == {"admin", "manager", "employee", "viewer", "external_client"}
    assert policy.roles["viewer"].max_risk is Risk.LOW


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: '1'\ntools:\n  t: {risk: low, scope: [a:b]}\n", "tools.t.scope: unknown key"),
        ("version: '1'\ntools:\n  t: {risk: hgih}\n", "tools.t.risk"),
        ("version: '1'\ntools:\n  t: {risk: low, confirmation: maybe}\n", "confirmation"),
        ("version: '1'\nversoin: '2'\n", "versoin: unknown key"),
        ("tools: {}\n", "version: Field required"),
        (
            "version: '1'\ntools:\n  t: {risk: low, roles: [superuser]}\n",
            "unknown role 'superuser'",
        ),
        (
            "version: '1'\ntools:\n  t: {risk: low, args: {a: {min_length: 5, max_length: 2}}}\n",
            "nothing could match",
        ),
        (
            "version: '1'\ntools:\n  t: {risk: low, args: {a: {pattern: '(['}}}\n",
            "pattern does not compile",
        ),
        (
            "version: '1'\ntools:\n  t: {risk: forbidden_for_ai, confirmation: confirm}\n",
            "contradicts",
        ),
        ("version: '1'\nroles: {r: {max_risk: high, approval_ceiling: low}}\n", "below max_risk"),
        ("version: '1'\ntools:\n  'bad name!': {risk: low}\n", "bad name!"),
        ("version: '1'\ntools:\n  t: {risk: low, scopes: ['emails send']}\n", "scopes"),
        ("- just\n- a list\n", "mapping at the top level"),
        ("version: '1'\nversion: '2'\n", "duplicate key 'version'"),
        ("version: [unclosed\n", "not valid YAML"),
    ],
)
def test_malformed_policies_are_refused_with_a_path(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy(text)
    assert expected in str(exc.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(tmp_path / "nope.yaml")


def test_yaml_is_loaded_safely() -> None:
    with pytest.raises(PolicyError):
        load_policy("version: !!python/object/apply:os.system ['true']\n")


def test_orders_of_risk_and_confirmation() -> None:
    assert Risk.LOW.rank < Risk.MEDIUM.rank < Risk.HIGH.rank < Risk.CRITICAL.rank
    assert Confirmation.CONFIRM.rank < Confirmation.STEP_UP.rank < Confirmation.FOUR_EYES.rank


def test_lint_reports_risky_tools_without_confirmation_and_dead_rules() -> None:
    findings = lint_policy(
        {
            "version": "1",
            "tools": {
                "nuke": {"risk": "critical"},
                "send": {"risk": "high", "scopes": ["mail:send"]},
                "nobody": {"risk": "low", "roles": []},
                "closed": {"risk": "low", "tenants": []},
                "unreachable": {"risk": "low", "scopes": ["weird:thing"], "roles": ["viewer"]},
                "enum": {"risk": "low", "args": {"x": {"enum": ["ab", "abc"], "max_length": 2}}},
                "deadenum": {"risk": "low", "args": {"x": {"enum": ["abc"], "pattern": "^z"}}},
            },
        }
    )
    text = [str(f) for f in findings]
    assert any(f.startswith("error: tools.nuke") and "confirmation 'none'" in f for f in text)
    assert any(f.startswith("warning: tools.send") for f in text)
    assert any("tools.nobody.roles" in f for f in text)
    assert any("tools.closed.tenants" in f for f in text)
    assert any("tools.unreachable" in f and "no role can ever call" in f for f in text)
    assert any("tools.enum.args.x" in f and "never match" in f for f in text)
    assert any(f.startswith("error: tools.deadenum.args.x") for f in text)


def test_lint_names_dlp_settings_that_leak_or_will_ask_for_every_email() -> None:
    def lint(**dlp: Any) -> list[str]:
        egress = {"risk": "medium", "scopes": ["mail:send"], "egress": True}
        tools = {
            "mail": {**egress, "args": {"to": {"max_length": 254}}},
            "typed": {**egress, "args": {"to": {"format": "email"}}},
            "ruled": {**egress, "args": {"cc": {}}, "dlp": {"fields": {"cc[*]": {"*": "allow"}}}},
        }
        return [str(f) for f in lint_policy({"version": "1", "tools": tools, "dlp": dlp})]

    text = lint()
    assert [f for f in text if "recipient" in f] == [
        "warning: tools.mail.args.to: looks like a recipient but is neither `format: email` nor "
        "given a `dlp.fields` rule: every address in it will need approval"
    ]
    assert any(
        "secrets allowed to leave: GITHUB_TOKEN" in f
        for f in lint(entities={"GITHUB_TOKEN": "allow"})
    )
    assert any(
        "dlp.results.entities" in f
        for f in lint(results={"scan": True, "entities": {"PRIVATE_KEY": "allow"}})
    )
    assert lint(enabled=False) == [
        "warning: dlp.enabled: false: nothing that leaves is scanned for data"
    ]


def test_lint_cross_checks_against_real_tools() -> None:
    findings = lint_policy(
        {
            "version": "1",
            "tools": {
                "send_email": {"risk": "low", "args": {"too": {"max_length": 3}}},
                "ghost": {"risk": "low"},
            },
        },
        tool_schemas={"send_email": {"properties": {"to": {}}}, "unlisted": {"properties": {}}},
    )
    text = [str(f) for f in findings]
    assert "error: tools.send_email.args.too: the tool has no such argument" in text
    assert any("tools.ghost" in f and "no registered tool" in f for f in text)
    assert any("tools.unlisted" in f and "always refused" in f for f in text)


def test_cli_lint_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("version: '1'\ntools:\n  t: {risk: low}\n")
    assert main(["policy", "lint", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: '1'\ntools:\n  t: {risk: low, scope: [x:y]}\n")
    assert main(["policy", "lint", str(bad)]) == 1
    assert "tools.t.scope: unknown key" in capsys.readouterr().out
    warn = tmp_path / "warn.yaml"
    warn.write_text("version: '1'\ntools:\n  t: {risk: high}\n")
    assert main(["policy", "lint", str(warn)]) == 0
    assert main(["policy", "lint", "--strict", str(warn)]) == 1
    assert main(["policy", "lint", str(tmp_path / "missing.yaml")]) == 2


def test_cli_lint_with_tools_module() -> None:
    demo = ROOT / "src" / "agentguard" / "demo" / "policy.yaml"
    assert main(["policy", "lint", "--tools", "agentguard.demo.crm:all_tools", str(demo)]) == 0


def test_shipped_demo_policy_lints_clean() -> None:
    demo = ROOT / "src" / "agentguard" / "demo" / "policy.yaml"
    assert [f for f in lint_policy(demo) if f.severity == "error"] == []


def test_exported_json_schema_is_committed_and_current() -> None:
    committed = json.loads((ROOT / "schema" / "policy.schema.json").read_text())
    assert committed == policy_json_schema(), (
        "run: agentguard policy schema -o schema/policy.schema.json"
    )


def test_json_schema_rejects_what_the_loader_rejects() -> None:
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(policy_json_schema())
    assert validator.is_valid(POLICY)
    assert not validator.is_valid({"version": "1", "tools": {"t": {"risk": "low", "scope": []}}})
