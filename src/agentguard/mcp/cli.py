"""`agentguard mcp keygen` and `agentguard mcp pins list|approve`.

`keygen` writes new keys to files (mode 0600), never to the terminal: a secret printed to a
shell ends up in scrollback and CI logs. `pins approve` needs the exact fingerprint shown by
`pins list`, so what gets approved is what was reviewed.

Exit codes: 0 done, 1 nothing to approve / a tool is held, 2 usage error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from agentguard.errors import ConfigurationError, GuardError

__all__ = ["add_mcp_commands"]


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from agentguard.mcp.keys import AsymmetricKey, HmacKey

    out = Path(args.out)
    try:
        if args.alg == "HS256":
            key = HmacKey.generate(args.kid)
            _write_secret(out, key.secret.hex() + "\n")
            print(f"wrote a 256-bit HMAC secret (hex) for key id {key.kid!r} to {out}")
            print("give the same file to the server; both ends need it")
            return 0
        pair = AsymmetricKey.generate(args.alg)
        _write_secret(out, json.dumps(pair.private_jwk()) + "\n")
        public = out.with_name(out.name + ".pub.json")
        public.write_text(json.dumps(pair.public_jwk()) + "\n", encoding="utf-8")
    except FileExistsError:
        print(f"{out} exists; refusing to overwrite a key", file=sys.stderr)
        return 2
    except ConfigurationError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(f"wrote the private {args.alg} JWK to {out} (keep it with the client)")
    print(f"wrote the public JWK to {public} (give it to the server); key id {pair.kid}")
    return 0


def _cmd_pins_list(args: argparse.Namespace) -> int:
    from agentguard.mcp.pinning import ToolPins

    try:
        entries = ToolPins(args.file).entries()
    except GuardError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    held = 0
    for server, tool, record in entries:
        if args.server and server != args.server:
            continue
        pending = record.get("pending")
        state = "held" if pending else "pinned"
        held += bool(pending)
        print(f"{server}/{tool}: {state} {record.get('fingerprint') or '-'}")
        if pending:
            flags = ", ".join(pending.get("flags") or []) or "none"
            print(
                f"    pending {pending['fingerprint']} (seen {pending['seen_at']}; flags: {flags})"
            )
    return 1 if held else 0


def _cmd_pins_approve(args: argparse.Namespace) -> int:
    from agentguard.mcp.pinning import ToolPins

    try:
        ToolPins(args.file).approve(args.server, args.tool, args.fingerprint, by=args.by)
    except ConfigurationError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except GuardError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(f"{args.server}/{args.tool} pinned to {args.fingerprint} (approved by {args.by})")
    return 0


def add_mcp_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `agentguard mcp ...`."""
    mcp = sub.add_parser("mcp", help="MCP request signing keys and tool pins").add_subparsers(
        dest="mcp_command", required=True
    )
    keygen = mcp.add_parser("keygen", help="write a new signing key to a file")
    keygen.add_argument("--alg", choices=["HS256", "Ed25519", "ES256"], default="HS256")
    keygen.add_argument("--kid", default="k1", help="key id of an HMAC key")
    keygen.add_argument("--out", required=True, help="file to create (never overwritten)")
    keygen.set_defaults(func=_cmd_keygen)

    pins = mcp.add_parser("pins", help="pinned MCP tool fingerprints").add_subparsers(
        dest="pins_command", required=True
    )
    listing = pins.add_parser("list", help="show pins; exit 1 if a tool is held")
    listing.add_argument("--file", required=True)
    listing.add_argument("--server")
    listing.set_defaults(func=_cmd_pins_list)
    approve = pins.add_parser("approve", help="accept a held tool's new fingerprint")
    approve.add_argument("--file", required=True)
    approve.add_argument("--server", required=True)
    approve.add_argument("--tool", required=True)
    approve.add_argument("--fingerprint", required=True, help="as shown by `pins list`")
    approve.add_argument("--by", default=getpass.getuser(), help="who approves (default: you)")
    approve.set_defaults(func=_cmd_pins_approve)
