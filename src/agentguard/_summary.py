"""Shapes and safe labels for audit records: what a value looks like, never what it says."""

from __future__ import annotations

from typing import Any


def describe_args(value: Any, depth: int = 0) -> Any:
    """Shape of a value without its content: what audit summaries may hold."""
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return f"string({len(value)})"
    if isinstance(value, list):
        return f"array({len(value)})"
    if isinstance(value, dict):
        if depth >= 1:
            return f"object({len(value)})"
        return {clip_key(k): describe_args(v, depth + 1) for k, v in list(value.items())[:32]}
    return type(value).__name__


def clip_key(key: Any) -> str:
    text = key if isinstance(key, str) else str(key)
    if len(text) <= 64 and text.isprintable():
        return text
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= 64 else text[:61] + "..."


def safe_name(name: Any) -> str:
    text = name if isinstance(name, str) else repr(name)
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= 64 else text[:61] + "..."
