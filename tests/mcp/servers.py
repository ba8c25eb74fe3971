"""The example MCP server (`examples/mcp_server.py`, official SDK) run as a real process.

HTTP servers bind 127.0.0.1 on a free port and print it; stdio servers are started by the
client itself (`stdio_params`). Every process is stopped when its context ends.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "examples" / "mcp_server.py"
AUDIENCE = "mcp://crm"
HMAC_SECRET = bytes.fromhex("5e" * 32)
HMAC_KID = "k1"
START_TIMEOUT = 30.0


def server_env(
    *,
    jwks: str | None = None,
    redis_url: str | None = None,
    max_skew: float | None = None,
    variant: str | None = None,
) -> dict[str, str]:
    env = {
        **os.environ,
        "AGENTGUARD_MCP_AUDIENCE": AUDIENCE,
        "AGENTGUARD_MCP_HMAC_KEY": HMAC_SECRET.hex(),
        "AGENTGUARD_MCP_HMAC_KID": HMAC_KID,
        "PYTHONUNBUFFERED": "1",
    }
    if jwks is not None:
        env["AGENTGUARD_MCP_JWKS"] = jwks
    if redis_url is not None:
        env["AGENTGUARD_MCP_REDIS_URL"] = redis_url
    if max_skew is not None:
        env["AGENTGUARD_MCP_MAX_SKEW"] = str(max_skew)
    if variant is not None:
        env["AGENTGUARD_MCP_VARIANT"] = variant
    return env


@dataclass
class HttpServer:
    process: subprocess.Popen[str]
    port: int
    log: list[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@contextlib.contextmanager
def http_server(*flags: str, env: Mapping[str, str] | None = None) -> Iterator[HttpServer]:
    """Start `examples/mcp_server.py http` and yield it once it listens."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "http", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env if env is not None else server_env()),
        text=True,
        cwd=ROOT,
    )
    log: list[str] = []
    ready = threading.Event()
    port: list[int] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("PORT ") and not port:
                port.append(int(line.split()[1]))
                ready.set()
            else:
                log.append(line)
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(START_TIMEOUT) or not port:
            raise RuntimeError("MCP server did not start:\n" + "".join(log[-40:]))
        yield HttpServer(process, port[0], log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5)
        if process.stdout is not None:
            process.stdout.close()


def stdio_params(env: Mapping[str, str] | None = None) -> object:
    """`StdioServerParameters` that start the example server over stdio."""
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=sys.executable,
        args=[str(SERVER), "stdio"],
        env=dict(env if env is not None else server_env()),
        cwd=str(ROOT),
    )
