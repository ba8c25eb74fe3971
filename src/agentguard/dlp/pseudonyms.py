"""Pseudonyms: whose they are, where they stand in arguments, and how they are put back.

A pseudonym (`<EMAIL_ADDRESS_1>`) belongs to one principal in one thread (`vault_scope`); the
vault holds what it stands for. Text from outside cannot plant one (`defang`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from agentguard.dlp.entities import ALL_TYPES
from agentguard.dlp.errors import ScanIncomplete
from agentguard.dlp.vault import TOKEN_RE, owned_scope, tokens_in

if TYPE_CHECKING:
    from agentguard.context import Principal

__all__ = [
    "TooDeep",
    "UnknownPseudonym",
    "defang",
    "is_ours",
    "map_strings",
    "put_back",
    "tokens_in_leaves",
    "vault_owner",
    "vault_scope",
]


class UnknownPseudonym(ScanIncomplete):
    """A call carries a pseudonym this principal's thread never issued (or that expired)."""


def vault_owner(principal: Principal) -> str:
    """Whose pseudonyms they are, for erasure: the user in the tenant, whatever agent acted."""
    return json.dumps([principal.tenant, principal.user])


def vault_scope(principal: Principal, thread: str | None) -> str:
    """Pseudonyms belong to one principal (and agent) in one thread: another user, tenant,
    agent or thread cannot re-fill (and so cannot read) them."""
    return owned_scope(vault_owner(principal), json.dumps([principal.agent_id, thread or "-"]))


def is_ours(token: str) -> bool:
    """A token of an entity type DLP issues (not any `<FOO_1>` a template might use)."""
    return token[1:].rsplit("_", 1)[0] in ALL_TYPES


def tokens_in_leaves(args: Any) -> list[str]:
    """Token-shaped strings in the string leaves, in order (a walk, no copy)."""
    found: dict[str, None] = {}
    stack: list[tuple[Any, int]] = [(args, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > 256:  # the deepest `limits.max_depth` a policy may set
            raise TooDeep("arguments nested too deep to re-fill")
        if isinstance(value, str):
            if "<" in value:
                found.update(dict.fromkeys(tokens_in(value)))
        elif isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in reversed(list(value.values())))
        elif isinstance(value, list | tuple):
            stack.extend((v, depth + 1) for v in reversed(value))
    return list(found)


def defang(text: str) -> str:
    """Token-shaped strings of DLP's types in text that came from outside, made inert
    (`<EMAIL_ADDRESS_1>` becomes `[unissued EMAIL_ADDRESS_1]`): a document cannot plant a
    pseudonym for the guard to re-fill with a value this thread holds."""
    if "<" not in text:
        return text

    def inert(m: re.Match[str]) -> str:
        token = m.group()
        return f"[unissued {token[1:-1]}]" if is_ours(token) else token

    return TOKEN_RE.sub(inert, text)


def put_back(text: str, table: Mapping[str, str]) -> str:
    """One pass, so a value that itself looks like a token is never replaced again."""
    if "<" not in text:
        return text
    return TOKEN_RE.sub(lambda m: table.get(m.group(), m.group()), text)


class TooDeep(ScanIncomplete):
    """Arguments nested deeper than any policy allows: validation refuses them anyway."""


def map_strings(value: Any, fn: Callable[[str], str], depth: int = 0) -> Any:
    """A copy of `value` with `fn` applied to every string leaf (dict keys untouched)."""
    if depth > 256:  # the deepest `limits.max_depth` a policy may set
        raise TooDeep("arguments nested too deep to re-fill")
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, Mapping):
        return {k: map_strings(v, fn, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [map_strings(v, fn, depth + 1) for v in value]
    return value
