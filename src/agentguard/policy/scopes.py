"""Scope matching: `resource:action`, where `*` in a granted scope stands for a whole segment."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache


def scope_covers(granted: str, required: str) -> bool:
    """Whether one granted scope covers one required scope (`emails:*` covers `emails:send`)."""
    if granted == "*":
        return True
    g_parts = granted.split(":")
    r_parts = required.split(":")
    if len(g_parts) != len(r_parts):
        return False
    return all(g == "*" or g == r for g, r in zip(g_parts, r_parts, strict=True))


def granted_by(grants: Iterable[str], required: str) -> bool:
    return any(scope_covers(g, required) for g in grants)


def missing_scopes(grants: Iterable[str], required: Iterable[str]) -> list[str]:
    """The required scopes none of the grants cover, in the order they were required."""
    grant_list = list(grants)
    return [r for r in required if not granted_by(grant_list, r)]


def effective_scopes(
    role_scopes: Iterable[str], principal_scopes: Iterable[str] | None
) -> list[str]:
    """What a principal may use: its role's scopes, narrowed by its own (a token only narrows).

    A principal scope counts only as far as a role scope covers it, so `*` in a token never
    widens a narrow role.
    """
    role = list(role_scopes)
    if principal_scopes is None:
        return role
    out = []
    for s in principal_scopes:
        if granted_by(role, s):
            out.append(s)
        else:
            out.extend(r for r in role if scope_covers(s, r))
    return sorted(set(out))


@lru_cache(maxsize=4096)
def missing_for(
    role_scopes: tuple[str, ...],
    principal_scopes: frozenset[str] | None,
    delegated_scopes: frozenset[str] | None,
    required: tuple[str, ...],
) -> tuple[str, ...]:
    """`missing_scopes` of the effective scopes, memoized: the inputs repeat on every call."""
    scopes = effective_scopes(role_scopes, principal_scopes)
    if delegated_scopes is not None:
        scopes = effective_scopes(scopes, delegated_scopes)
    return tuple(missing_scopes(scopes, required))
