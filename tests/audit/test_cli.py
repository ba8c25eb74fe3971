"""`agentguard audit verify|show`, driven in-process through argparse."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import pytest

from agentguard.audit import AuditEvent, AuditLog, JsonlSink, SqliteSink
from agentguard.audit.cli import add_audit_commands

KEY = b"0123456789abcdef0123456789abcdef"
ENV = "AGENTGUARD_AUDIT_KEY"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="agentguard")
    add_audit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.func(args)
    return code


def write_log(path: Path, n: int = 5) -> tuple[int, str]:
    sink = JsonlSink(path) if path.suffix == ".jsonl" else SqliteSink(path)
    log = AuditLog(sink, KEY)
    for i in range(n):
        log.append(AuditEvent(event="decision", tool=f"tool_{i}", result="allow"))
    head = log.head()
    log.close()
    assert head is not None
    return head


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture(autouse=True)
def key_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, KEY.decode())


# --- verify ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".sqlite"])
def test_verify_intact_log(tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"audit{suffix}"
    seq, head_hash = write_log(path)
    assert run("audit", "verify", str(path)) == 0
    assert (
        capsys.readouterr().out == f"OK: 5 events, chain intact, head seq={seq} hash={head_hash}\n"
    )


def test_verify_empty_log(log_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_path.touch()
    assert run("audit", "verify", str(log_path)) == 0
    assert capsys.readouterr().out.startswith("OK: 0 events, chain intact")


@pytest.mark.parametrize(
    "key_text",
    [
        KEY.decode(),
        "hex:" + KEY.hex(),
        "base64:" + base64.b64encode(KEY).decode(),
        KEY.decode() + "\n",
    ],
    ids=["raw", "hex", "base64", "raw-newline"],
)
def test_verify_key_encodings(
    log_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key_text: str,
) -> None:
    write_log(log_path)
    monkeypatch.setenv(ENV, key_text)
    assert run("audit", "verify", str(log_path)) == 0
    assert capsys.readouterr().out.startswith("OK: 5 events")


def test_verify_key_from_file_and_custom_env(
    log_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_log(log_path)
    monkeypatch.delenv(ENV)
    key_file = tmp_path / "audit.key"
    key_file.write_text("hex:" + KEY.hex() + "\n", encoding="utf-8")
    assert run("audit", "verify", str(log_path), "--key-file", str(key_file)) == 0
    monkeypatch.setenv("MY_AUDIT_KEY", KEY.decode())
    assert run("audit", "verify", str(log_path), "--key-env", "MY_AUDIT_KEY") == 0


def test_verify_names_the_tampered_event(
    log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_log(log_path)
    lines = log_path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[2] = lines[2].replace('"result":"allow"', '"result":"deny"')
    log_path.write_text("".join(lines), encoding="utf-8")
    assert run("audit", "verify", str(log_path)) == 1
    assert capsys.readouterr().out == "TAMPERED: event #2 (seq 2): hash mismatch\n"


def test_verify_names_a_deleted_event(log_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(log_path)
    lines = log_path.read_text(encoding="utf-8").splitlines(keepends=True)
    del lines[1]
    log_path.write_text("".join(lines), encoding="utf-8")
    assert run("audit", "verify", str(log_path)) == 1
    assert (
        capsys.readouterr().out == "TAMPERED: event #1 (seq 2): sequence gap: expected 1, got 2\n"
    )


def test_verify_names_a_malformed_line(log_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_log(log_path)
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write("garbage\n")
    assert run("audit", "verify", str(log_path)) == 1
    out = capsys.readouterr().out
    assert out.startswith("TAMPERED: event #5 (seq ?): malformed event")


def test_verify_with_the_wrong_key_fails(
    log_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_log(log_path)
    monkeypatch.setenv(ENV, "a-different-key-of-enough-length")
    assert run("audit", "verify", str(log_path)) == 1
    assert capsys.readouterr().out == "TAMPERED: event #0 (seq 0): hash mismatch\n"


def test_verify_expect_head_detects_truncation(
    log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seq, head_hash = write_log(log_path)
    anchor = f"{seq}:{head_hash}"
    assert run("audit", "verify", str(log_path), "--expect-head", anchor) == 0
    lines = log_path.read_text(encoding="utf-8").splitlines(keepends=True)
    log_path.write_text("".join(lines[:3]), encoding="utf-8")
    capsys.readouterr()
    assert run("audit", "verify", str(log_path), "--expect-head", anchor) == 1
    assert capsys.readouterr().out == (
        "TAMPERED: event #3 (seq 3): log ends at seq 2 but expected head seq 4\n"
    )


@pytest.mark.parametrize("bad", ["4", "x:hmac-sha256:ab", "-1:abc", "3:"])
def test_verify_rejects_a_malformed_expect_head(
    log_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_log(log_path)
    with pytest.raises(SystemExit) as exc:
        run("audit", "verify", str(log_path), f"--expect-head={bad}")
    assert exc.value.code == 2
    assert "SEQ:HASH" in capsys.readouterr().err


def test_verify_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert run("audit", "verify", str(missing)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "not found" in captured.err and str(missing) in captured.err
    assert not missing.exists()


def test_verify_missing_key_exits_2(
    log_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_log(log_path)
    monkeypatch.delenv(ENV)
    assert run("audit", "verify", str(log_path)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert ENV in captured.err and "--key-file" in captured.err


@pytest.mark.parametrize(
    ("key_text", "message"),
    [("hex:zz", "cannot decode key"), ("base64:!!!", "cannot decode key"), ("hex:", "empty")],
)
def test_verify_undecodable_key_exits_2(
    log_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    key_text: str,
    message: str,
) -> None:
    write_log(log_path)
    monkeypatch.setenv(ENV, key_text)
    assert run("audit", "verify", str(log_path)) == 2
    assert message in capsys.readouterr().err


def test_verify_missing_key_file_exits_2(
    log_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_log(log_path)
    assert run("audit", "verify", str(log_path), "--key-file", str(tmp_path / "none.key")) == 2
    assert "cannot read key file" in capsys.readouterr().err


def test_verify_unreadable_sqlite_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.db"
    path.write_bytes(b"this is not a database" * 100)
    assert run("audit", "verify", str(path)) == 2
    assert "cannot read" in capsys.readouterr().err


# --- show --------------------------------------------------------------------------------------


def test_show_prints_every_event_as_json_lines(
    log_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_log(log_path, n=3)
    assert run("audit", "show", str(log_path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [0, 1, 2]
    assert lines == log_path.read_text(encoding="utf-8").splitlines()


def test_show_last_n(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.sqlite"
    write_log(path, n=5)
    assert run("audit", "show", str(path), "--last", "2") == 0
    assert [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()] == [3, 4]
    assert run("audit", "show", str(path), "--last", "0") == 0
    assert capsys.readouterr().out == ""


def test_show_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("audit", "show", str(tmp_path / "nope.jsonl")) == 2
    assert "not found" in capsys.readouterr().err


def test_show_rejects_a_negative_count(log_path: Path) -> None:
    write_log(log_path)
    with pytest.raises(SystemExit) as exc:
        run("audit", "show", str(log_path), "--last", "-1")
    assert exc.value.code == 2


def test_audit_requires_a_subcommand() -> None:
    with pytest.raises(SystemExit) as exc:
        run("audit")
    assert exc.value.code == 2
