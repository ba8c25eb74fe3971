"""Canonical JSON (RFC 8785) and digests: one encoding for everything that gets hashed or signed.

Most values agentguard hashes (tool arguments, audit events) are strings, integers, booleans
and nesting. For those, orjson with sorted keys produces exactly the RFC 8785 bytes, about a
hundred times faster than the pure-Python `rfc8785` package; anything else (floats, integers
beyond 2**53, keys outside the Basic Multilingual Plane, whose UTF-16 order differs from
code-point order) goes through `rfc8785`. A property test holds the two paths byte-for-byte equal.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import rfc8785

_SAFE_INT = 2**53 - 1


def _fast_path_ok(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -_SAFE_INT <= item <= _SAFE_INT:
                continue
            return False
        if kind is dict:
            for key in item:
                if type(key) is not str or (key and max(key) >= "\ud800"):
                    return False
            stack.extend(item.values())
            continue
        if kind is list:
            stack.extend(item)
            continue
        return False  # floats, tuples, subclasses, anything else: the reference encoder decides
    return True


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes, so equal values hash equally whatever their key order or spacing."""
    if _fast_path_ok(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # lone surrogates, absurd nesting: let the reference encoder raise its error
    return bytes(rfc8785.dumps(value))


def digest(value: Any) -> str:
    """A `sha256:<hex>` digest of the canonical JSON of `value`."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()
