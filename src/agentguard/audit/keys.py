"""Audit keys as operators store them: `hex:<hex>`, `base64:<b64>`, or plain UTF-8 text."""

from __future__ import annotations

import base64
import binascii


def parse_key(text: str, source: str) -> bytes:
    """Key bytes from its stored form; ValueError (naming `source`) when it cannot be read."""
    text = text.rstrip("\r\n")
    try:
        if text.startswith("hex:"):
            key = bytes.fromhex(text[4:].strip())
        elif text.startswith("base64:"):
            key = base64.b64decode(text[7:].strip(), validate=True)
        else:
            key = text.encode("utf-8")
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"cannot decode key from {source}: {exc}") from None
    if not key:
        raise ValueError(f"key from {source} is empty")
    return key
