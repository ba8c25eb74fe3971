"""`agentguard dlp scan`: a reviewer sees what DLP finds and does, never the values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentguard.cli import main

KEY = "AKIAZ7QW3RT5YU2IOP4M"
POLICY = """
version: cli-1
tools:
  send_email:
    risk: medium
    scopes: [mail:send]
    egress: true
    args: {to: {format: email}}
  save_note: {risk: low, scopes: [notes:write]}
  post_record:
    risk: low
    scopes: [crm:write]
    egress: true
    dlp: {entities: {CREDIT_CARD: redact}}
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "policy.yaml").write_text(POLICY)
    return tmp_path


def payload(tmp_path: Path, name: str, value: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return str(path)


def test_findings_without_values(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = payload(files, "a.json", {"to": "bob@partner.example", "body": f"key {KEY}"})
    assert main(["dlp", "scan", p]) == 1
    out = capsys.readouterr().out
    assert "AWS_ACCESS_KEY_ID" in out and "$.body" in out and "EMAIL_ADDRESS" in out
    assert KEY not in out and "bob@" not in out


def test_with_a_policy_each_finding_gets_its_action_and_the_call_its_outcome(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = str(files / "policy.yaml")
    p = payload(files, "a.json", {"to": "bob@partner.example", "body": f"key {KEY}"})
    assert main(["dlp", "scan", p, "--policy", policy, "--tool", "send_email"]) == 1
    out = capsys.readouterr().out
    assert "-> allow" in out and "-> block" in out and "send_email: refused (dlp.blocked)" in out
    clean = payload(files, "b.json", {"to": "bob@partner.example", "body": "see you"})
    assert main(["dlp", "scan", clean, "--policy", policy, "--tool", "send_email"]) == 0
    assert "send_email: runs unchanged" in capsys.readouterr().out
    assert main(["dlp", "scan", p, "--policy", policy, "--tool", "save_note"]) == 0
    assert "not scanned" in capsys.readouterr().out


def test_plain_text_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("ping carol%40customer.example"))
    assert main(["dlp", "scan", "-", "--text"]) == 1
    out = capsys.readouterr().out
    assert "EMAIL_ADDRESS" in out and "url" in out and "carol" not in out


@pytest.mark.parametrize(
    "argv, problem",
    [
        (["--policy", "P"], "go together"),
        (["--tool", "send_email"], "go together"),
        (["--policy", "P", "--tool", "nope"], "no tool 'nope'"),
    ],
)
def test_usage_errors(
    files: Path, capsys: pytest.CaptureFixture[str], argv: list[str], problem: str
) -> None:
    p = payload(files, "a.json", {"x": 1})
    argv = [str(files / "policy.yaml") if a == "P" else a for a in argv]
    assert main(["dlp", "scan", p, *argv]) == 2
    assert problem in capsys.readouterr().err


def test_smuggled_json_and_oversized_payloads_are_refused(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dup = files / "dup.json"
    dup.write_text('{"body": "x", "body": "y"}')
    assert main(["dlp", "scan", str(dup)]) == 2
    assert "duplicate key" in capsys.readouterr().err
    deep = payload(files, "deep.json", json.loads("[" * 40 + "]" * 40))
    assert main(["dlp", "scan", deep]) == 2
    assert "incomplete" in capsys.readouterr().out


def test_the_outcome_is_the_guards_own_decision(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A card the policy would redact, sent as a number, cannot be rewritten: the guard refuses
    the call, and so does the report (not "rewritten", which the actions alone suggest)."""
    policy = str(files / "policy.yaml")
    as_text = payload(files, "t.json", {"card": "4111 1111 1111 1111"})
    assert main(["dlp", "scan", as_text, "--policy", policy, "--tool", "post_record"]) == 1
    assert "post_record: runs with the findings rewritten" in capsys.readouterr().out
    as_number = payload(files, "n.json", {"card": 4111111111111111})
    assert main(["dlp", "scan", as_number, "--policy", policy, "--tool", "post_record"]) == 1
    out = capsys.readouterr().out
    assert "-> redact" in out and "post_record: refused (dlp.blocked)" in out
    text = files / "plain.txt"
    text.write_text("card 4111 1111 1111 1111")
    argv = ["dlp", "scan", str(text), "--text", "--policy", policy, "--tool", "post_record"]
    assert main(argv) == 2
    assert "a JSON object" in capsys.readouterr().err
