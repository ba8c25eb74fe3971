"""The documented example: a guarded `create_agent` agent with signed, pinned MCP tools."""

from __future__ import annotations

import importlib.util

from .servers import ROOT, http_server


def load_example():
    spec = importlib.util.spec_from_file_location("mcp_agent", ROOT / "examples" / "mcp_agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_guarded_agent_runs_signed_mcp_tools_and_the_guard_still_decides(tmp_path):
    example = load_example()
    with http_server() as server:
        messages = await example.run(server.url, tmp_path / "pins.json")
    assert [(m.name, m.status) for m in messages] == [
        ("lookup_customer", "success"),
        ("send_invoice", "error"),
        ("send_invoice", "success"),
    ]
    assert "Ada Lovelace" in str(messages[0].content)
    assert "maximum is 100000" in str(messages[1].content)  # refused before the wire
    assert "4200 cents sent to c-1" in str(messages[2].content)
    assert (tmp_path / "pins.json").exists()
