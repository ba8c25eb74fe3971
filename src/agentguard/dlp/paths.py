"""Field paths as the scanner reports them (`$.a[0]["b c"]<json>.d`): matching a policy's
field patterns against them, and rewriting the leaf a path names in a copy of the payload."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = ["CannotRewrite", "field_matches", "rewrite_at", "steps_of"]


class CannotRewrite(Exception):
    """The finding sits where it cannot be rewritten in place: the payload must not go."""


_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[(\"(?:[^\"\\]|\\.)*\")\]|<(json|key)>")


def steps_of(path: str) -> list[tuple[str, Any]] | None:
    """`$.a[0]["b c"]<json>.d` as steps: ("key", "a"), ("index", 0), ("key", "b c"), ..."""
    if not path.startswith("$"):
        return None
    steps: list[tuple[str, Any]] = []
    pos = 1
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            return None
        name, index, quoted, marker = m.groups()
        if name is not None:
            steps.append(("key", name))
        elif index is not None:
            steps.append(("index", int(index)))
        elif quoted is not None:
            steps.append(("key", json.loads(quoted)))
        else:
            steps.append(("json" if marker == "json" else "keyname", None))
        pos = m.end()
    return steps


def rewrite_at(node: Any, steps: list[tuple[str, Any]], rewrite: Any) -> Any:
    """A copy of `node` with the leaf at `steps` rewritten (containers copied on the way)."""
    if not steps:
        return rewrite(node)
    (kind, arg), rest = steps[0], steps[1:]
    if kind == "json" and isinstance(node, str):
        inner = rewrite_at(json.loads(node), rest, rewrite)
        return json.dumps(inner, ensure_ascii=False)
    if kind == "key" and isinstance(node, Mapping) and arg in node:
        out = dict(node)
        out[arg] = rewrite_at(node[arg], rest, rewrite)
        return out
    if kind == "index" and isinstance(node, list | tuple) and 0 <= arg < len(node):
        items = list(node)
        items[arg] = rewrite_at(node[arg], rest, rewrite)
        return items
    # a dict key ("<key>") or a path that no longer matches: refuse rather than send it
    raise CannotRewrite("a finding in a key or an unexpected place cannot be rewritten")


@lru_cache(maxsize=256)
def _field_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern.startswith("[*]", i):
            out.append(r"\[\d+\]")
            i += 3
        elif pattern[i] == "*":
            out.append(r"[^.\[<]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def field_matches(pattern: str, field: str) -> bool:
    return _field_regex(pattern).fullmatch(field) is not None
