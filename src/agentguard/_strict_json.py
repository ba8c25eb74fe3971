"""JSON that no other parser could read differently: no duplicate keys, no NaN or Infinity.

Parsers disagree on which duplicate key wins and on whether `NaN` is JSON, so a document that
relies on either can mean one thing to the check and another to what runs after it. Such
documents are refused, never guessed.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

__all__ = ["loads_strict", "no_duplicate_keys", "reject_constant"]


def reject_constant(name: str) -> NoReturn:
    """`parse_constant` hook: Python accepts NaN/Infinity; JSON does not."""
    raise ValueError(f"{name} is not a JSON number")


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`object_pairs_hook`: an object naming one key twice is refused."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            shown = json.dumps(key)
            raise ValueError(f"duplicate key {shown if len(shown) <= 60 else shown[:57] + '...'}")
        out[key] = value
    return out


def loads_strict(text: str | bytes) -> Any:
    """`json.loads` with both hooks; raises ValueError (or RecursionError) on refusal."""
    return json.loads(text, parse_constant=reject_constant, object_pairs_hook=no_duplicate_keys)
