"""A guarded agent whose tools come from an MCP server: signed requests, pinned tools.

    .venv/bin/python examples/mcp_agent.py

Starts `examples/mcp_server.py` over streamable HTTP on 127.0.0.1 (it verifies every call),
loads its tools through `langchain-mcp-adapters` with `SigningAuth` on the connection, pins
them, and runs a `create_agent` agent with the guard's middleware. The model is scripted
(offline); plug in a real one with `init_chat_model("provider:model")`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_mcp_adapters.client import MultiServerMCPClient

from agentguard import Guard, GuardMiddleware, Principal
from agentguard.mcp import HmacKey, RequestSigner, SigningAuth, ToolPins, pin_tools
from agentguard.testing import ScriptedChatModel

HERE = Path(__file__).resolve().parent
SECRET = bytes.fromhex("5e" * 32)  # demo only: load yours from a secret manager

POLICY: dict[str, Any] = {
    "version": "mcp-example-1",
    "tools": {
        "lookup_customer": {"risk": "low", "scopes": ["customers:read"]},
        "send_invoice": {
            "risk": "medium",
            "scopes": ["invoices:send"],
            "egress": True,
            "args": {"amount_cents": {"minimum": 1, "maximum": 100_000}},
        },
        "echo": {"risk": "low", "scopes": ["debug:read"]},
    },
}


def script() -> list[AIMessage]:
    def call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
        return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])

    return [
        call("lookup_customer", {"customer_id": "c-1"}, "c1"),
        # Refused by the guard before anything goes over the wire: over the policy's limit.
        call("send_invoice", {"customer_id": "c-1", "amount_cents": 9_999_999}, "c2"),
        call("send_invoice", {"customer_id": "c-1", "amount_cents": 4_200}, "c3"),
        AIMessage(content="Invoice sent to Ada Lovelace."),
    ]


def start_server() -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "AGENTGUARD_MCP_HMAC_KEY": SECRET.hex(), "AGENTGUARD_MCP_HMAC_KID": "k1"}
    server = subprocess.Popen(
        [sys.executable, str(HERE / "mcp_server.py"), "http"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert server.stdout is not None
    port = int(server.stdout.readline().split()[1])
    return server, f"http://127.0.0.1:{port}/mcp"


async def run(url: str, pins_path: Path) -> list[ToolMessage]:
    signer = RequestSigner(HmacKey("k1", SECRET), audience="mcp://crm")
    client = MultiServerMCPClient(
        {"crm": {"transport": "streamable_http", "url": url, "auth": SigningAuth(signer)}}
    )
    tools = pin_tools(await client.get_tools(), ToolPins(pins_path), server="crm")
    agent = create_agent(
        ScriptedChatModel(turns=script()), tools, middleware=[GuardMiddleware(Guard(POLICY))]
    )
    alice = Principal(tenant="acme", user="alice", role="employee")
    result = await agent.ainvoke(
        {"messages": [HumanMessage("Invoice Ada for 42 euros")]}, context={"principal": alice}
    )
    return [m for m in result["messages"] if isinstance(m, ToolMessage)]


def main() -> int:
    server, url = start_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for message in asyncio.run(run(url, Path(tmp) / "pins.json")):
                print(f"{message.name} [{message.status}]: {str(message.content)[:100]}")
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
