"""Canonical JSON (RFC 8785) and digests: one encoding for everything that gets hashed or signed."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes, so equal values hash equally whatever their key order or spacing."""
    return bytes(rfc8785.dumps(value))


def digest(value: Any) -> str:
    """A `sha256:<hex>` digest of the canonical JSON of `value`."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()
