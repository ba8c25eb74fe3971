"""The fast canonical encoder must produce RFC 8785 bytes exactly, or defer to the reference."""

from __future__ import annotations

from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from agentguard._canonical import canonical_json, digest

keys = st.text(max_size=6) | st.sampled_from(["\ue000", "\U0001f600", "a", "\x7f", "\u2028"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(value=values)
def test_fast_path_is_byte_identical_to_rfc8785(value: Any) -> None:
    try:
        expected = bytes(rfc8785.dumps(value))
    except Exception:
        try:
            canonical_json(value)
        except Exception:
            return
        raise AssertionError(f"accepted a value RFC 8785 refuses: {value!r}")
    assert canonical_json(value) == expected


def test_key_order_and_spacing_do_not_change_the_digest() -> None:
    assert digest({"b": 1, "a": [1, "x"]}) == digest({"a": [1, "x"], "b": 1})
    assert digest({"a": 1}) != digest({"a": "1"})
    assert (
        digest({"\ue000": 1, "\U0001f600": 2})
        == "sha256:"
        + __import__("hashlib").sha256(rfc8785.dumps({"\ue000": 1, "\U0001f600": 2})).hexdigest()
    )
