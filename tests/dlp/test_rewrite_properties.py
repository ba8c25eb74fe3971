"""Properties of rewriting a payload: whatever its shape and key names, a redacted payload
keeps its structure, and nothing DLP found in it survives.

The leak it stops: a rewrite that misses a leaf (an odd key, a nested list, JSON inside a
string) sends the original value on while the audit says it was redacted.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentguard.checks.dlp import DlpCheck
from agentguard.dlp.paths import steps_of
from agentguard.dlp.scan import Scanner
from agentguard.policy import load_policy

POLICY = load_policy(
    {
        "version": "props",
        "tools": {"post": {"risk": "low", "scopes": ["x:y"], "egress": True}},
        "dlp": {"entities": {"EMAIL_ADDRESS": "redact", "CREDIT_CARD": "redact"}},
    }
)
CHECK = DlpCheck(POLICY.dlp)
TOOL = POLICY.tools["post"]

_local = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
_address = st.builds(lambda a, b: f"{a}.{b}@corp.example", _local, _local)
_plain = st.text(alphabet="xyz ,;:-_", max_size=12)
_leaf_text = st.one_of(
    _plain,
    st.builds(lambda a, e, b: f"{a} {e} {b}", _plain, _address, _plain),
    st.builds(lambda e: json.dumps({"contact": e}), _address),  # JSON inside a string
)
_key = st.text(alphabet='abc .[]"<>$_1', min_size=1, max_size=6)
payloads = st.recursive(
    _leaf_text,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_key, inner, min_size=1, max_size=3)
    ),
    max_leaves=10,
)


def shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return "leaf"


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_key, payloads, min_size=1, max_size=3))
def test_redacting_keeps_the_shape_and_leaves_nothing_found(args: dict[str, Any]) -> None:
    scanner = Scanner()
    findings = [f for f in scanner.scan(args) if "<key>" not in f.path]
    for f in findings:
        assert steps_of(f.path.split("<form>", 1)[0]) is not None, f.path
    decided = [(f, CHECK.action(TOOL, f)) for f in findings]
    if not decided:
        return
    from agentguard.checks.dlp import _Decided

    out = CHECK._transform(args, [_Decided(f, a) for f, a in decided], "scope")
    assert shape(out) == shape(args)
    assert not [f for f in scanner.scan(out) if "<key>" not in f.path]
    assert "@corp.example" not in json.dumps(out)
