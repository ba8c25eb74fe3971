"""The notebooks run top to bottom, and `make demo`'s command prints what the README promises."""

from __future__ import annotations

import io
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from agentguard.cli import main
from agentguard.demo.run import run_demo

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_executes(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]


def test_demo_shows_every_promised_step(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run_demo(out, tmp_path) == 0
    text = out.getvalue()
    assert "guard: allowed; the tool ran" in text
    assert "unexpected argument 'bcc'" in text
    assert "Error: export_contacts is not a valid tool" in text
    assert "[tenant] contact_id: contact 'c-900' is not in your tenant" in text
    assert "OK: 9 events checked" in text  # incl. one content event per untrusted result
    assert "TAMPERED: event #3 (seq 3)" in text
    assert (tmp_path / "audit.jsonl").exists()
    # Act 2: admin approval pauses the graph; only a signed answer from another admin runs it
    assert "graph paused" in text and "needs approval by an admin of this tenant" in text
    assert "refused: approval refused (not_authorized)" in text
    assert "refused: approval refused (unsigned)" in text
    assert "ran: exported 3 contacts as csv" in text
    assert "the export ran 1 time(s) in total" in text
    assert "export_contacts approve by ada (admin, admin_approval)" in text
    # Act 3: a planted address in an email is withheld from the model and cannot be used
    assert "read_latest_email came back untrusted: action=quarantine" in text
    assert "[provenance] arguments carry values from untrusted content: 'to'" in text
    assert "from read_latest_email#m1" in text
    # Act 4: DLP on an egress tool, no wiring: a key is refused by type and field, never shown;
    # an address in the body pauses with a pseudonym, and the real call goes out once approved
    assert "[dlp] the payload carries data that must not leave: AWS_ACCESS_KEY_ID in $.body" in text
    assert 'dlp.blocked, findings [{"entity": "AWS_ACCESS_KEY_ID", "path": "$.body"' in text
    assert "The model reads (the type and field, not the key):" in text
    assert 'body="Dana, meet Carol from our customer team: <EMAIL_ADDRESS_1>."' in text
    assert '"entity": "EMAIL_ADDRESS", "action": "approve"' in text
    sent = text.split("the email as sent:", 1)[1]
    assert 'body="Dana, meet Carol from our customer team: carol@customer.example."' in sent


def test_demo_audit_log_verifies_with_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    run_demo(out, tmp_path)
    key_hex = out.getvalue().split("AGENTGUARD_AUDIT_KEY=")[1].split()[0]
    monkeypatch.setenv("AGENTGUARD_AUDIT_KEY", key_hex)
    assert main(["audit", "verify", str(tmp_path / "audit.jsonl")]) == 0
    assert main(["audit", "verify", str(tmp_path / "audit-tampered.jsonl")]) == 1
    assert "TAMPERED" in capsys.readouterr().out


# mcp_server.py serves until stopped; tests/mcp runs it as a server, over HTTP and stdio.
SCRIPTS = sorted(p for p in (ROOT / "examples").glob("*.py") if p.name != "mcp_server.py")


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_examples_run(path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
